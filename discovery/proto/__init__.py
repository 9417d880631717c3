"""Talos-compatible gRPC definitions (generated code is committed; see generate.py)."""
