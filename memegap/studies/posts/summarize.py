"""Mean ± standard deviation over seeds of posts-study results (memegap-posts run → results.json).

    python -m memegap.studies.posts.summarize logs/posts_image/multiruns/<time>/*/posts_study_minilm
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from memegap.errors import UserError, reported_as_one_line


def spread(values: list[float]) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"


def read_studies(folders: list[Path]) -> list[dict]:
    """results.json of each folder; a folder without one is a user error naming it."""
    missing = [str(folder) for folder in folders if not (folder / "results.json").is_file()]
    if missing:
        raise UserError(f"no results.json (written by `memegap-posts run`) in {', '.join(missing[:3])}" + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""))
    studies = []
    for folder in folders:
        try:
            studies.append(json.loads((folder / "results.json").read_text()))
        except json.JSONDecodeError as error:
            raise UserError(f"{folder / 'results.json'} is not valid JSON ({error.msg}, line {error.lineno})") from None
    return studies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+", help="posts-study output folders (each holds results.json), one per seed")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = parser.parse_args()
    with reported_as_one_line("summarize.py", verbose=args.verbose):
        print_tables(read_studies(args.folders))


def print_tables(studies: list[dict]) -> None:
    print(f"{len(studies)} runs (seeds {', '.join(str(study['settings']['seed']) for study in studies)}); "
          f"posts train/val/test {'/'.join(str(v) for v in studies[0]['counts']['posts'].values())}\n")
    print("| model | val acc | test acc | test macro F1 |\n|---|---|---|---|")
    for name in studies[0]["posts"]:
        key = name.split(", λ =")[0]  # the late fusion's name holds its chosen λ
        rows = [next(result for model, result in study["posts"].items() if model.split(", λ =")[0] == key) for study in studies]
        if "acc" in rows[0]["test"]:
            print(f"| {key} | {spread([row['val']['acc'] for row in rows])} | {spread([row['test']['acc'] for row in rows])} | "
                  f"{spread([row['test']['f1_macro'] for row in rows])} |")
        else:
            print(f"| {key} | {spread([row['val']['acc_of_decided'] for row in rows])} of {spread([row['val']['decided'] for row in rows])} decided | "
                  f"{spread([row['test']['acc_of_decided'] for row in rows])} of {spread([row['test']['decided'] for row in rows])} decided | |")
    weights = ", ".join(f"{study['settings']['fusion_weight']:.2f}" for study in studies)
    print(f"\nlate fusion λ chosen on val: {weights}\n")
    print("| influencers, test users | threshold (val) | precision | recall | Hamming loss |\n|---|---|---|---|---|")
    for model in studies[0]["influencers"]:
        rows = [study["influencers"][model] for study in studies]
        thresholds = ", ".join(f"{row['threshold']:.2f}" for row in rows) if "sweeps" in rows[0] else "–"
        print(f"| {model} | {thresholds} | {spread([row['test']['precision'] for row in rows])} | "
              f"{spread([row['test']['recall'] for row in rows])} | {spread([row['test']['hamming_loss'] for row in rows])} |")


if __name__ == "__main__":
    main()
