"""The Power Spherical simulation: the sampler against its closed-form mean, the gap against 2·sin(θ/2),
the thesis-reading loss terms against their closed form, and the table script."""

from __future__ import annotations

import math

import pytest
import torch

from memegap.studies.modality_gap import simulate
from memegap.studies.modality_gap.power_spherical import mean_direction, measure, sample_modality, sample_pair


@pytest.mark.parametrize("d, kappa", [(3, 1.0), (3, 10.0), (3, 500.0), (16, 50.0)])
def test_the_mean_cosine_to_the_mean_direction_is_kappa_over_kappa_plus_d_minus_1(d, kappa):
    n = 20000
    samples = sample_modality(n, d, kappa, 30.0, seed=7)
    assert torch.allclose(samples.norm(dim=1), torch.ones(n, dtype=torch.float64))
    cosines = samples @ mean_direction(30.0, d)
    # cos = 2B − 1 with B ~ Beta((d−1)/2 + κ, (d−1)/2): its standard deviation, then 5 standard errors of the mean of n
    a, b = (d - 1) / 2 + kappa, (d - 1) / 2
    spread = math.sqrt(4 * a * b / ((a + b) ** 2 * (a + b + 1)))
    assert float(cosines.mean()) == pytest.approx(kappa / (kappa + d - 1), abs=5 * spread / math.sqrt(n))


@pytest.mark.parametrize("theta", [0.0, 45.0, 90.0, 180.0])
def test_the_gap_of_two_tight_clouds_tends_to_two_sin_half_theta(theta):
    x, y = sample_pair(2000, 3, 1e5, 1e5, 0.0, theta, seed=0)
    assert measure(x, y)["gap"] == pytest.approx(2 * math.sin(math.radians(theta) / 2), abs=0.01)


def test_the_thesis_reading_of_o_intra_is_twice_the_mean_absolute_cosine_off_the_diagonal():
    # independent draws around one direction: E cos(xᵢ, xⱼ) = ‖E x‖² = (κ / (κ + d − 1))², all positive at κ = 500
    n, kappa = 50, 500.0
    x, y = sample_pair(n, 3, kappa, kappa, 0.0, 0.0, seed=3)
    expected = 2 * (n - 1) / n * (kappa / (kappa + 2)) ** 2
    values = measure(x, y)
    assert values["thesis_ortho_intra"] == pytest.approx(expected, abs=0.01)
    assert values["ortho_intra"] == pytest.approx(values["thesis_ortho_intra"] - 2 / n, abs=1e-9)  # α = 1 takes 2αN/N² off
    assert values["thesis_ortho_inter"] == pytest.approx(expected, abs=0.01)  # at θ = 0 the pairs are independent draws too


def printed_half_unit(value: float) -> float:
    """Half a unit of the last digit the thesis printed (0.842 -> 0.0005, 1.4 -> 0.05)."""
    text = repr(value)
    return 0.5 * 10 ** -(len(text.split(".")[1]) if "." in text else 0)


def test_the_simulation_reproduces_the_thesis_within_the_seed_spread():
    """Our clustering (Table 5.1), gap (Table 5.2) and loss terms (Table 5.3) lie within 3 standard deviations
    over 3 seeds, plus the thesis's rounding, of the thesis's printed values. Left out, as differences we
    measure and show on the study page: Table 5.2 at 180° (thesis 1.98; ours 1.992 ± 0.000, near 2·sin 90° = 2),
    Table 5.3's o_inter at 90° (thesis 0; ours 0.13) and Table 5.4's CyCLIP at κ = 10."""
    seeds = [0, 1, 2]
    checks = [(simulate.over_seeds(500, kappa, 0, seeds)["clustering"], thesis, f"5.1 κ={kappa}") for kappa, thesis in simulate.THESIS_CLUSTERING.items()]
    checks += [(simulate.over_seeds(500, 500, angle, seeds)["gap"], thesis, f"5.2 θ={angle}") for angle, thesis in simulate.THESIS_GAP.items() if angle not in (0, 180)]
    for angle in (0, 45, 180):
        values = simulate.over_seeds(50, 500, angle, seeds)
        for term, thesis in zip(simulate.TERMS[:3], simulate.THESIS_TERMS_BY_ANGLE[angle]):
            checks.append((values[term], thesis, f"5.3 θ={angle} {term}"))
    for (mean, spread), thesis, name in checks:
        assert abs(mean - thesis) <= 3 * spread + printed_half_unit(thesis) + 1e-9, (name, mean, spread, thesis)


def test_the_table_script_writes_every_table(tmp_path):
    text = simulate.tables([0])
    for title in ("Table 5.1", "Table 5.2", "Table 5.3", "Table 5.4"):
        assert title in text
