"""Classifiers (part 1): metrics on hand-made cases, the class geometry against brute force, the
CIFAR-100 reader on its exact pickle format, training on real images, and the image-sentiment path
from the real table through the downloader and the image store to a trained run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from memegap.config import ConfigError, validate_config
from memegap.data.cifar100 import COARSE_OF_FINE, Cifar100DataModule
from memegap.data.image_sentiment import CLASSES, ImageSentimentDataModule, read_sentiment_table
from memegap.data.sampling import WeightedEpochSampler
from memegap.data.splits import stratified_split
from memegap.errors import UserError
from memegap.metrics.classification import classification_summary, confusion_matrix, per_class_metrics
from memegap.metrics.geometry import class_cosine_histograms, class_cosine_means
from memegap.nets.backbones import TorchvisionBackbone
from memegap.models.classifier import ImageClassifier
from memegap.studies.classifiers.twemoji_blocks import write_twemoji_blocks
from memegap.testing.cifar import write_cifar100
from memegap.testing.static_files import refusing_proxy, static_files_server
from memegap.train import train
from tests.conftest import compose_config

SENTIMENT_CSV = "image_sentiment/image-sentiment-polarity.csv"


def test_classification_metrics_on_a_hand_made_case():
    # labels 0 0 1 1 2 2, predictions 0 1 1 1 2 0; classes 3 and 4 occur nowhere
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 1, 2, 0]), 5).float()
    summary = classification_summary(logits, labels, 5)
    # precision 1/2, 2/3, 1; recall 1/2, 1, 1/2; F1 1/2, 4/5, 2/3 (mean over the 3 classes that occur)
    assert summary["acc"] == pytest.approx(4 / 6)
    assert summary["balanced_acc"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert summary["precision_macro"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert summary["f1_macro"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert summary["acc_top5"] == 1.0
    per_class = per_class_metrics(logits, labels, 5)
    assert per_class["recall"][:3].tolist() == pytest.approx([0.5, 1.0, 0.5])
    assert per_class["support"].tolist() == [2, 2, 2, 0, 0]
    assert confusion_matrix(logits, labels, 5)[:3, :3].tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_top5_counts_a_label_among_the_five_highest_logits():
    logits = torch.tensor([[6.0, 5, 4, 3, 2, 1], [6.0, 5, 4, 3, 2, 1]])
    summary = classification_summary(logits, torch.tensor([4, 5]), 6)  # ranks 5 and 6
    assert summary["acc"] == 0.0 and summary["acc_top5"] == 0.5


def test_class_cosines_match_brute_force():
    generator = torch.Generator().manual_seed(0)
    x, labels = torch.randn(37, 5, generator=generator), torch.randint(0, 4, (37,), generator=generator)
    x_hat = torch.nn.functional.normalize(x.double(), dim=1)
    cosines = x_hat @ x_hat.T
    upper = torch.triu(torch.ones(37, 37, dtype=torch.bool), diagonal=1)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    means = class_cosine_means(x, labels)
    assert means["cosine_same_class_mean"] == pytest.approx(float(cosines[upper & same].mean()))
    assert means["cosine_other_class_mean"] == pytest.approx(float(cosines[upper & ~same].mean()))
    counts, edges = class_cosine_histograms(x, labels, bins=10, block_size=8)  # blocks that cut across classes
    expected = torch.histc(cosines[upper & same].float(), bins=10, min=-1, max=1)
    assert counts["same_class"].tolist() == expected.long().tolist()
    assert int(counts["same_class"].sum() + counts["other_class"].sum()) == 37 * 36 // 2


def test_stratified_split_keeps_each_class_in_proportion():
    labels = [0] * 100 + [1] * 40 + [2] * 20
    splits = stratified_split(labels, (0.8, 0.15, 0.05), seed=3)
    for label, size in ((0, 100), (1, 40), (2, 20)):
        mine = [split for split, value in zip(splits, labels) if value == label]
        assert [mine.count(name) for name in ("train", "val", "test")] == [round(0.8 * size), round(0.95 * size) - round(0.8 * size), size - round(0.95 * size)]
    assert stratified_split(labels, (0.8, 0.15, 0.05), seed=3) == splits != stratified_split(labels, (0.8, 0.15, 0.05), seed=4)


def test_balanced_sampler_draws_classes_equally_often():
    labels = torch.tensor([0] * 900 + [1] * 100)
    counts = torch.bincount(labels).double()
    sampler = WeightedEpochSampler(1.0 / counts[labels], seed=0)
    drawn = labels[list(sampler)]
    assert abs(float(drawn.float().mean()) - 0.5) < 0.05  # about half of each class
    sampler.set_epoch(1)
    assert list(sampler) != list(WeightedEpochSampler(1.0 / counts[labels], seed=0))


# ---- CIFAR-100 -------------------------------------------------------------------------------------


def random_part(n: int, classes: list[int], seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), [classes[k % len(classes)] for k in range(n)]


def test_cifar_reader_splits_standardises_and_maps_coarse_labels(tmp_path):
    write_cifar100(tmp_path, {"train": random_part(200, [0, 1, 49, 99], 0), "test": random_part(40, [0, 49], 1)})
    data = Cifar100DataModule(root=str(tmp_path), download=False, val_fraction=0.1, label="coarse")
    data.setup()
    assert data.num_classes == 20 and data.class_names[0] == "coarse_00"
    assert [len(data.datasets[split]) for split in ("train", "val", "test")] == [180, 20, 40]
    labels = data.datasets["test"].labels.tolist()
    assert sorted(set(labels)) == sorted({COARSE_OF_FINE[0], COARSE_OF_FINE[49]})  # 4 (fruit...), 10 (outdoor scenes)
    torch.manual_seed(0)  # the augmentation draws from the global RNG: its state after earlier tests moved the mean past the bound
    train = data.device_images(torch.stack([data.datasets["train"][k]["image"] for k in range(180)]), training=True)  # standardised (and augmented)
    assert train.mean().abs() < 0.1 and (train.std() - 1).abs() < 0.15
    # val is stratified by fine class: 5 of each of the 4 classes
    assert torch.bincount(data.datasets["val"].labels, minlength=20)[COARSE_OF_FINE[99]] == 5


def test_cifar_errors_name_the_folder_file_and_row(tmp_path):
    with pytest.raises(UserError, match=r"put the extracted cifar-100-python folder .* in " + str(tmp_path)):
        Cifar100DataModule(root=str(tmp_path), download=False).setup()
    images, fine = random_part(10, [3], 0)
    folder = write_cifar100(tmp_path, {"train": (images, fine), "test": (images, fine)})
    import pickle

    part = pickle.loads((folder / "train").read_bytes(), encoding="latin1")
    part["coarse_labels"][7] = 0  # bear (3) is a large carnivore (8)
    (folder / "train").write_bytes(pickle.dumps(part))
    with pytest.raises(UserError, match=r"train: row 7 has fine label 3 with coarse label 0.*superclass 8"):
        Cifar100DataModule(root=str(tmp_path), download=False).setup()
    part["coarse_labels"][7], part["fine_labels"][2] = 8, 100
    (folder / "train").write_bytes(pickle.dumps(part))
    with pytest.raises(UserError, match=r"train: fine_labels\[2\] = 100, not a class of 0..99"):
        Cifar100DataModule(root=str(tmp_path), download=False).setup()
    (folder / "test").write_bytes(b"not a pickle")
    part["fine_labels"][2] = 3
    (folder / "train").write_bytes(pickle.dumps(part))
    with pytest.raises(UserError, match=r"test: not a CIFAR-100 pickle"):
        Cifar100DataModule(root=str(tmp_path), download=False).setup()


def test_cifar_download_offline_names_the_folder(tmp_path, monkeypatch):
    with refusing_proxy() as proxy:
        for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            monkeypatch.setenv(name, proxy.url)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        with pytest.raises(UserError, match=r"could not download CIFAR-100 .* offline, put the extracted cifar-100-python folder"):
            Cifar100DataModule(root=str(tmp_path), download=True).setup()
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
        with pytest.raises(UserError, match=r"ImageNet weights of resnet18 .* put it at .*resnet18-f37072fd.pth; or set model.backbone.weights=none"):
            TorchvisionBackbone("resnet18", weights="imagenet")


def test_cifar_mapping_and_real_images_match_the_release(shared_data, tmp_path):
    """The 20 real CIFAR-100 test images, written in the release's format with their real label names,
    come out of the loader with the coarse label that labels.json (the release's meta) gives them."""
    meta = json.loads((shared_data / "cifar100" / "labels.json").read_text())
    fine_names, coarse_names = meta["fine_label_names"], meta["coarse_label_names"]
    assert [meta["fine_to_coarse"][name] for name in fine_names] == [coarse_names[k] for k in COARSE_OF_FINE]
    files = sorted((shared_data / "cifar100").glob("cifar100_*.png"))
    images = np.stack([np.array(Image.open(path).convert("RGB")) for path in files])
    fine = [int(path.stem.split("_")[2]) for path in files]
    write_cifar100(tmp_path, {"train": (images, fine), "test": (images, fine)}, fine_names, coarse_names)
    data = Cifar100DataModule(root=str(tmp_path), download=False, label="coarse", standardize=False, augment=False)
    data.setup()
    test = data.datasets["test"]
    assert len(test) == 20
    for k in range(20):
        assert data.class_names[int(test.labels[k])] == meta["fine_to_coarse"][fine_names[fine[k]]]
        assert test[k]["image"].dtype == torch.uint8  # no float transform: uint8 to the model
        assert torch.equal(test[k]["image"], torch.from_numpy(images[k]).permute(2, 0, 1))


def test_cifar_cnn_learns_real_images_well_above_chance(tmp_path):
    """The CIFAR study's CNN through the real loader, on 180 real pictures of three kinds (Twemoji
    flags, faces, animals; 32 px, CIFAR format): the loss falls and test accuracy beats chance (1/3)."""
    assert write_twemoji_blocks(tmp_path / "cifar", per_class=60) == {"flags": 60, "faces": 60, "animals": 60}
    cfg = compose_config("train.yaml", [
        "experiment=cifar100_cnn", f"data.root={tmp_path / 'cifar'}", "data.download=false", "data.batch_size=16",
        "trainer.max_epochs=6", "logger=csv", "extras.print_config=false", "trainer.log_every_n_steps=1",
    ], tmp_path / "run")
    metrics = train(cfg)
    history = pd.read_csv(next((tmp_path / "run").rglob("metrics.csv")))
    losses = history["train/loss_epoch"].dropna().tolist()
    assert losses[-1] < 0.5 * losses[0], losses
    assert metrics["test"]["test/acc"] > 0.7, metrics["test"]  # chance: 1/3 (15 test images a class)
    assert (tmp_path / "run" / "classification" / "test_confusion.png").stat().st_size > 0
    per_class = pd.read_csv(tmp_path / "run" / "classification" / "test_per_class.csv")
    assert per_class["class"].tolist()[:3] == ["flags", "faces", "animals"] and len(per_class) == 100
    assert per_class["support"].tolist()[:3] == [15, 15, 15]
    assert metrics["test"]["test/geometry/cosine_same_class_mean"] > metrics["test"]["test/geometry/cosine_other_class_mean"]


def test_resnet_classifier_config_runs_and_freezes_as_asked(tmp_path):
    write_cifar100(tmp_path / "cifar", {"train": random_part(40, [0, 1], 0), "test": random_part(8, [0, 1], 1)})
    cfg = compose_config("train.yaml", [
        "experiment=cifar100_resnet", f"data.root={tmp_path / 'cifar'}", "data.download=false", "data.batch_size=8",
        "+trainer.fast_dev_run=true", "logger=csv", "extras.print_config=false", "model.freeze=last_n", "model.train_last_n=2",
    ], tmp_path / "run")
    metrics = train(cfg)
    assert metrics["test"]["test/loss"] > 0
    model = ImageClassifier(TorchvisionBackbone("resnet18"), optimizer=torch.optim.SGD, num_classes=3, freeze="last_n", train_last_n=2)
    trained = {name.split(".")[1] for name, p in model.backbone.named_parameters() if p.requires_grad}
    assert trained == {"layer3", "layer4"}
    model.train()
    assert not model.backbone.network.bn1.training and model.backbone.network.layer4[0].bn1.training
    with pytest.raises(UserError, match="model.train_last_n must be between 1 and 5"):
        ImageClassifier(TorchvisionBackbone("resnet18"), optimizer=torch.optim.SGD, freeze="last_n", train_last_n=6)


def test_a_misspelt_backbone_key_fails_at_start_up(tmp_path):
    cfg = compose_config("train.yaml", ["experiment=cifar100_resnet", "+model.backbone.nmae=resnet34"], tmp_path)
    with pytest.raises(ConfigError, match=r"model.backbone.nmae: not an argument of memegap.nets.backbones.TorchvisionBackbone"):
        validate_config(cfg)


# ---- image sentiment -------------------------------------------------------------------------------


def test_sentiment_reader_on_the_real_table(shared_data):
    table = read_sentiment_table(shared_data / SENTIMENT_CSV)
    labels = [row.label for row in table.rows]
    assert len(labels) == 15_613 and not table.has_images
    assert [labels.count(k) for k in range(5)] == [283, 2119, 4227, 8551, 433]  # Highly negative … Highly positive
    splits = stratified_split(labels, (0.8, 0.15, 0.05))
    for k in range(5):
        mine = [split for split, label in zip(splits, labels) if label == k]
        assert abs(mine.count("train") / len(mine) - 0.8) < 0.01 and abs(mine.count("test") / len(mine) - 0.05) < 0.01


def sentiment_subset(shared_data: Path, folder: Path, base_url: str, rows: int, missing: int) -> Path:
    """The first `rows` rows of the real table (CR line endings kept) with image URLs on the loopback
    server; the last `missing` URLs name files the server does not have."""
    frame = pd.read_csv(shared_data / SENTIMENT_CSV, dtype=str, keep_default_na=False).head(rows)
    frame["imageurl"] = [f"{base_url}/{'gone' if k >= rows - missing else 'coco'}/{k}.jpg" for k in range(rows)]
    path = folder / "sentiment.csv"
    frame.to_csv(path, index=False, lineterminator="\r", quoting=csv.QUOTE_ALL)  # fields hold \n: quote them
    return path


def test_sentiment_download_store_and_training_count_what_they_leave_out(shared_data, tmp_path):
    from memegap.collect.cli import main as collect

    coco = sorted((shared_data / "coco_mini" / "img").glob("*.jpg"))[:30]
    with static_files_server({f"coco/{k}.jpg": path for k, path in enumerate(coco)}) as server:
        table = sentiment_subset(shared_data, tmp_path, server.url, rows=30, missing=4)
        collect(["download", "--table", str(table), "--url-column", "imageurl", "--workers", "4", "--max-attempts", "1"])
    downloaded = pd.read_csv(table, dtype=str, keep_default_na=False)
    assert downloaded["download_status"].tolist().count("ok") == 26
    broken = table.parent / downloaded["image_path"][0]
    broken.write_bytes(broken.read_bytes()[:200])  # damaged after its download
    data = ImageSentimentDataModule(table=str(table), image_size=32, store_dir=str(tmp_path / "store"), balance="weights")
    data.setup()
    assert (data.counts["rows"], data.counts["not_downloaded"], data.counts["unreadable"]) == (30, 4, 1)
    assert sum(len(data.datasets[split]) for split in ("train", "val", "test")) == 25
    train_set = data.datasets["train"]
    counts = torch.bincount(train_set.labels, minlength=5).double()
    assert [train_set[k]["weight"] for k in range(3)] == pytest.approx([float(len(train_set) / (5 * counts[train_set.labels[k]])) for k in range(3)])
    cfg = compose_config("train.yaml", [
        "experiment=image_sentiment", f"data.table={table}", f"data.store_dir={tmp_path / 'store'}", "data.image_size=32",
        "data.batch_size=8", "model.backbone.name=resnet18", "model.backbone.weights=none", "+trainer.fast_dev_run=true",
        "logger=csv", "extras.print_config=false",
    ], tmp_path / "run")
    metrics = train(cfg)
    assert "test/classification/f1_macro" in metrics["test"]


def test_a_bad_sentiment_row_is_named_or_skipped_and_counted(tmp_path):
    header = ["_unit_id", "imageurl", "which_of_these_sentiment_scores_does_the_above_image_fit_into_best",
              "which_of_these_sentiment_scores_does_the_above_image_fit_into_best:confidence", "_trusted_judgments"]
    rows = [["1", "http://x/1.jpg", "Positive", "0.9", "3"], ["2", "http://x/2.jpg", "Very happy", "0.5", "3"], ["3", "http://x/3.jpg", "Neutral", "high", "3"]]
    path = tmp_path / "table.csv"
    pd.DataFrame(rows, columns=header).to_csv(path, index=False)
    with pytest.raises(UserError, match=r"table.csv: data row 2 \(_unit_id 2\), column which_of.*'Very happy' is not one of"):
        read_sentiment_table(path)
    table = read_sentiment_table(path, bad_rows="skip")
    assert [row.unit_id for row in table.rows] == ["1"] and table.bad_rows == 2 and table.rows[0].label == CLASSES.index("Positive")
    with pytest.raises(UserError, match=r"no image_path column; download the images first: memegap-collect download --table"):
        ImageSentimentDataModule(table=str(path), bad_rows="skip", store_dir=str(tmp_path / "store")).setup()


def test_the_loss_weighs_samples_and_smooths_labels_as_asked():
    """Σ wᵢ·CEᵢ / Σ wᵢ with the batch's weights; label smoothing ε moves ε of the target to the uniform."""
    class PassThrough(torch.nn.Module):
        output_dim = 3

        def stages(self) -> list:
            return []

        def forward(self, images):
            return images

    model = ImageClassifier(PassThrough(), optimizer=torch.optim.SGD, num_classes=3)
    model.head = torch.nn.Identity()  # the logits are the "images" themselves
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    batch = {"image": logits, "label": torch.tensor([0, 2]), "weight": torch.tensor([3.0, 1.0])}
    ce = -torch.log_softmax(logits, dim=1)[[0, 1], [0, 2]]
    with pytest.warns(UserWarning):  # self.log outside a Trainer
        assert float(model._step(batch, "train")["loss"]) == pytest.approx(float((3 * ce[0] + ce[1]) / 4))
    model.hparams.label_smoothing = 0.3
    smoothed = 0.7 * ce + 0.3 * (-torch.log_softmax(logits, dim=1)).mean(1)
    del batch["weight"]
    with pytest.warns(UserWarning):
        assert float(model._step(batch, "train")["loss"]) == pytest.approx(float(smoothed.mean()))
