"""Under DDP (2 CPU processes, gloo: what trainer=ddp_sim runs) each rank reads its own share of the
training split: in every epoch the ranks' items are disjoint and together the whole split, for the plain,
grouped and one-per-group samplers, and the order depends only on (seed, epoch) (issue 36, part 3).

Our epoch-seeded samplers deal out their own order (memegap.data.sampling.EpochSeeded; Lightning's
wrapper, which shuffled it once more and broke the grouped sampler's groups up, is not used): every rank
draws the same order from seed + epoch and takes positions rank, rank + W, ... of it. So the ranks'
batch j together are positions j·B·W … (j+1)·B·W − 1 of the order: with the loss's gathered features
the global batch is what one process with batch B·W would see (whole groups included). When W does
not divide N, the first N mod W items of the order are read twice, so every rank takes as many steps
(checked below)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from memegap.data.coco_captions import CocoCaptionsDataModule
from memegap.data.twemoji import TwemojiDataModule

EPOCHS = 2


class Recorder(L.LightningModule):
    """No model: records the ids of each rank's training batches, per epoch, into <out>/rank<r>.json."""

    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.ids: dict[int, list[str]] = {}

    def training_step(self, batch, batch_idx):
        self.ids.setdefault(self.current_epoch, []).extend(batch["id"])
        return self.weight.sum()

    def on_train_end(self) -> None:
        Path(self.out, f"rank{self.global_rank}.json").write_text(json.dumps(self.ids))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def ids_per_rank(datamodule: L.LightningDataModule, out: Path) -> list[dict[str, list[str]]]:
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=EPOCHS, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(Recorder(str(out)), datamodule=datamodule)
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(2)]


def one_process_epochs(datamodule: L.LightningDataModule) -> list[list[str]]:
    """The training ids of epochs 0 and 1 in one process (the order the two ranks share)."""
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    epochs = []
    for epoch in range(EPOCHS):
        loader.sampler.set_epoch(epoch)
        epochs.append([item for batch in loader for item in batch["id"]])
    return epochs


def check_shards(ranks: list[dict[str, list[str]]], whole: list[list[str]]) -> None:
    for epoch in range(EPOCHS):
        order = whole[epoch]
        padded = order + order[: len(order) % 2]  # DistributedSampler's padding to equal shares
        first, second = ranks[0][str(epoch)], ranks[1][str(epoch)]
        assert first == padded[0::2] and second == padded[1::2]  # the shared (seed, epoch) order, dealt out
        assert len(set(first) & set(second)) == len(order) % 2, "the ranks read the same items"
        assert set(first) | set(second) == set(order), "together they are not the whole split"
    assert ranks[0]["0"] != ranks[0]["1"]  # a new order each epoch


@pytest.mark.slow
@pytest.mark.parametrize("grouped", [False, True], ids=["plain", "grouped"])
def test_each_rank_reads_its_own_share_of_twemoji(tmp_path, grouped):
    settings = dict(image_size=16, batch_size=8, max_per_split=64, group_variants=grouped, store_dir=str(tmp_path / "store"))
    whole = one_process_epochs(TwemojiDataModule(**settings))
    assert len(whole[0]) % 2 == 0
    check_shards(ids_per_rank(TwemojiDataModule(**settings), tmp_path), whole)


@pytest.mark.slow
def test_each_rank_reads_its_own_share_of_coco_captions_one_per_image(tmp_path, shared_data):
    settings = dict(root=str(shared_data / "coco_mini"), image_size=16, batch_size=8, store_dir=str(tmp_path / "store"))
    whole = one_process_epochs(CocoCaptionsDataModule(**settings))
    check_shards(ids_per_rank(CocoCaptionsDataModule(**settings), tmp_path), whole)
