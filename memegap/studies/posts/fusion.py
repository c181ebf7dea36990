"""Image + caption fusion of the posts study (the influencer thesis, 001).

- Early fusion: an MLP on [image features ‖ caption vector] (the thesis: PCA 512 → 128 of the image
  features, concatenated with the 128-d caption vector, SGD, cross-entropy, 25 epochs), with the
  thesis's post rule as an option: a class only when the image model and the fusion model agree.
- Late fusion: p = λ·p_image + (1 − λ)·p_text, λ swept from 0 to 1 in steps of 0.01 and chosen on
  validation (the thesis tuned λ on its evaluation posts and found λ* = 0.82).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.nn import functional as F

UNKNOWN = -1  # the post rule's class when the image and fusion models disagree


class Reducer:
    """Standardise, then PCA to at most `components` dimensions (the thesis: image 512 → 128), fitted
    on training features only, then one common scale so that the kept components have a mean variance
    of 1 (a standardised block, like each modality's, without inflating the smallest components as
    per-component scaling would on out-of-sample rows). PCA keeps at most min(N_train − 1, D)."""

    def __init__(self, components: int = 128) -> None:
        self.components = components

    def fit(self, features: np.ndarray) -> Reducer:
        components = min(self.components, features.shape[0] - 1, features.shape[1])
        self.pca = make_pipeline(StandardScaler(), PCA(n_components=components, random_state=0)).fit(features)
        self.scale = float(np.sqrt(self.pca[-1].explained_variance_.mean()))
        return self

    @property
    def kept(self) -> int:
        return int(self.pca[-1].n_components_)

    def transform(self, features: np.ndarray) -> np.ndarray:
        """float N×kept."""
        return self.pca.transform(features) / self.scale


def late_fusion(p_image: np.ndarray, p_text: np.ndarray, weight: float) -> np.ndarray:
    """λ·p_image + (1 − λ)·p_text for probabilities N×C (λ = weight in [0, 1])."""
    return weight * np.asarray(p_image) + (1.0 - weight) * np.asarray(p_text)


def fusion_weight_sweep(p_image: np.ndarray, p_text: np.ndarray, labels: np.ndarray, step: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """The accuracy of late fusion at λ = 0, step, …, 1: (weights, accuracies), both of length 1/step + 1."""
    weights = np.round(np.arange(0.0, 1.0 + step / 2, step), 10)
    accuracies = np.array([(late_fusion(p_image, p_text, weight).argmax(1) == labels).mean() for weight in weights])
    return weights, accuracies


def agreement_rule(image_predictions: np.ndarray, fusion_predictions: np.ndarray) -> np.ndarray:
    """The thesis's post rule: the fusion model's class where the image model predicts the same, else UNKNOWN."""
    return np.where(image_predictions == fusion_predictions, fusion_predictions, UNKNOWN)


class FusionMLP(nn.Module):
    """[image ‖ text] (N×D) → hidden ReLU layer → class logits (N×C). One hidden layer of 64 is ours
    (the thesis names an MLP)."""

    def __init__(self, input_dim: int, num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(input_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layers(inputs)


def train_fusion_mlp(
    inputs: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    epochs: int = 25,
    lr: float = 0.05,
    batch_size: int = 16,
    hidden: int = 64,
    seed: int = 0,
) -> tuple[FusionMLP, list[float]]:
    """The MLP trained with SGD (momentum 0.9) and cross-entropy on standardised-or-PCA inputs N×D
    (the thesis: SGD, 25 epochs; lr and batch size are ours). Returns it (eval mode) and the mean
    training loss of each epoch."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = FusionMLP(inputs.shape[1], num_classes, hidden)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    x, y = torch.as_tensor(inputs, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.int64)
    losses = []
    for _ in range(epochs):
        order, total = torch.randperm(len(x), generator=generator), 0.0
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        losses.append(total / len(x))
    return model.eval(), losses


@torch.no_grad()
def mlp_probabilities(model: FusionMLP, inputs: np.ndarray) -> np.ndarray:
    """Softmax probabilities N×C of the MLP."""
    return F.softmax(model(torch.as_tensor(inputs, dtype=torch.float32)), dim=1).numpy()
