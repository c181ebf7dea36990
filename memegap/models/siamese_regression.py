"""SiameseRegression: the memes thesis's second model (000, §4.3). A shared trunk (the backbone's
feature extractor, classifier removed) embeds two memes; one dense layer on the pair of features,
[f_a ‖ f_b] → 1, predicts their signed target difference, target_a − target_b (likes or log1p likes,
data.target), trained with MSE on pairs drawn each epoch (data.sampling=pairs).

Prediction as the thesis: pair a query with every training meme, keep the k training memes with the
smallest predicted |difference|, and average their targets (`prediction="neighbours"`), or, as an
option, the mean of target_j + predicted difference_j over those k (`prediction="corrected"`).

Done efficiently: the training memes' trunk features are computed once (the report embeds the split
once), and since the head is one dense layer, d(q, j) = w_a·f_q + w_b·f_j + b, the Q × N predicted
differences are an outer sum of Q + N dot products, evaluated in blocks of queries; no pair ever runs
the trunk (see benchmarks/pair_prediction.py).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from memegap.errors import UserError
from memegap.models.siamese import SiameseNet

PREDICTIONS = ("neighbours", "corrected")


def pair_differences(head: nn.Linear, queries: Tensor, references: Tensor) -> Tensor:
    """The head's output for every (query, reference) pair, Q×N: the decomposition of one dense
    layer on [f_q ‖ f_r]; identical to head(cat(f_q, f_r)) up to float rounding."""
    features = queries.shape[1]
    weight = head.weight[0]
    return (queries @ weight[:features]).unsqueeze(1) + (references @ weight[features:]).unsqueeze(0) + head.bias[0]


@torch.no_grad()
def predict_from_pairs(head: nn.Linear, references: Tensor, reference_targets: Tensor, queries: Tensor, k: int = 10,
                       prediction: str = "neighbours", block_size: int = 1024) -> tuple[Tensor, Tensor]:
    """Predicted target of each query (Q): its k training memes of smallest |predicted difference|,
    their mean target (neighbours) or the mean of target + predicted difference (corrected); and those
    memes' rows (Q×k, closest first)."""
    k = min(k, len(references))
    targets = reference_targets.to(queries.device, torch.float32)
    predicted, rows = [], []
    for start in range(0, len(queries), block_size):
        differences = pair_differences(head, queries[start : start + block_size], references)
        closest = differences.abs().topk(k, dim=1, largest=False).indices
        chosen = targets[closest]
        if prediction == "corrected":
            chosen = chosen + differences.gather(1, closest)
        predicted.append(chosen.mean(1))
        rows.append(closest)
    return torch.cat(predicted), torch.cat(rows)


class SiameseRegression(SiameseNet):
    """Training batches: pairs {"image", "target", "id", "other_image", "other_target", "other_id"}.
    Validation/test batches: the MSE of each meme paired with the next one in the batch, and
    {"embeddings": {"image": trunk features}, "bin": like bins, "likes": likes} for the callbacks.

    backbone: the feature extractor (keep_head=false); trains, train_last_n, cache_features, fusion:
    memegap.models.siamese.SiameseNet (trains=fc: only the dense layer trains; fusion: the dense layer
    reads [f_a ‖ t_a ‖ f_b ‖ t_b], the text features t beside the trunk's).
    predict_targets(...) replaces the siamese nets' kNN: the PopularityReport callback and memegap-predict call it.
    """

    def __init__(
        self,
        backbone: nn.Module,
        optimizer: partial,
        trains: str = "fc",
        train_last_n: int = 1,
        prediction: str = "neighbours",
        cache_features: bool = True,
        fusion: bool = False,
    ) -> None:
        if prediction not in PREDICTIONS:
            raise UserError(f"model.prediction must be one of {list(PREDICTIONS)}, got {prediction!r}")
        super().__init__(backbone, trains, train_last_n, cache_features, fusion)
        self.save_hyperparameters(ignore=["backbone", "optimizer"], logger=False)
        self.optimizer_factory = optimizer
        self.head: nn.Linear | None = None if fusion else nn.Linear(2 * backbone.output_dim, 1)

    @property
    def needs_batch_keys(self) -> tuple[str, ...]:
        """The batch keys this model reads (memegap.batch.SCHEMA)."""
        fusion = ("text_features", "other_text_features") if self.fusion else ()
        return ("image", "target", "bin", "likes", "other_image", "other_target") + fusion

    def setup(self, stage: str) -> None:
        if self.head is None:  # with fusion the head's width waits for the data's text features
            self.head = nn.Linear(2 * (self.backbone.output_dim + self.text_dim()), 1)

    def trunk(self, batch: dict, prefix: str = "") -> Tensor:
        """The trunk's features of the batch's memes (prefix "other_": their partners), with fusion
        joined by their text features: N×(D + F)."""
        features = self.features(batch[f"{prefix}image"], batch.get(f"{prefix}id"))
        return torch.cat([features, self.text_of(batch, f"{prefix}text_features")], dim=1) if self.fusion else features

    def embed(self, batch: dict) -> dict[str, Tensor]:
        return {"image": self.trunk(batch)}

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        if "other_image" not in batch:
            raise UserError("model=siamese_regression trains on pairs: set data.sampling=pairs")
        first, other = self.trunk(batch), self.trunk(batch, "other_")
        predicted = self.head(torch.cat([first, other], dim=1)).squeeze(1)
        loss = nn.functional.mse_loss(predicted, batch["target"].float() - batch["other_target"].float())
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(first), sync_dist=True)
        return loss

    def _evaluation_step(self, batch: dict, stage: str) -> dict:
        features = self.trunk(batch)
        other = features.roll(1, dims=0)  # each meme against the previous one of the batch
        predicted = self.head(torch.cat([features, other], dim=1)).squeeze(1)
        target = batch["target"].float()
        loss = nn.functional.mse_loss(predicted, target - target.roll(1))
        self.log(f"{stage}/loss", loss, prog_bar=True, on_epoch=True, batch_size=len(features), sync_dist=True)
        return {"loss": loss, "embeddings": {"image": features.detach()}, "bin": batch["bin"], "likes": batch["likes"]}

    predictor_name = "its own predictor"

    def predict_targets(self, references: Tensor, reference_targets: Tensor, queries: Tensor, k: int, weighting: str = "mean") -> tuple[Tensor, Tensor]:
        """Predicted targets of the queries (Q) from the training memes' features (N×F) and targets (N) by the
        nearest-difference rule (predict_from_pairs; `weighting` does not apply), and the k memes' rows (Q×k)."""
        device = self.head.weight.device
        predicted, rows = predict_from_pairs(self.head, references.to(device), reference_targets, queries.to(device), k, self.hparams.prediction)
        return predicted.cpu(), rows.cpu()
