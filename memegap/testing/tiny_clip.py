"""A tiny CLIP with random weights, saved as a Hugging Face model directory, for tests of model=clip_dora."""

from __future__ import annotations

from pathlib import Path

import torch


def save_tiny_clip(directory: str | Path, image_size: int = 32, seed: int = 0) -> Path:
    """A 2-layer CLIPModel (width 32, projections to 16, patches of 8 px, CLIP's 49,408-token vocabulary
    so the bundled BPE fits) saved to `directory` without tokenizer files. The global RNG is left as it was."""
    from transformers import CLIPConfig, CLIPModel

    towers = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={**towers, "vocab_size": 49408, "max_position_embeddings": 77, "bos_token_id": 49406, "eos_token_id": 49407},
        vision_config={**towers, "image_size": image_size, "patch_size": 8},
        projection_dim=16,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CLIPModel(config)
    model.save_pretrained(directory)
    return Path(directory)
