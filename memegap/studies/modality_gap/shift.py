"""Embedding-shift sweep of a trained dual encoder (Liang et al., 2022): shift the test embeddings of
image and text in opposite directions along the gap vector and record, at each λ, the gap, R@1/5/10 in
pools of 90, the contrastive loss and, where the data has classes (Twemoji: Unicode's nine emoji
groups, prompted "A picture of food and drink"), zero-shot accuracy and its balanced form.

    python -m memegap.studies.modality_gap.shift logs/arasaac_gap/runs/<run> [--split test] [--lambdas -1 -0.5 0 0.5 1]

Writes <run>/shift/shift.json (the rows, one per λ, and the zero-shot classes with their majority
share, the accuracy of always answering the largest class) and shift.png (each measure against the
gap), and prints the JSON. λ = 1 brings the two means together, λ < 0 widens the gap (memegap/studies/modality_gap/shift_sweep.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from memegap.errors import reported_as_one_line
from memegap.studies.modality_gap.shift_sweep import shift_sweep
from memegap.utils.figures import save_figure
from memegap.utils.io import atomic_path
from memegap.utils.trained_run import DUAL_ENCODERS, embed_split, require_run_of, run_config, set_up_data, trained_model

DEFAULT_LAMBDAS = [-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25]


def plot(rows: list[dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = [key for key in rows[0] if key not in ("lambda", "gap") and ("R@1" in key or key == "loss" or key.startswith("zero_shot"))]
    gaps = [row["gap"] for row in rows]
    columns = min(4, len(measures))
    rows_of_axes = -(-len(measures) // columns)
    figure, axes = plt.subplots(rows_of_axes, columns, figsize=(3.6 * columns, 3.2 * rows_of_axes), squeeze=False, layout="constrained")
    for axis in axes.flat[len(measures):]:
        axis.set_visible(False)
    for axis, measure in zip(axes.flat, measures):
        axis.plot(gaps, [row[measure] for row in rows], marker="o")
        for row in rows:  # each point's λ, since λ > 1 turns the gap back up
            axis.annotate(f"λ={row['lambda']:g}", (row["gap"], row[measure]), fontsize=6, textcoords="offset points", xytext=(2, 2))
        unshifted = next(row for row in rows if row["lambda"] == 0.0) if any(row["lambda"] == 0.0 for row in rows) else None
        if unshifted:
            axis.axvline(unshifted["gap"], color="grey", linestyle=":", linewidth=1)
        axis.set(title=measure, xlabel="gap ‖mean(x̂) − mean(ŷ)‖")
    figure.suptitle(title)
    save_figure(figure, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run dir of a dual-encoder experiment (holds .hydra/ and checkpoints/)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--checkpoint", type=Path, help="a .ckpt of the run (default: its best)")
    parser.add_argument("--lambdas", type=float, nargs="+", default=DEFAULT_LAMBDAS, help="shift sizes (0: unshifted, 1: means together)")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = parser.parse_args()
    with reported_as_one_line("shift.py", verbose=args.verbose):
        sweep(args)


def sweep(args: argparse.Namespace) -> None:
    """Shift the run's split embeddings at each λ; write shift.json and shift.png; print the JSON."""
    cfg = run_config(args.run_dir)
    require_run_of(args.run_dir, "shift.py", models=DUAL_ENCODERS)
    model = trained_model(cfg, args.run_dir, args.checkpoint)
    datamodule = set_up_data(cfg)
    embeddings, row_ids = embed_split(datamodule, model, args.split)
    zero_shot, labels, class_text = zero_shot_inputs(datamodule, model, row_ids)
    retrieval = cfg.callbacks.cross_modal_retrieval
    rows = shift_sweep(embeddings["image"], embeddings["text"], args.lambdas, float(model.logit_scale.detach()),
                       retrieval.pool_size, retrieval.get("pool_repeats", 1), embeddings["image_id"], labels, class_text)
    out = args.run_dir / "shift"
    out.mkdir(exist_ok=True)
    result = {"run": str(args.run_dir), "split": args.split, "zero_shot": zero_shot, "rows": rows}
    with atomic_path(out / "shift.json") as temporary:
        temporary.write_text(json.dumps(result, indent=2) + "\n")
    plot(rows, out / "shift.png", f"{cfg.task_name}: {args.split} embeddings shifted along the gap")
    print(json.dumps({**result, "written": [str(out / "shift.json"), str(out / "shift.png")]}, indent=2))


@torch.no_grad()
def zero_shot_inputs(datamodule, model, row_ids: list[str]) -> tuple[dict | None, torch.Tensor | None, torch.Tensor | None]:
    """For data with classes: (a summary: prompts, labelled rows, majority share), the class of each row
    (N, −1: none) and the embedded class prompts (C×d); (None, None, None) otherwise, or when no row of
    the split has a class."""
    classes = datamodule.zero_shot_classes()
    if classes is None:
        return None, None, None
    words, class_of_id = classes
    prompts = [datamodule.prompt(name) for name in words]  # the source's own prompt, as its pairs were trained
    labels = torch.tensor([class_of_id.get(row_id, -1) for row_id in row_ids])
    known = labels[labels >= 0]
    if not len(known):
        print("shift.py: warning: no row of the split has a zero-shot class: zero-shot accuracy left out", file=sys.stderr)
        return None, None, None
    summary = {"prompts": prompts, "labelled_rows": len(known), "rows_without_class": len(labels) - len(known),
               "majority_share": float(torch.bincount(known).max() / len(known))}
    return summary, labels, model.embed_texts(prompts)


if __name__ == "__main__":
    main()
