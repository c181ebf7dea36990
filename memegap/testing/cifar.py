"""Write a CIFAR-100 release in its exact python-pickle format (train, test, meta), for tests that
run the real loader without the 161 MB archive."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from memegap.data.cifar100 import COARSE_OF_FINE, FOLDER


def write_cifar100(root: Path, parts: dict[str, tuple[np.ndarray, list[int]]], fine_names: list[str] | None = None, coarse_names: list[str] | None = None) -> Path:
    """parts: {"train": (images uint8 N×32×32×3, fine labels), "test": (...)}; coarse labels follow
    CIFAR-100's own mapping. Names default to "fine_00" … / "coarse_00" …. Returns <root>/cifar-100-python."""
    folder = Path(root) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for part, (images, fine) in parts.items():
        data = np.ascontiguousarray(np.asarray(images, dtype=np.uint8).transpose(0, 3, 1, 2)).reshape(len(images), -1)
        content = {
            "filenames": [f"{part}_{index}.png" for index in range(len(images))],
            "batch_label": f"{part} batch",
            "fine_labels": [int(label) for label in fine],
            "coarse_labels": [COARSE_OF_FINE[int(label)] for label in fine],
            "data": data,
        }
        with open(folder / part, "wb") as handle:
            pickle.dump(content, handle, protocol=2)
    meta = {
        "fine_label_names": fine_names or [f"fine_{k:02d}" for k in range(100)],
        "coarse_label_names": coarse_names or [f"coarse_{k:02d}" for k in range(20)],
    }
    with open(folder / "meta", "wb") as handle:
        pickle.dump(meta, handle, protocol=2)
    return folder
