"""Benchmarks (not tests): load generators and the reports they print."""
