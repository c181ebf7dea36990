"""Losses on embeddings, pure functions of tensors: the modality-gap thesis's contrastive family
(contrastive.py: CLIP's cross-entropy and the intra-/inter-modal, antipodal, variance and CyCLIP terms)
and the memes thesis's triplet loss (triplet.py, pytorch-metric-learning)."""
