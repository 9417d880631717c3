"""The HTTP front end: FastAPI routes, schemas, error mapping and middleware around the core."""
