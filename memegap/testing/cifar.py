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


def twemoji_blocks() -> dict[str, list[Path]]:
    """Real Twemoji PNGs of three Unicode blocks, by block: flags (regional-indicator pairs, 259),
    faces (U+1F600–1F64F, 80) and animals (U+1F400–1F43F, 64)."""
    from memegap.data.twemoji import twemoji_png_dir

    def points(path: Path) -> list[int]:
        return [int(code, 16) for code in path.stem.split("-")]

    paths = sorted(twemoji_png_dir().glob("*.png"))
    return {
        "flags": [p for p in paths if len(points(p)) == 2 and all(0x1F1E6 <= c <= 0x1F1FF for c in points(p))],
        "faces": [p for p in paths if len(points(p)) == 1 and 0x1F600 <= points(p)[0] <= 0x1F64F],
        "animals": [p for p in paths if len(points(p)) == 1 and 0x1F400 <= points(p)[0] <= 0x1F43F],
    }


def write_twemoji_blocks(root: Path, per_class: int | None = None, test_every: int = 4) -> dict[str, int]:
    """A CIFAR-format release of real pictures in three classes (twemoji_blocks, fine labels 0, 1, 2
    named flags, faces, animals), 32 px on white; every `test_every`-th picture of a class goes to the
    test part. Returns the number of pictures of each class."""
    from PIL import Image

    parts: dict[str, tuple[list, list]] = {"train": ([], []), "test": ([], [])}
    blocks = twemoji_blocks()
    for label, paths in enumerate(blocks.values()):
        for k, path in enumerate(paths[:per_class]):
            with Image.open(path) as image:
                rgba = image.convert("RGBA")
            picture = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB").resize((32, 32), Image.Resampling.BICUBIC)
            images, labels = parts["test" if k % test_every == 0 else "train"]
            images.append(np.array(picture))
            labels.append(label)
    names = [*blocks, *(f"fine_{k:02d}" for k in range(len(blocks), 100))]
    write_cifar100(root, {part: (np.stack(images), labels) for part, (images, labels) in parts.items()}, fine_names=names)
    return {name: len(paths[:per_class]) for name, paths in blocks.items()}
