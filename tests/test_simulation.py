"""The Power Spherical simulation: the sampler against its closed-form mean, the gap against 2·sin(θ/2),
the thesis-reading loss terms against their closed form, and the table script."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from memegap.sim.power_spherical import mean_direction, measure, sample_modality, sample_pair


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


def test_the_table_script_writes_every_table_beside_the_thesis(tmp_path):
    path = Path(__file__).resolve().parents[1] / "experiments" / "modality_gap" / "simulate.py"
    spec = importlib.util.spec_from_file_location("simulate", path)
    simulate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(simulate)
    text = simulate.tables([0])
    for title in ("Table 5.1", "Table 5.2", "Table 5.3", "Table 5.4"):
        assert title in text
    assert "| 45° | 0.76" in text and "| -0.842 |" in text
