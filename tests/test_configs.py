"""The Hydra config tree: every group composes, every experiment runs fast_dev_run on a mini config,
and a wrong key or type fails at start-up naming the key."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from memegap.config import CONFIG_DIR, ConfigError, validate_config
from memegap.errors import UserError
from memegap.train import train
from tests.conftest import MINI_OVERRIDES, SINGLE_MODALITY_MINI_OVERRIDES, compose_config, experiment_data

EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


# what each experiment needs beyond the mini overrides: its data on this machine
EXPERIMENT_DATA = {
    "arasaac_gap": ["data.root={shared}/pictograms_jocomunico"],
    "coco_gap": ["data.root={shared}/coco_mini"],
    "arasaac_clip": ["data.root={shared}/pictograms_jocomunico", "model.name_or_path={tiny_clip}"],
    "coco_clip": ["data.root={shared}/coco_mini", "model.name_or_path={tiny_clip}"],
}
SINGLE_MODALITY_EXPERIMENTS = ("cifar100_cnn", "cifar100_resnet", "image_sentiment", "memes_triplet", "memes_regression", "memes_study", "posts_image")
NEEDS_SHARED_DATA = ("image_sentiment", "memes_triplet", "memes_regression", "memes_study", "posts_image")


# What each callback promises among a run's test metrics, by its name in cfg.callbacks.
PROMISED = {
    "cross_modal_retrieval": ("test/retrieval/text_to_image_R@1", "test/retrieval/image_to_text_R@1", "test/retrieval/pool_size"),
    "classification_report": ("test/classification/acc_top5", "test/classification/f1_macro", "test/classification/balanced_acc"),
    "popularity_report": ("test/popularity/spearman", "test/popularity/mae_log", "test/popularity/pairwise_acc"),
}
# The geometry of a model kind: two modalities (a dual encoder) or one with classes or like bins.
GEOMETRY = {2: ("test/geometry/gap", "test/geometry/alignment", "test/geometry/uniformity"), 1: ("test/geometry/uniformity",)}


def needs_shared_data(experiment: str) -> bool:
    return experiment in NEEDS_SHARED_DATA or any("{shared}" in override for override in EXPERIMENT_DATA.get(experiment, []))


@pytest.mark.parametrize("experiment", [pytest.param(e, marks=pytest.mark.realdata) if needs_shared_data(e) else e for e in EXPERIMENTS])
def test_experiment_runs_fast_dev_run(experiment, compose_train, request, tmp_path):
    """A fast dev run of every experiment logs, finite, the metric its checkpoint monitors, the metrics its
    callbacks promise and the geometry of its model kind."""
    fast = ["+trainer.fast_dev_run=true", "logger=none", "test_before_fit=false"]
    shared = request.getfixturevalue("shared_data") if needs_shared_data(experiment) else None
    if experiment in SINGLE_MODALITY_EXPERIMENTS:
        data = experiment_data(experiment, tmp_path, shared)
        cfg = compose_config("train.yaml", [f"experiment={experiment}", *SINGLE_MODALITY_MINI_OVERRIDES, *data, *fast], tmp_path / "run")
    else:
        needs = EXPERIMENT_DATA.get(experiment, [])
        tiny_clip = request.getfixturevalue("tiny_clip") if any("{tiny_clip}" in override for override in needs) else None
        data = [override.format(shared=shared, tiny_clip=tiny_clip) for override in needs]
        cfg = compose_train(f"experiment={experiment}", *data, *fast)
    metrics = train(cfg)
    logged = metrics["fit"] | metrics["test"]
    promised = [cfg.callbacks.model_checkpoint.monitor, "test/loss"]
    promised += [key for name, keys in PROMISED.items() if name in cfg.callbacks for key in keys]
    promised += GEOMETRY[2 if experiment not in SINGLE_MODALITY_EXPERIMENTS else 1]
    missing = [key for key in promised if key not in logged]
    assert missing == [], f"{experiment} did not log {missing}"
    assert all(math.isfinite(logged[key]) for key in promised), {key: logged[key] for key in promised}


@pytest.mark.parametrize(
    "group",
    ["trainer", "logger", "callbacks", "debug", "launcher", "hparams_search", "model/loss"],
)
def test_every_option_of_a_group_composes_and_passes_validation(group, tmp_path):
    for option in group_options(group):
        experiment = {"classification": "cifar100_cnn", "popularity": "memes_triplet"}.get(option, "twemoji_gap") if group == "callbacks" else "twemoji_gap"
        cfg = compose_config("train.yaml", [f"experiment={experiment}", f"{group}={option}"], tmp_path)
        assert cfg.hydra.runtime.choices[group] == option  # the option itself, not one an experiment put back
        validate_config(cfg)  # our own configs name real arguments, of the right types


def test_eval_config_composes(tmp_path):
    cfg = compose_config("eval.yaml", ["ckpt_path=/some/model.ckpt"], tmp_path)
    assert cfg.ckpt_path == "/some/model.ckpt" and cfg.task_name == "eval"


def test_wandb_is_offline_unless_asked(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = compose_config("train.yaml", ["logger=wandb"], tmp_path)
    assert cfg.logger.wandb.mode == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert compose_config("train.yaml", ["logger=wandb"], tmp_path).logger.wandb.mode == "online"


@pytest.mark.parametrize("override, key", [("data.batchsize=8", "data.batchsize"), ("model.dora_rnk=4", "model.dora_rnk"),
                                           ("model.optimizer.learning_rate=0.1", "model.optimizer.learning_rate")])
def test_a_misspelt_key_fails_at_compose_naming_it(override, key, tmp_path):
    with pytest.raises(ConfigCompositionException) as error:
        compose_config("train.yaml", ["experiment=twemoji_gap", override], tmp_path)
    assert f"full_key: {key}" in str(error.value) + str(error.value.__cause__)


@pytest.mark.parametrize(
    "override, says",
    [
        ("data.batch_size=eight", "data.batch_size='eight': memegap.data.twemoji.TwemojiDataModule expects int"),
        ("model.embed_dim=wide", "model.embed_dim='wide': memegap.models.dual_encoder.DualEncoder expects int"),
        ("model.image_tower.pretrained=maybe", "model.image_tower.pretrained='maybe': memegap.nets.towers.EfficientNetLite0 expects bool"),
        ("model.loss.gather=often", "model.loss.gather='often': memegap.losses.contrastive.ContrastiveLoss expects bool"),
        ("model.loss.terms.ce.weight=[1]", "model.loss.terms.ce.weight=[1]: memegap.losses.contrastive.CrossEntropy expects float"),
    ],
)
def test_a_wrong_type_fails_at_start_up_naming_the_key_and_the_type(override, says, tmp_path):
    """Each data / model node, nested ones included, is checked against the signature of its class."""
    cfg = compose_config("train.yaml", ["experiment=twemoji_gap", override], tmp_path)
    with pytest.raises(ConfigError) as error:
        validate_config(cfg)
    assert str(error.value) == says


@pytest.mark.parametrize(
    "overrides, says",
    [
        (["data.image_size=0"], "data.image_size=0: must be ≥ 1"),  # it built a 0px store and failed with an IndexError
        (["data.image_size=-5"], "data.image_size=-5: must be ≥ 1"),  # an 82-line litdata traceback
        (["data.max_per_split=0"], "data.max_per_split=0: must be ≥ 1"),
        (["callbacks.cross_modal_retrieval.pool_size=0"], "callbacks.cross_modal_retrieval.pool_size=0: must be ≥ 2"),
        (["data.split_fractions=[1.2,-0.1,-0.1]"], "data.split_fractions=[1.2, -0.1, -0.1]: must be between 0 and 1"),
        (["experiment=memes_triplet", "callbacks.popularity_report.k=0"], "callbacks.popularity_report.k=0: must be ≥ 1"),
    ],
)
def test_a_value_out_of_range_fails_at_start_up_naming_the_key_and_the_range(overrides, says, tmp_path):
    cfg = compose_config("train.yaml", ["experiment=twemoji_gap", *overrides], tmp_path)
    with pytest.raises(ConfigError) as error:
        validate_config(cfg)
    assert str(error.value) == says
    if overrides == ["data.image_size=0"]:  # the run checks before any work: no store, no data dir
        cfg.paths.data_dir = str(tmp_path / "data")
        with pytest.raises(ConfigError):
            train(cfg)
        assert not (tmp_path / "data").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU: trainer=gpu is valid here")
def test_trainer_gpu_without_a_gpu_is_one_line_before_any_work(tmp_path):
    cfg = compose_config("train.yaml", ["experiment=twemoji_gap", "trainer=gpu", f"paths.data_dir={tmp_path / 'data'}"], tmp_path)
    with pytest.raises(ConfigError, match=r"^trainer.accelerator=gpu: no CUDA GPU is visible on this machine"):
        train(cfg)
    assert not (tmp_path / "data").exists()


def test_a_key_added_with_plus_fails_before_anything_loads(compose_train):
    cfg = compose_train("+data.batchsize=8", "+model.image_tower.pretrainde=false")
    with pytest.raises(ConfigError, match="batchsize"):
        train(cfg)
    cfg = compose_train("+model.image_tower.pretrainde=false")
    with pytest.raises(ConfigError, match="pretrainde"):
        train(cfg)


def test_wrong_key_in_a_users_experiment_file_fails_naming_it(tmp_path):
    user_configs = tmp_path / "my_configs"
    (user_configs / "experiment").mkdir(parents=True)
    (user_configs / "experiment" / "typo.yaml").write_text(
        "# @package _global_\ndefaults:\n  - twemoji_gap\ndata:\n  imagesize: 32\n"
    )
    with pytest.raises(ConfigCompositionException) as error:
        compose_config("train.yaml", [f"hydra.searchpath=[file://{user_configs}]", "experiment=typo"], tmp_path)
    assert "imagesize" in str(error.value) + str(error.value.__cause__)


@pytest.mark.slow
def test_cli_fails_at_start_up_naming_the_key(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "memegap.train", "experiment=twemoji_gap", "data.batchsize=8", f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Key 'batchsize' not in 'twemoji_schema'" in lines[0] and "did you mean data.batch_size" in lines[0], result.stderr
    assert not (tmp_path / "checkpoints").exists()
    run_dir = tmp_path / "refused"
    result = subprocess.run(
        [sys.executable, "-m", "memegap.train", "experiment=twemoji_gap", "data.image_size=0", f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "WANDB_MODE": "offline"},
    )
    assert result.returncode == 2 and "data.image_size=0: must be ≥ 1 (add verbose=true for the traceback)" in result.stderr
    assert not run_dir.exists()  # a start refused at validation leaves no run dir (it left one, with .hydra/ and a log)


@pytest.mark.parametrize("mode", ["fdr", "profiler", pytest.param("limit", marks=pytest.mark.slow), pytest.param("overfit", marks=pytest.mark.slow)])  # tests/README.md: several epochs
def test_every_debug_mode_in_readme_runs_on_the_default_experiment(mode, tmp_path):
    # debug=limit once used fractions (0.1 of 2 validation batches < 1 batch), which Lightning refuses
    overrides = [override for override in MINI_OVERRIDES if not override.startswith("callbacks.")]  # debug drops the callbacks
    metrics = train(compose_config("train.yaml", ["experiment=twemoji_gap", *overrides, f"debug={mode}"], tmp_path))
    assert metrics["test"]["test/loss"] > 0
    if mode == "profiler":  # the time per hook, as the debug config promises (it once went to a silenced logger)
        assert "run_training_epoch" in (tmp_path / "fit-profile.txt").read_text()
    assert "debug: fdr | limit | overfit | profiler" in (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_debug_modes_keep_third_party_loggers_at_warning(tmp_path):
    cfg = compose_config("train.yaml", ["experiment=twemoji_gap", "debug=fdr"], tmp_path)
    logging_cfg = cfg.hydra.job_logging
    assert logging_cfg.root.level == "WARNING" and logging_cfg.loggers.memegap.level == "DEBUG"
    assert "PIL" not in logging_cfg.loggers or logging_cfg.loggers.PIL.level == "WARNING"


def cli(module: str, args: list[str], cwd: Path, columns: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "MEMEGAP_ROOT": str(cwd), "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


@pytest.mark.slow
def test_train_and_eval_help_are_our_own(tmp_path):
    shown = cli("memegap.train", ["--help"], tmp_path)
    assert shown.returncode == 0
    for needle in ("experiment=twemoji_gap", "-m experiment=", "ckpt_path=last", "run_id=", "debug: ", "fdr, limit, overfit, profiler"):
        assert needle in shown.stdout, needle
    assert "schema" not in shown.stdout and "Powered by Hydra" not in shown.stdout
    shown = cli("memegap.eval", ["--help"], tmp_path)
    assert shown.returncode == 0 and "ckpt_path=<file.ckpt>" in shown.stdout and "metrics.json" in shown.stdout
    assert "schema" not in shown.stdout


NOISE = ("LOAD REPORT", "UNEXPECTED", "LeafSpec", "litlogger", "anonymous setting", "in eval mode at the start", "Loading weights",
         "GPU available", "Skipping setting a default", "Run history", "_target_", "Traceback",
         "wandb: ",  # the W&B banner: three lines although quiet=true
         "FLOPs", "Modules in train mode", "no best checkpoint")  # the model summary's zeros and mode counts


@pytest.mark.slow
def test_a_normal_run_prints_what_a_user_can_act_on(tmp_path):
    args = ["experiment=twemoji_gap", "data.max_per_split=16", "data.image_size=32", "data.batch_size=8", "trainer.max_epochs=1",
            "callbacks.cross_modal_retrieval.pool_size=8", "trainer.log_every_n_steps=1", "logger=wandb", "run_id=quiet"]
    result = cli("memegap.train", args, tmp_path, columns=80)  # a terminal of 80 columns
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    for noise in NOISE:
        assert noise not in console, noise
    run_dir = tmp_path / "logs" / "twemoji_gap" / "runs" / "quiet"
    assert "config: experiment=twemoji_gap" in console and f"run dir: {run_dir}" in console
    assert "_target_" in (run_dir / "config_tree.log").read_text()  # the whole tree is kept in the run dir
    # the test metrics with their whole names (Lightning's table cut them with "…": _pool8 vs _batch8)
    assert "test/retrieval/text_to_image_R@1_pool8" in console and "test/retrieval/text_to_image_R@1_batch8" in console and "…" not in console


@pytest.mark.slow
def test_debug_console_has_no_third_party_debug_lines(tmp_path):
    result = cli("memegap.train", ["experiment=twemoji_gap", "data.max_per_split=16", "data.image_size=32", "debug=fdr"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (result.stdout + result.stderr).splitlines()
    assert [line for line in lines if "][DEBUG]" in line and "][memegap" not in line] == []
    assert not any("[PIL" in line for line in lines)


@pytest.mark.slow
def test_a_wrong_trainer_type_on_the_command_line_is_one_line(tmp_path):
    result = cli("memegap.train", ["experiment=twemoji_gap", "trainer.max_epochs=abc"], tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("memegap-train: error: trainer.max_epochs='abc'"), result.stderr


@pytest.mark.parametrize("memes_model", group_options("memes_model"))
@pytest.mark.parametrize("memes_features", group_options("memes_features"))
def test_every_cell_of_the_memes_study_grid_composes(memes_model, memes_features, tmp_path):
    cfg = compose_config("train.yaml", ["experiment=memes_study", f"memes_model={memes_model}", f"memes_features={memes_features}"], tmp_path)
    validate_config(cfg)
    assert cfg.model._target_.endswith("SiameseRegression" if memes_model == "regression" else "SiameseTriplet")
    assert cfg.data.sampling == ("pairs" if memes_model == "regression" else "triplet")
    assert cfg.model.fusion == (memes_features != "image")
    assert ("ocr" in cfg.data.text_features) == (memes_features == "text_ocr")
    if memes_model != "regression":
        assert cfg.model.distance == memes_model.removeprefix("triplet_")


def test_every_source_of_the_modality_gap_study_composes(tmp_path):
    for option in group_options("gap_data"):
        cfg = compose_config("train.yaml", ["experiment=modality_gap_study", f"gap_data={option}", "gap_roots.arasaac=/p", "gap_roots.coco=/c"], tmp_path)
        validate_config(cfg)
        assert cfg.data.get("root", "/p") in ("/p", "/c") and cfg.data.batch_size == 90
        assert cfg.data.get("language", "en") == ("es" if option.endswith("_es") else "en")


@pytest.mark.parametrize(
    "experiment, data, missing",
    [
        ("cifar100_cnn", "twemoji", "['label']"),            # a classifier on pairs without classes
        ("memes_triplet", "twemoji", "['bin', 'likes', 'negative_image', 'positive_image']"),  # a likes model on pictograms
        (None, "cifar100", "['image_id', 'text']"),  # train.yaml's dual encoder on images without texts
    ],
)
def test_a_senseless_pair_of_groups_fails_at_start_up_in_one_line_naming_both(experiment, data, missing, tmp_path):
    chosen = [f"experiment={experiment}"] if experiment else []
    cfg = compose_config("train.yaml", [*chosen, f"data={data}", "logger=none", "extras.print_config=false"], tmp_path)
    model = cfg.hydra.runtime.choices.model
    with pytest.raises(UserError) as error:
        train(cfg)
    message = str(error.value)
    assert "\n" not in message and f"model={model} does not fit data={data}" in message and missing in message
    assert not (tmp_path / "checkpoints").exists()


def test_a_callback_that_reads_what_the_data_module_lacks_fails_at_start_up_in_one_line(tmp_path):
    # The popularity report reads the training memes (plain_loader) and the like bins of a memes data module.
    cfg = compose_config("train.yaml", ["experiment=twemoji_gap", "logger=none", "extras.print_config=false",
                                        "+callbacks.popularity_report._target_=memegap.callbacks.popularity.PopularityReport"], tmp_path)
    with pytest.raises(UserError) as error:
        train(cfg)
    message = str(error.value)
    assert "\n" not in message and "callbacks.popularity_report does not fit data=twemoji" in message and "plain_loader, bin_edges" in message
    assert not (tmp_path / "checkpoints").exists()


def test_the_retrieval_callback_needs_a_subset_loader_only_to_measure_a_training_subset():
    from memegap.batch import check_callbacks
    from memegap.callbacks.retrieval import CrossModalRetrieval
    from memegap.data.cifar100 import Cifar100DataModule
    from memegap.data.twemoji import TwemojiDataModule

    images_only = Cifar100DataModule(root="/nowhere")
    check_callbacks(images_only, {"cross_modal_retrieval": CrossModalRetrieval()}, "cifar100")  # nothing read of the data
    check_callbacks(TwemojiDataModule(), {"cross_modal_retrieval": CrossModalRetrieval(train_subset=8)}, "twemoji")
    with pytest.raises(UserError, match="callbacks.cross_modal_retrieval does not fit data=cifar100: it reads subset_loader"):
        check_callbacks(images_only, {"cross_modal_retrieval": CrossModalRetrieval(train_subset=8)}, "cifar100")


def test_every_batch_key_that_a_model_reads_or_a_data_module_gives_is_in_the_schema():
    from memegap.batch import described
    from memegap.data.labelled import LabelledImageDataModule
    from memegap.data.memes import SAMPLING, MemesDataModule
    from memegap.data.pairs import PairedDataModule
    from memegap.models.classifier import ImageClassifier
    from memegap.models.dual_encoder import ContrastiveDualEncoder

    keys = {*PairedDataModule.batch_keys, *LabelledImageDataModule.batch_keys, *ImageClassifier.needs_batch_keys, *ContrastiveDualEncoder.needs_batch_keys}
    for sampling in SAMPLING:
        keys |= set(MemesDataModule(sampling=sampling, text_features=["afinn"]).batch_keys)
    for key in keys:
        assert described(key)
    with pytest.raises(KeyError, match="labels"):
        described("labels")


# A group option that sets one of our classes' arguments to another value than the class's own default,
# because that value is what the option is for (not a second statement of the default).
OPTION_SETTINGS = {("model/dual_encoder.yaml", "image_tower.pool_stages"), ("model/cifar_cnn.yaml", "dropout")}


def test_no_default_is_stated_twice_with_two_values():
    """The class signature (the home of every default) and each group option's YAML agree on every
    default the YAML restates for our own classes, unless the option exists to set it (OPTION_SETTINGS);
    third-party targets, e.g. torch's optimizers, have their own defaults that a config is free to change."""
    import inspect

    import yaml
    from hydra.utils import get_class

    from memegap.config import names_its_arguments

    def class_defaults(target: str) -> dict:
        cls = next(klass for klass in get_class(target).__mro__ if names_its_arguments(klass))
        return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items() if p.default is not inspect.Parameter.empty}

    def same(a, b) -> bool:
        return (list(a) if isinstance(a, tuple) else a) == (list(b) if isinstance(b, tuple) else b)

    disagreements = []

    def walk(node: dict, target: str | None, where: str, path: str) -> None:
        defaults = class_defaults(target) if target and target.startswith("memegap.") else {}
        for key, value in node.items():
            if key == "defaults" or key.startswith("_"):
                continue
            if isinstance(value, dict):
                walk(value, value.get("_target_"), f"{where}{key}.", path)
            elif key in defaults and not (isinstance(value, str) and "${" in value) and (path, where + key) not in OPTION_SETTINGS:
                if not same(value, defaults[key]):
                    disagreements.append(f"{path} {where}{key}: {value!r} there, {defaults[key]!r} in {target}")

    root = Path(CONFIG_DIR)
    for path in sorted([*root.glob("data/*.yaml"), *root.rglob("model/**/*.yaml")]):
        node = yaml.safe_load(path.read_text()) or {}
        walk(node, node.get("_target_"), "", path.relative_to(root).as_posix())
    assert disagreements == []
