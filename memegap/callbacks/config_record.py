"""ConfigInCheckpoint: every checkpoint keeps the data and model config it was trained with, so that
a resume or `memegap-eval` can refuse a config that would silently change the model or the data."""

from __future__ import annotations

from typing import Any

import lightning as L

from memegap.utils.run_dir import CONFIG_KEY


class ConfigInCheckpoint(L.Callback):
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config  # plain values only, so the checkpoint still loads with weights_only=True

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_KEY] = self.config
