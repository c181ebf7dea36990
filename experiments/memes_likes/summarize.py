"""One table of likes predictors from finished memes runs: each model setting's test Spearman ρ, MAE on
log1p(likes) and pairwise accuracy as mean ± standard deviation over its seeds (and the mean of the
per-run 95 % bootstrap intervals), then the baselines (the same split in every run: one row each),
and the per-bin precision of the thesis's tables.

    python experiments/memes_likes/summarize.py "euclidean=logs/memes_triplet/multiruns/<time>/*" "cosine=..."
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
from pathlib import Path

MEASURES = ("spearman", "mae_log", "pairwise_acc")


def read_reports(pattern: str) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(Path(p) / "popularity" / "test_report.json" for p in glob.glob(pattern)) if path.exists()]


def cell(values: list[float]) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "– (constant)"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def table(settings: dict[str, list[dict]]) -> str:
    lines = ["| predictor | seeds | Spearman ρ | MAE log1p(likes) | pairwise accuracy | precision per like bin (low → high) |", "|---|---|---|---|---|---|"]
    baselines: dict[str, dict] = {}
    for setting, reports in settings.items():
        model = [next(entry for name, entry in report.items() if name.startswith("this model")) for report in reports]
        cells = [cell([entry["overall"][m] for entry in model]) for m in MEASURES]
        precision = " / ".join(f"{statistics.mean(entry['bins'][b]['precision'] for entry in model):.2f}" for b in range(len(model[0]["bins"])))
        lines.append(f"| {setting} | {len(model)} | " + " | ".join(cells) + f" | {precision} |")
        for report in reports[:1]:
            baselines.update({name: entry for name, entry in report.items() if not name.startswith("this model")})
    for name, entry in baselines.items():
        cells = [f"{entry['overall'][m]:.3f} [{entry['overall'][m + '_low']:.3f}, {entry['overall'][m + '_high']:.3f}]" if entry["overall"][m] == entry["overall"][m] else "– (constant)" for m in MEASURES]
        precision = " / ".join(f"{b['precision']:.2f}" for b in entry["bins"])
        lines.append(f"| baseline: {name} | – | " + " | ".join(cells) + f" | {precision} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="+", help="name=glob of run dirs")
    args = parser.parse_args()
    print(table({name: read_reports(pattern) for name, pattern in (item.split("=", 1) for item in args.settings)}))


if __name__ == "__main__":
    main()
