"""memegap-zeroshot: zero-shot classification and a linear probe of a trained dual encoder, on labelled images.

    memegap-zeroshot RUN_DIR                                                    # the run's own classes (Twemoji: the nine emoji groups)
    memegap-zeroshot RUN_DIR --data cifar100 --set root=data/cifar100 label=coarse
    memegap-zeroshot RUN_DIR --data labelled_table --set table=my_images.csv label_column=kind
    memegap-zeroshot RUN_DIR --templates my_templates.txt --no-probe

The classes: without --data, the run's own source where its pairs have classes (`zero_shot_classes`: Twemoji's
Unicode groups); with --data, any classification source of conf/data (CIFAR-100 fine or coarse, the five
image-sentiment levels, posts, labelled_table), composed as `memegap-train data=<option>` would, with --set
KEY=VALUE for its keys and the run's image size. The words of each class (its name, underscores as spaces)
fill every template; the prompts' embeddings average into one prototype per class (metrics.zero_shot, CLIP's
prompt ensembling). metrics.zero_shot.TEMPLATES are ours, in the run's data.language; --templates FILE reads one template a
line, `{}` where the class words go.

Zero-shot is scored on --split (test); the linear probe (scikit-learn logistic regression on the frozen image
embeddings, C chosen on val, refitted on train + val) on the same split. Every figure stands beside its
baselines: chance (1 / classes) and the majority answer. Written to <run>/zeroshot/<source>.json (--out): a
list of records in LAION CLIP_benchmark's layout (dataset, model, task, language, metrics) for the tasks
zeroshot_classification and linear_probe; also printed. A run that is not a dual encoder, a source without
classes, a template without `{}` or a missing file ends in one line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from torch import Tensor

from memegap.batch import float_images
from memegap.errors import UserError, reported_as_one_line
from memegap.metrics.zero_shot import TEMPLATES, linear_probe, prompt_prototypes, zero_shot
from memegap.utils.cli import HelpFormatter, command_console, config_error_line
from memegap.utils.io import atomic_path

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="memegap-zeroshot", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a trained run of a dual encoder (logs/<task>/runs/<run_id>)")
    parser.add_argument("--data", help="a classification source of conf/data (cifar100, image_sentiment, posts, labelled_table); default: the run's own data")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="keys of --data (root=..., label=coarse)")
    parser.add_argument("--split", choices=SPLITS, default="test", help="the split scored")
    parser.add_argument("--templates", type=Path, help="a text file of prompt templates, one a line, {} for the class words")
    parser.add_argument("--no-probe", action="store_true", help="zero-shot only")
    parser.add_argument("--checkpoint", type=Path, help="a .ckpt of the run (default: its best)")
    parser.add_argument("--out", type=Path, help="the JSON to write (default: <run>/zeroshot/<source>.json)")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    command_console()
    with reported_as_one_line("memegap-zeroshot", verbose=args.verbose):
        records, out = evaluate(args)
    print(json.dumps(records, indent=2))
    log.info("written to %s", out)


def evaluate(args: argparse.Namespace) -> tuple[list[dict], Path]:
    """Check, load, embed, score, write; returns the records and where they went."""
    from memegap.utils.trained_run import DUAL_ENCODERS, require_run_of, run_config, trained_model

    if args.out is not None and (args.out.suffix != ".json" or args.out.is_dir()):
        raise UserError(f"--out {args.out}: name a .json file")
    cfg = run_config(args.run_dir)
    require_run_of(args.run_dir, "memegap-zeroshot", models=DUAL_ENCODERS)
    language = str(cfg.data.get("language", "en"))
    templates = read_templates(args.templates) if args.templates else TEMPLATES.get(language, TEMPLATES["en"])
    datamodule, source = labelled_source(cfg, args)
    words, labelled = classes_of(datamodule, source)
    model = trained_model(cfg, args.run_dir, args.checkpoint)
    with torch.no_grad():
        features = {split: image_embeddings(model, datamodule, split, labelled[split]) for split in (SPLITS if not args.no_probe else (args.split,))}
        prototypes = prompt_prototypes(model.embed_texts, words, templates)
    model_name = f"{cfg.get('task_name', 'run')}/{args.run_dir.name}"
    scored = features[args.split]
    zero_shot_metrics = zero_shot(scored[0], prototypes, scored[1])
    records = [record(source, model_name, "zeroshot_classification", language, args.split, zero_shot_metrics, words, templates)]
    if not args.no_probe:
        probe = linear_probe(features["train"], features["val"], features[args.split], len(words), seed=int(cfg.get("seed", 0)))
        records.append(record(source, model_name, "linear_probe", language, args.split, probe, words))
    out = args.out or args.run_dir / "zeroshot" / f"{source}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as temporary:
        temporary.write_text(json.dumps(records, indent=2) + "\n")
    return records, out


def read_templates(path: Path) -> list[str]:
    if not path.is_file():
        raise UserError(f"--templates {path}: no such file")
    templates = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    wrong = [template for template in templates if template.count("{}") != 1]
    if not templates or wrong:
        raise UserError(f"--templates {path}: every line needs one {{}} where the class words go ({wrong[0]!r} has {wrong[0].count('{}')})"
                        if wrong else f"--templates {path}: no template in it")
    return templates


def labelled_source(cfg, args: argparse.Namespace):
    """(the data module, set up; the source's name): the run's own, or --data composed with --set and the run's image size."""
    from memegap.utils.trained_run import set_up_data

    if args.data is None:
        return set_up_data(cfg), str(cfg.data.get("_target_", "data")).rsplit(".", 1)[-1].removesuffix("DataModule").lower()
    from omegaconf.errors import OmegaConfBaseException

    from memegap.config import compose_train
    from memegap.utils.run import build

    for item in args.set:
        if "=" not in item:
            raise UserError(f"--set {item}: write KEY=VALUE (a key of data={args.data})")
    try:
        composed = compose_train([f"data={args.data}", *(f"data.{item}" for item in args.set)])
    except UserError as error:
        raise UserError(f"--data {args.data} {' '.join(args.set)}: {error}") from None
    given = {item.split("=", 1)[0] for item in args.set}
    if "image_size" in composed.data and "image_size" not in given and "image_size" in cfg.data:
        composed.data.image_size = cfg.data.image_size  # the size the run's image tower trained at
    try:
        datamodule = build(composed.data, _convert_="all")
    except OmegaConfBaseException as error:  # a key the option needs and --set did not give (data.table)
        raise UserError(f"--data {args.data}: {config_error_line(error)}; give it with --set") from None
    datamodule.setup()
    return datamodule, args.data


def classes_of(datamodule, source: str) -> tuple[list[str], dict[str, Tensor]]:
    """(each class's words, {split: the class of each item of the split, −1 where it has none})."""
    pair_classes = getattr(datamodule, "zero_shot_classes", lambda: None)()
    if pair_classes is not None:
        words, class_of_id = pair_classes
        return list(words), {split: torch.tensor([class_of_id.get(item, -1) for item in dataset.ids])
                             for split, dataset in datamodule.datasets.items()}
    names = getattr(datamodule, "class_names", None)
    if not names:
        raise UserError(f"{source} has no classes to score: give --data a classification source (cifar100, image_sentiment, posts, labelled_table)")
    return [str(name).replace("_", " ") for name in names], {split: dataset.labels.long() for split, dataset in datamodule.datasets.items()}


def image_embeddings(model, datamodule, split: str, labels: Tensor) -> tuple[Tensor, Tensor]:
    """(N×d image embeddings, N labels) of the split's items that have a class, each image once, in order."""
    from memegap.data.sampling import make_loader

    if split not in datamodule.datasets or len(datamodule.datasets[split]) == 0:
        raise UserError(f"the source has no {split} split: the linear probe needs train, val and test (or pass --no-probe)")
    keep = labels >= 0
    if not keep.any():
        raise UserError(f"no item of the {split} split has a class")
    loader = make_loader(datamodule.datasets[split], datamodule.hparams.eval_batch_size, 0, False, datamodule.hparams.seed)
    vectors = torch.cat([model.embed_images(float_images(batch["image"].to(model.device))).cpu() for batch in loader])
    return vectors[keep], labels[keep]


def record(dataset: str, model: str, task: str, language: str, split: str, metrics: dict, words: list[str], templates: list[str] | None = None) -> dict:
    """One result in CLIP_benchmark's layout, with memegap's additions (split, classes, templates)."""
    metrics = {**metrics, "per_class_recall": {words[number]: value for number, value in metrics["per_class_recall"].items()}}
    result = {"dataset": dataset, "model": model, "task": task, "language": language, "split": split, "metrics": metrics, "classes": words}
    return result | ({"templates": templates} if templates is not None else {})


if __name__ == "__main__":
    main()
