"""The contrastive loss family of the modality-gap thesis, one pure function per term (as open_clip's
loss.py), and a module that sums the terms by weights.

Every term takes N×d image embeddings x and text embeddings y, row i of x paired with row i of y,
and L2-normalises them inside, so ⟨·,·⟩ below is a cosine. Terms and the thesis's equations:

- `clip_loss`: symmetric InfoNCE (CLIP's cross-entropy, the thesis's L_CE), nats.
- `ortho_intra_loss`: −α·Σᵢ|⟨xᵢ,xᵢ⟩| + Σᵢ Σ_{j≠i} |⟨xᵢ,xⱼ⟩|, for x and for y, summed (eq. 5.1).
- `ortho_inter_loss`: −α·Σᵢ|⟨xᵢ,yᵢ⟩| + Σᵢ Σ_{j≠i} |⟨xᵢ,yⱼ⟩| (eq. 5.2).
- `antipodal_loss`: `ortho_intra_loss` without the absolute values (eq. 5.8).
- `variance_loss`: −β·(S²_off + S²_diag) of the image–text cosine matrix (eqs. 5.3–5.4).
- `cyclip_loss`: CyCLIP's two consistency terms (eqs. B.1–B.2); CyCLIP's full loss (B.3) adds them to
  the CE, i.e. weights {ce: 1, cyclip: 1}.

For unit vectors the α part of eq. 5.1 is the constant −α·N per modality: it has no gradient.

`reduction` ("sum" as printed, or "mean": the printed sum divided by N²) exists because the printed
sums and the thesis's Tables 5.3–5.4 disagree on scale; the simulation of the study shows which
reading reproduces the tables. The loss settings the thesis trained are in conf/model/loss/.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from memegap.errors import UserError

REDUCTIONS = ("sum", "mean")
OFF_DIAGONAL_VARIANCES = ("pooled", "rows")


def _unit(x: Tensor) -> Tensor:
    return nn.functional.normalize(x, dim=1)


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise UserError(f"loss reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _reduce(total: Tensor, n: int, reduction: str) -> Tensor:
    _check_reduction(reduction)
    return total if reduction == "sum" else total / n**2


def _off_diagonal(matrix: Tensor) -> Tensor:
    """The N·(N−1) entries of an N×N matrix off its diagonal, row by row: N×(N−1)."""
    n = matrix.shape[0]
    return matrix.flatten()[1:].view(n - 1, n + 1)[:, :-1].reshape(n, n - 1)


def clip_loss(x: Tensor, y: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE: the mean of the image→text and text→image cross-entropies over the N×N
    cosine matrix scaled by exp(logit_scale) (logit_scale = log(1/temperature)). A scalar, nats."""
    logits = logit_scale.exp() * _unit(x) @ _unit(y).T
    targets = torch.arange(x.shape[0], device=x.device)
    return (nn.functional.cross_entropy(logits, targets) + nn.functional.cross_entropy(logits.T, targets)) / 2


def _ortho(gram: Tensor, alpha: float, absolute: bool) -> Tensor:
    """−α·Σᵢ f(Gᵢᵢ) + Σ_{i≠j} f(Gᵢⱼ) with f = |·| or the identity."""
    values = gram.abs() if absolute else gram
    diagonal = values.diagonal().sum()
    return -alpha * diagonal + (values.sum() - diagonal)


def ortho_intra_loss(x: Tensor, y: Tensor, alpha: float = 1.0, reduction: str = "sum") -> Tensor:
    """Thesis eq. 5.1 for the image and the text modality, summed: for m in (x, y),
    −α·Σᵢ|⟨mᵢ,mᵢ⟩| + Σᵢ Σ_{j≠i}|⟨mᵢ,mⱼ⟩|. Minimal when each modality's vectors are orthogonal.
    reduction="mean" divides by N² (so 2(N−1)/N·E|cos| − 2α/N; about 2 for a collapsed cloud)."""
    x, y = _unit(x), _unit(y)
    total = _ortho(x @ x.T, alpha, absolute=True) + _ortho(y @ y.T, alpha, absolute=True)
    return _reduce(total, x.shape[0], reduction)


def ortho_inter_loss(x: Tensor, y: Tensor, alpha: float = 1.0, reduction: str = "sum") -> Tensor:
    """Thesis eq. 5.2: −α·Σᵢ|⟨xᵢ,yᵢ⟩| + Σᵢ Σ_{j≠i}|⟨xᵢ,yⱼ⟩|, over the image–text cosine matrix: pairs
    pulled to |cos| = 1, non-pairs pushed to orthogonal. reduction="mean" divides by N². (At θ = 0 the
    thesis's Table 5.3 gives o_inter = o_intra, i.e. twice this mean: its reading counts both directions.)"""
    total = _ortho(_unit(x) @ _unit(y).T, alpha, absolute=True)
    return _reduce(total, x.shape[0], reduction)


def antipodal_loss(x: Tensor, y: Tensor, alpha: float = 1.0, reduction: str = "sum") -> Tensor:
    """Thesis eq. 5.8: eq. 5.1 without absolute values, for x and for y, summed:
    −α·Σᵢ⟨mᵢ,mᵢ⟩ + Σᵢ Σ_{j≠i}⟨mᵢ,mⱼ⟩, minimal when the vectors of a modality cancel out (antipodal).
    reduction="mean" divides by N²."""
    x, y = _unit(x), _unit(y)
    total = _ortho(x @ x.T, alpha, absolute=False) + _ortho(y @ y.T, alpha, absolute=False)
    return _reduce(total, x.shape[0], reduction)


