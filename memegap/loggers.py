"""Loggers as Lightning's, less what prints noise on every run."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

from memegap.errors import UserError


def has_wandb_credentials() -> bool:
    """Whether W&B can log in without asking: WANDB_API_KEY, an identity token file, or the entry that
    `wandb login` writes to ~/.netrc (or $NETRC) for the W&B host (WANDB_BASE_URL, default api.wandb.ai)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return path.is_file() and netrc.netrc(str(path)).authenticators(host) is not None
    except (netrc.NetrcParseError, OSError):
        return False


class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger without the `anonymous` argument it always passes to `wandb.init`
    (wandb ≥ 0.22 warns that the setting has no effect, on every run)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("mode") == "online" and not has_wandb_credentials():  # wandb.init's 37-line traceback otherwise
            raise UserError("WANDB_MODE=online (logger.wandb.mode) but W&B has no login on this machine: run `wandb login` "
                            "(or set WANDB_API_KEY), or leave WANDB_MODE unset to log offline and `wandb sync` later")
        super().__init__(*args, **kwargs)
        self._wandb_init.pop("anonymous", None)
