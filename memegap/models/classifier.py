"""ImageClassifier: a backbone (memegap.nets.backbones) and a new final layer, trained with
cross-entropy on batches {"image": N×3×H×W, "label": N, optional "weight": N}.

`model=resnet_classifier` (torchvision ResNets or the offline EfficientNet-Lite0) and `model=cifar_cnn`
(the CIFAR-100 study's small CNN) are configs of this one module.
"""

from __future__ import annotations

from functools import partial

from torch import Tensor, nn
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAccuracy

from memegap.batch import float_images
from memegap.errors import UserError
from memegap.models.staged import StagedModule
from memegap.nets.backbones import eval_frozen_batchnorm, freeze_stages

FREEZE = ("none", "backbone", "last_n")


class ImageClassifier(StagedModule):
    """Logs `<stage>/loss` and `<stage>/acc` (top-1, torchmetrics); the ClassificationReport callback
    adds top-5, macro precision / recall / F1, the per-class table and the confusion matrix.

    num_classes: None takes the data module's `num_classes` when training starts.
    freeze: "none" trains everything; "backbone" only the new final layer (a linear probe);
        "last_n" the last `train_last_n` of the backbone's stages() and the final layer. Frozen
        BatchNorm layers keep their running statistics (eval mode).
    dropout: before the final layer. label_smoothing: of the cross-entropy (0 = none).
    A batch "weight" (per-sample: class balancing, annotator confidence) gives the weighted mean
    Σ wᵢ·CEᵢ / Σ wᵢ; without it every sample counts the same.
    optimizer / scheduler: partials completed with the trainable parameters / the optimizer
    (scheduler None = a constant learning rate; stepped once per epoch).

    embed(batch) -> {"image": N×output_dim}: the penultimate features, for the geometry callback.
    """

    needs_batch_keys = ("image", "label")  # memegap.batch.SCHEMA; "weight" is read when present

    def __init__(
        self,
        backbone: nn.Module,
        optimizer: partial,
        scheduler: partial | None = None,
        num_classes: int | None = None,
        freeze: str = "none",
        train_last_n: int = 1,
        dropout: float = 0.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if freeze not in FREEZE:
            raise UserError(f"model.freeze must be one of {list(FREEZE)}, got {freeze!r}")
        if freeze == "last_n" and train_last_n < 1:
            raise UserError(f"model.train_last_n must be between 1 and {len(backbone.stages())} (the backbone's stages), got {train_last_n}")
        self.save_hyperparameters(ignore=["backbone", "optimizer", "scheduler"], logger=False)
        self.backbone, self.optimizer_factory, self.scheduler_factory = backbone, optimizer, scheduler
        self.frozen_stages = freeze_stages(backbone, {"none": None, "backbone": 0, "last_n": train_last_n}[freeze])
        self.head: nn.Module | None = None
        if num_classes is not None:
            self._build_head(num_classes)

    def _build_head(self, num_classes: int) -> None:
        self.hparams.num_classes = num_classes
        self.head = nn.Sequential(nn.Dropout(self.hparams.dropout), nn.Linear(self.backbone.output_dim, num_classes))
        # one metric per stage (torchmetrics accumulates over the epoch and syncs across DDP ranks)
        self.accuracy = nn.ModuleDict({f"{stage}_acc": MulticlassAccuracy(num_classes, average="micro") for stage in ("train", "val", "test")})

    def setup(self, stage: str) -> None:
        if self.head is None:
            num_classes = getattr(self.trainer.datamodule, "num_classes", None)
            if not num_classes:
                raise UserError("model.num_classes is null and the data module names no num_classes: set model.num_classes")
            self._build_head(num_classes)

    def train(self, mode: bool = True) -> ImageClassifier:
        super().train(mode)
        eval_frozen_batchnorm(self.frozen_stages)
        return self

    def embed(self, batch: dict) -> dict[str, Tensor]:
        return {"image": self.backbone(float_images(batch["image"]))}

    def _step(self, batch: dict, stage: str) -> dict:
        features = self.embed(batch)["image"]
        logits = self.head(features)
        labels = batch["label"]
        losses = F.cross_entropy(logits, labels, reduction="none", label_smoothing=self.hparams.label_smoothing)
        weights = batch.get("weight")
        loss = losses.mean() if weights is None else (weights * losses).sum() / weights.sum()
        accuracy = self.accuracy[f"{stage}_acc"]
        accuracy(logits, labels)
        logged = {"batch_size": len(labels), "on_epoch": True, "on_step": stage == "train", "sync_dist": True}  # sync_dist: the mean over every DDP rank
        self.log(f"{stage}/loss", loss, prog_bar=True, **logged)
        self.log(f"{stage}/acc", accuracy, prog_bar=stage != "train", **(logged | {"sync_dist": False}))  # a torchmetrics Metric syncs itself
        return {"loss": loss, "embeddings": {"image": features.detach()}, "logits": logits.detach(), "label": labels}

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=[parameter for parameter in self.parameters() if parameter.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"}}
