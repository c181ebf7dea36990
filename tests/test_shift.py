"""The embedding shift along the gap, on clouds with a known answer."""

from __future__ import annotations

import math

import pytest
import torch

from memegap.metrics.geometry import modality_gap
from memegap.metrics.retrieval import recall_at_k
from memegap.studies.modality_gap.shift_sweep import shift, shift_sweep


def two_clouds(n: int = 360, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs sharing a random direction uᵢ, each modality pushed towards its own axis (e₁ or e₂): a gap
    of about √2·(mean weight of the axis); 4 classes by the sign pattern of u's 3rd and 4th coordinates."""
    u = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    e1, e2 = torch.zeros(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
    e1[0], e2[1] = 1.0, 1.0
    x = torch.nn.functional.normalize(torch.nn.functional.normalize(u, dim=1) + 1.5 * e1, dim=1)
    y = torch.nn.functional.normalize(torch.nn.functional.normalize(u, dim=1) + 1.5 * e2, dim=1)
    labels = (u[:, 2] > 0).long() * 2 + (u[:, 3] > 0).long()
    return x, y, labels


def test_shifting_by_one_gap_brings_the_means_together_and_zero_changes_nothing():
    x, y, _ = two_clouds()
    gap = modality_gap(x, y)[0]
    assert gap > 1.0
    same_x, same_y = shift(x, y, 0.0)
    torch.testing.assert_close(same_x, x)
    closed_x, closed_y = shift(x, y, 1.0)
    assert modality_gap(closed_x, closed_y)[0] < 0.05 * gap  # only the renormalisation keeps the means apart
    wider_x, wider_y = shift(x, y, -1.0)
    assert modality_gap(wider_x, wider_y)[0] > gap


def test_the_sweep_records_gap_recall_loss_and_zero_shot_accuracy():
    x, y, labels = two_clouds()
    class_text = torch.stack([y[labels == c].mean(0) for c in range(4)])  # a "prompt" per class: its texts' mean
    rows = shift_sweep(x, y, [-0.5, 0.0, 0.5, 1.0], logit_scale=math.log(100.0), pool_size=90, pool_repeats=2, labels=labels, class_text=class_text)
    assert [row["lambda"] for row in rows] == [-0.5, 0.0, 0.5, 1.0]
    gaps = [row["gap"] for row in rows]
    assert gaps == sorted(gaps, reverse=True) and gaps[1] == pytest.approx(modality_gap(x, y)[0])
    unshifted = recall_at_k(x, y, pool_size=90, pool_repeats=2)
    assert rows[1]["text_to_image_R@1"] == unshifted["text_to_image_R@1_pool90"]
    expected_accuracy = float(((x @ torch.nn.functional.normalize(class_text, dim=1).T).argmax(1) == labels).double().mean())
    assert rows[1]["zero_shot_accuracy"] == pytest.approx(expected_accuracy)
    assert rows[-1]["zero_shot_accuracy"] > rows[0]["zero_shot_accuracy"]  # closing the gap helps nearest-prompt classification here
    assert all(row["loss"] > 0 for row in rows)


def test_zero_shot_leaves_out_rows_without_a_class_and_balances_over_the_classes_present():
    # three images along e1, e2, e3; class prompts at e1 (class 0) and e2 (class 1); no gap to shift (x = y)
    x = torch.eye(3, dtype=torch.float64)
    class_text = torch.eye(3, dtype=torch.float64)[:2]
    # image 0 is class 0 (right), image 1 is labelled 0 but nearest prompt 1 (wrong), image 2 has no class
    labels = torch.tensor([0, 0, -1])
    row = shift_sweep(x, x.clone(), [0.0], logit_scale=0.0, pool_size=3, pool_repeats=1, labels=labels, class_text=class_text)[0]
    assert row["zero_shot_accuracy"] == pytest.approx(0.5)  # 1 of the 2 labelled images
    assert row["zero_shot_balanced_accuracy"] == pytest.approx(0.5)  # only class 0 is present: its share 1/2
    labels = torch.tensor([0, 1, 1])  # image 2 (e3) has cosine 0 with both prompts: argmax takes the first, class 0 (wrong)
    row = shift_sweep(x, x.clone(), [0.0], logit_scale=0.0, pool_size=3, pool_repeats=1, labels=labels, class_text=class_text)[0]
    assert row["zero_shot_accuracy"] == pytest.approx(2 / 3)
    assert row["zero_shot_balanced_accuracy"] == pytest.approx((1 + 1 / 2) / 2)  # class 0: 1/1, class 1: 1/2
