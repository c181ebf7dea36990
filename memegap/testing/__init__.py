"""Loopback HTTP servers that speak the real protocols, for tests and benchmarks of memegap.collect.
They bind 127.0.0.1 only and stop with their context manager."""
