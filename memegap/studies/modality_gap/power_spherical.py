"""Two modalities of unit vectors drawn from Power Spherical distributions (De Cao & Aziz, 2020; the
`power-spherical` package), and what the modality-gap thesis measured on them: gap, clustering
(uniformity) and every term of the contrastive loss family.

The mean direction of a modality is set by an angle (degrees) on the great circle through e₁ and e₂,
so two modalities at angles 0 and θ have mean directions θ apart. Concentration κ ≥ 0: κ = 0 is
uniform on the sphere, large κ a tight cloud; the mean cosine to the mean direction is κ / (κ + d − 1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from memegap.losses.contrastive import antipodal_loss, clip_loss, cyclip_loss, ortho_inter_loss, ortho_intra_loss, variance_loss
from memegap.metrics.geometry import modality_gap, uniformity


def mean_direction(angle_degrees: float, d: int) -> Tensor:
    """Unit vector cos(a)·e₁ + sin(a)·e₂ in d ≥ 2 dimensions (float64)."""
    direction = torch.zeros(d, dtype=torch.float64)
    direction[0], direction[1] = math.cos(math.radians(angle_degrees)), math.sin(math.radians(angle_degrees))
    return direction


def sample_modality(n: int, d: int, kappa: float, angle_degrees: float, seed: int) -> Tensor:
    """n unit vectors (n×d, float64) from PowerSpherical(mean_direction(angle), κ), from `seed` alone
    (the global random state is left as it was)."""
    from power_spherical import PowerSpherical

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        distribution = PowerSpherical(mean_direction(angle_degrees, d), torch.tensor(float(kappa), dtype=torch.float64))
        return distribution.rsample((n,))


def sample_pair(n: int, d: int, kappa_x: float, kappa_y: float, angle_x: float, angle_y: float, seed: int) -> tuple[Tensor, Tensor]:
    """Image-like x and text-like y clouds (n×d each), pair i = row i of each; seeds seed and seed + 1."""
    return sample_modality(n, d, kappa_x, angle_x, seed), sample_modality(n, d, kappa_y, angle_y, seed + 1)


def measure(x: Tensor, y: Tensor, alpha: float = 1.0, beta: float = 1.0, logit_scale: float = 0.0) -> dict[str, float]:
    """Gap, clustering (mean of both modalities' uniformity, t = 2) and each loss term, with
    reduction="mean" (the printed sums / N²) and CyCLIP's λ₁ = λ₂ = 1. `ce` uses exp(logit_scale) as the
    inverse temperature (0: plain cosines). `thesis_*` are the readings that reproduce the thesis's
    Tables 5.3–5.4 (see experiments/modality_gap/README.md): o_intra and o_inter with α = 0 (the
    diagonal left in) and o_inter over both directions; CyCLIP = CE + the consistency terms."""
    scale = torch.tensor(logit_scale, dtype=x.dtype)
    ce = float(clip_loss(x, y, scale))
    cyclip = float(cyclip_loss(x, y, 1.0, 1.0, "mean"))
    return {
        "gap": modality_gap(x, y)[0],
        "clustering": (uniformity(x) + uniformity(y)) / 2,
        "ce": ce,
        "ortho_intra": float(ortho_intra_loss(x, y, alpha, "mean")),
        "ortho_inter": float(ortho_inter_loss(x, y, alpha, "mean")),
        "antipodal": float(antipodal_loss(x, y, alpha, "mean")),
        "variance": float(variance_loss(x, y, beta, "pooled")),
        "cyclip": cyclip,
        "thesis_ortho_intra": float(ortho_intra_loss(x, y, 0.0, "mean")),
        "thesis_ortho_inter": 2 * float(ortho_inter_loss(x, y, 0.0, "mean")),
        "thesis_cyclip": ce + cyclip,
    }
