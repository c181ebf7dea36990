"""The image store at scale, in one run; JSON on stdout.

Synthetic 224 px JPEGs (smooth colour fields with noise, ~20 KB each) at N = 2,000, 8,000 and 16,000,
with a COCO captions file, read by the real CocoCaptionsDataModule. For each N:

- store build rate (images/s) with 1 and 2 litdata worker processes (`data.num_workers`);
- delivered images/s of the data module's training loader (uint8, one epoch, in its own shuffled
  order) against per-file PIL decoding of the same files and against a raw uint8 N×S×S×3 memmap read
  in the same order (both through a DataLoader, batch 90, no worker processes, one thread);
- peak resident memory (VmHWM) of a fresh process that sets up the data module and reads one
  epoch, and, at the two smaller N, of one that holds the split in memory as before (the obvious
  alternative: `view[:]`, N × 150 KB);
- the same data module under DDP (Lightning, strategy ddp_spawn, 2 CPU processes, gloo): each rank's
  peak memory and the ids it read in one epoch (disjoint, and together the whole training split).

    python benchmarks/data_scale.py [--sizes 2000 8000 16000] [--work DIR]   # about 10 minutes on 2 cores
    python benchmarks/data_scale.py --quick                                   # N = 200, 400: the test's run
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from memegap.data.coco_captions import CocoCaptionsDataModule
from memegap.data.image_store import ChunkReader, _LitdataReader, decode_rgb

SIZE, BATCH, PER_FILE_SAMPLE = 224, 90, 1_000


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: VmHWM of /proc/self/status, the high-water mark of
    its own address space. (getrusage's ru_maxrss is not: Linux carries it over exec from the parent
    that forked the process, so every child reported the benchmark's own peak.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # not Linux


def write_jpeg(job: tuple[str, int]) -> None:
    path, seed = job
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, SIZE)
    field = ramp[None, :, None] * rng.random(3) * 200 + ramp[:, None, None] * rng.random(3) * 55
    noise = rng.integers(0, 30, (SIZE, SIZE, 3))
    Image.fromarray((field + noise).clip(0, 255).astype(np.uint8)).save(path, quality=90)


def make_source(folder: Path, n: int) -> Path:
    """n JPEGs and a captions.json (two captions an image) under folder; made once."""
    captions = folder / "captions.json"
    if captions.exists():
        return folder
    (folder / "images").mkdir(parents=True, exist_ok=True)
    with Pool(2) as pool:
        pool.map(write_jpeg, [(str(folder / "images" / f"{k:06d}.jpg"), k) for k in range(n)], chunksize=256)
    images = [{"id": k, "file_name": f"{k:06d}.jpg"} for k in range(n)]
    annotations = [{"image_id": k, "caption": f"picture {k} take {t}"} for k in range(n) for t in range(2)]
    captions.write_text(json.dumps({"images": images, "annotations": annotations}))
    return folder


def data_module(folder: Path, store_dir: Path, store_workers: int = 1) -> CocoCaptionsDataModule:
    return CocoCaptionsDataModule(root=str(folder), image_dir="images", image_size=SIZE, batch_size=BATCH, store_workers=store_workers,
                                  split_fractions=(0.9, 0.05, 0.05), store_dir=str(store_dir))


class Files(Dataset):
    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(decode_rgb(self.paths[index], SIZE)).permute(2, 0, 1)


class Memmap(Dataset):
    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.array[index])).permute(2, 0, 1).contiguous()


def images_per_second(loader) -> float:
    started, count = time.perf_counter(), 0
    for batch in loader:
        images = batch["image"] if isinstance(batch, dict) else batch
        assert images.dtype == torch.uint8
        count += len(images)
    return count / (time.perf_counter() - started)


def loader_rates(folder: Path, store_dir: Path, work: Path) -> dict:
    module = data_module(folder, store_dir)
    module.setup()
    train = module.datasets["train"]
    loader = module.train_dataloader()
    store_rate = images_per_second(loader)
    order = [train.image_rows[index] for index in loader.sampler]  # the same rows, in the loader's order
    memmap_path = work / "images.u8"
    array = np.memmap(memmap_path, dtype=np.uint8, mode="w+", shape=(len(train.images), SIZE, SIZE, 3))
    for start in range(0, len(train.images), 1000):
        array[start : start + 1000] = train.images[start : start + 1000].permute(0, 2, 3, 1).numpy()
    array.flush()
    memmap = np.memmap(memmap_path, dtype=np.uint8, mode="r", shape=array.shape)
    memmap_rate = images_per_second(DataLoader(torch.utils.data.Subset(Memmap(memmap), order), batch_size=BATCH))
    memmap_path.unlink()
    paths = [folder / "images" / f"{int(key):06d}.jpg" for key in train.groups]
    per_file_rate = images_per_second(DataLoader(Files([paths[k] for k in range(0, len(paths), max(1, len(paths) // PER_FILE_SAMPLE))]), batch_size=BATCH))
    readers = reader_rates(train.images, order)
    return {"store_loader": round(store_rate, 1), "memmap": round(memmap_rate, 1), "per_file": round(per_file_rate, 1), **readers,
            "store_over_per_file": round(store_rate / per_file_rate, 1), "store_over_memmap": round(store_rate / memmap_rate, 3)}


def reader_rates(images, order: list[int], sample: int = 2_000) -> dict:
    """Random access to single images of the store, the two ways issue 36 names: our reader of litdata's
    chunk files (os.pread, what StoredImages uses) against litdata's StreamingDataset[i]; images/s."""
    rows = [int(images.rows[k]) for k in order[:sample]]
    rates = {}
    for name, reader in (("pread_reader", ChunkReader.of(images.store_dir, images.size)), ("litdata_streaming_dataset", _LitdataReader(images.store_dir))):
        started = time.perf_counter()
        for row in rows:
            reader.image(row)
        rates[name] = round(len(rows) / (time.perf_counter() - started), 1)
    rates["pread_over_litdata"] = round(rates["pread_reader"] / rates["litdata_streaming_dataset"], 2)
    return rates


