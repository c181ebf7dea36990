"""A small real-image check of the classifiers: 403 Twemoji pictures of three Unicode blocks (flags,
faces, animals) written as a CIFAR-100 release (32 px, fine labels 0–2), so that every classifier
config runs through the real CIFAR loader offline; and the table of finished runs.

    python experiments/classifiers/twemoji_blocks.py release data/twemoji_blocks
    memegap-train -m experiment=cifar100_cnn data.root=data/twemoji_blocks data.download=false \
        test_before_fit=true trainer.max_epochs=15 seed=1,2,3 run_id=blocks_seed'${seed}'
    python experiments/classifiers/twemoji_blocks.py table logs/cifar100_cnn/runs/blocks_seed*
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from memegap.testing.cifar import write_twemoji_blocks

ROWS = {
    "test accuracy": "test/acc",
    "test macro F1": "test/classification/f1_macro",
    "mean cosine, same-class pairs": "test/geometry/cosine_same_class_mean",
    "mean cosine, other-class pairs": "test/geometry/cosine_other_class_mean",
    "uniformity (t = 2)": "test/geometry/uniformity",
}


def table(run_dirs: list[Path]) -> str:
    """Markdown: each metric before and after training, mean ± standard deviation over the runs."""
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
    if args.command == "release":
        counts = write_twemoji_blocks(args.folder)
        print(f"wrote {sum(counts.values())} pictures ({counts}) to {args.folder / 'cifar-100-python'}")
    else:
        print(table(args.runs))


if __name__ == "__main__":
    main()
