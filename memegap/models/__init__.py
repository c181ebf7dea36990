"""LightningModules, one per file: the dual encoder (dual_encoder.py) and CLIP + DoRA (clip.py), the
image classifier (classifier.py), both on StagedModule (staged.py: one `_step` serves every stage), and
the memes siamese nets (siamese.py, the shared trunk; siamese_triplet.py, siamese_regression.py). They
are built from memegap.nets and read batches by the keys of memegap.batch."""
