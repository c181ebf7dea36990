"""The contrastive loss family of the modality-gap thesis: one pure function per term (as open_clip's
loss.py), one `Term` module per function with its own weight and settings, and `ContrastiveLoss`,
which sums the terms (gathering the pairs of every DDP rank first).

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
reading reproduces the tables. The loss settings the thesis trained are in conf/model/loss/, each a
list of the term files of conf/model/loss/term/.
"""

from __future__ import annotations

import math

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


def ortho_intra_loss(x: Tensor, y: Tensor, alpha: float, reduction: str) -> Tensor:
    """Thesis eq. 5.1 for the image and the text modality, summed: for m in (x, y),
    −α·Σᵢ|⟨mᵢ,mᵢ⟩| + Σᵢ Σ_{j≠i}|⟨mᵢ,mⱼ⟩|. Minimal when each modality's vectors are orthogonal.
    reduction="mean" divides by N² (so 2(N−1)/N·E|cos| − 2α/N; about 2 for a collapsed cloud)."""
    x, y = _unit(x), _unit(y)
    total = _ortho(x @ x.T, alpha, absolute=True) + _ortho(y @ y.T, alpha, absolute=True)
    return _reduce(total, x.shape[0], reduction)


def ortho_inter_loss(x: Tensor, y: Tensor, alpha: float, reduction: str) -> Tensor:
    """Thesis eq. 5.2: −α·Σᵢ|⟨xᵢ,yᵢ⟩| + Σᵢ Σ_{j≠i}|⟨xᵢ,yⱼ⟩|, over the image–text cosine matrix: pairs
    pulled to |cos| = 1, non-pairs pushed to orthogonal. reduction="mean" divides by N². (At θ = 0 the
    thesis's Table 5.3 gives o_inter = o_intra, i.e. twice this mean: its reading counts both directions.)"""
    total = _ortho(_unit(x) @ _unit(y).T, alpha, absolute=True)
    return _reduce(total, x.shape[0], reduction)


def antipodal_loss(x: Tensor, y: Tensor, alpha: float, reduction: str) -> Tensor:
    """Thesis eq. 5.8: eq. 5.1 without absolute values, for x and for y, summed:
    −α·Σᵢ⟨mᵢ,mᵢ⟩ + Σᵢ Σ_{j≠i}⟨mᵢ,mⱼ⟩, minimal when the vectors of a modality cancel out (antipodal).
    reduction="mean" divides by N²."""
    x, y = _unit(x), _unit(y)
    total = _ortho(x @ x.T, alpha, absolute=False) + _ortho(y @ y.T, alpha, absolute=False)
    return _reduce(total, x.shape[0], reduction)


