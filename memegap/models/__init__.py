"""LightningModules (one per file) and the towers and adapters they share."""
