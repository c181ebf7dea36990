"""Meme popularity (part 1): the memes table and its errors, splits, bins and triplets, the triplet loss
on hand-computed cases, kNN against brute force, the popularity measures on a hand-made table, the
collapse detector, and training runs on real Reddit memes."""

from __future__ import annotations

import math
from pathlib import Path

import hydra
import lightning as L
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from memegap.data.meme_splits import perceptual_groups, split_memes
from memegap.data.memes import MemesDataModule
from memegap.data.memes_table import read_memes_table
from memegap.data.sampling import TripletSampler
from memegap.targets import like_bin_edges, like_bins
from memegap.errors import UserError
from memegap.index.knn import KnnIndex, knn_predict
from memegap.metrics.popularity import bootstrap_interval, mae_log, overall_metrics, pairwise_accuracy, per_bin_metrics, spearman
from memegap.losses.triplet import triplet_loss
from memegap.models.siamese_triplet import SiameseTriplet, embedding_spread
from memegap.train import train
from tests.conftest import assert_spearman_of_the_written_predictions, compose_config

REDDIT = "memes_reddit/memes.csv"


def memes_table(folder: Path, likes: list, ids: list | None = None, images: int | None = None) -> Path:
    """A memegap-layout parquet table of len(likes) memes with real-looking small images."""
    rows = []
    for k, count in enumerate(likes):
        path = folder / f"m{k}.png"
        Image.new("RGB", (40, 40), ((37 * k) % 256, (91 * k) % 256, (53 * k) % 256)).save(path)
        rows.append({"id": (ids or [f"m{k}" for k in range(len(likes))])[k], "created_at": pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=k),
                     "likes": count, "text": f"meme {k}", "image_path": path.name})
    table = folder / "memes.parquet"
    pq.write_table(pa.Table.from_pylist(rows), table)
    return table


def test_the_reddit_layout_is_read_as_memes(shared_data):
    table = read_memes_table(shared_data / REDDIT)
    assert len(table.memes) == 1663 and table.bad_rows == 0
    first = table.memes[0]  # 50bm0e,1472570026,spaz1729,3363,Hair Spaghetti,img/50bm0e.jpg
    assert (first.id, first.likes, first.text, first.author) == ("50bm0e", 3363, "Hair Spaghetti", "spaz1729")
    assert first.created_at == 1472570026 and first.image == (shared_data / "memes_reddit" / "img" / "50bm0e.jpg").resolve()


