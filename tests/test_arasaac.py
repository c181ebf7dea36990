"""The ARASAAC client against a loopback API serving real-shaped records and PNGs."""

from __future__ import annotations

import csv
import json

import pytest

from memegap.collect.arasaac import fetch_arasaac
from memegap.collect.download import DownloadSettings
from memegap.utils.tables import read_rows
from memegap.errors import UserError
from memegap.testing.arasaac_api import arasaac_api, arasaac_record
from memegap.testing.faulty_images import good_png

SETTINGS = DownloadSettings(workers=4, max_attempts=2, backoff=0.01)


def test_lists_pngs_manifest_and_skipped_records(tmp_path):
    records = {
        "es": [arasaac_record(2340, "perro", ["animal"], ["animal"]), arasaac_record(7, "casa", ["edificio"], ["lugar"]), {"keywords": []}],
        "en": [arasaac_record(2340, "dog", ["animal"], ["animal"]), arasaac_record(7, "house", ["building"], ["place"])],
    }
    pngs = {2340: good_png(1), 7: good_png(2)}
    with arasaac_api(records, pngs) as server:
        summary = fetch_arasaac(tmp_path, api_url=f"{server.url}/v1", static_url=server.url, settings=SETTINGS, show_progress=False)
        again = fetch_arasaac(tmp_path, api_url=f"{server.url}/v1", static_url=server.url, settings=SETTINGS, show_progress=False)
        assert server.httpd.app.png_requests == 2  # the re-run fetched nothing
    assert summary == {"es/records": 2, "es/skipped": 1, "en/records": 2, "en/skipped": 0, "png/ok": 2, "png/rejected": 0, "png/failed": 0}
    assert again == summary
    assert json.loads((tmp_path / "en.json").read_text())[0]["keywords"][0]["keyword"] == "dog"
    assert (tmp_path / "png" / "2340.png").read_bytes() == good_png(1)
    assert sorted(row["path"].rsplit("/", 1)[-1] for row in read_rows(tmp_path / "manifest.parquet")) == ["2340.png", "7.png"]


def test_bad_resolution_is_refused(tmp_path):
    with pytest.raises(UserError, match="resolution"):
        fetch_arasaac(tmp_path, resolution=64)


def test_real_arasaac_pictograms_with_their_spanish_and_english_words(tmp_path, shared_data):
    folder = shared_data / "pictograms_jocomunico"
    with (folder / "labels.csv").open(encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle)][:40]
    pngs = {int(row["pictoid"]): (folder / row["file"]).read_bytes() for row in rows}
    records = {
        locale: [arasaac_record(int(row["pictoid"]), row[locale], [], [row["type"]]) for row in rows] for locale in ("es", "en")
    }
    with arasaac_api(records, pngs) as server:
        summary = fetch_arasaac(tmp_path, api_url=f"{server.url}/v1", static_url=server.url, settings=SETTINGS, show_progress=False)
    assert summary["png/ok"] == len(pngs) and summary["png/rejected"] == 0
    for pictogram_id, data in pngs.items():
        assert (tmp_path / "png" / f"{pictogram_id}.png").read_bytes() == data
