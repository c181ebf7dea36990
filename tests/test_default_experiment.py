"""The default experiment end to end (`make run`): slow, run by `make test-all`.

Asserts what fine-tuning must achieve on held-out base emoji: image→text R@1 in pools of 90 far above
chance (1/90) and above the untrained dual encoder, with a modality gap that shrinks.
"""

from __future__ import annotations

import pytest

from memegap.train import train
from tests.conftest import compose_config


@pytest.mark.slow
def test_default_experiment_learns_held_out_pictograms(tmp_path):
    cfg = compose_config("train.yaml", ["experiment=twemoji_gap", "logger=csv", "extras.print_config=false"], tmp_path)
    metrics = train(cfg)
    before, after = metrics["before_fit"], metrics["test"]
    r_at_1 = "test/retrieval/image_to_text_R@1_pool90"
    assert after[r_at_1] > 0.35  # 31 × chance (1/90); measured 0.410 (EN)
    assert after[r_at_1] > before[r_at_1] + 0.2
    assert after["test/geometry/gap"] < before["test/geometry/gap"]
