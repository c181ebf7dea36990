"""Loggers as Lightning's, less what prints noise on every run."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger


class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger without the `anonymous` argument it always passes to `wandb.init`
    (wandb ≥ 0.22 warns that the setting has no effect, on every run)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wandb_init.pop("anonymous", None)
