"""Data sources, one module per source (a reader plus a LightningDataModule), on shared parts: the
packed image store (image_store.py), splits (splits.py), epoch-seeded samplers and loaders
(sampling.py), image–text pairs (pairs.py) and labelled images (labelled.py). Batches carry the keys
of memegap.batch; data modules know no model."""
