"""Callbacks decide when and what to log; the numbers come from memegap.metrics."""
