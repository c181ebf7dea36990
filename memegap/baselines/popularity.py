"""Baselines every likes prediction is compared with, on the same split: the training mean and median,
kNN on random features, kNN on frozen ImageNet features (EfficientNet-Lite0, packaged, offline), and a
ridge regression on frozen image features and on image + post-text features (MiniLM, packaged).

All predict on the target scale (raw likes or log1p) from the training memes only, and return likes.
"""

from __future__ import annotations

import numpy as np
import torch

from memegap.targets import from_target
from memegap.index.knn import KnnIndex, knn_predict
from memegap.nets.frozen_features import image_features, text_features


def ridge_predict(train_x: np.ndarray, train_target: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    """Standardised features, ridge regression with its strength chosen by leave-one-out on the
    training memes (scikit-learn RidgeCV over 10⁻²…10⁴); the predicted targets of the test memes."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    return model.fit(train_x, train_target).predict(test_x)


def baseline_predictions(train: dict, test: dict, target: str, k: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Predicted likes of the test memes by each baseline.

    train / test: {"images": uint8 N×3×S×S (a tensor or a store view), "texts": list[str], "target": N (target scale)}.
    """
    train_target, n_test = np.asarray(train["target"], dtype=np.float64), len(test["target"])
    n_train = len(train_target)
    # each tower loaded once, for the training and test memes together
    images = image_features(train["images"], test["images"])
    texts = text_features([*train["texts"], *test["texts"]])
    image_train, image_test, text_train, text_test = images[:n_train], images[n_train:], texts[:n_train], texts[n_train:]
    generator = torch.Generator().manual_seed(seed)
    random_train, random_test = (torch.randn(n, 128, generator=generator) for n in (len(train_target), n_test))
    targets = torch.from_numpy(train_target)
    on_target_scale = {
        "training mean": np.full(n_test, train_target.mean()),
        "training median": np.full(n_test, np.median(train_target)),
        "kNN, random features": knn_predict(KnnIndex(random_train), targets, random_test, k).numpy(),
        "kNN, ImageNet features (untrained)": knn_predict(KnnIndex(image_train), targets, image_test, k).numpy(),
        "ridge, image features": ridge_predict(image_train, train_target, image_test),
        "ridge, image + post-text features": ridge_predict(np.hstack([image_train, text_train]), train_target, np.hstack([image_test, text_test])),
    }
    return {name: from_target(values, target) for name, values in on_target_scale.items()}
