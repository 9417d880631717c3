"""The Talos-compatible gRPC front end (sidero.discovery.server.Cluster) around the core."""
