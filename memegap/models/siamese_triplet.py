"""SiameseTriplet: the memes thesis's triplet network (000, ch. 3–4). One backbone embeds an anchor,
a positive (similar likes) and a negative (far likes); pytorch-metric-learning's TripletMarginLoss
pulls the anchor to the positive and pushes it from the negative. A meme's likes are then predicted
from its nearest training memes in the embedding (memegap.index.knn, the PopularityReport callback).
"""

from __future__ import annotations

from functools import partial

import torch
from lightning.pytorch.utilities import rank_zero_warn
from pytorch_metric_learning import miners
from torch import Tensor, nn

from memegap.errors import UserError
from memegap.losses.triplet import DEFAULT_MARGIN, DISTANCES, triplet_loss
from memegap.models.siamese import SiameseNet

EMBEDDINGS = ("head", "penultimate")
MINING = ("offline", "batch_hard", "semihard")


class SiameseTriplet(SiameseNet):
    """Training batches: offline triplets {"image", "positive_image", "negative_image" (+ their ids)}
    (data.sampling=triplet), or with mining="batch_hard" | "semihard" plain batches whose like bins
    ("bin") choose the triplets (pytorch-metric-learning's miners; data.sampling=items).

    backbone: with its own fully connected layers kept (keep_head=true), which always train.
    trains, train_last_n, cache_features: memegap.models.siamese.SiameseNet (the thesis: trains=fc).
    embedding: head (the fc layers' output, as the thesis) or penultimate (the extractor's features).
    Validation/test batches: the loss over every triplet of the batch by like bins, and
    {"embeddings": {"image": N×D}, "bin": bins, "likes": likes} for the callbacks.

    Collapse: when an epoch's mean training loss sits within `collapse_tolerance` of the margin and the
    embeddings' spread (RMS distance to their centroid / mean norm) is below 0.05, every meme maps to
    nearly one point (the thesis's euclidean ResNet and VGG runs); a warning names what to try.
    """

    def __init__(
        self,
        backbone: nn.Module,
        optimizer: partial,
        trains: str = "fc",
        train_last_n: int = 1,
        embedding: str = "head",
        distance: str = "euclidean",
        margin: float | None = None,
        mining: str = "offline",
        cache_features: bool = True,
        collapse_tolerance: float = 0.02,
        fusion: bool = False,
    ) -> None:
        for name, value, allowed in (("embedding", embedding, EMBEDDINGS), ("distance", distance, DISTANCES), ("mining", mining, MINING)):
            if value not in allowed:
                raise UserError(f"model.{name} must be one of {list(allowed)}, got {value!r}")
        if getattr(backbone, "head", None) is None:
            raise UserError("model.backbone needs keep_head=true: the siamese net trains the network's own fully connected layers")
        if trains == "fc" and embedding == "penultimate":
            raise UserError("model.trains=fc with model.embedding=penultimate trains nothing that the embedding uses: use embedding=head or trains=all|last_n")
        super().__init__(backbone, trains, train_last_n, cache_features, fusion)
        self.save_hyperparameters(ignore=["backbone", "optimizer"], logger=False)
        self.hparams.margin = DEFAULT_MARGIN[distance] if margin is None else margin
        self.optimizer_factory = optimizer
        backbone.head.requires_grad_(True)
        self.loss = triplet_loss(distance, self.hparams.margin)
        self.miner = {"offline": None, "batch_hard": miners.BatchHardMiner(), "semihard": miners.TripletMarginMiner(margin=self.hparams.margin, type_of_triplets="semihard")}[mining]
        self._epoch_losses: list[float] = []
        self._last_embeddings: Tensor | None = None
        self._warned_collapse = False

    @property
    def needs_batch_keys(self) -> tuple[str, ...]:
        """The batch keys this model reads (memegap.batch.SCHEMA)."""
        triplets = ("positive_image", "negative_image") if self.miner is None else ()
        return ("image", "bin", "likes") + triplets + (("text_features",) if self.fusion else ())

    def embed_images(self, images: Tensor, ids: list[str] | None = None) -> Tensor:
        features = self.features(images, ids)
        return self.backbone.head(features) if self.hparams.embedding == "head" else features

    def embed(self, batch: dict) -> dict[str, Tensor]:
        return {"image": self.predictor_input(self.embed_images(batch["image"], batch.get("id")), batch)}

    def predictor_input(self, embeddings: Tensor, batch: dict) -> Tensor:
        """What the kNN predictor reads: the embeddings, or with fusion [e / ‖e‖ ‖ t / √F] (the
        normalised embedding and the standardised text features, each block of norm about 1)."""
        if not self.fusion:
            return embeddings
        text = self.text_of(batch)
        return torch.cat([nn.functional.normalize(embeddings, dim=1), text / text.shape[1] ** 0.5], dim=1)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        anchors = self.embed_images(batch["image"], batch.get("id"))
        if self.miner is not None:
            loss = self.loss(anchors, batch["bin"], self.miner(anchors, batch["bin"]))
        else:
            if "positive_image" not in batch:
                raise UserError("model.mining=offline needs triplet batches: set data.sampling=triplet (or model.mining=batch_hard|semihard)")
            positives = self.embed_images(batch["positive_image"], batch.get("positive_id"))
            negatives = self.embed_images(batch["negative_image"], batch.get("negative_id"))
            n = len(anchors)
            rows = torch.arange(n, device=anchors.device)
            loss = self.loss(torch.cat([anchors, positives, negatives]), indices_tuple=(rows, rows + n, rows + 2 * n))
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(anchors), sync_dist=True)
        self._epoch_losses.append(float(loss.detach()))
        self._last_embeddings = anchors.detach()
        return loss

    def _evaluation_step(self, batch: dict, stage: str) -> dict:
        embeddings = self.embed_images(batch["image"], batch.get("id"))
        loss = self.loss(embeddings, batch["bin"])  # every triplet of the batch, by like bins
        self.log(f"{stage}/loss", loss, prog_bar=True, on_epoch=True, batch_size=len(embeddings), sync_dist=True)
        return {"loss": loss, "embeddings": {"image": self.predictor_input(embeddings, batch).detach()}, "bin": batch["bin"], "likes": batch["likes"]}

    def on_train_epoch_end(self) -> None:
        if not self._epoch_losses or self._last_embeddings is None:
            return
        mean_loss = sum(self._epoch_losses) / len(self._epoch_losses)
        self._epoch_losses = []
        spread = embedding_spread(self._last_embeddings)
        self.log("train/embedding_spread", spread, sync_dist=True)
        collapsed = abs(mean_loss - self.hparams.margin) <= self.hparams.collapse_tolerance * self.hparams.margin and spread < 0.05
        self.log("train/collapsed", float(collapsed), sync_dist=True)
        if collapsed and not self._warned_collapse:
            self._warned_collapse = True
            rank_zero_warn(
                f"epoch {self.current_epoch}: the triplet loss sits at the margin ({mean_loss:.3f} ≈ {self.hparams.margin:.3f}) and the "
                f"embeddings have collapsed (spread {spread:.3f}): every meme maps to nearly one point. Try model.distance=cosine, "
                f"a lower model.optimizer.lr, model.mining=semihard with data.sampling=items, or model.trains=last_n."
            )


def embedding_spread(embeddings: Tensor) -> float:
    """RMS distance of the rows (N×D) to their centroid over their mean norm: 0 when all are one point."""
    centred = embeddings - embeddings.mean(0, keepdim=True)
    return float(centred.pow(2).sum(1).mean().sqrt() / embeddings.norm(dim=1).mean().clamp(min=1e-12))
