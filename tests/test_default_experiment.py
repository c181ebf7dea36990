"""The default experiment end to end (`make run`): slow, run by `make test-all`.

Asserts what fine-tuning must achieve on held-out base emoji: image→text R@1 in pools of 90 far above
chance (1/90) and above the untrained dual encoder, with a modality gap that shrinks; and that the run
still gives the numbers on experiments/twemoji/README.md (seed 12345), to 3 decimals, so that no change
moves the default experiment unnoticed (uint8 delivery, the streamed store, new callbacks).
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
    # measured 2026-12-08 at ac52064 (make run, and the same without callbacks.zero_shot); 2026-12-07 at 54e694d gave
    # 0.4104 / 0.4119 / 0.2325 / 0.1816 / 1.1934 (the move is not explained yet: see experiments/twemoji/README.md)
    page = {r_at_1: 0.4126, "test/retrieval/text_to_image_R@1_pool90": 0.4081, "test/retrieval/image_to_text_R@1": 0.2325,
            "test/geometry/gap": 0.1825, "test/geometry/alignment": 1.1935}
    assert {key: after[key] for key in page} == pytest.approx(page, abs=5e-4)
    assert before["test/geometry/gap"] == pytest.approx(0.9328, abs=5e-4)
