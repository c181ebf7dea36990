"""The modality-gap study's tables from a multirun of experiment=modality_gap_study: one markdown table
per data source in the thesis's layout (Tables 5.5-5.7): gap, misalignment, clustering, text->image
R@1/5/10 in pools of 90 (random pools, the test split), for the initial model (each run's test before
training) and after each loss setting, mean ± standard deviation over seeds, each setting's R@1 minus
CE's R@1 of the same seed (paired: the seed fixes the projections' initialisation and the batch order,
so the pairing removes most of the seed-to-seed spread), the thesis's values beside ours, and a link to
each setting's picture of the validation histograms over the epochs; then, for the runs that logged them,
a second table of the newer measures (NEW_COLUMNS: RMG, L2I, gap concentration, effective ranks, zero-shot;
PROBE_COLUMNS: the linear probe, where memegap-zeroshot was run on the job: `for job in <grid>/*/; do
memegap-zeroshot $job; done`).

    python -m memegap.studies.modality_gap.tables logs/modality_gap_study/multiruns/<time> [more dirs] [--out tables.md]
    python -m memegap.studies.modality_gap.tables <grid> --out experiments/modality_gap/study_tables.md --pictures experiments/modality_gap/evolution

--pictures copies each linked picture there (one per source and setting, its first seed), so that the
table can travel without the run dirs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
from collections import defaultdict
from pathlib import Path

import yaml

from memegap.errors import UserError, reported_as_one_line
from memegap.utils.io import atomic_path

SETTINGS = ("ce", "ce_ortho_intra", "ce_ortho_intra_inter", "ce_variance", "ce_antipodal", "ce_antipodal_variance", "ce_cyclip", "siglip")
# What every job of the study's multirun names in its overrides (the sweep's three axes).
STUDY_KEYS = ("gap_data", "model/loss", "seed")
COLUMNS = ("gap", "misalignment", "clustering", "R@1", "R@5", "R@10")
# The field's newer measures (metrics.geometry.linear_geometry; the thesis has none of them) and zero-shot accuracy
# (callbacks.zero_shot: data whose pairs have classes, Twemoji's emoji groups): each table's column and its key
# under <stage>/. RMG and L2I: Schrodi et al. (2025); top-5 share: the part of the squared gap vector in its 5
# largest coordinates; effective rank: RankMe (Garrido et al., 2023), of at most d; zero-shot in %.
NEW_COLUMNS = {"RMG": "geometry/rmg", "L2I": "geometry/l2i", "gap top-5 share": "geometry/gap_top5_share",
               "effective rank image": "geometry/effective_rank_image", "effective rank text": "geometry/effective_rank_text",
               "effective rank joint": "geometry/effective_rank_joint", "zero-shot acc1": "zero_shot/acc1",
               "zero-shot balanced": "zero_shot/mean_per_class_recall"}
PERCENT = ("zero-shot acc1", "zero-shot balanced")
# The linear probe of memegap-zeroshot, where it was run on a job (<job>/zeroshot/*.json; test split), in %.
PROBE_COLUMNS = {"probe acc1": "acc1", "probe balanced": "mean_per_class_recall"}
NEWER = (*NEW_COLUMNS, *PROBE_COLUMNS)
# The thesis's Tables 5.5 (COCO: no R@5 / R@10 printed), 5.6 (ARASAAC EN) and 5.7 (ARASAAC ES): CLIP ViT, text->image R@k in %.
THESIS = {
    "coco": {"initial": (0.92, 1.40, -1.47, 65.13, None, None), "ce": (0.50, 1.37, -3.27, 76.82, None, None),
             "ce_ortho_intra": (0.20, 1.47, -3.74, 74.35, None, None)},
    "arasaac_en": {"initial": (1.00, 1.40, -1.1, 55.8, 78.0, 84.6), "ce": (0.68, 1.42, -2.75, 82.2, 95.4, 97.4),
                   "ce_ortho_intra": (0.32, 1.69, -3.88, 54.5, 74.6, 80.9), "ce_ortho_intra_inter": (0.32, 1.87, -3.92, 18.7, 31.9, 40.2),
                   "ce_variance": (0.67, 1.40, -2.81, 82.2, 95.6, 97.3), "ce_antipodal": (0.26, 1.56, -3.82, 79.6, 95.3, 96.9),
                   "ce_antipodal_variance": (0.64, 1.38, -2.83, 81.8, 95.0, 97.1)},
    "arasaac_es": {"initial": (1.00, 1.52, -0.78, 33.2, 48.5, 56.3), "ce": (0.52, 1.50, -3.18, 57.1, 77.7, 84.0),
                   "ce_ortho_intra": (0.57, 1.69, -3.31, 54.6, 74.5, 81.0), "ce_ortho_intra_inter": (0.32, 1.91, -3.88, 54.0, 74.5, 80.0),
                   "ce_variance": (0.50, 1.50, -3.23, 58.4, 77.2, 84.0), "ce_antipodal": (0.27, 1.70, -3.88, 56.3, 76.9, 82.6),
                   "ce_antipodal_variance": (0.51, 1.50, -3.14, 57.2, 77.5, 83.6)},
}


def overrides_of(job: Path) -> dict[str, str]:
    path = job / ".hydra" / "overrides.yaml"
    return dict(item.split("=", 1) for item in yaml.safe_load(path.read_text()) or [] if "=" in item) if path.is_file() else {}


def measures(stage: dict[str, float], prefix: str) -> dict[str, float]:
    """The table's columns from one stage's metrics (R@k in % of the random pools)."""
    values = {"gap": stage.get(f"{prefix}/geometry/gap"), "misalignment": stage.get(f"{prefix}/geometry/alignment"),
              "clustering": stage.get(f"{prefix}/geometry/uniformity")}
    values |= {column: stage.get(f"{prefix}/{key}") for column, key in NEW_COLUMNS.items()}
    values |= {column: 100 * values[column] for column in PERCENT if values.get(column) is not None}
    for key, value in stage.items():
        match = re.fullmatch(rf"{prefix}/retrieval/text_to_image_R@(\d+)_pool\d+", key)
        if match:
            values[f"R@{match.group(1)}"] = 100 * value
    return {key: value for key, value in values.items() if value is not None}


def collect(grids: list[Path]) -> dict[str, dict[str, list[tuple[dict[str, float], Path, str]]]]:
    """{source: {setting or "initial": [(measures, job dir, seed), ...]}} of every finished job of the grids;
    "initial" holds one test-before-training per source and seed (it does not depend on the setting)."""
    table: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for grid in grids:
        if not grid.is_dir():
            raise UserError(f"{grid} is not a directory: give the multirun dir of experiment=modality_gap_study "
                            "(logs/modality_gap_study/multiruns/<time>)")
        for metrics_file in sorted(grid.glob("*/metrics.json"), key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0):
            job = metrics_file.parent
            try:
                metrics = json.loads(metrics_file.read_text())
            except json.JSONDecodeError as error:
                raise UserError(f"{metrics_file} is not valid JSON ({error}): run that job again or move its dir out of the grid") from error
            if "test" not in metrics:
                continue
            chosen = overrides_of(job)
            unnamed = [key for key in STUDY_KEYS if key not in chosen]
            if unnamed:
                raise UserError(f"{job} is not a job of experiment=modality_gap_study: its overrides name no {' / '.join(unnamed)} "
                                "(a study job names its data source, loss setting and seed); give that study's multirun dir")
            source, setting, seed = chosen["gap_data"], chosen["model/loss"], chosen["seed"]
            table[source][setting].append((measures(metrics["test"], "test") | probe_measures(job), job, seed))
            if "before_fit" in metrics and seed not in {known for _, _, known in table[source]["initial"]}:
                table[source]["initial"].append((measures(metrics["before_fit"], "test"), job, seed))
    return table


def probe_measures(job: Path) -> dict[str, float]:
    """PROBE_COLUMNS from the job's memegap-zeroshot result on its own data's test split (none: {})."""
    for path in sorted((job / "zeroshot").glob("*.json")):
        try:
            records = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise UserError(f"{path} is not valid JSON ({error}): run memegap-zeroshot on {job} again") from error
        probe = next((record for record in records if record.get("task") == "linear_probe" and record.get("split") == "test"), None)
        if probe is not None:
            return {column: 100 * probe["metrics"][key] for column, key in PROBE_COLUMNS.items()}
    return {}


def cell(values: list[float], signed: bool = False) -> str:
    """Mean, or mean ± population standard deviation where more than one value; "–" where none;
    `signed` writes the mean's sign (for differences)."""
    if not values:
        return "–"
    mean = format(statistics.fmean(values), "+.2f" if signed else ".2f")
    return mean if len(values) == 1 else f"{mean} ± {statistics.pstdev(values):.2f}"


