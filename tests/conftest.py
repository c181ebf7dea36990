"""Shared fixtures: composing the real Hydra config with CPU mini overrides, and ../shared/data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from memegap.config import CONFIG_DIR, register_configs

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One packed image store for the whole session and its subprocesses (built once per image size, then reused).
os.environ.setdefault("MEMEGAP_DATA_DIR", str(Path(tempfile.gettempdir()) / "memegap-test-data"))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# A CPU mini config: 24 pairs per split at 32 px, batches of 8, one epoch, no console tree.
MINI_OVERRIDES = [
    "data.max_per_split=24",
    "data.image_size=32",
    "data.batch_size=8",
    "data.eval_batch_size=12",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=1",
    "extras.print_config=false",
    "callbacks.cross_modal_retrieval.pool_size=8",
    "callbacks.modality_map.maps=[pca]",  # UMAP compiles for about 10 s in each process: slow tests and real runs draw it
]


# A CPU mini config for the classifier and memes experiments (their data comes from experiment_data below).
SINGLE_MODALITY_MINI_OVERRIDES = ["data.max_per_split=16", "data.batch_size=8", "trainer.max_epochs=1", "extras.print_config=false"]


def experiment_data(experiment: str, folder: Path, shared: Path | None) -> list[str]:
    """Data overrides that let a classifier or memes experiment run here: a small CIFAR-100 release in
    its pickle format (random images); an image-sentiment table whose image_path points at real COCO
    images of ../shared/data (as `memegap-collect download` leaves it); the real Reddit memes; the
    COCO-built posts table."""
    import numpy as np
    import pandas as pd

    from memegap.testing.cifar import write_cifar100

    if experiment.startswith("cifar100"):
        rng = np.random.default_rng(0)
        parts = {part: (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), [k % 3 for k in range(n)]) for part, n in (("train", 60), ("test", 12))}
        write_cifar100(folder, parts)
        return [f"data.root={folder}", "data.download=false"]
    if experiment.startswith("posts"):
        from memegap.studies.posts.coco_posts import build_coco_posts
        from memegap.studies.posts.cli import coco_tag_map

        build_coco_posts(shared / "coco_mini", folder / "posts.csv", coco_tag_map())
        return [f"data.table={folder / 'posts.csv'}", "data.image_size=32"]
    if experiment.startswith("memes"):
        return [f"data.table={shared / 'memes_reddit' / 'memes.csv'}", "data.image_size=32", "callbacks.popularity_report.baselines=false",
                "callbacks.popularity_report.pictures=false"]
    images = sorted((shared / "coco_mini" / "img").glob("*.jpg"))[:80]  # 80: the 5 % test split keeps >= 2 images, enough for its geometry
    table = pd.read_csv(shared / "image_sentiment" / "image-sentiment-polarity.csv", dtype=str, keep_default_na=False).head(len(images))
    table["image_path"], table["download_status"] = [str(path) for path in images], "ok"
    table.to_parquet(folder / "sentiment.parquet")
    return [f"data.table={folder / 'sentiment.parquet'}", "data.image_size=32", "model.backbone.name=resnet18", "model.backbone.weights=none"]


def assert_spearman_of_the_written_predictions(metrics: dict, run_dir: Path, shared_data: Path) -> None:
    """The logged test Spearman is scipy's on the written predictions, whose true likes are the table's."""
    import pandas as pd
    from scipy.stats import spearmanr

    predictions = pd.read_csv(run_dir / "popularity" / "test_predictions.csv", dtype={"id": str})
    table = pd.read_csv(shared_data / "memes_reddit" / "memes.csv", dtype={"id": str}).set_index("id")
    assert predictions["likes"].tolist() == table.loc[predictions["id"], "ups"].tolist()
    expected = spearmanr(predictions["likes"], predictions["predicted_likes"]).statistic
    assert metrics["test"]["test/popularity/spearman"] == pytest.approx(expected, abs=1e-3)


def compose_config(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose conf/<config_name> as the CLI would, with its run dir set to `output_dir`."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir)
    return cfg


def trained_run(run_dir: Path, overrides: list[str]) -> dict:
    """train(cfg) in run_dir, with .hydra/config.yaml written as memegap-train's Hydra app writes it."""
    from memegap.train import train

    cfg = compose_config("train.yaml", overrides, run_dir)
    metrics = train(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    (run_dir / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    return metrics


@pytest.fixture
def compose_train(tmp_path):
    """compose_train(*overrides, output_dir=None) -> the train config on the mini data."""

    def _compose(*overrides: str, output_dir: Path | None = None) -> DictConfig:
        return compose_config("train.yaml", ["experiment=twemoji_gap", *MINI_OVERRIDES, *overrides], output_dir or tmp_path)

    yield _compose
    GlobalHydra.instance().clear()


# The fixtures that hand out a set-up a test may lack, and the marker each gives its tests.
FIXTURE_MARKS = {"shared_data": "realdata", "shared_seeds": "realdata", "browser_page": "browser"}


def pytest_collection_modifyitems(config, items):
    """Every test that uses shared_data (itself or through another fixture) is marked `realdata`, one
    that uses browser_page `browser`: `-m "not realdata"` selects what runs without ../shared/data."""
    for item in items:
        for fixture, mark in FIXTURE_MARKS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(getattr(pytest.mark, mark))


# Under CI (CI=true) ../shared/data lies beside the clone and .ci/run installs Chromium: a skip of such a
# test there means a broken set-up, so it fails, naming the test and the reason.
SET_UP_BY_CI = ("realdata", "browser")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and os.environ.get("CI") == "true":
        marks = [name for name in SET_UP_BY_CI if item.get_closest_marker(name) is not None]
        if marks:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            report.outcome = "failed"
            report.longrepr = f"{item.nodeid} ({marks[0]}) was skipped under CI=true, where its set-up must be present: {reason}"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the repo; tests using it are marked `realdata` (pytest_collection_modifyitems)
    and skip without it (fail under CI=true)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it sits beside the repo for the team's tests)")
    return SHARED_DATA


@pytest.fixture
def shared_seeds() -> Path:
    """../shared/seeds beside the repo: the source documents as text (marked `realdata`, as shared_data)."""
    seeds = SHARED_DATA.parent / "seeds"
    if not seeds.is_dir():
        pytest.skip(f"source documents folder {seeds} is absent (it sits beside the repo for the team's tests)")
    return seeds


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """A tiny random CLIP saved as a Hugging Face directory (model=clip_dora loads it as it would a real one)."""
    from memegap.testing.tiny_clip import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))
