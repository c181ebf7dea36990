"""memegap-search: find pictograms (or any images) by words with a trained dual encoder, and the nearest
texts of an image — the modality-gap thesis's motivating use.

    memegap-search --run logs/arasaac_gap/runs/<run> --images ../shared/data/pictograms_jocomunico "a dog"
    memegap-search --run <run> --images <folder or table> "un perro que corre" --k 8 --html dog.html
    memegap-search --run <run> --image some.png --texts words.txt                     # image -> nearest texts

The images (every PNG/JPEG/GIF/WebP under a folder, or the image_path column of a CSV/parquet table) go
through the packed image store at the run's data.image_size, are embedded once with the run's best
checkpoint, and land in a faiss inner-product index of the normalised embeddings kept beside the run
(<run>/search/<images key>/: index.faiss, keys.json), reused while the checkpoint and the images are the
same. A query prints the top-k (rank, cosine, file) and writes a small HTML page of thumbnails (images
inlined, so the page travels alone). Unreadable images are skipped and counted.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from memegap.batch import float_images
from memegap.errors import UserError, reported_as_one_line
from memegap.utils.cli import HelpFormatter, command_console, number_in
from memegap.utils.io import atomic_path

log = logging.getLogger("memegap.studies.modality_gap.search")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")
EMBED_BATCH = 128


def list_images(source: Path) -> list[Path]:
    """Image files under a folder (recursively, sorted), or the image_path column of a table."""
    if source.is_dir():
        files = sorted(path for path in source.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
    elif source.suffix.lower() in (".csv", ".parquet"):
        from memegap.utils.tables import read_user_columns, resolve_path

        paths = read_user_columns(source, ("image_path",), hint="(the table memegap-collect download fills)")["image_path"]
        files = [resolve_path(source, path) for path in paths if path]
    else:
        raise UserError(f"--images {source}: neither a folder nor a .csv/.parquet table")
    if not files:
        raise UserError(f"--images {source}: no image files there")
    return files


@dataclass
class ImageIndex:
    """A faiss index of L2-normalised image embeddings (inner product = cosine) and the file of each row."""

    index: object
    files: list[str]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(cosines Q×k, row numbers Q×k) of the k nearest images of each normalised query."""
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(self.files)))


def normalised(embeddings: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(embeddings.float(), dim=1).numpy()


@torch.no_grad()
def build_or_load_index(run_dir: Path, model, images: Path, image_size: int, store_dir: str) -> ImageIndex:
    """The image index of `images` under this run's checkpoint: loaded from <run>/search/<key>/ when it
    was built for the same checkpoint and files, else built (and kept there)."""
    import faiss

    from memegap.data.image_store import ImageStore
    from memegap.utils.trained_run import best_checkpoint

    files = list_images(images)
    checkpoint = best_checkpoint(run_dir)
    key = hashlib.sha1(json.dumps([str(checkpoint.resolve()), checkpoint.stat().st_mtime_ns, image_size, [str(f.resolve()) for f in files]]).encode()).hexdigest()[:12]
    folder = run_dir / "search" / key
    if (folder / "index.faiss").is_file() and (folder / "keys.json").is_file():
        log.info("reusing the image index in %s", folder)
        return ImageIndex(faiss.read_index(str(folder / "index.faiss")), json.loads((folder / "keys.json").read_text())["files"])
    source = "search-" + hashlib.sha1(str(images.resolve()).encode()).hexdigest()[:8]
    store = ImageStore(store_dir, source, image_size).ensure([(str(number), path) for number, path in enumerate(files)])
    readable = [row for row in store.rows() if row["status"] == "ok"]
    if len(readable) < len(files):
        log.warning("%d of %d images could not be read and are left out of the index", len(files) - len(readable), len(files))
    pixels = store.view([row["key"] for row in readable])
    embeddings = torch.cat([model.embed_images(float_images(pixels[start : start + EMBED_BATCH])) for start in range(0, len(pixels), EMBED_BATCH)])
    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(normalised(embeddings))
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "keys.json") as temporary:
        temporary.write_text(json.dumps({"images": str(images), "checkpoint": str(checkpoint), "files": [row["source_file"] for row in readable]}))
    with atomic_path(folder / "index.faiss") as temporary:
        faiss.write_index(index, str(temporary))
    log.info("indexed %d images in %s", len(readable), folder)
    return ImageIndex(index, [row["source_file"] for row in readable])


