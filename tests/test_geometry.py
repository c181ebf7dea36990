"""Geometry metrics against closed forms.

Notation: x̂ = x/‖x‖. For two point masses a, b at angle θ: ‖a − b‖ = 2 sin(θ/2), so
gap = 2 sin(θ/2) and alignment = ‖a − b‖² = 4 sin²(θ/2).

Uniformity, points uniform on S^{d−1}: with u = x·y, ‖x − y‖² = 2 − 2u and u has density
∝ (1 − u²)^{(d−3)/2} on [−1, 1]. So E[exp(−t‖x−y‖²)] = e^{−2t} E[e^{2tu}]:
  - d = 3 (S²): u is uniform on [−1, 1], E[e^{2tu}] = sinh(2t)/(2t) -> uniformity = log(sinh(2t)/(2t)) − 2t
    (t = 2: −2.0798).
  - any d: the same one-dimensional integral, evaluated by quadrature.
Tolerance: the estimate is a U-statistic of the kernel k = exp(−t‖x−y‖²). On the sphere E[k | x] is the
same for every x (rotation invariance), so the U-statistic is degenerate and
Var(Û) = 2 Var(k) / (N(N−1)) with Var(k) = E_{2t}[k] − E_t[k]² (E_{2t} is the same integral at 2t).
By the delta method std(log Û) ≈ std(Û)/E[k]; we allow 6 standard deviations.
"""

from __future__ import annotations

import math

import pytest
import torch

from memegap.metrics.geometry import (COSINE_HISTOGRAMS, alignment, cosine_histograms, effective_rank, gap_concentration, geometry_summary,
                                      instance_gap, joint_clustering, modality_gap, relative_modality_gap, uniformity)


def sphere_kernel_mean(d: int, t: float) -> float:
    """E[exp(−t‖x−y‖²)] for x, y independent and uniform on S^{d−1} (quadrature over u = x·y)."""
    u = torch.linspace(-1.0, 1.0, 400_001, dtype=torch.float64)
    log_density = 0.5 * (d - 3) * torch.log1p(-u * u) if d > 3 else torch.zeros_like(u)
    log_weight = log_density + 2 * t * u
    shift_weight, shift_density = log_weight.max(), log_density.max()
    ratio = torch.trapezoid(torch.exp(log_weight - shift_weight), u) / torch.trapezoid(torch.exp(log_density - shift_density), u)
    return float(ratio * torch.exp(shift_weight - shift_density - 2 * t))


