"""One table of likes predictors from finished memes runs: each model setting's test Spearman ρ, MAE on
log1p(likes) and pairwise accuracy as mean ± standard deviation over its seeds (and the mean of the
per-run 95 % bootstrap intervals), then the baselines (the same split in every run: one row each),
and the per-bin precision of the thesis's tables.

    python -m memegap.studies.memes_likes.summarize "euclidean=logs/memes_triplet/multiruns/<time>/*" "cosine=..."
    python -m memegap.studies.memes_likes.summarize --grid logs/memes_study/multiruns/<time>   # one table per split
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
from pathlib import Path

from memegap.errors import UserError, reported_as_one_line

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


def grid_settings(multirun: Path) -> dict[str, dict[str, list[dict]]]:
    """The finished jobs of a study multirun, by split, then by their other overrides (seeds pooled)."""
    import yaml

    by_split: dict[str, dict[str, list[dict]]] = {}
    for job in sorted(path for path in multirun.iterdir() if (path / "popularity" / "test_report.json").exists()):
        overrides = dict(item.split("=", 1) for item in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))
        split = overrides.pop("data.split", "random")
        overrides.pop("seed", None)
        setting = ", ".join(f"{key}={value}" for key, value in sorted(overrides.items()) if not key.startswith(("data.table", "experiment", "logger", "trainer")))
        by_split.setdefault(split, {}).setdefault(setting, []).append(json.loads((job / "popularity" / "test_report.json").read_text()))
    return by_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="*", help="name=glob of run dirs")
    parser.add_argument("--grid", type=Path, help="a memes_study multirun dir: one table per split")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = parser.parse_args()
    with reported_as_one_line("summarize.py", verbose=args.verbose):
        print(tables(args.settings, args.grid))


def tables(settings: list[str], grid: Path | None) -> str:
    """The markdown of main(); a setting or grid that matches no finished memes run is a user error."""
    if grid is not None:
        if not grid.is_dir():
            raise UserError(f"--grid {grid} is not a folder")
        by_split = grid_settings(grid)
        if not by_split:
            raise UserError(f"--grid {grid} holds no finished memes run (no */popularity/test_report.json)")
        return "".join(f"\nsplit={split}\n\n{table(dict(sorted(found.items())))}\n" for split, found in by_split.items())
    if not settings:
        raise UserError("give name=glob settings, or --grid <memes_study multirun>")
    named = {}
    for item in settings:
        if "=" not in item:
            raise UserError(f"{item!r} is not name=glob (e.g. \"cosine=logs/memes_triplet/multiruns/<time>/*\")")
        name, pattern = item.split("=", 1)
        named[name] = read_reports(pattern)
        if not named[name]:
            raise UserError(f"{item}: no finished memes run matches (no <run>/popularity/test_report.json)")
    return table(named)


if __name__ == "__main__":
    main()
