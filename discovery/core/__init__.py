"""The application core: projection, watch hub, validation, admission, maintenance.

It knows no framework: both front ends (http/, grpc/) call DiscoveryService, and the runtime
(discovery/runtime.py) owns it.
"""