def paired_difference(runs: list, reference_runs: list) -> str:
    """Mean ± standard deviation over seeds of R@1 minus the reference setting's R@1 of the same seed
    (percentage points), over the seeds both ran; "–" where none."""
    reference = {seed: values["R@1"] for values, _, seed in reference_runs if "R@1" in values}
    differences = [values["R@1"] - reference[seed] for values, _, seed in runs if "R@1" in values and seed in reference]
    return cell(differences, signed=True)


def markdown(table: dict, out: Path, pictures: Path | None = None) -> str:
    lines = []
    for source in sorted(table):
        rows = table[source]
        thesis = THESIS.get(source, {})
        lines += [f"### {source}", "", "| setting | seeds | " + " | ".join(COLUMNS) + " | R@1 − ce, same seed | thesis (" + " / ".join(COLUMNS)
                  + ") | histograms over the epochs |", "|---" * (len(COLUMNS) + 5) + "|"]
        for setting in ("initial", *SETTINGS):
            runs = rows.get(setting, [])
            reference = thesis.get(setting)
            if not runs and not reference:
                continue
            ours = " | ".join(cell([values[column] for values, _, _ in runs if column in values]) for column in COLUMNS)
            theirs = " / ".join("–" if value is None else f"{value:g}" for value in reference) if reference else "–"
            paired = paired_difference(runs, rows.get("ce", [])) if setting not in ("initial", "ce") else "–"
            lines.append(f"| {setting} | {len(runs)} | {ours} | {paired} | {theirs} | {picture_link(runs, setting, source, out, pictures)} |")
        lines += ["", *newer_measures(source, rows)]
    return "\n".join(lines)


