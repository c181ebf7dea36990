"""A small real-image check of the classifiers: 403 Twemoji pictures of three Unicode blocks (flags,
faces, animals) written as a CIFAR-100 release (32 px, fine labels 0–2), so that every classifier
config runs through the real CIFAR loader offline; and the table of finished runs.

    python -m memegap.studies.classifiers.twemoji_blocks release data/twemoji_blocks
    memegap-train -m experiment=cifar100_cnn data.root=data/twemoji_blocks data.download=false \
        test_before_fit=true trainer.max_epochs=15 seed=1,2,3 run_id=blocks_seed'${seed}'
    python -m memegap.studies.classifiers.twemoji_blocks table logs/cifar100_cnn/runs/blocks_seed*
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from memegap.errors import UserError, reported_as_one_line
from memegap.testing.cifar import write_cifar100
from memegap.utils.trained_run import require_run_of

CLASSIFIERS = ("cifar_cnn", "resnet_classifier")  # the model options of the classifiers study (conf/model/)

ROWS = {
    "test accuracy": "test/acc",
    "test macro F1": "test/classification/f1_macro",
    "mean cosine, same-class pairs": "test/geometry/cosine_same_class_mean",
    "mean cosine, other-class pairs": "test/geometry/cosine_other_class_mean",
    "uniformity (t = 2)": "test/geometry/uniformity",
}


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


def table(run_dirs: list[Path]) -> str:
    """Markdown: each metric before and after training, mean ± standard deviation over the runs (each a
    finished run of a classifier: a run of another kind is refused, it has none of these metrics)."""
    for run in run_dirs:
        require_run_of(run, "twemoji_blocks table", models=CLASSIFIERS)
        if not (run / "metrics.json").is_file():
            raise UserError(f"{run}: no metrics.json (not a finished run): pass the run dirs of finished twemoji_blocks runs")
    metrics = [json.loads((run / "metrics.json").read_text()) for run in run_dirs]

    def cell(stage: str, key: str) -> str:
        values = [m[stage][key] for m in metrics if key in m.get(stage, {})]
        if not values:
            return "–"
        spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
        return f"{statistics.mean(values):.3f}{spread}"

    lines = [f"| test split, {len(metrics)} seeds | before training | after |", "|---|---|---|"]
    lines += [f"| {name} | {cell('before_fit', key)} | {cell('test', key)} |" for name, key in ROWS.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("release", help="write the CIFAR-format release").add_argument("folder", type=Path)
    commands.add_parser("table", help="markdown table of finished runs").add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args()
    with reported_as_one_line("twemoji_blocks"):
        if args.command == "release":
            if args.folder.exists() and not args.folder.is_dir():
                raise UserError(f"{args.folder}: a file, not a folder: pass the folder to write the release into (made if missing)")
            counts = write_twemoji_blocks(args.folder)
            print(f"wrote {sum(counts.values())} pictures ({counts}) to {args.folder / 'cifar-100-python'}")
        else:
            print(table(args.runs))


if __name__ == "__main__":
    main()
