"""Simulations of two embedding modalities on the sphere (the modality-gap thesis's tool)."""
