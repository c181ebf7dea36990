"""CLIP-style dual encoder: image tower + text tower + linear projections to a shared space.

Trainable: DoRA adapters on both towers (base weights frozen), the two projections and the
temperature (a learnable logit scale, clamped to [0, log max_logit_scale] as in open_clip).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from functools import partial

from lightning.pytorch.utilities import rank_zero_warn
import torch
from torch import Tensor, nn

from memegap.batch import float_images
from memegap.models.staged import StagedModule
from memegap.nets.adapters import AdapterWithoutGradientError, adapters_without_gradient, add_dora


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor: linear warm-up over `warmup_steps`, then cosine decay to 0 at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class ContrastiveDualEncoder(StagedModule):
    """What every dual encoder shares: the contrastive steps and their logs, the gradient-accumulation
    warning, the adapter-gradient check, the temperature clamp, checkpoints without the frozen pretrained
    weights, and AdamW-style optimisation with warm-up and cosine decay.

    A subclass builds its modules, calls save_hyperparameters (warmup_steps, max_logit_scale,
    check_adapter_gradients among them), sets `has_adapters`, and defines embed_images, embed_texts and
    `logit_scale` (a scalar parameter, log of 1/T); embed(batch) -> {"image": N×D, "text": N×D}.
    """

    has_adapters = False
    needs_batch_keys = ("image", "text", "image_id")  # memegap.batch.SCHEMA

    def __init__(self, loss: nn.Module, optimizer: partial) -> None:
        super().__init__()
        self.loss, self.optimizer_factory = loss, optimizer

    @abstractmethod
    def embed_images(self, images: Tensor) -> Tensor:
        """N×3×S×S in [0, 1] -> N×D (raw, not normalised)."""

    @abstractmethod
    def embed_texts(self, texts: list[str]) -> Tensor:
        """N strings -> N×D (raw, not normalised)."""

    def embed(self, batch: dict) -> dict[str, Tensor]:
        return {"image": self.embed_images(float_images(batch["image"])), "text": self.embed_texts(batch["text"])}

    def _step(self, batch: dict, stage: str) -> dict:
        embeddings = self.embed(batch)
        losses = self.loss(embeddings["image"], embeddings["text"], self.logit_scale)
        logged = {"batch_size": len(batch["text"]), "on_epoch": True, "on_step": stage == "train", "sync_dist": True}  # sync_dist: the mean over every DDP rank
        self.log(f"{stage}/loss", losses["loss"], prog_bar=True, **logged)
        for name, value in losses.items():
            if name != "loss":
                self.log(f"{stage}/loss/{name}", value, **logged)
        return {"loss": losses["loss"], "embeddings": {name: value.detach() for name, value in embeddings.items()}, "image_id": batch["image_id"]}

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        self.log("train/temperature", 1.0 / self.logit_scale.exp(), on_step=True, on_epoch=False)
        return super().training_step(batch, batch_idx)

    def on_fit_start(self) -> None:
        accumulated = self.trainer.accumulate_grad_batches
        if accumulated > 1:
            rank_zero_warn(
                f"trainer.accumulate_grad_batches={accumulated} does not give a bigger contrastive batch: every loss term "
                f"compares a pair only with the other pairs of its own batch (data.batch_size). Raise data.batch_size "
                f"instead, or use gradient checkpointing to fit it."
            )
        if self.trainer.world_size > 1 and not getattr(self.loss, "gather", True):
            rank_zero_warn(
                f"model.loss.gather=false on {self.trainer.world_size} DDP processes: every loss term compares a pair only "
                f"with the other pairs of its own rank's batch ({self.trainer.world_size}× fewer negatives than the "
                f"global batch). Set model.loss.gather=true to gather the pairs of every rank."
            )

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # DoRA's B matrices start at zero, so A gets its first gradient at the second step: check then.
        if self.hparams.check_adapter_gradients and self.has_adapters and self.global_step == 1:
            missing = adapters_without_gradient(self)
            if missing:
                raise AdapterWithoutGradientError(missing)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        with torch.no_grad():
            self.logit_scale.clamp_(0.0, math.log(self.hparams.max_logit_scale))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep the frozen tower weights out of checkpoints (116 MB for the packaged towers, 1.7 GB for
        CLIP ViT-L/14): they are the pretrained weights, which every run rebuilds. Adapters, trained
        layers, projections, temperature and buffers stay."""
        frozen = {name for name, parameter in self.named_parameters() if not parameter.requires_grad}
        checkpoint["state_dict"] = {name: value for name, value in checkpoint["state_dict"].items() if name not in frozen}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Fill in the frozen weights left out by on_save_checkpoint from this model's own (pretrained) ones,
        so that loading stays strict for every key the checkpoint should hold."""
        frozen = {name: parameter for name, parameter in self.named_parameters() if not parameter.requires_grad}
        for name, parameter in frozen.items():
            checkpoint["state_dict"].setdefault(name, parameter.detach())  # loads onto itself: no copy kept

    def configure_optimizers(self):
        trainable = [parameter for parameter in self.parameters() if parameter.requires_grad]
        optimizer = self.optimizer_factory(params=trainable)
        schedule = partial(
            warmup_cosine,
            warmup_steps=self.hparams.warmup_steps,
            total_steps=int(self.trainer.estimated_stepping_batches),
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class DualEncoder(ContrastiveDualEncoder):
    """Dual encoder trained with a contrastive loss on batches {"image": N×3×H×W, "text": list[str]}.

    loss: a module returning {"loss": total, <term>: value, ...} (memegap.losses.contrastive.ContrastiveLoss);
    the total is logged as <stage>/loss and each term as <stage>/loss/<term>.

    embed(batch) -> {"image": N×embed_dim, "text": N×embed_dim} (raw, not normalised).
    dora_rank = 0 trains the projections only (frozen towers, a linear probe). lock_image_tower /
    lock_text_tower freeze one tower without adapters (as open_clip's lock options; image locked = LiT).
    """

    def __init__(
        self,
        image_tower: nn.Module,
        text_tower: nn.Module,
        loss: nn.Module,
        optimizer: partial,
        embed_dim: int = 256,
        dora_rank: int = 8,
        dora_alpha: float = 16.0,
        dora_dropout: float = 0.0,
        image_adapter_targets: str | None = None,
        text_adapter_targets: str | None = None,
        lock_image_tower: bool = False,
        lock_text_tower: bool = False,
        init_temperature: float = 0.07,
        max_logit_scale: float = 100.0,
        warmup_steps: int = 10,
        check_adapter_gradients: bool = True,
    ) -> None:
        super().__init__(loss, optimizer)
        # Modules and the optimizer factory are rebuilt from the config, not pickled into checkpoints.
        self.save_hyperparameters(ignore=["image_tower", "text_tower", "loss", "optimizer"], logger=False)
        self.has_adapters = dora_rank > 0 and not (lock_image_tower and lock_text_tower)
        towers = ((image_tower, image_adapter_targets, lock_image_tower), (text_tower, text_adapter_targets, lock_text_tower))
        for tower, targets, locked in towers:
            if dora_rank > 0 and not locked:
                add_dora(tower, targets or tower.default_adapter_targets, dora_rank, dora_alpha, dora_dropout)
            else:
                tower.requires_grad_(False)
        self.image_tower, self.text_tower = image_tower, text_tower
        self.image_projection = nn.Linear(image_tower.output_dim, embed_dim, bias=False)
        self.text_projection = nn.Linear(text_tower.output_dim, embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.logit_scale.requires_grad_(getattr(loss, "uses_logit_scale", True))  # SigLIP alone has a temperature of its own

    def embed_images(self, images: Tensor) -> Tensor:
        return self.image_projection(self.image_tower(images))

    def embed_texts(self, texts: list[str]) -> Tensor:
        return self.text_projection(self.text_tower(texts))
