"""memegap/studies/twemoji/twemoji_errors.py: the kinds of image→text errors, on a case counted by hand."""

from __future__ import annotations

import pytest
import torch

from memegap.studies.twemoji.twemoji_errors import error_kinds, person_marks, pictogram_kind, skin_tones


def test_error_kinds_on_a_hand_built_pool():
    # thumbs up, thumbs up medium skin tone (siblings), dog face, cat face; texts are one-hot rows.
    ids = ["1f44d", "1f44d-1f3fd", "1f436", "1f431"]
    text = torch.eye(4)
    image = torch.stack([text[0], text[0], text[3], text[3]])  # right, sibling (wrong tone), other base, right
    kinds = error_kinds({"image": image, "text": text}, ids, pool_size=4)
    assert kinds["correct"] == pytest.approx(0.5)
    assert kinds["sibling"] == pytest.approx(0.25) and kinds["other_base"] == pytest.approx(0.25)
    assert kinds["wrong_skin_tone"] == pytest.approx(0.25)  # only the thumbs-up confusion changes the tone
    assert kinds["wrong_person"] == 0.0
    # right base always, random variant: 1/2 for each thumbs up, 1 for the dog and the cat
    assert kinds["sibling_oracle_R@1"] == pytest.approx((0.5 + 0.5 + 1 + 1) / 4)
    assert kinds["R@1_by_kind"] == {"6 variants": 0.5, "single": 0.5}  # thumbs up has 5 tones; dog wrong, cat right


def test_pictogram_kinds():
    assert pictogram_kind("🇪🇸", 1) == "flag"  # Spain
    assert pictogram_kind("🏴󠁧󠁢󠁥󠁮󠁧󠁿", 1) == "flag"  # England
    assert pictogram_kind("🏳️‍🌈", 1) == "single"  # rainbow flag: no country
    assert pictogram_kind("👍", 6) == "6 variants"


def test_variant_marks_come_from_the_code_points():
    couple = "\U0001F469\U0001F3FB\u200d\u2764\ufe0f\u200d\U0001F468\U0001F3FF"  # woman light, man dark
    assert skin_tones(couple) == "\U0001F3FB\U0001F3FF" and skin_tones("\U0001F44D") == ""
    assert person_marks(couple) == "\U0001F469\U0001F468"
    assert person_marks("\U0001F46E\u200d\u2640\ufe0f") == "\u2640"  # woman police officer: the sign
