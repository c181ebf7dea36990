"""memegap-geometry: the modality-gap instrument on anyone's paired embeddings, from any model.

    memegap-geometry logs/twemoji_gap/runs/<run>/embeddings/test.parquet --out geometry_report/
    memegap-geometry image.npy text.npy --image-ids image_ids.npy --labels labels.npy --out geometry_report/

Input: a Parquet file in the format every memegap run exports (docs/configuration.md#embeddings: id,
modality, position, vector, optional image_id and label; exactly two modalities, rows of one position
paired), or two .npy files of N×d paired embeddings (image first), with optional N-long integer image ids
(several captions of one image) and class labels. Output in --out: report.json, cosine_histograms.png and
shift.png, with the functions training uses (memegap.metrics.geometry and .retrieval, the shift sweep):

- gap and gap vector, RMG, L2I, gap concentration, effective ranks (RankMe) per modality and joint,
  misalignment, uniformity per modality and their mean (the thesis's clustering measure), cone statistics
  (mean and minimum cosine within each modality, mean paired cosine);
- R@1/5/10, mean and median rank both ways, over the whole set and in pools (--pool-size, --pool-repeats);
- with labels: k-means on the joint cloud, NMI and ARI;
- the embedding-shift sweep along the gap (--lambdas), JSON and PNG.

Scale: the O(N·d) measures and the pooled R@k always use every row; the O(N²) ones (uniformity, the cone
minimum, whole-set ranks, histograms, k-means, the shift sweep) use an evenly spaced sample of --exact-up-to
images when there are more (report.json's "sampled" says which and how many).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from memegap.errors import UserError, reported_as_one_line
from memegap.metrics.geometry import cosine_histograms, cosine_spread, gap_concentration, joint_clustering, linear_geometry, modality_gap, uniformity
from memegap.metrics.retrieval import first_rows, recall_at_k
from memegap.utils.cli import HelpFormatter, command_console, number_in
from memegap.utils.embedding_file import read_embedding_file
from memegap.utils.io import atomic_path

log = logging.getLogger(__name__)

DEFAULT_LAMBDAS = [-0.5, 0.0, 0.25, 0.5, 0.75, 1.0]


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="memegap-geometry", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("embeddings", type=Path, nargs="+", help="an exported .parquet, or image.npy text.npy")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write report.json and the pictures to")
    parser.add_argument("--image-ids", type=Path, help="with .npy input: N integers, the image of each row (captions of one image share it)")
    parser.add_argument("--labels", type=Path, help="with .npy input: N integer class labels (k-means NMI / ARI)")
    parser.add_argument("--pool-size", type=number_in(2), default=90, help="candidates per pool for the pooled R@k")
    parser.add_argument("--pool-repeats", type=number_in(1), default=10, help="fixed random permutations averaged for the pooled R@k")
    parser.add_argument("--exact-up-to", type=number_in(2), default=10_000, help="above this many images the O(N²) measures use an even sample of it")
    parser.add_argument("--lambdas", type=float, nargs="+", default=DEFAULT_LAMBDAS, help="shift sizes along the gap (0: as they are, 1: means together)")
    parser.add_argument("--logit-scale", type=float, default=math.log(100.0), help="log of the temperature of the sweep's contrastive loss (CLIP's: ln 100)")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    command_console()
    with reported_as_one_line("memegap-geometry", verbose=args.verbose):
        pairs = load_pairs(args)
        result = report(*pairs, args)
        write_report(result, pairs, args)
        log.info("report: %s", args.out / "report.json")


def load_pairs(args: argparse.Namespace) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None, list[str]]:
    """(image N×d, text N×d, image ids N or None, labels N or None, the two modalities' names), checked."""
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} is a file: name a folder (report.json and the pictures go in it)")
    for path in args.embeddings:
        if not path.is_file():
            raise UserError(f"{path}: no such file")
    if len(args.embeddings) == 1 and args.embeddings[0].suffix == ".parquet":
        image, text, image_ids, labels, names = read_parquet_pairs(args.embeddings[0])
    elif len(args.embeddings) == 2 and all(path.suffix == ".npy" for path in args.embeddings):
        image, text = (read_npy(path, 2) for path in args.embeddings)
        if image.shape != text.shape:
            raise UserError(f"{args.embeddings[0]} and {args.embeddings[1]} must be paired N×d arrays of one shape, got {tuple(image.shape)} and {tuple(text.shape)}")
        image_ids = read_npy(args.image_ids, 1, len(image)).long() if args.image_ids else None
        labels = read_npy(args.labels, 1, len(image)).long() if args.labels else None
        names = ["image", "text"]
    else:
        raise UserError("give one exported .parquet file, or two .npy files (image embeddings, then text embeddings)")
    if not (torch.isfinite(image).all() and torch.isfinite(text).all()):
        raise UserError(f"{' '.join(map(str, args.embeddings))}: the embeddings hold NaN or inf values (a diverged model, or broken inputs)")
    if len(image) < 2:
        raise UserError(f"{args.embeddings[0]}: {len(image)} pair; the geometry needs at least 2")
    return image, text, image_ids, labels, names


