"""Loss functions: one small class per loss, no hidden state."""