def child_peak_memory(folder: Path, store_dir: Path, in_memory: bool) -> dict:
    """Run one epoch in a fresh process (this file with --child); its peak RSS in MB."""
    command = [sys.executable, __file__, "--child", str(folder), str(store_dir)] + (["--in-memory"] if in_memory else [])
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def child(folder: Path, store_dir: Path, in_memory: bool) -> None:
    torch.set_num_threads(1)
    module = data_module(folder, store_dir)
    module.setup()
    if in_memory:  # the split's images in one tensor, as ImageStore.load did before
        train = module.datasets["train"]
        train.images = train.images[:]
    count = sum(len(batch["image"]) for batch in module.train_dataloader())
    print(json.dumps({"images_read": count, "peak_rss_mb": peak_rss_mb()}))


def ddp(folder: Path, store_dir: Path, work: Path) -> dict:
    """One epoch of the data module under Lightning DDP (2 CPU processes): per-rank ids and peak memory."""
    command = [sys.executable, __file__, "--ddp-child", str(folder), str(store_dir), str(work)]
    subprocess.run(command, capture_output=True, text=True, check=True)
    ranks = [json.loads((work / f"rank{rank}.json").read_text()) for rank in range(2)]
    module = data_module(folder, store_dir)
    module.setup()
    split = set(module.datasets["train"].image_rows)  # the training images (one caption of each read per epoch)
    seen = [set(rank["image_keys"]) for rank in ranks]
    return {"per_rank_peak_rss_mb": [rank["peak_rss_mb"] for rank in ranks], "per_rank_images": [len(s) for s in seen],
            "on_both_ranks": len(seen[0] & seen[1]),  # N mod 2 padded items, so both ranks take as many steps
            "ranks_disjoint": len(seen[0] & seen[1]) <= len(split) % 2, "together_the_whole_split": (seen[0] | seen[1]) == split,
            "training_images": len(split)}


class Reader(L.LightningModule):
    """Records the images each rank's training batches hold (no model: the loader is measured)."""

    def __init__(self, work: str) -> None:
        super().__init__()
        self.work = Path(work)
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.keys: list[str] = []

    def training_step(self, batch, batch_idx):
        self.keys += [int(row) for row in batch["image_id"]]  # which training image each row shows
        return self.weight.sum()

    def on_train_end(self) -> None:
        peak = peak_rss_mb()
        (self.work / f"rank{self.global_rank}.json").write_text(json.dumps({"image_keys": self.keys, "peak_rss_mb": peak}))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def ddp_child(folder: Path, store_dir: Path, work: Path) -> None:
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(Reader(str(work)), datamodule=data_module(folder, store_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000, 8_000, 16_000])
    parser.add_argument("--quick", action="store_true", help="N = 200 and 400 (a smoke run, as the test does)")
    parser.add_argument("--work", type=Path, default=None, help="where the images and stores go (default: a temporary folder, removed)")
    parser.add_argument("--in-memory-up-to", type=int, default=8_000, help="measure the in-memory alternative up to this N")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.in_memory_up_to = [200, 400], 400
    torch.set_num_threads(1)
    work = args.work or Path(tempfile.mkdtemp(prefix="data_scale-"))
    results = []
    try:
        for n in args.sizes:
            folder = make_source(work / f"source_{n}", n)
            rates = {}
            for workers in (2, 1):  # the data module builds its own store; the 2-worker one is kept for the rest
                started = time.perf_counter()
                data_module(folder, work / f"store_{n}_{workers}", store_workers=workers).setup()
                rates[f"{workers}_workers"] = round(n / (time.perf_counter() - started), 1)
            shutil.rmtree(work / f"store_{n}_1")
            store_dir = work / f"store_{n}_2"
            result = {"n": n, "build_images_per_second": rates,
                      "images_per_second": loader_rates(folder, store_dir, work),
                      "streamed": child_peak_memory(folder, store_dir, in_memory=False)}
            if n <= args.in_memory_up_to:
                result["in_memory"] = child_peak_memory(folder, store_dir, in_memory=True)
            result["ddp_2_ranks"] = ddp(folder, store_dir, work)
            results.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)  # progress, one line a size
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    first, last = results[0], results[-1]
    summary = {"streamed_peak_rss_growth_mb": round(last["streamed"]["peak_rss_mb"] - first["streamed"]["peak_rss_mb"], 1),
               "from_n": first["n"], "to_n": last["n"]}
    measured = [r for r in results if "in_memory" in r]
    if len(measured) >= 2:
        slope = (measured[-1]["in_memory"]["peak_rss_mb"] - measured[0]["in_memory"]["peak_rss_mb"]) / (measured[-1]["n"] - measured[0]["n"])
        summary["in_memory_kb_per_image"] = round(slope * 1024, 1)
        summary["in_memory_growth_mb_extrapolated"] = round(slope * (last["n"] - first["n"]), 1)
    print(json.dumps({"benchmark": "data_scale", "image_size": SIZE, "results": results, "summary": summary}, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), Path(sys.argv[3]), "--in-memory" in sys.argv)
    elif len(sys.argv) > 1 and sys.argv[1] == "--ddp-child":
        ddp_child(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        main()
