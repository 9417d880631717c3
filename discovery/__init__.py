"""The discovery service: HTTP and gRPC front ends over one event-sourced core, plus clients."""