def variance_loss(x: Tensor, y: Tensor, beta: float = 1.0, off_diagonal: str = "pooled") -> Tensor:
    """Thesis eqs. 5.3–5.4: −β·(S²_off + S²_diag) of the N×N image–text cosine matrix C (Cᵢⱼ = ⟨xᵢ,yⱼ⟩),
    with biased variances (divided by the count): S²_diag of the N paired cosines Cᵢᵢ; S²_off of the
    N(N−1) off-diagonal cosines, pooled into one variance ("pooled", the default: what the thesis's
    Tables 5.3–5.4 come out with) or the mean of the N per-row variances ("rows": eq. 5.4 as printed).

    Sign: the prose says the variance is minimised, the formula's −β maximises it for β > 0. We keep
    the formula; β may take either sign (β < 0 minimises the variances).
    """
    if off_diagonal not in OFF_DIAGONAL_VARIANCES:
        raise UserError(f"variance off_diagonal must be one of {OFF_DIAGONAL_VARIANCES}, got {off_diagonal!r}")
    cosines = _unit(x) @ _unit(y).T
    off = _off_diagonal(cosines)
    off_variance = off.var(unbiased=False) if off_diagonal == "pooled" else off.var(dim=1, unbiased=False).mean()
    return -beta * (off_variance + cosines.diagonal().var(unbiased=False))


def cyclip_loss(x: Tensor, y: Tensor, lambda_inter: float = 1.0, lambda_intra: float = 1.0, reduction: str = "sum") -> Tensor:
    """CyCLIP's consistency terms (thesis eqs. B.1–B.2):
    λ_inter·(1/N)·Σⱼ Σₖ (⟨xⱼ,yₖ⟩ − ⟨xₖ,yⱼ⟩)² + λ_intra·(1/N)·Σⱼ Σₖ (⟨xⱼ,xₖ⟩ − ⟨yⱼ,yₖ⟩)².
    reduction="sum" is the printed 1/N; "mean" divides the double sums by N² instead."""
    _check_reduction(reduction)
    x, y = _unit(x), _unit(y)
    inter = x @ y.T
    inter_term = (inter - inter.T).pow(2).sum()
    intra_term = (x @ x.T - y @ y.T).pow(2).sum()
    n = x.shape[0]
    return (lambda_inter * inter_term + lambda_intra * intra_term) / (n if reduction == "sum" else n**2)


class ContrastiveLoss(nn.Module):
    """Σ weight_t · term_t over the terms with a non-zero weight (names: TERMS).

    forward(image, text, logit_scale) -> {"loss": the weighted sum, <term>: its unweighted value, ...},
    scalars, so a model can log each term on its own (`train/loss/<term>`). Default: CLIP's CE alone.
    """

    TERMS = ("ce", "ortho_intra", "ortho_inter", "antipodal", "variance", "cyclip")

    def __init__(
        self,
        weights: dict[str, float] | None = None,
        alpha: float = 1.0,
        beta: float = 1.0,
        lambda_inter: float = 0.25,  # CyCLIP's λ₁ and λ₂ (the CyCLIP paper's values; the study tables' too)
        lambda_intra: float = 0.25,
        reduction: str = "mean",
        variance_off_diagonal: str = "pooled",
    ) -> None:
        super().__init__()
        self.weights = {name: float(weight) for name, weight in (weights if weights is not None else {"ce": 1.0}).items() if weight}
        unknown = sorted(set(self.weights) - set(self.TERMS))
        if not self.weights:
            raise UserError(f"model.loss.weights: no term has a non-zero weight; the terms are {list(self.TERMS)}")
        if unknown:
            raise UserError(f"model.loss.weights: unknown term(s) {unknown}; the terms are {sorted(self.TERMS)}")
        _check_reduction(reduction)
        if variance_off_diagonal not in OFF_DIAGONAL_VARIANCES:
            raise UserError(f"model.loss.variance_off_diagonal must be one of {OFF_DIAGONAL_VARIANCES}, got {variance_off_diagonal!r}")
        self.alpha, self.beta, self.lambda_inter, self.lambda_intra = alpha, beta, lambda_inter, lambda_intra
        self.reduction, self.variance_off_diagonal = reduction, variance_off_diagonal

    def term(self, name: str, x: Tensor, y: Tensor, logit_scale: Tensor) -> Tensor:
        """The unweighted value of one term, with this module's parameters."""
        if name == "ce":
            return clip_loss(x, y, logit_scale)
        if name == "variance":
            return variance_loss(x, y, self.beta, self.variance_off_diagonal)
        if name == "cyclip":
            return cyclip_loss(x, y, self.lambda_inter, self.lambda_intra, self.reduction)
        orthogonal = {"ortho_intra": ortho_intra_loss, "ortho_inter": ortho_inter_loss, "antipodal": antipodal_loss}
        return orthogonal[name](x, y, self.alpha, self.reduction)

    def forward(self, image: Tensor, text: Tensor, logit_scale: Tensor) -> dict[str, Tensor]:
        terms = {name: self.term(name, image, text, logit_scale) for name in self.weights}
        return {"loss": sum(self.weights[name] * value for name, value in terms.items()), **terms}