def variance_loss(x: Tensor, y: Tensor, beta: float, off_diagonal: str) -> Tensor:
    """Thesis eqs. 5.3–5.4: −β·(S²_off + S²_diag) of the N×N image–text cosine matrix C (Cᵢⱼ = ⟨xᵢ,yⱼ⟩),
    with biased variances (divided by the count): S²_diag of the N paired cosines Cᵢᵢ; S²_off of the
    N(N−1) off-diagonal cosines, pooled into one variance ("pooled", the Variance term's default: what the thesis's
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


def cyclip_loss(x: Tensor, y: Tensor, lambda_inter: float, lambda_intra: float, reduction: str) -> Tensor:
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


class Term(nn.Module):
    """One weighted term of the loss: forward(x, y, logit_scale) -> its unweighted value (a scalar).
    `uses_logit_scale`: whether the value depends on the model's temperature (only CE's does)."""

    uses_logit_scale = False

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = float(weight)


class CrossEntropy(Term):
    """CLIP's symmetric InfoNCE (`clip_loss`), the thesis's L_CE."""

    uses_logit_scale = True

    def forward(self, x: Tensor, y: Tensor, logit_scale: Tensor) -> Tensor:
        return clip_loss(x, y, logit_scale)

    def local(self, x: Tensor, y: Tensor, x_all: Tensor, y_all: Tensor, logit_scale: Tensor, offset: int) -> Tensor:
        """open_clip's local_loss: this rank's n rows against all N gathered columns (n×N logits, not N×N);
        rows offset..offset+n of the whole batch are this rank's. The mean of it over ranks is `forward`
        on the whole batch when every rank holds as many pairs."""
        targets = torch.arange(offset, offset + x.shape[0], device=x.device)
        scale = logit_scale.exp()
        image_to_text = scale * _unit(x) @ _unit(y_all).T
        text_to_image = scale * _unit(y) @ _unit(x_all).T
        return (nn.functional.cross_entropy(image_to_text, targets) + nn.functional.cross_entropy(text_to_image, targets)) / 2


class _Orthogonal(Term):
    """A term of eq. 5.1 / 5.2 / 5.8's family, with its own α (weight of the paired part) and reduction."""

    function = staticmethod(ortho_intra_loss)

    def __init__(self, weight: float = 1.0, alpha: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(weight)
        _check_reduction(reduction)
        self.alpha, self.reduction = alpha, reduction

    def forward(self, x: Tensor, y: Tensor, logit_scale: Tensor) -> Tensor:
        return self.function(x, y, self.alpha, self.reduction)


class OrthoIntra(_Orthogonal):
    """`ortho_intra_loss` (eq. 5.1): each modality's vectors pushed to orthogonal."""


class OrthoInter(_Orthogonal):
    """`ortho_inter_loss` (eq. 5.2): pairs to |cos| = 1, non-pairs to orthogonal."""

    function = staticmethod(ortho_inter_loss)


class Antipodal(_Orthogonal):
    """`antipodal_loss` (eq. 5.8): each modality's vectors pushed to cancel out."""

    function = staticmethod(antipodal_loss)


class Variance(Term):
    """`variance_loss` (eqs. 5.3–5.4), −β·(S²_off + S²_diag)."""

    def __init__(self, weight: float = 1.0, beta: float = 1.0, off_diagonal: str = "pooled") -> None:
        super().__init__(weight)
        if off_diagonal not in OFF_DIAGONAL_VARIANCES:
            raise UserError(f"variance off_diagonal must be one of {OFF_DIAGONAL_VARIANCES}, got {off_diagonal!r}")
        self.beta, self.off_diagonal = beta, off_diagonal

    def forward(self, x: Tensor, y: Tensor, logit_scale: Tensor) -> Tensor:
        return variance_loss(x, y, self.beta, self.off_diagonal)


class CyCLIP(Term):
    """`cyclip_loss` (eqs. B.1–B.2); λ₁ = λ₂ = 0.25 are the CyCLIP paper's values (the study tables' too)."""

    def __init__(self, weight: float = 1.0, lambda_inter: float = 0.25, lambda_intra: float = 0.25, reduction: str = "mean") -> None:
        super().__init__(weight)
        _check_reduction(reduction)
        self.lambda_inter, self.lambda_intra, self.reduction = lambda_inter, lambda_intra, reduction

    def forward(self, x: Tensor, y: Tensor, logit_scale: Tensor) -> Tensor:
        return cyclip_loss(x, y, self.lambda_inter, self.lambda_intra, self.reduction)


class Sigmoid(Term):
    """SigLIP's pairwise sigmoid loss (Zhai et al., 2023, Algorithm 1): each (image i, text j) is its own
    binary problem, positive when i = j, so no softmax over the batch is needed:
        L = −(1/N) Σ_i Σ_j log σ(z_ij · (t·⟨x̂_i, ŷ_j⟩ + b)),   z_ij = 1 if i = j else −1.
    Its own learnable temperature t = exp(t′) and bias b, initialised as the paper (t′ = log 10, b = −10:
    the many negatives start near zero loss); the model's logit_scale is not used. Under DDP it sees every
    rank's pairs (ContrastiveLoss gathers them), as the paper's all-gather variant."""

    def __init__(self, weight: float = 1.0, init_log_temperature: float = math.log(10.0), init_bias: float = -10.0) -> None:
        super().__init__(weight)
        self.log_temperature = nn.Parameter(torch.tensor(float(init_log_temperature)))
        self.bias = nn.Parameter(torch.tensor(float(init_bias)))

    def forward(self, x: Tensor, y: Tensor, logit_scale: Tensor) -> Tensor:
        logits = self.log_temperature.exp() * _unit(x) @ _unit(y).T + self.bias
        signs = 2 * torch.eye(len(x), dtype=logits.dtype, device=logits.device) - 1
        return -nn.functional.logsigmoid(signs * logits).sum() / len(x)


def gather_with_grad(x: Tensor) -> tuple[Tensor, int]:
    """The rows of x from every DDP rank, in rank order (ΣN×d), with gradient back to each rank's own
    rows, and where this rank's rows start. Ranks may hold different numbers of rows (a last batch)."""
    import torch.distributed as dist
    import torch.distributed.nn.functional as dist_nn

    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    sizes = [int(size) for size in sizes]
    padded = torch.cat([x, x.new_zeros(max(sizes) - x.shape[0], *x.shape[1:])]) if x.shape[0] < max(sizes) else x
    parts = dist_nn.all_gather(padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)]), sum(sizes[: dist.get_rank()])


