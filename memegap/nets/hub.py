"""Pretrained weights by local directory or Hugging Face hub id, with offline mode checked first.

Offline, `from_pretrained(<hub id>)` retries for about a minute and prints a score of lines before it
fails; `local_or_hub` decides in a few seconds: a local directory is used as it is, a hub id from the
local cache when it is there, else only when the hub answers.
"""

from __future__ import annotations

import os
from pathlib import Path

import requests

from memegap.errors import UserError

HUB_PROBE_SECONDS = 3.0


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def local_or_hub(name_or_path: str, key: str, packaged: bool = False) -> str:
    """A directory to load from, or the hub id when the hub can be reached; else a UserError naming `key`
    (and, where `packaged`, that leaving `key` unset gives the model a pip package ships)."""
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise UserError(f"{key}={name_or_path}: no such directory")
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name_or_path, local_files_only=True)
    except Exception:  # not in the cache (huggingface_hub raises several types): ask the hub
        pass
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    reachable = False
    if not offline:
        try:
            requests.head(hub_endpoint(), timeout=HUB_PROBE_SECONDS)
            reachable = True
        except requests.RequestException:
            pass
    if not reachable:
        raise UserError(
            f"{key}={name_or_path}: a Hugging Face hub id, but the hub ({hub_endpoint()}) cannot be reached"
            f"{' (HF_HUB_OFFLINE is set)' if offline else ''}. Offline, pass a local model directory"
            + (f", or leave {key} unset for the packaged model" if packaged else f" ({key}=<folder>)")
        )
    return name_or_path
