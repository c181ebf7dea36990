"""Library warnings that tell a memegap user nothing, silenced by their exact text (nothing else)."""

from __future__ import annotations

import warnings

# - Lightning's own pytree helper builds torch's deprecated LeafSpec (Lightning 2.6 with torch 2.14).
# - Our image tower keeps its BatchNorm layers in eval mode on purpose (ImageNet statistics).
# - A run dir with checkpoints is only ever trained in again by a deliberate resume (claim_run_dir).
# - peft reads transformers' renamed gradient-checkpointing flag (peft 0.21 with transformers 5).
SILENCED = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",
    r"Found \d+ module\(s\) in eval mode at the start of training",
    r"Checkpoint directory .* exists and is not empty",
    r"`is_gradient_checkpointing` is deprecated",
)


def silence_library_noise() -> None:
    for message in SILENCED:
        warnings.filterwarnings("ignore", message=message)