def uniform_sphere(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def point_masses(theta: float, n: int = 7, d: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """n copies of a and of b (unit vectors at angle θ), each row scaled by a different positive factor."""
    a = torch.zeros(d, dtype=torch.float64)
    a[0] = 1.0
    b = torch.zeros(d, dtype=torch.float64)
    b[0], b[1] = math.cos(theta), math.sin(theta)
    scales = torch.arange(1, n + 1, dtype=torch.float64).unsqueeze(1)
    return a * scales, b * scales * 3.0


@pytest.mark.parametrize("theta", [0.0, 0.3, math.pi / 2, 2.0, math.pi])
def test_point_masses_gap_and_alignment(theta):
    x, y = point_masses(theta)
    gap, vector = modality_gap(x, y)
    assert gap == pytest.approx(2 * math.sin(theta / 2), abs=1e-12)
    assert vector.shape == (5,) and float(vector.norm()) == pytest.approx(gap, abs=1e-12)
    assert alignment(x, y) == pytest.approx(4 * math.sin(theta / 2) ** 2, abs=1e-12)


def test_identical_pairs_have_no_gap_and_perfect_alignment():
    x = uniform_sphere(50, 16, seed=1)
    gap, _ = modality_gap(x, 2.5 * x)
    assert gap == pytest.approx(0.0, abs=1e-12)
    assert alignment(x, 2.5 * x) == pytest.approx(0.0, abs=1e-12)


def test_antipodal_pairs():
    # y = −x: every pair is at distance 2 (alignment 4) and the gap is twice the norm of mean(x̂).
    x = uniform_sphere(40, 8, seed=2)
    mean_norm = float(torch.nn.functional.normalize(x, dim=1).mean(0).norm())
    assert alignment(x, -x) == pytest.approx(4.0, abs=1e-12)
    assert modality_gap(x, -x)[0] == pytest.approx(2 * mean_norm, abs=1e-12)


def test_uniformity_of_a_point_mass_is_zero():
    # every pair at distance 0: exp(0) = 1, log 1 = 0.
    x, _ = point_masses(0.0, n=6)
    assert uniformity(x) == pytest.approx(0.0, abs=1e-12)


def test_uniformity_of_two_antipodal_points():
    # two points at distance 2: log exp(−t·4) = −4t.
    x = torch.tensor([[1.0, 0.0], [-3.0, 0.0]])
    assert uniformity(x, t=2.0) == pytest.approx(-8.0, abs=1e-6)


@pytest.mark.parametrize("block_size", [7, 64, 2048])
def test_uniformity_blocks_match_the_dense_formula(block_size):
    x = torch.randn(50, 12, generator=torch.Generator().manual_seed(3))
    x_hat = torch.nn.functional.normalize(x.double(), dim=1)
    dense = torch.pdist(x_hat).pow(2).mul(-2.0).exp().mean().log()
    # the blocks' dot products are float32 (sums float64): agreement to float32 rounding, ~1e-7.
    assert uniformity(x, t=2.0, block_size=block_size) == pytest.approx(float(dense), abs=1e-6)


@pytest.mark.parametrize("d, n", [(3, 3000), (512, 3000)])
def test_uniformity_large_n_limit_on_the_sphere(d, n):
    t = 2.0
    expected_mean = sphere_kernel_mean(d, t)
    if d == 3:  # the quadrature agrees with the closed form on S²
        assert expected_mean == pytest.approx(math.sinh(2 * t) / (2 * t) * math.exp(-2 * t), rel=1e-6)
    kernel_variance = sphere_kernel_mean(d, 2 * t) - expected_mean**2
    std_of_log = math.sqrt(2 * kernel_variance / (n * (n - 1))) / expected_mean
    measured = uniformity(uniform_sphere(n, d, seed=d), t=t, block_size=1000)
    assert measured == pytest.approx(math.log(expected_mean), abs=6 * std_of_log)


def test_cosine_histograms_counts_and_values():
    n, bins = 30, 20
    x = torch.randn(n, 6, generator=torch.Generator().manual_seed(4))
    y = torch.randn(n, 6, generator=torch.Generator().manual_seed(5))
    counts, edges = cosine_histograms(x, y, bins=bins, block_size=7)
    assert set(counts) == set(COSINE_HISTOGRAMS)
    assert edges[0] == -1.0 and edges[-1] == 1.0 and len(edges) == bins + 1
    assert [int(counts[k].sum()) for k in COSINE_HISTOGRAMS] == [n * (n - 1) // 2, n * (n - 1) // 2, n, n * (n - 1)]
    x_hat, y_hat = (torch.nn.functional.normalize(z, dim=1) for z in (x, y))
    i, j = torch.triu_indices(n, n, offset=1)
    off_diagonal = ~torch.eye(n, dtype=torch.bool)
    reference = {
        "intra_x": (x_hat @ x_hat.T)[i, j],
        "intra_y": (y_hat @ y_hat.T)[i, j],
        "inter_paired": (x_hat * y_hat).sum(1),
        "inter_cross": (x_hat @ y_hat.T)[off_diagonal],
    }
    for name, cosines in reference.items():
        expected = torch.histc(cosines.double(), bins=bins, min=-1.0, max=1.0).long()
        assert torch.equal(counts[name], expected), name


def test_cosine_histograms_of_orthogonal_point_masses():
    # x all along a, y all along b ⊥ a: intra cosines 1 (last bin), inter cosines 0 (bin [0, 0.1) = bins/2).
    x, y = point_masses(math.pi / 2, n=5)
    counts, _ = cosine_histograms(x, y, bins=20)
    assert counts["intra_x"][-1] == 10 and counts["intra_y"][-1] == 10
    assert counts["inter_paired"][10] == 5 and counts["inter_cross"][10] == 20


def test_geometry_summary_names_the_modalities():
    x, y = point_masses(1.0)
    summary = geometry_summary(x, y, names=("image", "text"))
    assert set(summary) == {"gap", "alignment", "rmg", "l2i", "gap_top1_share", "gap_top5_share", "gap_top10_share", "effective_rank_image",
                            "effective_rank_text", "effective_rank_joint", "uniformity_image", "uniformity_text", "uniformity"}
    assert summary["gap"] == pytest.approx(2 * math.sin(0.5))


def test_geometry_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        alignment(torch.ones(3, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="N×d"):
        uniformity(torch.ones(3))


def basis(*indices: int, d: int = 8) -> torch.Tensor:
    """Rows e_i of the d-dimensional standard basis."""
    return torch.eye(d)[list(indices)]


def test_rmg_and_l2i_on_constructed_clouds():
    """d(u, v) = 1 − cos. (a) each modality one point, x̂ = e0, ŷ = e1: m_x = m_y = 0, m_paired = 1 -> RMG = 1;
    L2I = ‖e0 − e1‖ = √2. (b) x̂ = (e0, e1), ŷ = (e2, e3): every cosine 0, so m_x = m_y = m_paired = 1 ->
    RMG = 1 / (1 + 1) = 1/2; L2I = √2. (c) ŷ = x̂: m_paired = 0 -> RMG = 0, L2I = 0. (d) x̂ = (e0, e1),
    ŷ = (e0, −e1): m_x = m_y = 1; m_paired = (0 + 2)/2 = 1 -> RMG = 1/2; L2I = (0 + 2)/2 = 1."""
    cases = [
        (basis(0, 0, 0), basis(1, 1, 1), 1.0, math.sqrt(2)),
        (basis(0, 1), basis(2, 3), 0.5, math.sqrt(2)),
        (basis(0, 1, 2), basis(0, 1, 2), 0.0, 0.0),
        (basis(0, 1), torch.stack([torch.eye(8)[0], -torch.eye(8)[1]]), 0.5, 1.0),
    ]
    for x, y, rmg, l2i in cases:
        assert relative_modality_gap(x, y, block_size=2) == pytest.approx(rmg, abs=1e-6)
        assert instance_gap(x, 3 * y, block_size=2) == pytest.approx(l2i, abs=1e-6)  # scale-free: unit-normalised inside


def test_the_gap_concentration_finds_the_coordinates_that_carry_the_gap():
    """x̂ = e0 and ŷ = e1 for every pair: g = e0 − e1, so ‖g‖² = 2 splits 1 + 1 over coordinates 0 and 1:
    top-1 share 1/2, top-5 share 1. A gap spread evenly: x̂ = (1, …, 1)/√8, ŷ = −x̂: g = 2x̂, every g_j² equal,
    top-k share k/8."""
    concentrated = gap_concentration(modality_gap(basis(0, 0), basis(1, 1))[1])
    assert concentrated["top1_share"] == pytest.approx(0.5) and concentrated["top5_share"] == pytest.approx(1.0)
    assert sorted(concentrated["top_coordinates"][:2]) == [0, 1]
    even = torch.ones(3, 8)
    spread = gap_concentration(modality_gap(even, -even)[1], ks=(1, 5))
    assert spread["top1_share"] == pytest.approx(1 / 8) and spread["top5_share"] == pytest.approx(5 / 8)


def test_effective_rank_counts_equal_directions():
    """r orthonormal rows have r singular values of 1: p = 1/r each, entropy log r, RankMe r. Repeating a row
    k times scales its σ by √k: rows (e0, e0, e0, e0, e1) give σ = (2, 1), p = (2/3, 1/3),
    RankMe = exp(−(2/3 log 2/3 + 1/3 log 1/3)) = 3 / 2^(2/3) ≈ 1.8899."""
    assert effective_rank(basis(0, 1, 2, 3), block_size=3) == pytest.approx(4.0, rel=1e-4)
    assert effective_rank(torch.cat([basis(0, 1, 2, 3), basis(4, 5, 6, 7)])) == pytest.approx(8.0, rel=1e-4)
    assert effective_rank(basis(0, 0, 0, 0, 1)) == pytest.approx(3 / 2 ** (2 / 3), rel=1e-4)


def test_joint_clustering_scores_classes_not_modalities():
    """Two classes. Aligned: both modalities of class c sit near e_c -> k-means finds the classes, NMI = ARI = 1.
    A gap: every image near e0, every text near e1, whatever its class -> the two clusters are the modalities,
    each holding both classes equally: NMI = 0, ARI ≤ 0."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1] * 6)
    near = basis(*labels.tolist()) + 0.01 * torch.randn(12, 8, generator=generator)
    aligned = joint_clustering(near, near + 0.01 * torch.randn(12, 8, generator=generator), labels)
    assert aligned == {"kmeans_nmi": pytest.approx(1.0), "kmeans_ari": pytest.approx(1.0)}
    images, texts = basis(*[0] * 12) + 0.01 * torch.randn(12, 8, generator=generator), basis(*[1] * 12) + 0.01 * torch.randn(12, 8, generator=generator)
    split = joint_clustering(images, texts, labels)
    assert split["kmeans_nmi"] == pytest.approx(0.0, abs=1e-9) and split["kmeans_ari"] <= 0.0
