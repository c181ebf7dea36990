"""The thesis's loss terms on hand-computed cases, their gradients, and their weighted sum in a run."""

from __future__ import annotations

import math

import pytest
import torch

from memegap.errors import UserError
from memegap.losses.contrastive import (
    Antipodal,
    ContrastiveLoss,
    CrossEntropy,
    CyCLIP,
    OrthoIntra,
    Variance,
    antipodal_loss,
    clip_loss,
    cyclip_loss,
    ortho_inter_loss,
    ortho_intra_loss,
    variance_loss,
)
from memegap.train import train

ALPHA = 0.7


def test_orthonormal_sets():
    # x = y = the 4 basis vectors: every Gram matrix is I.
    eye = torch.eye(4, dtype=torch.float64)
    assert float(ortho_intra_loss(eye, eye, ALPHA, "sum")) == pytest.approx(2 * (-ALPHA * 4))  # both modalities, no off-diagonal
    assert float(ortho_intra_loss(eye, eye, ALPHA, "mean")) == pytest.approx(2 * (-ALPHA * 4) / 16)
    assert float(ortho_inter_loss(eye, eye, ALPHA, "sum")) == pytest.approx(-ALPHA * 4)
    assert float(antipodal_loss(eye, eye, ALPHA, "sum")) == pytest.approx(2 * (-ALPHA * 4))
    assert float(cyclip_loss(eye, eye, 1.0, 1.0, "sum")) == 0.0
    assert float(variance_loss(eye, eye, 1.0, "pooled")) == 0.0  # the diagonal is all 1, the off-diagonal all 0


def test_antipodal_pairs():
    # x = y = (e1, −e1): Gram [[1, −1], [−1, 1]]. With |·| the off-diagonal adds +2 per modality; without, −2.
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    assert float(ortho_intra_loss(x, x, ALPHA, "sum")) == pytest.approx(2 * (-2 * ALPHA + 2))
    assert float(antipodal_loss(x, x, ALPHA, "sum")) == pytest.approx(2 * (-2 * ALPHA - 2))
    assert float(ortho_inter_loss(x, x, ALPHA, "sum")) == pytest.approx(-2 * ALPHA + 2)
    assert float(cyclip_loss(x, x, 1.0, 1.0, "sum")) == 0.0  # identical modalities are consistent


def test_a_skewed_pair_by_hand():
    # x = (e1, e2), y = (e1, (e1 + e2)/√2): cosines C = [[1, 1/√2], [0, 1/√2]].
    r = 1 / math.sqrt(2)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0], [r, r]], dtype=torch.float64)
    assert float(ortho_inter_loss(x, y, ALPHA, "sum")) == pytest.approx(-ALPHA * (1 + r) + r)
    # CyCLIP: inter Σ(C_jk − C_kj)² = 2·(1/√2)² = 1; intra Σ(XXᵀ − YYᵀ)² = 2·(1/√2)² = 1; "sum" divides by N = 2
    assert float(cyclip_loss(x, y, 1.0, 1.0, "sum")) == pytest.approx(1.0)
    assert float(cyclip_loss(x, y, 2.0, 3.0, "sum")) == pytest.approx(2.5)
    assert float(cyclip_loss(x, y, 1.0, 1.0, "mean")) == pytest.approx(0.5)
    # variance: diagonal (1, 1/√2) -> ((1 − 1/√2)/2)²; off-diagonal (1/√2, 0) pooled -> 1/8, by rows -> 0 (one entry a row)
    diagonal_variance = ((1 - r) / 2) ** 2
    assert float(variance_loss(x, y, 2.0, "pooled")) == pytest.approx(-2.0 * (0.125 + diagonal_variance))
    assert float(variance_loss(x, y, 2.0, "rows")) == pytest.approx(-2.0 * diagonal_variance)
    assert float(variance_loss(x, y, -1.0, "pooled")) == pytest.approx(0.125 + diagonal_variance)  # β < 0 minimises


def test_the_terms_normalise_their_inputs():
    torch.manual_seed(0)
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    for term, parameters in TERM_PARAMETERS:
        torch.testing.assert_close(term(3 * x, 0.5 * y, *parameters), term(x, y, *parameters))


# Each term function with the parameters of its printed form (the functions take no defaults: the Term modules hold them).
TERM_PARAMETERS = [(ortho_intra_loss, (1.0, "sum")), (ortho_inter_loss, (1.0, "sum")), (antipodal_loss, (1.0, "sum")),
                   (cyclip_loss, (1.0, 1.0, "sum")), (variance_loss, (1.0, "pooled"))]


