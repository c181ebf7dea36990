"""memegap-predict: a trained run's model on new items, or on one of its own splits, one row per item.

    memegap-predict RUN_DIR --out predictions.parquet                      # the run's test split
    memegap-predict RUN_DIR --images new_memes/ --out predictions.csv      # a folder of images
    memegap-predict RUN_DIR --texts words.txt --out nearest.parquet        # texts: their nearest images (dual encoders)
    memegap-predict RUN_DIR --table posts.csv --out predictions.parquet    # a table: an image column (a text column for dual encoders)

The run's composed config and best checkpoint are loaded with the checks memegap-eval makes; its data
module is set up as the run had it (class names, the training memes, the default candidates). Images are
read at the run's size and go through the same step as in testing: the data module's device step
(standardisation), then the model's embedding. What a row holds, by kind of model:

- classifier: `predicted` (class name), `probabilities` (one per class, in `class_names` order, from the
  softmax of the logits), `top_k_classes`, `top_k_probabilities`;
- likes model (siamese triplet or regression): `predicted_likes`, `predicted_log1p_likes`, `predicted_bin`
  (the run's like bins), `neighbours` (ids of the k training memes the prediction came from: the kNN of
  the triplet net, the nearest-difference rule of the regression net, as in the test step);
- dual encoder or CLIP: one row per image and per text (`modality`): `top_k` (ids of the k nearest
  candidates of the other modality) and `top_k_scores` (cosine). Candidates: the other modality of the
  same input (a split's, or --images with --texts), else the run's test split;
- every model with --embeddings: `embedding` (the vector as the model returns it).

Every row has `id` (a split's ids, an image's file name relative to the folder, a text's line number,
a table's row number from 1), and the split's truth where it has one (`label`, `likes`, `image_id`).
The output is written atomically (.parquet, or .csv with lists as JSON) and never replaces a file without
--overwrite. A wrong run dir, a missing column, an unreadable image, or an input the model cannot read
ends in one line and exit status 2, with nothing written.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from memegap.batch import float_images
from memegap.metrics.retrieval import images_of_rows
from memegap.errors import UserError, reported_as_one_line
from memegap.utils.cli import HelpFormatter, command_console, number_in
from memegap.utils.io import atomic_path

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
OUTPUT_SUFFIXES = (".parquet", ".csv")
BATCH = 64


@dataclass
class Items:
    """What to predict: images (their ids, and `image_batches()`, an iterator of (uint8 B×3×S×S, batch dict)
    that reads them) and/or texts (their ids and strings), and the truth a split has ({"label": N, ...},
    one value per image row; for pairs "image_id": the image of each pair, one per text row)."""

    image_ids: list[str] = field(default_factory=list)
    image_batches: Callable[[], Iterator[tuple[Tensor, dict]]] | None = None
    text_ids: list[str] = field(default_factory=list)
    texts: list[str] | None = None
    truth: dict[str, list] = field(default_factory=dict)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="memegap-predict", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a trained run dir (holds .hydra/ and checkpoints/)")
    parser.add_argument("--out", type=Path, required=True, help="the file to write: .parquet or .csv")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--split", choices=("train", "val", "test"), help="one of the run's own splits (default: test, when no other input is given)")
    source.add_argument("--table", type=Path, help="a CSV, Parquet or JSONL table of new items (--image-column, and --text-column for a dual encoder)")
    parser.add_argument("--images", type=Path, help="a folder of new images (searched recursively)")
    parser.add_argument("--texts", type=Path, help="a file of new texts, one per line (dual encoders)")
    parser.add_argument("--image-column", default="image", help="--table: the column of image paths (relative to the table, or absolute)")
    parser.add_argument("--text-column", default="text", help="--table: the column of texts (dual encoders)")
    parser.add_argument("--top-k", type=number_in(1), default=5, help="classes or candidates per row")
    parser.add_argument("--k", type=number_in(1), help="likes models: training memes per prediction (default: the run's popularity report's k, else 10)")
    parser.add_argument("--embeddings", action="store_true", help="add each row's embedding")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint of the run other than its best")
    parser.add_argument("--overwrite", action="store_true", help="replace --out when it exists")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    if args.split and (args.images or args.texts):
        parser.error("--split reads the run's own items: leave out --images and --texts")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    command_console()
    with reported_as_one_line("memegap-predict", verbose=args.verbose):
        frame = predict(args)
        log.info("%s rows written to %s", f"{len(frame):,}", args.out)


def check_output(out: Path, overwrite: bool) -> None:
    if out.suffix not in OUTPUT_SUFFIXES:
        raise UserError(f"--out {out}: must end in .parquet or .csv")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder: name a file")
    if out.exists() and not overwrite:
        raise UserError(f"--out {out} exists: pass --overwrite to replace it, or name another file")


def predict(args: argparse.Namespace) -> pd.DataFrame:
    """Check, load, predict, write; returns the rows written."""
    from memegap.utils.trained_run import run_config, set_up_data, trained_model

    check_output(args.out, args.overwrite)
    for option in ("images", "texts", "table"):
        path = getattr(args, option)
        if path is not None and not path.exists():
            raise UserError(f"--{option} {path}: no such {'folder' if option == 'images' else 'file'}")
    cfg = run_config(args.run_dir)
    kind = model_kind(str(cfg.model.get("_target_", "")))
    if kind != "dual" and (args.texts or (args.table and args.text_column != "text")):
        raise UserError(f"--texts: {args.run_dir} is a {kind} run, which reads images only")
    new_images = read_new_images(args, int(cfg.data.image_size)) if (args.images or args.table) else None
    new_texts = read_new_texts(args) if (args.texts or (args.table and kind == "dual")) else None
    model = trained_model(cfg, args.run_dir, args.checkpoint)
    datamodule = set_up_data(cfg)
    if new_images is None and new_texts is None:
        items = split_items(datamodule, args.split or "test", kind)
    else:
        items = Items()
        if new_images is not None:
            items.image_ids, items.image_batches = new_images
        if new_texts is not None:
            items.text_ids, items.texts = new_texts
    with torch.no_grad():
        if kind == "classifier":
            frame = classify(model, datamodule, items, args.top_k, args.embeddings)
        elif kind == "likes":
            k = args.k or int(cfg.get("callbacks", {}).get("popularity_report", {}).get("k", 10))
            frame = predict_likes(model, datamodule, items, k, args.embeddings)
        else:
            frame = rank_candidates(model, datamodule, items, args.top_k, args.embeddings)
    write_frame(frame, args.out)
    return frame


def model_kind(target: str) -> str:
    """classifier, likes or dual, from the run's model._target_."""
    if target.endswith(".ImageClassifier"):
        return "classifier"
    if target.endswith((".SiameseTriplet", ".SiameseRegression")):
        return "likes"
    if target.endswith((".DualEncoder", ".ClipDualEncoder")):
        return "dual"
    raise UserError(f"memegap-predict does not know the model {target!r}: it predicts with classifiers, likes models and dual encoders")


