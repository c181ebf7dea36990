"""Data sources: one module per source, each a reader plus a LightningDataModule."""