@pytest.mark.parametrize("term, parameters", TERM_PARAMETERS)
def test_gradients_match_finite_differences(term, parameters):
    torch.manual_seed(1)
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: term(a, b, *parameters), (x, y))


def test_the_module_sums_the_weighted_terms_and_returns_each():
    torch.manual_seed(2)
    x, y, scale = torch.randn(8, 5), torch.randn(8, 5), torch.tensor(math.log(20.0))
    loss = ContrastiveLoss({"ce": CrossEntropy(), "cyclip": CyCLIP(0.5), "variance": Variance(2.0, beta=0.3), "antipodal": Antipodal(0.0)})
    out = loss(x, y, scale)
    assert set(out) == {"loss", "ce", "cyclip", "variance"}  # a zero weight is not computed
    torch.testing.assert_close(out["ce"], clip_loss(x, y, scale))
    torch.testing.assert_close(out["cyclip"], cyclip_loss(x, y, 0.25, 0.25, "mean"))
    torch.testing.assert_close(out["variance"], variance_loss(x, y, 0.3, "pooled"))
    torch.testing.assert_close(out["loss"], out["ce"] + 0.5 * out["cyclip"] + 2.0 * out["variance"])


def test_each_term_has_its_own_settings():
    """Two orthogonal terms with two α (one shared α was all the old module allowed)."""
    torch.manual_seed(3)
    x, y, scale = torch.randn(6, 4), torch.randn(6, 4), torch.tensor(0.0)
    out = ContrastiveLoss({"ortho_intra": OrthoIntra(alpha=0.5, reduction="sum"), "antipodal": Antipodal(alpha=2.0)})(x, y, scale)
    torch.testing.assert_close(out["ortho_intra"], ortho_intra_loss(x, y, 0.5, "sum"))
    torch.testing.assert_close(out["antipodal"], antipodal_loss(x, y, 2.0, "mean"))


def test_bad_term_settings_are_named():
    with pytest.raises(UserError, match="no term has a non-zero weight"):
        ContrastiveLoss({"ce": CrossEntropy(0.0)})
    with pytest.raises(UserError, match="reduction"):
        OrthoIntra(reduction="average")
    with pytest.raises(UserError, match="off_diagonal"):
        Variance(off_diagonal="columns")


def test_a_run_logs_each_term_and_warns_about_gradient_accumulation(compose_train):
    cfg = compose_train("model/loss=ce_antipodal_variance", "+trainer.fast_dev_run=true", "logger=none", "test_before_fit=false",
                        "+trainer.accumulate_grad_batches=2")
    with pytest.warns(UserWarning, match="accumulate_grad_batches=2 does not give a bigger contrastive batch"):
        metrics = train(cfg)
    for term in ("ce", "antipodal", "variance"):
        assert f"test/loss/{term}" in metrics["test"]
    test = metrics["test"]
    assert test["test/loss"] == pytest.approx(test["test/loss/ce"] + test["test/loss/antipodal"] + test["test/loss/variance"], rel=1e-5)


def test_siglip_on_a_3x3_case_by_hand():
    """x = y = e1, e2, e3: cosines are the identity. With t = 10, b = −10 the paired logits are 0 and the
    others −10: L = −(1/3)(3 log σ(0) + 6 log σ(10)) = log 2 + 2 log(1 + e^−10)."""
    from memegap.losses.contrastive import Sigmoid

    x = torch.eye(3)
    expected = math.log(2) + 2 * math.log1p(math.exp(-10))
    assert float(Sigmoid()(x, x, torch.tensor(0.0))) == pytest.approx(expected, rel=1e-6)
    skewed = Sigmoid(init_log_temperature=0.0, init_bias=1.0)  # t = 1, b = 1: paired logits 2, the others 1
    by_hand = -(3 * math.log(1 / (1 + math.exp(-2))) + 6 * math.log(1 / (1 + math.exp(1)))) / 3
    assert float(skewed(x, 2 * x, torch.tensor(0.0))) == pytest.approx(by_hand, rel=1e-6)  # inputs are normalised inside
    assert {name for name, _ in Sigmoid().named_parameters()} == {"log_temperature", "bias"}  # both learnable


@pytest.mark.slow  # a training run: make test stays under 5 minutes (tests/README.md)
def test_a_twemoji_run_with_siglip_lowers_its_loss(compose_train):
    metrics = train(compose_train("model/loss=siglip", "trainer.max_epochs=3", "test_before_fit=true", "model.optimizer.lr=0.003"))
    assert metrics["test"]["test/loss/siglip"] < metrics["before_fit"]["test/loss/siglip"]
