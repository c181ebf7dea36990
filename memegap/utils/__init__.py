"""Small helpers shared by the entry points: files, config, logging, W&B."""