def read_npy(path: Path, ndim: int, length: int | None = None) -> Tensor:
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise UserError(f"{path}: not a .npy array ({error})") from None
    if array.ndim != ndim or (length is not None and len(array) != length):
        wanted = f"{length} values" if ndim == 1 else "an N×d array"
        raise UserError(f"{path}: needs {wanted}, got shape {array.shape}")
    wanted_kind = "iu" if ndim == 1 else "iuf"  # ids and labels are integers; embeddings are numbers
    if array.dtype.kind not in wanted_kind:
        raise UserError(f"{path}: holds {array.dtype} values; needs {'integers' if ndim == 1 else 'numbers'}")
    return torch.from_numpy(np.ascontiguousarray(array))


def read_parquet_pairs(path: Path) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None, list[str]]:
    """The two modalities of an exported split, paired by position (utils/embedding_file checks the file)."""
    exported = read_embedding_file(path)
    if len(exported.vectors) != 2:
        raise UserError(f"{path}: needs two modalities of paired rows, has {list(exported.vectors)}")
    (image, text), names = (torch.from_numpy(values) for values in exported.vectors.values()), list(exported.vectors)
    image_ids, labels = (torch.from_numpy(values) if values is not None else None for values in (exported.image_ids, exported.labels))
    return image, text, image_ids, labels, names


def even_sample(count: int, limit: int) -> Tensor:
    """`limit` evenly spaced indices of range(count), or all of them."""
    return torch.arange(count) if count <= limit else torch.linspace(0, count - 1, limit).round().long().unique()


def report(image: Tensor, text: Tensor, image_ids: Tensor | None, labels: Tensor | None, names: list[str], args: argparse.Namespace) -> dict:
    """Every measure (module docstring) as one JSON-ready dict."""
    from memegap.studies.modality_gap.shift_sweep import shift_sweep

    firsts = first_rows(image_ids, len(image))
    x, y = image[firsts], text[firsts]  # each image once, with its first caption (as the geometry callback)
    result: dict = {"pairs": len(image), "images": len(firsts), "dimensions": image.shape[1], "modalities": names}
    result |= linear_geometry(x, y, names=tuple(names))
    _, gap_vector = modality_gap(x, y)
    result["gap_top_coordinates"] = gap_concentration(gap_vector)["top_coordinates"]
    result["gap_vector"] = gap_vector.tolist()
    sample = even_sample(len(firsts), args.exact_up_to)
    xs, ys = x[sample], y[sample]
    result["sampled"] = {"images": len(sample), "of": len(firsts),
                         "measures": "uniformity, cone minimum, whole-set ranks, histograms, k-means, shift sweep" if len(sample) < len(firsts) else "none"}
    uniformities = {f"uniformity_{name}": uniformity(z) for name, z in zip(names, (xs, ys))}
    result |= uniformities | {"uniformity": sum(uniformities.values()) / 2}
    for name, z in zip(names, (xs, ys)):
        spread = cosine_spread(z)
        result |= {f"{name}_mean_cosine": spread["mean_cosine"], f"{name}_min_cosine": spread["min_cosine"]}
    result["paired_mean_cosine"] = float(torch.nn.functional.cosine_similarity(x.double(), y.double(), dim=1).mean())
    sample_rows = sampled_rows(image_ids, firsts, sample)
    sampled_ids = image_ids[sample_rows] if image_ids is not None else None
    result["retrieval"] = recall_at_k(image[sample_rows], text[sample_rows], image_of_row=sampled_ids)
    pool_size = min(args.pool_size, len(firsts))
    result["retrieval"] |= recall_at_k(image, text, pool_size=pool_size, pool_repeats=args.pool_repeats, image_of_row=image_ids)
    result["pool_size"] = pool_size
    if labels is not None:
        result |= joint_clustering(xs, ys, labels[firsts][sample])
    result["shift"] = shift_sweep(image[sample_rows], text[sample_rows], list(args.lambdas), args.logit_scale,
                                  min(pool_size, len(sample)), args.pool_repeats, sampled_ids)
    return result


def sampled_rows(image_ids: Tensor | None, firsts: Tensor, sample: Tensor) -> Tensor:
    """All rows (captions) of the sampled images (`sample`: positions among the images' first rows `firsts`)."""
    if image_ids is None:
        return sample
    chosen = set(image_ids[firsts[sample]].tolist())
    return torch.tensor([row for row, key in enumerate(image_ids.tolist()) if key in chosen], dtype=torch.long)


def write_report(result: dict, pairs: tuple, args: argparse.Namespace) -> None:
    from memegap.callbacks.geometry import paired_panels, plot_cosine_histograms
    from memegap.studies.modality_gap.shift import plot

    image, text, image_ids, _, names = pairs
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "report.json") as temporary:
        temporary.write_text(json.dumps(result, indent=2) + "\n")
    firsts = first_rows(image_ids, len(image))
    sample = firsts[even_sample(len(firsts), args.exact_up_to)]
    counts, edges = cosine_histograms(image[sample], text[sample])
    plot_cosine_histograms(paired_panels(counts, names), edges, args.out / "cosine_histograms.png",
                           title=f"{args.embeddings[0].name}: gap {result['gap']:.3f}, RMG {result['rmg']:.3f}")
    plot(result["shift"], args.out / "shift.png", f"{args.embeddings[0].name}: embeddings shifted along the gap")


if __name__ == "__main__":
    main()
