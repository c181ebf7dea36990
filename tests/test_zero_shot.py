"""Zero-shot classification and linear probes (memegap.metrics.zero_shot, memegap-zeroshot): hand-computed prompt
ensembles and scores, and on a real Twemoji run the emoji groups against chance, before and after training."""

from __future__ import annotations

import json
import math

import pytest
import torch

from memegap.metrics.zero_shot import balanced_recall_p_value, class_prototypes, classification_metrics, linear_probe, prompt_prototypes, zero_shot


def test_templates_average_as_clip_does():
    # Class 0: templates embedded as (10, 0) and (0, 1): each normalised first, (1, 0) and (0, 1), mean (1/2, 1/2),
    # normalised (1/√2, 1/√2). Averaging the raw vectors instead gives (5, 1/2) -> (0.995, 0.0995): the long one wins.
    # Class 1: (0, −2) twice -> (0, −1).
    prototypes = class_prototypes(torch.tensor([[[10.0, 0.0], [0.0, 1.0]], [[0.0, -2.0], [0.0, -2.0]]]))
    assert torch.allclose(prototypes, torch.tensor([[1 / math.sqrt(2), 1 / math.sqrt(2)], [0.0, -1.0]], dtype=torch.float64))
    # Images (0.3, −0.1) and (0.1, −0.3): cosines (up to |x|) 0.2/√2 = 0.141 and 0.1 -> class 0; −0.141 and 0.3 -> class 1.
    images = torch.tensor([[0.3, -0.1], [0.1, -0.3]])
    result = zero_shot(images, prototypes, torch.tensor([0, 1]))
    assert result["acc1"] == 1.0 and result["chance_acc1"] == 0.5


def test_scores_against_hand_counts():
    # 4 items, 3 classes. Top-1 answers: 0, 2, 1, 1 against labels 0, 1, 1, 2 -> right on items 0 and 2: acc1 1/2.
    # Per class: class 0 1/1, class 1 1/2 (item 2 of items 1, 2), class 2 0/1 -> mean (1 + 1/2 + 0) / 3 = 1/2.
    # acc5 is top-3 here (3 classes): 1. Majority of the labels: class 1, 2 of 4 -> 1/2; its balanced form 1/3.
    scores = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [1.0, 3.0, 2.0], [2.0, 3.0, 1.0]])
    result = classification_metrics(scores, torch.tensor([0, 1, 1, 2]))
    assert result["acc1"] == 0.5 and result["acc5"] == 1.0
    assert result["mean_per_class_recall"] == pytest.approx(0.5) and result["per_class_recall"] == {0: 1.0, 1: 0.5, 2: 0.0}
    assert result["chance_acc1"] == pytest.approx(1 / 3) and result["majority_acc1"] == 0.5
    assert result["majority_mean_per_class_recall"] == pytest.approx(1 / 3)


def test_the_chance_p_value_tells_answers_that_follow_the_classes_from_answers_that_do_not():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (400,), generator=generator)
    assert balanced_recall_p_value(labels.clone(), labels) == pytest.approx(1 / 1001)  # perfect: no relabelling matches it
    unrelated = torch.randint(0, 4, (400,), generator=generator)
    assert balanced_recall_p_value(unrelated, labels) > 0.05


def test_the_probe_beats_the_majority_answer_on_separable_classes():
    # Three Gaussian clusters (means 4 apart, unit variance in 8 dimensions): a linear model separates them;
    # classes 60 / 25 / 15 % of the items, so the majority answer scores 0.6.
    generator = torch.Generator().manual_seed(0)
    means = 4 * torch.eye(3, 8)

    def split(n: int):
        labels = torch.multinomial(torch.tensor([0.6, 0.25, 0.15]), n, replacement=True, generator=generator)
        return means[labels] + torch.randn(n, 8, generator=generator), labels

    result = linear_probe(split(300), split(100), split(300), class_count=3)
    assert result["acc1"] > 0.9 > result["majority_acc1"] > 0.5 and result["mean_per_class_recall"] > 0.9
    assert result["C"] in (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0) and len(result["val_acc1"]) == 7


def twemoji_run(folder, *overrides: str):
    """A trained Twemoji EN dual-encoder run in `folder` (no logger)."""
    from tests.conftest import MINI_OVERRIDES, trained_run

    trained_run(folder, ["experiment=twemoji_gap", *MINI_OVERRIDES, "logger=none", "test_before_fit=false", *overrides])
    return folder


@pytest.fixture(scope="module")
def mini_twemoji_run(tmp_path_factory):
    """24 pairs a split, 32 px, one epoch."""
    return twemoji_run(tmp_path_factory.mktemp("zeroshot_mini"))


def test_the_command_writes_clip_benchmark_records_beside_their_baselines(mini_twemoji_run, capsys):
    from memegap.zeroshot import main

    main([str(mini_twemoji_run)])
    records = json.loads((mini_twemoji_run / "zeroshot" / "twemoji.json").read_text())
    assert json.loads(capsys.readouterr().out) == records
    assert [record["task"] for record in records] == ["zeroshot_classification", "linear_probe"]
    for record in records:
        assert {"dataset", "model", "task", "language", "metrics"} <= set(record) and record["dataset"] == "twemoji"
        assert {"acc1", "acc5", "mean_per_class_recall", "chance_acc1", "majority_acc1", "chance_p"} <= set(record["metrics"])
        assert record["metrics"]["chance_acc1"] == pytest.approx(1 / 9) and len(record["classes"]) == 9
        assert set(record["metrics"]["per_class_recall"]) <= set(record["classes"])  # named by the class words
    assert records[0]["templates"][0] == "A picture of {}" and "C" in records[1]["metrics"]


