"""memegap: Lightning + Hydra experiments on social-media images and multimodal embeddings."""

__version__ = "0.1.0"
