"""What the memes thesis's siamese nets share: one backbone embeds every input with the same weights,
a choice of what trains, and a cache of the frozen extractor's features."""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor, nn

from memegap.batch import float_images
from memegap.errors import UserError
from memegap.index.knn import KnnIndex, neighbour_mean
from memegap.nets.backbones import eval_frozen_batchnorm, freeze_stages

TRAINS = ("fc", "all", "last_n")
NO_TEXT_FEATURES = "model.fusion=true needs text features: set data.text_features, e.g. [afinn, lda] or [afinn, lda, ocr]"


class SiameseNet(L.LightningModule):
    """trains: fc (the feature extractor frozen: only the fully connected layers on top train, the
    network's own ones (backbone.head) or the model's new ones), all, or last_n (the extractor's last
    `train_last_n` stages too).
    cache_features: with trains=fc the frozen extractor's features of each meme are computed once and
    kept in memory (keyed by meme id), so each later epoch runs the fully connected layers only.
    fusion: the meme's text features (batch "text_features", N×F, from data.text_features) join the
    image features before the predictor (`text_of`).
    Subclasses set `optimizer_factory` and define `_evaluation_step(batch, stage)`."""

    def __init__(self, backbone: nn.Module, trains: str, train_last_n: int, cache_features: bool, fusion: bool = False) -> None:
        super().__init__()
        if trains not in TRAINS:
            raise UserError(f"model.trains must be one of {list(TRAINS)}, got {trains!r}")
        self.backbone = backbone
        self.frozen_stages = freeze_stages(backbone, {"all": None, "fc": 0, "last_n": train_last_n}[trains])
        self.extractor_frozen, self.cache_features, self.fusion = trains == "fc", cache_features, fusion
        self._feature_cache: dict[str, Tensor] = {}

    predictor_name = "kNN"  # how the popularity report names this model's predictor

    def knn_metric(self) -> str:
        """The distance its embeddings are searched by: cosine for a net trained with it, else L2."""
        return "cosine" if self.hparams.get("distance") == "cosine" else "l2"

    def predict_targets(self, references: Tensor, reference_targets: Tensor, queries: Tensor, k: int, weighting: str = "mean") -> tuple[Tensor, Tensor]:
        """The likes prediction of the memes thesis, the one the test step's report and memegap-predict use:
        each query's (Q×D) k nearest training memes (references N×D, their targets N) in the embedding, and
        their mean target (memegap.index.knn.neighbour_mean). Returns (predicted targets Q, neighbour rows Q×k)."""
        distances, neighbours = KnnIndex(references, metric=self.knn_metric()).search(queries, k)
        return neighbour_mean(reference_targets, distances, neighbours, weighting), neighbours

    def text_dim(self) -> int:
        """F, the width of the data module's text features (0 without fusion)."""
        if not self.fusion:
            return 0
        train = self.trainer.datamodule.datasets["train"]
        if train.text_features is None:
            raise UserError(NO_TEXT_FEATURES)
        return train.text_features.shape[1]

    def text_of(self, batch: dict, key: str = "text_features") -> Tensor:
        """The batch's standardised text features, N×F (fusion only)."""
        if key not in batch:
            raise UserError(NO_TEXT_FEATURES)
        return batch[key].float()

    def train(self, mode: bool = True) -> SiameseNet:
        super().train(mode)
        eval_frozen_batchnorm(self.frozen_stages)
        if self.extractor_frozen:  # its BatchNorm and dropout layers too; the network's own fc layers still train
            for child in self.backbone.children():
                if child is not getattr(self.backbone, "head", None):
                    child.eval()
        return self

    def features(self, images: Tensor, ids: list[str] | None) -> Tensor:
        """The extractor's features (N×F) of uint8 or float images, from the cache when the extractor is
        frozen and ids are given."""
        if not (self.extractor_frozen and self.cache_features and ids is not None):
            return self.backbone(float_images(images))
        missing = [k for k, key in enumerate(ids) if key not in self._feature_cache]
        if missing:
            with torch.no_grad():
                computed = self.backbone(float_images(images[missing]))
            for k, row in zip(missing, computed):
                self._feature_cache[ids[k]] = row.detach()
        return torch.stack([self._feature_cache[key] for key in ids]).to(images.device)

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        return self._evaluation_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> dict:
        return self._evaluation_step(batch, "test")

    def configure_optimizers(self):
        return self.optimizer_factory(params=[parameter for parameter in self.parameters() if parameter.requires_grad])
