"""The cone effect (Liang et al., 2022): the gap and the spread of cosines of a dual encoder's embeddings
before any training, with its pretrained towers (the modality-gap thesis's "initial" rows) and with
every weight at random (PyTorch's default initialisation of each layer, one seed per row; Liang et al.
used 25 random initialisations).

    python -m memegap.studies.modality_gap.cone experiment=coco_gap data.root=../shared/data/coco_mini
    python -m memegap.studies.modality_gap.cone experiment=arasaac_gap data.root=... --random-inits 25 --split test
    python -m memegap.studies.modality_gap.cone experiment=coco_clip model.name_or_path=<CLIP dir> data.root=...

Any Hydra override of memegap-train composes the model and data. Adapters are left out (DoRA would
rescale re-initialised weights). Writes cone.md, cone.json and cone_histograms.png (the four cosine
histograms, pretrained and one random initialisation) to --out, and prints the table. The thesis quotes
mean cosines of 0.56 / 0.47 / 0.51 for ResNet / ViT / text-Transformer features on 5,000 COCO images.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from memegap.callbacks.geometry import plot_cosine_histograms
from memegap.config import compose_train
from memegap.errors import UserError, reported_as_one_line
from memegap.metrics.geometry import cosine_histograms, cosine_spread, modality_gap
from memegap.metrics.retrieval import images_of_rows
from memegap.utils.cli import number_in

NO_ADAPTERS = {  # model settings that build each dual encoder without adapters
    "memegap.models.dual_encoder.DualEncoder": {"dora_rank": 0},
    "memegap.models.clip.ClipDualEncoder": {"lock_image_tower": True, "lock_text_tower": True},
}
HISTOGRAM_NAMES = {"intra_x": "image-image", "intra_y": "text-text", "inter_paired": "image-text, paired", "inter_cross": "image-text, not paired"}
MEASURES = ("gap", "image_mean_cosine", "image_min_cosine", "text_mean_cosine", "text_min_cosine", "paired_mean_cosine")


def composed(overrides: list[str]) -> DictConfig:
    """memegap-train's config with `overrides`, adapters left out; a wrong key or value is a UserError."""
    cfg = compose_train(overrides)
    target = cfg.model.get("_target_")
    if target not in NO_ADAPTERS:
        raise UserError(f"cone.py measures a dual encoder (model=dual_encoder or model=clip_dora); these overrides compose {target} "
                        f"(task {cfg.task_name}): choose a dual-encoder experiment, e.g. experiment=twemoji_gap")
    for key, value in NO_ADAPTERS[target].items():
        cfg.model[key] = value
    return cfg


def reinitialise(model: torch.nn.Module, seed: int) -> None:
    """Every layer's parameters drawn afresh by its own reset_parameters, from `seed`."""
    torch.manual_seed(seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()


@torch.no_grad()
def embed(model: torch.nn.Module, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image once with its first caption: (image N×d, text N×d)."""
    parts = [(model.embed(batch), batch["image_id"]) for batch in loader]
    image = torch.cat([part["image"] for part, _ in parts]).float()
    text = torch.cat([part["text"] for part, _ in parts]).float()
    first_rows = images_of_rows(torch.cat([image_ids for _, image_ids in parts]))[0]
    return image[first_rows], text[first_rows]


def cone_measures(image: torch.Tensor, text: torch.Tensor) -> dict[str, float]:
    image_spread, text_spread = cosine_spread(image), cosine_spread(text)
    paired = torch.nn.functional.cosine_similarity(image, text, dim=1).mean()
    return {
        "gap": modality_gap(image, text)[0],
        "image_mean_cosine": image_spread["mean_cosine"], "image_min_cosine": image_spread["min_cosine"],
        "text_mean_cosine": text_spread["mean_cosine"], "text_min_cosine": text_spread["min_cosine"],
        "paired_mean_cosine": float(paired),
    }


def table(pretrained: dict[str, float], random_rows: list[dict[str, float]], title: str) -> str:
    lines = [title, "", "| model | " + " | ".join(MEASURES) + " |", "|---" * (len(MEASURES) + 1) + "|",
             "| pretrained towers, before training | " + " | ".join(f"{pretrained[key]:.3f}" for key in MEASURES) + " |"]
    if random_rows:
        cells = []
        for key in MEASURES:
            values = [row[key] for row in random_rows]
            cells.append(f"{statistics.fmean(values):.3f} ± {statistics.pstdev(values):.3f}")
        lines.append(f"| random weights ({len(random_rows)} initialisations) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="memegap-train overrides, e.g. experiment=coco_gap data.root=...")
    parser.add_argument("--random-inits", type=number_in(0), default=25, help="random initialisations (seeds 0, 1, ...)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--out", type=Path, help="folder for cone.md, cone.json, cone_histograms.png "
                        "(default: logs/cone/<experiment>_<language>_<split>, so that two experiments never share one)")
    parser.add_argument("--overwrite", action="store_true", help="replace the report already in --out (refused otherwise)")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = parser.parse_args()
    with reported_as_one_line("cone.py", verbose=args.verbose):
        measure(args)


def default_out(cfg, split: str) -> Path:
    """logs/cone/<task>_<language>_<split>: named by what produced it (twemoji_gap_en_test, arasaac_gap_es_test)."""
    language = cfg.data.get("language")
    return Path("logs") / "cone" / "_".join(str(part) for part in (cfg.task_name, language, split) if part)


def measure(args: argparse.Namespace) -> None:
    """Cone measures of the pretrained towers and of each random initialisation; write and print them."""
    cfg = composed(args.overrides)
    args.out = args.out or default_out(cfg, args.split)
    if (args.out / "cone.json").exists() and not args.overwrite:  # checked before the minutes of embedding
        raise UserError(f"{args.out / 'cone.json'} exists (an earlier cone report): pass --overwrite to replace it, or --out <another folder>")
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    datamodule.setup()
    loader = getattr(datamodule, f"{args.split}_dataloader")()
    torch.manual_seed(cfg.seed)
    model = hydra.utils.instantiate(cfg.model, _convert_="all").eval()
    image, text = embed(model, loader)
    pretrained, panels = cone_measures(image, text), {"pretrained": cosine_histograms(image, text)}
    random_rows = []
    for seed in range(args.random_inits):
        reinitialise(model, seed)
        image, text = embed(model.eval(), loader)
        random_rows.append(cone_measures(image, text))
        if seed == 0:
            panels["random weights (seed 0)"] = cosine_histograms(image, text)
    title = f"**Cone effect**: {cfg.task_name} ({cfg.model._target_.rsplit('.', 1)[-1]}), {args.split} split, {len(image)} images"
    text_table = table(pretrained, random_rows, title)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cone.md").write_text(text_table, encoding="utf-8")
    (args.out / "cone.json").write_text(json.dumps({"pretrained": pretrained, "random": random_rows}, indent=2) + "\n")
    edges = next(iter(panels.values()))[1]
    named = {panel: {HISTOGRAM_NAMES[key]: values for key, values in counts.items()} for panel, (counts, _) in panels.items()}
    plot_cosine_histograms(named, edges, args.out / "cone_histograms.png", title.replace("**", ""))
    print(text_table)
    print(f"written to {args.out}/cone.md, cone.json, cone_histograms.png")


if __name__ == "__main__":
    main()
