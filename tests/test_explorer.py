"""The Power Spherical explorer page, checked as a person would: headless Chromium opens it, a slider is
moved with the keyboard, and the shown values change as they should; the page's own sampler and
measures agree with the Python ones on the same points."""

from __future__ import annotations

import shutil

import pytest

from memegap.studies.modality_gap.explorer import MEASURES, write_explorer
from memegap.studies.modality_gap.power_spherical import measure, sample_pair

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# the flags that keep Chromium from calling out on a closed network (see the machine's notes)
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def test_the_page_is_one_self_contained_file(tmp_path):
    text = write_explorer(tmp_path / "explorer.html").read_text()
    assert "src=\"http" not in text and "<script src" not in text  # plotly.js is inlined
    for key in MEASURES:
        assert f'id="value-{key}"' in text


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian package chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    path = write_explorer(tmp_path_factory.mktemp("explorer") / "explorer.html")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        opened = browser.new_page(viewport={"width": 1000, "height": 700})
        opened.goto(path.as_uri())
        opened.wait_for_function("document.getElementById('value-gap').textContent.length > 0")
        yield opened
        browser.close()


def shown(page, key: str) -> float:
    return float(page.text_content(f"#value-{key}"))


def test_moving_a_slider_updates_the_values(browser_page, tmp_path):
    assert browser_page.text_content("#angle_y_value") == "45"
    browser_page.focus("#n")
    browser_page.keyboard.press("Home")  # N = 10 per modality: each redraw is quick
    assert browser_page.text_content("#n_value") == "10"
    before = shown(browser_page, "gap")
    browser_page.focus("#kappa_x")
    browser_page.keyboard.press("End")  # κ image 500
    browser_page.focus("#kappa_y")
    browser_page.keyboard.press("End")  # κ text 500
    browser_page.focus("#angle_y")
    browser_page.keyboard.press("End")  # 45° -> 180°: the text cloud opposite the image cloud
    assert browser_page.text_content("#angle_y_value") == "180"
    after = shown(browser_page, "gap")
    assert after != before and after == pytest.approx(2.0, abs=0.05)  # two tight clouds 180° apart: 2·sin 90°
    # |cos| between the modalities is as large as within them: the thesis's o_inter equals its o_intra at 180°
    assert shown(browser_page, "thesis_ortho_inter") == pytest.approx(shown(browser_page, "thesis_ortho_intra"), abs=0.05)
    browser_page.screenshot(path=str(tmp_path / "explorer.png"))
    assert (tmp_path / "explorer.png").stat().st_size > 10_000


def test_the_pages_measures_are_the_python_ones(browser_page):
    x, y = sample_pair(40, 3, 20.0, 5.0, 10.0, 70.0, seed=4)
    in_page = browser_page.evaluate("([x, y]) => memegap.measure(x, y, 0.7, -1.3)", [x.tolist(), y.tolist()])
    expected = measure(x, y, alpha=0.7, beta=-1.3)
    for key in MEASURES:
        assert in_page[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), key


def test_the_pages_sampler_has_the_power_spherical_mean(browser_page):
    # mean cosine to the mean direction: κ / (κ + d − 1) in d = 3; 4000 draws, standard error below 0.003 here
    mean_cosine = browser_page.evaluate("""() => {
        const points = memegap.sampleCloud(4000, 10, 60, memegap.mulberry32(7));
        const mu = [Math.cos(Math.PI / 3), Math.sin(Math.PI / 3), 0];
        return points.reduce((s, p) => s + p[0] * mu[0] + p[1] * mu[1] + p[2] * mu[2], 0) / points.length; }""")
    assert mean_cosine == pytest.approx(10 / 12, abs=0.015)
