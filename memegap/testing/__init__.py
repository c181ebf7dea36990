"""Helpers for tests and benchmarks: loopback HTTP servers that speak the real protocols (X API v2,
ARASAAC, an image server with injected faults; they bind 127.0.0.1 only and stop with their context
manager), a tiny random CLIP saved to a directory, and a writer of CIFAR-100 releases in their pickle format."""