def test_bad_rows_are_named_or_skipped_and_counted(tmp_path):
    for likes, ids, message in (
        ([10, -3, 5], None, r"data row 2, column likes: '-3' is not a count of likes"),
        ([10, "many", 5], None, r"data row 2, column likes: 'many' is not a number"),
        ([10, 20, 5], ["a", "b", "a"], r"data row 3, column id: 'a' repeats data row 1"),
    ):
        frame = pd.DataFrame({"id": ids or ["a", "b", "c"], "created_at": ["2024-01-01"] * 3, "likes": [str(v) for v in likes], "text": "t", "image_path": "x.png"})
        frame.to_csv(tmp_path / "t.csv", index=False)
        with pytest.raises(UserError, match=message + r".*data.bad_rows=skip"):
            read_memes_table(tmp_path / "t.csv")
        table = read_memes_table(tmp_path / "t.csv", bad_rows="skip")
        assert (len(table.memes), table.bad_rows) == (2, 1)
    pd.DataFrame({"id": ["a"], "likes": [1]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(UserError, match=r"t.csv: no column created_at, text, image_path .*a memes table needs"):
        read_memes_table(tmp_path / "t.csv")


def test_missing_and_corrupt_images_are_counted_and_left_out(tmp_path):
    table = memes_table(tmp_path, list(range(100, 1400, 100)))  # 13 memes
    (tmp_path / "m3.png").write_bytes(b"\x89PNG broken")
    (tmp_path / "m5.png").unlink()
    data = MemesDataModule(table=str(table), image_size=16, store_dir=str(tmp_path / "store"), split_fractions=(0.6, 0.2, 0.2))
    data.setup()
    assert (data.counts["rows"], data.counts["unreadable"]) == (13, 2)
    assert sum(len(d) for d in data.datasets.values()) == 11


def test_splits_keep_time_order_and_templates_together(tmp_path):
    table = memes_table(tmp_path, [100 * (k + 1) for k in range(20)])
    memes = read_memes_table(table).memes
    chronological = split_memes(memes, "chronological", (0.7, 0.1, 0.2), seed=0)
    assert chronological == ["train"] * 14 + ["val"] * 2 + ["test"] * 4  # the table is in time order
    random = split_memes(memes, "random", (0.7, 0.1, 0.2), seed=0)
    assert sorted(random) == sorted(chronological) and random != chronological and random == split_memes(memes, "random", (0.7, 0.1, 0.2), seed=0)
    groups = [f"template{k % 5}" for k in range(20)]
    grouped = split_memes(memes, "group", (0.6, 0.2, 0.2), seed=0, groups=groups)
    for template in set(groups):
        assert len({split for split, group in zip(grouped, groups) if group == template}) == 1


def test_perceptual_hash_groups_near_copies():
    generator = np.random.default_rng(0)
    base = [generator.integers(0, 256, (8, 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1) for _ in range(3)]  # blocky pictures
    copies = [np.clip(picture.astype(int) + generator.integers(-6, 7, picture.shape), 0, 255).astype(np.uint8) for picture in base]
    images = torch.from_numpy(np.stack(base + copies)).permute(0, 3, 1, 2)
    groups = perceptual_groups(images, max_distance=6)
    assert [groups[k] == groups[k + 3] for k in range(3)] == [True] * 3 and len(set(groups)) == 3


def test_like_bins_follow_the_thesis_edges_and_training_quantiles():
    edges = like_bin_edges("thesis", np.array([]), 4)
    assert like_bins(np.array([750, 1000, 1001, 1500, 1501, 2000, 2001, 90000]), edges).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    quantiles = like_bin_edges("quantile", np.arange(1, 101, dtype=float), 4)
    assert np.bincount(like_bins(np.arange(1, 101, dtype=float), quantiles)).tolist() == [25, 25, 25, 25]


def test_triplets_pair_same_bins_and_push_far_bins():
    bins = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3, 3, 3])
    sampler = TripletSampler(bins, seed=0)
    triplets = list(sampler)
    assert sorted(anchor for anchor, _, _ in triplets) == list(range(10))
    for anchor, positive, negative in triplets:
        assert bins[positive] == bins[anchor] and positive != anchor
        assert abs(int(bins[negative]) - int(bins[anchor])) >= 2
    sampler.set_epoch(1)
    assert list(sampler) != triplets


def test_triplet_loss_on_hand_computed_cases():
    # anchors (0,0), (1,0); positives (3,0), (0,0); negatives (0,1), (0,0.5)
    embeddings = torch.tensor([[0.0, 0], [1, 0], [3, 0], [0, 0], [0, 1], [0, 0.5]])
    rows = torch.arange(2)
    triplets = (rows, rows + 2, rows + 4)
    # euclidean, margin 1: max(0, 3 − 1 + 1) = 3 and max(0, 1 − √1.25 + 1) = 2 − √1.25
    assert float(triplet_loss("euclidean", 1.0)(embeddings, indices_tuple=triplets)) == pytest.approx((3 + 2 - math.sqrt(1.25)) / 2)
    # cosine, margin √3/2: violation = cos(a, n) − cos(a, p) + m. Anchor 1: cos((1,0),(0,0)) = 0 (pml's
    # normalisation leaves a zero vector at zero), cos((1,0),(0,0.5)) = 0 -> m. Anchor 0 is zero: every cosine 0 -> m.
    margin = math.sqrt(3) / 2
    assert float(triplet_loss("cosine", margin)(embeddings, indices_tuple=triplets)) == pytest.approx(margin)
    unit = torch.tensor([[1.0, 0], [math.cos(0.5), math.sin(0.5)], [0, 1]])  # a, p at 0.5 rad, n at 90°
    expected = max(0.0, 0.0 - math.cos(0.5) + margin)
    assert float(triplet_loss("cosine", margin)(unit, indices_tuple=(torch.tensor([0]), torch.tensor([1]), torch.tensor([2])))) == pytest.approx(expected)


def test_knn_matches_brute_force_and_ivf_recalls_most_neighbours():
    generator = torch.Generator().manual_seed(0)
    reference, queries = torch.randn(2000, 32, generator=generator), torch.randn(50, 32, generator=generator)
    exact = torch.cdist(queries, reference).topk(10, largest=False).indices
    for backend in ("faiss", "torch", "auto"):
        assert torch.equal(KnnIndex(reference, backend=backend).search(queries, 10)[1], exact)
    cosine = (torch.nn.functional.normalize(queries, dim=1) @ torch.nn.functional.normalize(reference, dim=1).T).topk(10).indices
    for backend in ("faiss", "torch"):
        assert torch.equal(KnnIndex(reference, metric="cosine", backend=backend).search(queries, 10)[1], cosine)
    assert KnnIndex(reference).backend == "torch" and KnnIndex(reference, kind="ivf", nlist=32).backend == "faiss"  # the faster here
    with pytest.raises(ValueError, match="inverted file"):
        KnnIndex(reference, kind="ivf", backend="torch")
    ivf = KnnIndex(reference, kind="ivf", nlist=32, nprobe=8).search(queries, 10)[1]
    recall = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(ivf, exact)])
    assert recall > 0.5
    targets = torch.arange(2000, dtype=torch.float64)
    assert torch.allclose(knn_predict(KnnIndex(reference), targets, queries, 10), targets[exact].mean(1))


