"""Pure metric functions on tensors: they never log and never touch files."""