def world_size() -> int:
    """The number of DDP processes (1 outside torch.distributed)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class ContrastiveLoss(nn.Module):
    """Σ term.weight · term over the terms with a non-zero weight (conf/model/loss/<setting>.yaml), as
    pytorch-metric-learning's MultipleLosses: a new term is one Term class and one YAML.

    forward(image, text, logit_scale) -> {"loss": the weighted sum, <term>: its unweighted value, ...},
    scalars, so a model can log each term on its own (`train/loss/<term>`). Default: CLIP's CE alone.

    Under DDP (world size > 1) with gather=True (the default), every term sees the pairs of every rank:
    the image and text rows are gathered with gradient (as open_clip's gather_with_grad), so a pair of
    a 4-rank run with batch 90 meets 359 negatives, not 89; loss and gradients equal one process with
    the whole batch. local_loss=True (open_clip's) computes the CE term on this rank's rows only
    (n×N logits); the other terms still use the whole gathered batch, because the variance and CyCLIP
    terms are not sums of per-row parts and the rest cost one N×N Gram matrix of d-vectors.
    gather=False keeps each rank's own batch (the model warns).
    """

    def __init__(self, terms: dict[str, Term] | None = None, gather: bool = True, local_loss: bool = False) -> None:
        super().__init__()
        terms = {"ce": CrossEntropy()} if terms is None else terms
        self.terms = nn.ModuleDict({name: term for name, term in terms.items() if term.weight})
        if not self.terms:
            raise UserError(f"model.loss.terms: no term has a non-zero weight (given: {sorted(terms)})")
        self.gather, self.local_loss = gather, local_loss

    @property
    def uses_logit_scale(self) -> bool:
        """Whether any term reads the model's logit scale (a model freezes it otherwise: under DDP an
        unused trainable parameter stops the gradient reduction)."""
        return any(term.uses_logit_scale for term in self.terms.values())

    def forward(self, image: Tensor, text: Tensor, logit_scale: Tensor) -> dict[str, Tensor]:
        if not (self.gather and world_size() > 1):
            values = {name: term(image, text, logit_scale) for name, term in self.terms.items()}
        else:
            (image_all, offset), (text_all, _) = gather_with_grad(image), gather_with_grad(text)
            values = {}
            for name, term in self.terms.items():
                if self.local_loss and isinstance(term, CrossEntropy):
                    values[name] = term.local(image, text, image_all, text_all, logit_scale, offset)
                else:
                    values[name] = term(image_all, text_all, logit_scale)
        return {"loss": sum(self.terms[name].weight * value for name, value in values.items()), **values}