def test_popularity_measures_on_a_hand_made_table():
    true = np.array([800.0, 900, 1200, 1400, 1800, 5000])
    predicted = np.array([950.0, 1100, 1300, 1300, 2500, 3000])
    bins = per_bin_metrics(predicted, true, np.array([1000.0, 1500, 2000]))
    # bin 0: 800, 900 -> 950 (bin 0), 1100 (bin 1): precision 1/2, MSE (150² + 200²)/2
    assert bins[0] == {"bin": 0, "n": 2, "mse": pytest.approx((150**2 + 200**2) / 2), "rmse": pytest.approx(math.sqrt((150**2 + 200**2) / 2)), "precision": 0.5}
    assert [b["precision"] for b in bins] == [0.5, 1.0, 0.0, 1.0]
    # pairs with different true likes: 15; the prediction ties (1200, 1400) -> ½; every other pair in order
    assert pairwise_accuracy(predicted, true) == pytest.approx(14.5 / 15)
    assert pairwise_accuracy(predicted, true, block_size=2) == pytest.approx(14.5 / 15)
    # Spearman = Pearson correlation of the ranks: predicted 1 2 3.5 3.5 5 6 against true 1 … 6
    assert spearman(predicted, true) == pytest.approx(np.corrcoef([1, 2, 3.5, 3.5, 5, 6], [1, 2, 3, 4, 5, 6])[0, 1])
    assert math.isnan(spearman(np.full(6, 3.0), true))
    assert mae_log(predicted, true) == pytest.approx(np.mean(np.abs(np.log1p(predicted) - np.log1p(true))))
    low, high = bootstrap_interval(mae_log, predicted, true, resamples=200)
    assert low <= mae_log(predicted, true) <= high
    assert overall_metrics(predicted, true, resamples=50)["pairwise_acc"] == pytest.approx(14.5 / 15)


