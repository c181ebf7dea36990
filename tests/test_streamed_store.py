"""Same data, same order (issue 36, part 2): reading images from the store's chunks when indexed gives
every data module the batches it gave when a split's images were held in memory as one stacked uint8
tensor (ImageStore.load before the streamed store): the same ids, pixels and order, over two epochs of
training and the evaluation loaders, on the real mini sources."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import pytest
import torch

from memegap.data.arasaac import ArasaacDataModule
from memegap.data.coco_captions import CocoCaptionsDataModule
from memegap.data.image_store import StoredImages
from memegap.data.memes import MemesDataModule
from memegap.data.twemoji import TwemojiDataModule


def batches(module: L.LightningDataModule) -> list[dict]:
    """Two training epochs, then the validation and test loaders, batch by batch."""
    out = []
    loader = module.train_dataloader()
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        out += list(loader)
    return out + list(module.val_dataloader()) + list(module.test_dataloader())


def held_in_memory(module: L.LightningDataModule) -> L.LightningDataModule:
    """Each split's images as one stacked uint8 tensor N×3×S×S, as they were held before streaming."""
    for dataset in module.datasets.values():
        assert isinstance(dataset.images, StoredImages)  # streamed: row numbers, not pixels
        dataset.images = dataset.images[:]
        assert isinstance(dataset.images, torch.Tensor) and dataset.images.dtype == torch.uint8
    return module


def assert_same_batches(make: Callable[[], L.LightningDataModule]) -> None:
    streamed, in_memory = make(), make()
    streamed.setup("fit")
    in_memory.setup("fit")
    expected = batches(held_in_memory(in_memory))
    got = batches(streamed)
    assert len(got) == len(expected) > 0
    for one, other in zip(got, expected):
        assert one.keys() == other.keys()
        for key in one:
            if isinstance(one[key], torch.Tensor):
                assert torch.equal(one[key], other[key]), key
            else:
                assert one[key] == other[key], key


def test_twemoji_streams_the_batches_it_held(tmp_path):
    assert_same_batches(lambda: TwemojiDataModule(image_size=16, batch_size=16, max_per_split=48, group_variants=True, store_dir=str(tmp_path)))


@pytest.mark.slow
def test_arasaac_streams_the_batches_it_held(tmp_path, shared_data):
    assert_same_batches(lambda: ArasaacDataModule(str(shared_data / "pictograms_jocomunico"), image_size=16, batch_size=16, max_per_split=48,
                                                  store_dir=str(tmp_path)))


@pytest.mark.slow
def test_coco_captions_stream_the_batches_they_held(tmp_path, shared_data):
    assert_same_batches(lambda: CocoCaptionsDataModule(str(shared_data / "coco_mini"), image_size=16, batch_size=16, store_dir=str(tmp_path)))


@pytest.mark.slow
@pytest.mark.parametrize("sampling", ["triplet", "pairs"])
def test_memes_stream_the_batches_they_held(tmp_path, shared_data, sampling):
    assert_same_batches(lambda: MemesDataModule(table=str(shared_data / "memes_reddit" / "memes.csv"), image_size=16, batch_size=16,
                                                max_per_split=48, sampling=sampling, store_dir=str(tmp_path)))


@pytest.mark.slow
def test_the_data_scale_benchmark_runs_quick_and_its_figures_hold():
    """benchmarks/data_scale.py --quick (N = 200, 400): the JSON it prints, and what must hold at any N."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "data_scale.py"
    result = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    for row in report["results"]:
        ddp = row["ddp_2_ranks"]
        assert ddp["ranks_disjoint"] and ddp["together_the_whole_split"]
        assert sum(ddp["per_rank_images"]) - ddp["on_both_ranks"] == ddp["training_images"]
        assert row["streamed"]["images_read"] == ddp["training_images"]
        assert row["images_per_second"]["pread_over_litdata"] > 1  # the reader StoredImages uses is the faster one