def read_new_images(args: argparse.Namespace, size: int) -> tuple[list[str], object]:
    """The ids and a batch reader of --images (every image file under the folder, sorted) or of --table's
    image column. Every file is decoded once here, so an unreadable one stops the command before any work."""
    from memegap.data.image_store import decode_rgb
    from memegap.utils.tables import read_user_columns, resolve_path

    if args.table is not None:
        column = read_user_columns(args.table, (args.image_column,))[args.image_column]
        missing = [number for number, value in enumerate(column, start=1) if not value]
        if missing:
            raise UserError(f"{args.table}: row {missing[0]} has no {args.image_column} ({len(missing)} such rows): fill or remove them")
        files = [resolve_path(args.table, str(value)) for value in column]
        ids = [str(number) for number in range(1, len(files) + 1)]
    else:
        if not args.images.is_dir():
            raise UserError(f"--images {args.images}: not a folder")
        files = sorted(path for path in args.images.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
        if not files:
            raise UserError(f"--images {args.images}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        ids = [path.relative_to(args.images).as_posix() for path in files]
    pixels = np.empty((len(files), 3, size, size), dtype=np.uint8)
    for index, path in enumerate(progress(files, "reading images")):
        try:
            pixels[index] = decode_rgb(path, size).transpose(2, 0, 1)
        except Exception as error:  # PIL raises many types for a broken or missing file
            source = f"{args.table} row {index + 1}" if args.table is not None else "--images"
            raise UserError(f"{source}: {path} is not a readable image ({type(error).__name__}); fix or remove it") from None
    images = torch.from_numpy(pixels)

    def batches() -> Iterator[tuple[Tensor, dict]]:
        for start in range(0, len(images), BATCH):
            chunk = images[start : start + BATCH]
            yield chunk, {"image": chunk, "id": ids[start : start + BATCH]}

    return ids, batches


def read_new_texts(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The ids and texts of --texts (non-empty lines; id = line number) or of --table's text column."""
    from memegap.utils.tables import read_user_columns

    if args.table is not None:
        texts = [str(value or "") for value in read_user_columns(args.table, (args.text_column,))[args.text_column]]
        return [str(number) for number in range(1, len(texts) + 1)], texts
    lines = args.texts.read_text(encoding="utf-8").splitlines()
    numbered = [(str(number), line.strip()) for number, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise UserError(f"--texts {args.texts}: no text (one per line)")
    return [number for number, _ in numbered], [text for _, text in numbered]


def split_items(datamodule, split: str, kind: str) -> Items:
    """A split of the run's data module, read through its evaluation loader (the test step's batches)."""
    dataset = datamodule.datasets[split]
    loader = datamodule.plain_loader(split) if kind == "likes" else getattr(datamodule, f"{split}_dataloader")()
    if split == "train" and kind != "likes":
        from memegap.data.sampling import make_loader

        loader = make_loader(dataset, datamodule.hparams.eval_batch_size, 0, False, datamodule.hparams.seed)  # in order, no augmentation draws

    def batches() -> Iterator[tuple[Tensor, dict]]:
        for batch in loader:
            yield batch["image"], batch

    items = Items(image_ids=list(dataset.ids), image_batches=batches)
    if kind == "dual":
        items.text_ids, items.texts = list(dataset.ids), list(dataset.texts)
        items.truth["image_id"] = list(dataset.image_rows)
    if kind == "classifier":
        items.truth["label"] = dataset.labels.tolist()
    if kind == "likes":
        items.truth["likes"] = dataset.likes.tolist()
    return items


def device_step(model, datamodule, batch: dict) -> dict:
    """The batch as the test step sees it: on the model's device, through the data module's device step."""
    from lightning.pytorch.utilities import move_data_to_device

    batch = move_data_to_device(batch, model.device)
    return datamodule.on_after_batch_transfer(batch, 0) if hasattr(datamodule, "device_images") else batch


def classify(model, datamodule, items: Items, top_k: int, with_embeddings: bool) -> pd.DataFrame:
    features, logits = [], []
    for _, batch in progress(items.image_batches(), "classifying", total=len(items.image_ids)):
        embedded = model.embed(device_step(model, datamodule, batch))["image"]
        features.append(embedded.float().cpu())
        logits.append(model.head(embedded).float().cpu())
    probabilities = torch.cat(logits).softmax(1)
    names = list(datamodule.class_names)
    scores, classes = probabilities.topk(min(top_k, len(names)), dim=1)
    frame = pd.DataFrame({"id": items.image_ids, "predicted": [names[k] for k in classes[:, 0].tolist()],
                          "probabilities": probabilities.tolist(),
                          "top_k_classes": [[names[k] for k in row] for row in classes.tolist()], "top_k_probabilities": scores.tolist()})
    if "label" in items.truth:
        frame["label"] = [names[k] for k in items.truth["label"]]
    if with_embeddings:
        frame["embedding"] = torch.cat(features).tolist()
    return frame


def likes_embeddings(model, datamodule, batches) -> Tensor:
    parts = []
    for _, batch in batches:
        if model.fusion:
            raise UserError("this likes model reads the memes' text features beside the image (model.fusion=true): "
                            "it predicts only its own splits (--split), whose features come from the run's table")
        parts.append(next(iter(model.embed(device_step(model, datamodule, batch)).values())).float().cpu())
    return torch.cat(parts)


def predict_likes(model, datamodule, items: Items, k: int, with_embeddings: bool) -> pd.DataFrame:
    """The test step's prediction (model.predict_targets) with the run's training memes as the reference set."""
    from memegap.targets import from_target, like_bins

    train_set = datamodule.datasets["train"]
    references = likes_embeddings(model, datamodule, ((None, batch) for batch in progress(datamodule.plain_loader("train"), "embedding the training memes")))
    queries = likes_embeddings(model, datamodule, progress(items.image_batches(), "embedding the memes", total=len(items.image_ids)))
    predicted_targets, neighbours = model.predict_targets(references, train_set.targets, queries, k)
    likes = np.asarray(from_target(predicted_targets.double().numpy(), datamodule.hparams.target), dtype=np.float64)
    frame = pd.DataFrame({"id": items.image_ids, "predicted_likes": likes, "predicted_log1p_likes": np.log1p(np.maximum(likes, 0.0)),
                          "predicted_bin": like_bins(likes, datamodule.bin_edges).tolist(),
                          "neighbours": [[train_set.ids[j] for j in row] for row in neighbours.tolist()]})
    if "likes" in items.truth:
        frame["likes"] = items.truth["likes"]
    if with_embeddings:
        frame["embedding"] = queries.tolist()
    return frame


def embed_images(model, datamodule, batches, total: int) -> Tensor:
    return torch.cat([model.embed_images(float_images(device_step(model, datamodule, {"image": images})["image"])).float().cpu()
                      for images, _ in progress(batches, "embedding images", total=total)])


def embed_texts(model, texts: list[str]) -> Tensor:
    return torch.cat([model.embed_texts(texts[start : start + BATCH]).float().cpu() for start in progress(range(0, len(texts), BATCH), "embedding texts")])


def rank_candidates(model, datamodule, items: Items, top_k: int, with_embeddings: bool) -> pd.DataFrame:
    """Each image's nearest texts and each text's nearest images (cosine). A split: its images (each once,
    as its first row) against its texts, as the test step's retrieval. New items: images against the given
    texts, or either against the run's test split."""
    image_ids, text_ids = items.image_ids, items.text_ids
    images = embed_images(model, datamodule, items.image_batches(), len(image_ids)) if items.image_batches else None
    texts = embed_texts(model, items.texts) if items.texts is not None else None
    if "image_id" in items.truth:  # a split: one image row per image (the first of its pairs), every caption a text row
        firsts = images_of_rows(torch.tensor(items.truth["image_id"]))[0]
        images, image_ids = images[firsts], [image_ids[row] for row in firsts.tolist()]
    if images is None or texts is None:  # one modality given: the other from the run's test split
        test = split_items(datamodule, "test", "dual")
        if images is None:
            images, image_ids = embed_images(model, datamodule, test.image_batches(), len(test.image_ids)), test.image_ids
        else:
            texts, text_ids = embed_texts(model, test.texts), test.text_ids
    image_unit, text_unit = torch.nn.functional.normalize(images, dim=1), torch.nn.functional.normalize(texts, dim=1)
    scores = image_unit @ text_unit.T  # images × texts
    frames = []
    given = {"image": items.image_batches is not None, "text": items.texts is not None}
    for modality, matrix, own_ids, other_ids, vectors in (("image", scores, image_ids, text_ids, images), ("text", scores.T, text_ids, image_ids, texts)):
        if not given[modality]:
            continue
        best, columns = matrix.topk(min(top_k, matrix.shape[1]), dim=1)
        frame = pd.DataFrame({"id": own_ids, "modality": modality, "top_k": [[other_ids[j] for j in row] for row in columns.tolist()], "top_k_scores": best.tolist()})
        if with_embeddings:
            frame["embedding"] = vectors.tolist()
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    if "image_id" in items.truth:
        image_of = dict(zip(items.text_ids, items.truth["image_id"]))
        frame["image_id"] = [image_of[key] for key in frame["id"]]
    return frame


def progress(iterable, description: str, total: int | None = None):
    """A progress bar on a terminal (rich), the iterable as it is elsewhere (a quiet log)."""
    if not sys.stderr.isatty():
        return iterable
    from rich.progress import track

    return track(iterable, description=description, total=total, transient=True)


def write_frame(frame: pd.DataFrame, out: Path) -> None:
    """Parquet as it is; CSV with every list cell as JSON. Atomic: a failed write leaves --out as it was."""
    with atomic_path(out) as temporary:
        if out.suffix == ".parquet":
            frame.to_parquet(temporary, index=False)
        else:
            listed = {column: frame[column].map(json.dumps) for column in frame.columns if len(frame) and isinstance(frame[column].iloc[0], list)}
            frame.assign(**listed).to_csv(temporary, index=False)


if __name__ == "__main__":
    main()