class OnePoint(torch.nn.Module):
    """A backbone whose fc layer starts at zero and cannot learn: every meme embeds at one point."""

    output_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.extractor = torch.nn.Linear(3, 4)
        self.head = torch.nn.Linear(4, 8)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def stages(self) -> list:
        return [self.extractor]

    def forward(self, images):
        return self.extractor(images.mean(dim=(2, 3)))


def test_a_collapsed_embedding_is_detected_and_named():
    model = SiameseTriplet(OnePoint(), optimizer=lambda params: torch.optim.SGD(params, lr=0.0))
    images = torch.rand(8, 3, 4, 4)
    batch = {"image": images, "positive_image": images.flip(0), "negative_image": images.roll(1, 0), "bin": torch.zeros(8, dtype=torch.long)}
    loader = torch.utils.data.DataLoader([batch], batch_size=None)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.warns(UserWarning, match=r"triplet loss sits at the margin \(1.000 ≈ 1.000\).*collapsed.*model.distance=cosine"):
        trainer.fit(model, train_dataloaders=loader)
    assert trainer.callback_metrics["train/collapsed"] == 1.0
    assert embedding_spread(torch.randn(100, 8)) > 0.5 and embedding_spread(torch.ones(100, 8)) == 0.0


def train_on_real_memes(shared_data: Path, tmp_path: Path, *overrides: str) -> dict:
    cfg = compose_config("train.yaml", [
        "experiment=memes_triplet", f"data.table={shared_data / REDDIT}", "data.image_size=32", "data.max_per_split=64",
        "data.batch_size=16", "trainer.max_epochs=6", "logger=csv", "extras.print_config=false", "trainer.log_every_n_steps=1",
        "callbacks.popularity_report.bootstrap_resamples=50", "model.optimizer.lr=1e-3", *overrides,
    ], tmp_path)
    return train(cfg)


def test_triplet_training_on_real_memes_lowers_the_loss(shared_data, tmp_path):
    metrics = train_on_real_memes(shared_data, tmp_path, "callbacks.popularity_report.baselines=false", "callbacks.popularity_report.pictures=false")
    history = pd.read_csv(next(tmp_path.rglob("metrics.csv")))
    losses = history["train/loss_epoch"].dropna().tolist()
    assert losses[-1] < losses[0], losses
    assert_spearman_of_the_written_predictions(metrics, tmp_path, shared_data)
    assert "| this model (kNN, k = 10) |" in (tmp_path / "popularity" / "test_report.md").read_text()


@pytest.mark.slow
def test_the_report_holds_every_baseline_and_picture(shared_data, tmp_path):
    """Slow: the baselines embed every meme with two pretrained towers, and UMAP compiles (~10 s)."""
    train_on_real_memes(shared_data, tmp_path, "trainer.max_epochs=1")
    report = (tmp_path / "popularity" / "test_report.md").read_text()
    for predictor in ("this model (kNN, k = 10)", "training mean", "training median", "kNN, random features",
                      "kNN, ImageNet features (untrained)", "ridge, image features", "ridge, image + post-text features"):
        assert f"| {predictor} |" in report
    for picture in ("likes_histogram", "projections", "gallery"):
        assert (tmp_path / "popularity" / f"{picture}.png").stat().st_size > 0


def test_memes_compose_with_the_dual_encoder(shared_data, tmp_path):
    """data=memes model=dual_encoder: meme pictures and their post titles as image-text pairs."""
    cfg = compose_config("train.yaml", [
        "experiment=twemoji_gap", "data=memes", f"data.table={shared_data / REDDIT}", "data.sampling=items", "data.image_size=32",
        "data.max_per_split=24", "data.batch_size=8", "+trainer.fast_dev_run=true", "logger=none", "extras.print_config=false",
        "data.eval_batch_size=24", "callbacks.cross_modal_retrieval.pool_size=90", "test_before_fit=false",
    ], tmp_path)
    memes = hydra.utils.instantiate(cfg.data)
    memes.setup()
    metrics = train(cfg)
    # Each meme is its own image: the pool holds every test meme (it held one "image" per like bin, 4,
    # when the pairs' image ids were the like bins).
    assert metrics["test"]["test/retrieval/pool_size"] == len(memes.datasets["test"]) == 24
    assert "test/geometry/gap" in metrics["test"]