def newer_measures(source: str, rows: dict) -> list[str]:
    """The second table of a source: NEW_COLUMNS and PROBE_COLUMNS (NEWER) for each setting, over the runs that
    have them (none before these measures existed: then no table)."""
    if not any(column in values for runs in rows.values() for values, _, _ in runs for column in NEWER):
        return []
    lines = [f"{source}, the newer measures (test split; the thesis has none of them):", "",
             "| setting | seeds | " + " | ".join(NEWER) + " |", "|---" * (len(NEWER) + 2) + "|"]
    for setting in ("initial", *SETTINGS):
        runs = [values for values, _, _ in rows.get(setting, []) if any(column in values for column in NEWER)]
        if runs:
            lines.append(f"| {setting} | {len(runs)} | " + " | ".join(cell([values[column] for values in runs if column in values]) for column in NEWER) + " |")
    return [*lines, ""]


def picture_link(runs: list, setting: str, source: str, out: Path, pictures: Path | None) -> str:
    """A link to the first seed's val_evolution.png (copied to `pictures` when given), or "–"."""
    if setting == "initial" or not runs or not (runs[0][1] / "geometry" / "val_evolution.png").is_file():
        return "–"
    picture = runs[0][1] / "geometry" / "val_evolution.png"
    if pictures is not None:
        pictures.mkdir(parents=True, exist_ok=True)
        picture = Path(shutil.copyfile(picture, pictures / f"{source}_{setting}_seed{runs[0][2]}.png"))
    return f"[seed {runs[0][2]}]({os.path.relpath(picture, out.parent)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grids", type=Path, nargs="+", help="multirun dirs of experiment=modality_gap_study")
    parser.add_argument("--out", type=Path, default=Path("logs/modality_gap_study/tables.md"), help="the markdown file to write")
    parser.add_argument("--pictures", type=Path, help="copy the linked histogram pictures to this folder (default: link them in the run dirs)")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = parser.parse_args()
    with reported_as_one_line("tables.py", verbose=args.verbose):
        table = collect(args.grids)
        if not table:
            raise UserError(f"no finished job (a <job>/metrics.json with test metrics) in {', '.join(map(str, args.grids))}: "
                            "give the multirun dir of experiment=modality_gap_study after its runs have tested")
    text = markdown(table, args.out, args.pictures)
    with atomic_path(args.out) as temporary:  # an interrupted write leaves the previous table whole
        temporary.write_text(text, encoding="utf-8")
    print(text)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
