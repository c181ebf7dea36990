"""Images/s delivered to the model by three loaders of the same images, in one run; JSON on stdout.

- store: the packed image store as the data modules read it in training: a `StoredImages` view (each item
  read from litdata's chunks with one os.pread) through a DataLoader; `litdata_loader`, litdata's own
  StreamingDataLoader over the same store, is reported beside it;
- per_file: PIL decode + composite on white + resize of every file in each epoch (no store);
- memmap: a plain uint8 N×S×S×3 numpy memmap, the fastest thing a store could be;
- transform_only: the delivery step on batches already in memory, the ceiling for any loader.

Every loader's item is uint8 3×S×S, batched by a DataLoader (batch 90, no worker processes: 2 cores), and
ends in the same delivery, measured both ways in one run: "uint8" (what the data modules deliver; the
model converts on its device) and "float" (uint8 → float in [0, 1] on the CPU, what they delivered
before). Images: the 1,054 ARASAAC PNGs of
../shared/data/pictograms_jocomunico when present, else the Twemoji PNGs. Each side is timed over
`--epochs` full passes after one untimed warm-up pass; the store's one-off build time is reported.

    python benchmarks/packed_images.py [--sizes 64 224] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from memegap.data.image_store import ImageStore, decode_rgb

BATCH = 90
SHARED_PICTOGRAMS = Path(__file__).resolve().parents[2] / "shared" / "data" / "pictograms_jocomunico"


def image_files() -> tuple[str, list[tuple[str, Path]]]:
    if SHARED_PICTOGRAMS.is_dir():
        return "arasaac_jocomunico", [(p.stem, p) for p in sorted(SHARED_PICTOGRAMS.rglob("*.png"))]
    from memegap.data.twemoji import twemoji_png_dir

    return "twemoji", [(p.stem, p) for p in sorted(twemoji_png_dir().glob("*.png"))]


DELIVERIES = {
    "uint8": lambda batch: batch,  # uint8 N×3×S×S as the loaders give it
    "float": lambda batch: batch.float().div_(255.0),  # the same -> float N×3×S×S in [0, 1] on the CPU
}


class PerFile(Dataset):
    def __init__(self, files: list[tuple[str, Path]], size: int) -> None:
        self.files, self.size = files, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(decode_rgb(self.files[index][1], self.size)).permute(2, 0, 1).contiguous()


class MemmapImages(Dataset):
    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.array[index])).permute(2, 0, 1).contiguous()


def images_per_second(batches, count: int, epochs: int, delivery: str = "uint8") -> float:
    to_model = DELIVERIES[delivery]
    for _ in batches():  # warm-up pass: page cache, lazy opens
        pass
    started = time.perf_counter()
    delivered = 0
    for _ in range(epochs):
        for batch in batches():
            delivered += len(to_model(batch))
    elapsed = time.perf_counter() - started
    assert delivered == count * epochs, (delivered, count, epochs)
    return delivered / elapsed


def measure(files: list[tuple[str, Path]], size: int, epochs: int, work: Path) -> dict:
    import litdata

    started = time.perf_counter()
    store = ImageStore(work / "store", "bench", size).ensure(files)
    build_seconds = time.perf_counter() - started
    memmap_path = work / f"images_{size}.u8"
    array = np.memmap(memmap_path, dtype=np.uint8, mode="w+", shape=(len(files), size, size, 3))
    for index, item in enumerate(store.dataset()):
        array[index] = item["image"]
    array.flush()
    memmap = np.memmap(memmap_path, dtype=np.uint8, mode="r", shape=(len(files), size, size, 3))

    stored = store.view([row["key"] for row in store.rows() if row["status"] == "ok"])

    def litdata_batches():
        loader = litdata.StreamingDataLoader(store.dataset(), batch_size=BATCH, num_workers=0)
        return (batch["image"].permute(0, 3, 1, 2) for batch in loader)

    in_memory = [torch.from_numpy(np.array(memmap[start : start + BATCH])).permute(0, 3, 1, 2).contiguous() for start in range(0, len(files), BATCH)]
    rates = {delivery: {
        "transform_only": images_per_second(lambda: iter(in_memory), len(files), epochs, delivery),
        "store": images_per_second(lambda: DataLoader(stored, batch_size=BATCH), len(files), epochs, delivery),
        "litdata_loader": images_per_second(litdata_batches, len(files), epochs, delivery),
        "memmap": images_per_second(lambda: DataLoader(MemmapImages(memmap), batch_size=BATCH), len(files), epochs, delivery),
    } for delivery in DELIVERIES}
    per_file = images_per_second(lambda: DataLoader(PerFile(files, size), batch_size=BATCH), len(files), 1)
    return {
        "image_size": size,
        "images": len(files),
        "store_build_seconds": round(build_seconds, 2),
        "per_file_images_per_second": round(per_file, 1),
        "images_per_second": {delivery: {name: round(rate, 1) for name, rate in sides.items()} for delivery, sides in rates.items()},
        "store_over_per_file": {delivery: round(sides["store"] / per_file, 2) for delivery, sides in rates.items()},
        "store_over_memmap": {delivery: round(sides["store"] / sides["memmap"], 3) for delivery, sides in rates.items()},
        "uint8_over_float_store": round(rates["uint8"]["store"] / rates["float"]["store"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224], help="image sizes in pixels")
    parser.add_argument("--epochs", type=int, default=3, help="timed passes of the store and the memmap (per-file: 1)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    source, files = image_files()
    with tempfile.TemporaryDirectory() as work:
        results = [measure(files, size, args.epochs, Path(work)) for size in args.sizes]
    print(json.dumps({"benchmark": "packed_images", "source": source, "batch": BATCH, "results": results}, indent=2))


if __name__ == "__main__":
    main()