@pytest.mark.parametrize("name, trains, trained", [("alexnet", "fc", {"head"}), ("resnet18", "last_n", {"head", "layer4"})])
def test_the_thesis_backbones_train_their_own_fc_layers(name, trains, trained):
    from memegap.nets.backbones import TorchvisionBackbone

    model = SiameseTriplet(TorchvisionBackbone(name, keep_head=True), optimizer=torch.optim.Adam, trains=trains)
    names = {key.split(".")[1] if key.startswith("backbone.head") else key.split(".")[2] for key, p in model.named_parameters() if p.requires_grad}
    assert names == trained
    batch = {"image": torch.rand(2, 3, 64, 64), "id": ["a", "b"]}
    assert model.embed(batch)["image"].shape == (2, 1000)  # the ImageNet classifier's output, as the thesis
    with pytest.raises(UserError, match="needs keep_head=true"):
        SiameseTriplet(TorchvisionBackbone(name), optimizer=torch.optim.Adam)


def test_pair_prediction_equals_the_head_on_every_pair_and_picks_the_closest():
    """The decomposed head gives what the dense layer gives on each concatenated pair, and the
    prediction averages the targets of the k training memes of smallest |predicted difference|."""
    from memegap.models.siamese_regression import pair_differences, predict_from_pairs

    generator = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(2 * 6, 1)
    queries, references = torch.randn(7, 6, generator=generator), torch.randn(40, 6, generator=generator)
    naive = torch.stack([torch.stack([head(torch.cat([q, r])).squeeze() for r in references]) for q in queries])
    assert torch.allclose(pair_differences(head, queries, references), naive, atol=1e-5)
    targets = torch.arange(40, dtype=torch.float32)
    closest = naive.abs().topk(3, dim=1, largest=False).indices
    predicted, rows = predict_from_pairs(head, references, targets, queries, k=3, block_size=4)
    assert torch.allclose(predicted, targets[closest].mean(1)) and torch.equal(rows, closest)
    corrected = (targets[closest] + naive.gather(1, closest)).mean(1)
    assert torch.allclose(predict_from_pairs(head, references, targets, queries, k=3, prediction="corrected")[0], corrected, atol=1e-5)


def test_pairs_are_new_each_epoch_and_never_a_meme_with_itself():
    from memegap.data.sampling import PairSampler

    sampler = PairSampler(50, seed=0)
    pairs = list(sampler)
    assert sorted(first for first, _ in pairs) == list(range(50)) and all(first != other for first, other in pairs)
    sampler.set_epoch(1)
    assert list(sampler) != pairs


def test_regression_training_on_real_memes_lowers_the_loss(shared_data, tmp_path):
    cfg = compose_config("train.yaml", [
        "experiment=memes_regression", f"data.table={shared_data / REDDIT}", "data.image_size=32", "data.max_per_split=64",
        "data.batch_size=16", "trainer.max_epochs=6", "logger=csv", "extras.print_config=false", "trainer.log_every_n_steps=1",
        "callbacks.popularity_report.baselines=false", "callbacks.popularity_report.pictures=false", "callbacks.popularity_report.bootstrap_resamples=50",
    ], tmp_path)
    metrics = train(cfg)
    losses = pd.read_csv(next(tmp_path.rglob("metrics.csv")))["train/loss_epoch"].dropna().tolist()
    assert losses[-1] < losses[0], losses
    assert "| this model (its own predictor, k = 10) |" in (tmp_path / "popularity" / "test_report.md").read_text()
    assert_spearman_of_the_written_predictions(metrics, tmp_path, shared_data)
