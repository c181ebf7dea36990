"""Global negatives under DDP: the contrastive loss on 2 gloo processes × batch B gives the loss and the
gradients of 1 process × batch 2B, for every loss setting of conf/model/loss/ (and open_clip's
local_loss variant); with gathering off it does not (each rank sees only its own B − 1 negatives)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from tests.conftest import compose_config

B, IMAGE_DIM, TEXT_DIM, EMBED_DIM = 5, 6, 7, 4
SETTINGS = sorted(path.stem for path in (Path(__file__).resolve().parents[1] / "conf/model/loss").glob("*.yaml"))


class Towers(nn.Module):
    """Two linear projections and a logit scale: the trainable part a dual encoder's loss sees."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.image, self.text = nn.Linear(IMAGE_DIM, EMBED_DIM), nn.Linear(TEXT_DIM, EMBED_DIM)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, images, texts):
        return self.image(images), self.text(texts), self.logit_scale


def towers_for(loss: nn.Module) -> Towers:
    """Towers whose logit scale trains only when a term reads it, as the dual encoder's (SigLIP has its own)."""
    towers = Towers()
    towers.logit_scale.requires_grad_(loss.uses_logit_scale)
    return towers


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(2 * B, IMAGE_DIM, generator=generator), torch.randn(2 * B, TEXT_DIM, generator=generator)


def loss_and_gradients(towers: nn.Module, loss: nn.Module, images, texts) -> tuple[float, list[torch.Tensor]]:
    towers.zero_grad()
    value = loss(*towers(images, texts))["loss"]
    value.backward()
    return float(value.detach()), [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in towers.parameters()]  # SigLIP leaves logit_scale unused


def rank_process(rank: int, port: int, configs: dict, out: str) -> None:
    torch.set_default_dtype(torch.float64)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    images, texts = inputs()
    rows = slice(rank * B, (rank + 1) * B)
    results = {}
    for name, config in configs.items():
        loss = instantiate(config)
        towers = nn.parallel.DistributedDataParallel(towers_for(loss))  # averages the gradients over the ranks
        results[name] = loss_and_gradients(towers, loss, images[rows], texts[rows])
    torch.save(results, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{case: (one process's (loss, grads), [rank 0's, rank 1's])} for every setting and variant."""
    tmp = tmp_path_factory.mktemp("ddp")
    configs = {}
    for setting in SETTINGS:
        loss = OmegaConf.to_container(compose_config("train.yaml", [f"model/loss={setting}"], tmp).model.loss, resolve=True)
        configs[setting] = loss
        configs[f"{setting} local_loss"] = {**loss, "local_loss": True}
        configs[f"{setting} gather=false"] = {**loss, "gather": False}
    mp.spawn(rank_process, args=(free_port(), configs, str(tmp)), nprocs=2, join=True)
    ranks = [torch.load(tmp / f"rank{rank}.pt") for rank in range(2)]
    torch.set_default_dtype(torch.float64)
    try:
        losses = {name: instantiate(config) for name, config in configs.items()}
        one = {name: loss_and_gradients(towers_for(losses[name]), losses[name], *inputs()) for name in configs}
    finally:
        torch.set_default_dtype(torch.float32)
    return {name: (one[name], [rank[name] for rank in ranks]) for name in configs}


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("variant", ["", " local_loss"])
def test_two_ranks_give_the_loss_and_gradients_of_one_process_with_both_batches(runs, setting, variant):
    (loss, gradients), ranks = runs[setting + variant]
    mean_loss = sum(rank_loss for rank_loss, _ in ranks) / 2  # what sync_dist logs; without local_loss both ranks hold it
    assert mean_loss == pytest.approx(loss, rel=1e-10)
    if not variant:
        assert ranks[0][0] == pytest.approx(loss, rel=1e-10)
    for rank_loss, rank_gradients in ranks:
        for mine, expected in zip(rank_gradients, gradients):
            torch.testing.assert_close(mine, expected, rtol=1e-9, atol=1e-12)


def test_without_gathering_the_ranks_compute_something_else(runs):
    """The guard of the test above: each rank's own batch (the old behaviour) gives other gradients."""
    (loss, gradients), ranks = runs["ce gather=false"]
    assert not torch.allclose(ranks[0][1][0], gradients[0])