def thumbnail(path: str, size: int = 128) -> str:
    """A PNG data URI of the image, at most size×size."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGBA")
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def results_page(query: str, hits: list[tuple[float, str]], path: Path) -> None:
    """A small HTML page: the query and one thumbnail per hit, with its cosine and file name."""
    cells = "\n".join(
        f'<figure><img src="{thumbnail(file)}" alt="{html.escape(Path(file).name)}"><figcaption>{rank}. {score:.3f}<br>{html.escape(Path(file).name)}</figcaption></figure>'
        for rank, (score, file) in enumerate(hits, start=1)
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>memegap-search: {html.escape(query)}</title>
<style>body{{font-family:sans-serif}} figure{{display:inline-block;margin:8px;text-align:center}} img{{width:128px;height:128px;object-fit:contain;border:1px solid #ccc}}</style>
</head><body><h2>{html.escape(query)}</h2>
{cells}
</body></html>
"""
    with atomic_path(path) as temporary:
        temporary.write_text(page, encoding="utf-8")


def data_prompts(cfg) -> list[str]:
    """Every prompt of the run's data module, all splits (the candidate texts for image -> text)."""
    from memegap.utils.trained_run import set_up_data

    datamodule = set_up_data(cfg)
    return sorted({text for dataset in datamodule.datasets.values() for text in dataset.texts})


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="memegap-search", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("query", nargs="?", help="the words to search for (a text query)")
    parser.add_argument("--run", type=Path, required=True, help="a trained dual-encoder run dir (holds .hydra/ and checkpoints/)")
    parser.add_argument("--images", type=Path, help="for a text query: a folder of images, or a CSV/parquet table with an image_path column")
    parser.add_argument("--image", type=Path, help="search the nearest texts of this image instead of a text query")
    parser.add_argument("--texts", type=Path, help="with --image: candidate texts, one per line (default: every prompt of the run's data)")
    parser.add_argument("--k", type=number_in(1), default=5, help="how many results")
    parser.add_argument("--html", type=Path, help="the results page to write (default: <run>/search/<the query's words>.html, e.g. un_perro.html)")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    if (args.query is None) == (args.image is None):
        parser.error("give either a text query or --image, not both")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    command_console()
    with reported_as_one_line("memegap-search", verbose=args.verbose):
        search(args)


def search(args: argparse.Namespace) -> None:
    from memegap.utils.trained_run import DUAL_ENCODERS, require_run_of, run_config, trained_model

    cfg = run_config(args.run)
    require_run_of(args.run, "memegap-search", models=DUAL_ENCODERS)
    model = trained_model(cfg, args.run)
    hits = images_for_text(args, cfg, model) if args.query is not None else texts_for_image(args, cfg, model)
    for rank, (score, found) in enumerate(hits, start=1):
        print(f"{rank:>3}  {score:.3f}  {found}")


def page_name(query: str) -> str:
    """The default results page of a query: its words as a file name ("un perro" -> "un_perro.html"),
    at most 60 characters; a query with no letter or digit gets its hash."""
    words = "".join(c if c.isalnum() else "_" for c in query.strip().lower())
    words = "_".join(part for part in words.split("_") if part)[:60]
    return f"{words or hashlib.sha1(query.encode()).hexdigest()[:8]}.html"


@torch.no_grad()
def images_for_text(args: argparse.Namespace, cfg, model) -> list[tuple[float, str]]:
    """The k images of --images nearest to the query, (cosine, file) best first; writes the results page."""
    if args.images is None:
        raise UserError("a text query needs --images <folder or table> to search in")
    index = build_or_load_index(args.run, model, args.images, int(cfg.data.image_size), str(cfg.data.store_dir))
    scores, rows = index.search(normalised(model.embed_texts([args.query])), args.k)
    hits = [(float(score), index.files[row]) for score, row in zip(scores[0], rows[0])]
    page = args.html or args.run / "search" / page_name(args.query)
    results_page(args.query, hits, page)
    print(f"page: {page}")
    return hits


@torch.no_grad()
def texts_for_image(args: argparse.Namespace, cfg, model) -> list[tuple[float, str]]:
    """The k texts (--texts, else the run's prompts) nearest to --image, (cosine, text) best first."""
    from PIL import Image

    from memegap.data.image_store import decode_rgb

    texts = args.texts.read_text(encoding="utf-8").splitlines() if args.texts else data_prompts(cfg)
    texts = [text.strip() for text in texts if text.strip()]
    try:
        pixels = decode_rgb(args.image, int(cfg.data.image_size))
    except (OSError, ValueError, Image.DecompressionBombWarning) as error:
        raise UserError(f"--image {args.image}: not a readable image ({error})") from None
    image = float_images(torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0))
    image_embedding = normalised(model.embed_images(image))
    text_embeddings = normalised(torch.cat([model.embed_texts(texts[start : start + EMBED_BATCH]) for start in range(0, len(texts), EMBED_BATCH)]))
    scores = text_embeddings @ image_embedding[0]
    return [(float(scores[i]), texts[i]) for i in np.argsort(-scores)[: args.k]]


if __name__ == "__main__":
    main()