def test_every_run_logs_the_zero_shot_figures_the_command_gives(mini_twemoji_run, tmp_path):
    # The callback (callbacks.zero_shot) at the run's test, and memegap-zeroshot on the run's best checkpoint afterwards:
    # one model, one split, one set of templates, so the same figures.
    from memegap.zeroshot import main

    main([str(mini_twemoji_run), "--no-probe", "--out", str(tmp_path / "z.json")])
    logged = json.loads((mini_twemoji_run / "metrics.json").read_text())["test"]
    records = json.loads((tmp_path / "z.json").read_text())
    for name in ("acc1", "acc5", "mean_per_class_recall"):
        assert logged[f"test/zero_shot/{name}"] == pytest.approx(records[0]["metrics"][name], abs=1e-6)


def test_the_command_refuses_mistakes_in_one_line(mini_twemoji_run, shared_data, tmp_path, capsys):
    from memegap.zeroshot import main

    no_slot = tmp_path / "templates.txt"
    no_slot.write_text("A photo of {}.\nA photo.\n")
    cases = [
        (["--templates", str(tmp_path / "missing.txt")], "no such file"),
        (["--templates", str(no_slot)], "every line needs one {}"),
        (["--data", "arasaac", "--set", f"root={shared_data / 'pictograms_jocomunico'}"], "arasaac has no classes to score"),
        (["--data", "cifar100", "--set", "root"], "--set root: write KEY=VALUE"),
        (["--data", "no_such_source"], "no_such_source"),
        (["--data", "labelled_table"], "Missing mandatory value: data.table; give it with --set"),
        (["--data", "twemoji", "--set", "language=fr"], "data.language must be one of"),
        (["--out", str(tmp_path)], "name a .json file"),
    ]
    for arguments, message in cases:
        with pytest.raises(SystemExit) as stopped:
            main([str(mini_twemoji_run), *arguments])
        error = capsys.readouterr().err
        assert stopped.value.code == 2 and message in error and "Traceback" not in error, (arguments, error)


@pytest.mark.slow
def test_zero_shot_beats_chance_on_the_emoji_groups_after_training_and_not_before(tmp_path):
    """Twemoji EN, 600 pairs a split at 32 px, 3 epochs (about 1.5 minutes): the nine Unicode groups (chance 1/9)."""
    import argparse

    import hydra
    import lightning as L

    from memegap.utils.trained_run import run_config
    from memegap.metrics.zero_shot import TEMPLATES
    from memegap.zeroshot import classes_of, evaluate, image_embeddings, labelled_source

    run = twemoji_run(tmp_path, "data.max_per_split=600", "trainer.max_epochs=3")
    arguments = argparse.Namespace(run_dir=run, data=None, set=[], split="test", templates=None, no_probe=False, checkpoint=None, out=None)
    zero_shot_record, probe_record = evaluate(arguments)[0]
    after, probe = zero_shot_record["metrics"], probe_record["metrics"]
    assert after["mean_per_class_recall"] > 1.8 * after["chance_acc1"] and after["chance_p"] < 0.01
    assert probe["acc1"] > probe["majority_acc1"] and probe["mean_per_class_recall"] > 3 * probe["chance_acc1"]
    # Before: three untrained models (random projections over the pretrained towers), on average at chance
    cfg = run_config(run)
    datamodule, source = labelled_source(cfg, arguments)
    words, labels = classes_of(datamodule, source)
    before = []
    for seed in (1, 2, 3):
        L.seed_everything(seed)
        model = hydra.utils.instantiate(cfg.model, _convert_="all").eval()
        with torch.no_grad():
            images, truth = image_embeddings(model, datamodule, "test", labels["test"])
            prototypes = prompt_prototypes(model.embed_texts, words, TEMPLATES["en"])
        before.append(zero_shot(images, prototypes, truth)["mean_per_class_recall"])
    assert sum(before) / 3 < 1.4 * after["chance_acc1"] < after["mean_per_class_recall"]


def test_another_labelled_source_by_data_and_set(mini_twemoji_run, tmp_path, capsys):
    # A CIFAR-100 release (its pickle format) of three fine classes drawn as solid red, green and blue pictures
    # with noise: the probe on the run's image embeddings separates them; the class words come from the release.
    import numpy as np

    from memegap.testing.cifar import write_cifar100
    from memegap.zeroshot import main

    generator = np.random.default_rng(0)

    def part(n: int):
        labels = generator.integers(0, 3, n)
        colours = np.eye(3)[labels] * 200 + 20
        images = np.clip(colours[:, None, None, :] + generator.normal(0, 20, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
        return images, labels.tolist()

    write_cifar100(tmp_path, {"train": part(120), "test": part(60)}, fine_names=["red apple", "green leaf", "blue sea", *[f"other_{k}" for k in range(97)]])
    out = tmp_path / "cifar.json"
    main([str(mini_twemoji_run), "--data", "cifar100", "--set", f"root={tmp_path}", "download=false", "--out", str(out)])
    zero_shot_record, probe_record = json.loads(out.read_text())
    assert zero_shot_record["dataset"] == "cifar100" and len(zero_shot_record["classes"]) == 100 and zero_shot_record["classes"][3] == "other 0"
    assert probe_record["metrics"]["acc1"] > 0.9 > probe_record["metrics"]["majority_acc1"]
    assert zero_shot_record["metrics"]["samples"] == 60 and zero_shot_record["metrics"]["chance_acc1"] == pytest.approx(0.01)
