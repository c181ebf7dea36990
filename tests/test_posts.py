"""Classifiers part 2 (posts and influencers): caption cleaning on hand-made captions, the posts table's
bad input, the thesis's late-fusion example, a fusion that must beat either modality alone, the
influencer decision on a hand-computed case (and against scikit-learn), the COCO-built table, and the
whole study on a trained run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import hamming_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from memegap.studies.posts.coco_posts import build_coco_posts, caption_objects, image_tags
from memegap.data.posts import OTHER, PostsDataModule, clean_caption, read_posts_table
from memegap.errors import UserError
from memegap.studies.posts.influencers import category_shares, decide, decision_metrics, threshold_sweep
from memegap.studies.posts.caption_text import SVM_CS, SVM_GAMMAS, SoftmaxCaptionClassifier, caption_vectors, fasttext_training_file, fit_caption_svm, fit_fasttext, has_words
from memegap.studies.posts.fusion import UNKNOWN, Reducer, agreement_rule, fusion_weight_sweep, late_fusion, mlp_probabilities, train_fusion_mlp
from memegap.studies.posts.cli import coco_tag_map, main as posts_main
from memegap.train import train
from memegap.studies.posts.sweep import plateau_centre
from tests.conftest import compose_config

FIELDS = ["post_id", "username", "image_path", "caption", "tags", "user_categories"]


def write_table(path: Path, rows: list[dict], fields: list[str] = FIELDS) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_captions_are_cleaned_as_the_thesis_did():
    assert clean_caption("Best #Food ever!!! (so good)\n@Chef_Ana says YUM 🍕🍕") == "best food ever so good chef_ana says yum 🍕🍕"
    assert clean_caption("  Sunset?  \r\n at the   #beach ") == "sunset at the beach"
    assert clean_caption(None) == ""
    assert has_words(["a dog 🐶", "🐶🐱 !!", "", "#"]).tolist() == [True, False, False, False]
    assert fasttext_training_file(["Best #Food!", "Up the hill\n#hike"], ["food", "the outdoors"]) == \
        "__label__food best food\n__label__the_outdoors up the hill hike\n"


def test_tags_become_categories_and_bad_tags_are_named_or_counted(tmp_path):
    rows = [
        {"post_id": "1", "username": "ana", "image_path": "a.jpg", "caption": "pizza night", "tags": "table|pizza", "user_categories": "food"},
        {"post_id": "2", "username": "ana", "image_path": "b.jpg", "caption": "my dog", "tags": "person|dog|sofa", "user_categories": "food"},
        {"post_id": "3", "username": "bo", "image_path": "c.jpg", "caption": "hi", "tags": "person", "user_categories": "sport"},
        {"post_id": "4", "username": "bo", "image_path": "d.jpg", "caption": "yo", "tags": "spaceship", "user_categories": "sport"},
    ]
    table = write_table(tmp_path / "posts.csv", rows)
    tag_map = {"pizza": "food", "table": OTHER, "dog": "animals", "sofa": OTHER, "person": None}
    with pytest.raises(UserError, match=r"data row 4 \(post_id 4\).*'spaceship' is not in data.tag_map"):
        read_posts_table(table, tag_map=tag_map)
    read = read_posts_table(table, tag_map=tag_map, unknown_tags="skip")
    # "other" goes last; a post whose only tag says nothing (person) has no category: left out, counted
    assert [post.labels for post in read.posts] == [("food", OTHER), ("animals", OTHER)]
    assert read.counts["unknown_tags"] == 1 and read.counts["unlabelled"] == 2
    as_other = read_posts_table(table, tag_map=tag_map, unknown_tags="other")
    assert [post.labels for post in as_other.posts][-1] == (OTHER,)
    without_other = read_posts_table(table, tag_map=tag_map, unknown_tags="skip", other=False)
    assert [post.labels for post in without_other.posts] == [("food",), ("animals",)] and without_other.class_names[-1] == "fashion"
    with pytest.raises(UserError, match="not data.categories"):
        read_posts_table(table, tag_map={**tag_map, "dog": "pets"})
    with pytest.raises(UserError, match="data.tag_map"):
        read_posts_table(table)


def test_the_data_module_skips_and_counts_missing_and_unreadable_images(tmp_path):
    images = tmp_path / "img"
    images.mkdir()
    rows = []
    for index in range(12):
        path = images / f"{index}.png"
        if index != 3:  # post 3's image is missing
            Image.new("RGB", (20, 20), (20 * index, 0, 0)).save(path)
        rows.append({"post_id": str(index), "username": f"u{index % 4}", "image_path": f"img/{index}.png", "caption": "🍕" if index == 5 else "",
                     "labels": ["food", "sport"][index % 2]})
    (images / "7.png").write_bytes(b"not a png")
    table = write_table(tmp_path / "posts.csv", rows, ["post_id", "username", "image_path", "caption", "labels"])
    module = PostsDataModule(table=str(table), image_size=16, store_dir=str(tmp_path / "store"), split_fractions=(0.5, 0.25, 0.25))
    module.setup()
    assert module.counts["missing_image"] == 1 and module.counts["unreadable"] == 1
    kept = [post for split in ("train", "val", "test") for post in module.posts[split]]
    assert sorted(int(post.post_id) for post in kept) == [0, 1, 2, 4, 5, 6, 8, 9, 10, 11]
    # a user's posts all sit in one split
    for split in ("train", "val", "test"):
        others = {post.username for name in ("train", "val", "test") if name != split for post in module.posts[name]}
        assert not {post.username for post in module.posts[split]} & others
    assert module.class_names == ["outdoor", "animals", "food", "sport", "fashion", OTHER]


def test_late_fusion_reproduces_the_thesis_example():
    image = np.array([[0.78, 0.01, 0.006, 0.104, 0.1]])
    text = np.array([[0.35, 0.55, 0.03, 0.02, 0.05]])
    np.testing.assert_allclose(late_fusion(image, text, 0.8), [[0.694, 0.118, 0.0108, 0.0872, 0.09]], atol=1e-12)


def test_the_fusion_weight_is_chosen_at_the_centre_of_the_best_plateau():
    # 3 posts: the image is right on post 0 only, the text on posts 1 and 2 but only weakly
    image = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1]])
    text = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    labels = np.array([0, 1, 1])
    weights, accuracies = fusion_weight_sweep(image, text, labels)
    assert len(weights) == 101 and weights[0] == 0.0 and weights[-1] == 1.0
    # fused: class 0 scores 0.9λ, class 1 scores 0.1λ + (1 − λ); class 1 wins while λ < 1/1.8 = 0.556
    np.testing.assert_allclose(accuracies[:56], 2 / 3)
    np.testing.assert_allclose(accuracies[56:], 1 / 3)
    assert plateau_centre(weights, accuracies) == 0.28  # the middle of 0.00 … 0.55
    assert plateau_centre(np.arange(6), np.array([1, 3, 3, 3, 0, 3])) == 2  # the longer run of ties wins


def test_the_agreement_rule_keeps_only_posts_both_models_agree_on():
    assert agreement_rule(np.array([0, 1, 2]), np.array([0, 2, 2])).tolist() == [0, UNKNOWN, 2]


def test_fusion_beats_either_modality_when_each_holds_half_the_signal():
    """4 classes = 2 bits; the image features carry the first bit, the captions the second: either
    alone can reach 50 % at most, both together 100 %."""
    rng = np.random.default_rng(0)

    def sample(n):
        labels = rng.integers(0, 4, n)
        image = np.hstack([(labels // 2)[:, None] * 2.0 - 1, rng.normal(size=(n, 7))]) + rng.normal(scale=0.3, size=(n, 8))
        text = np.hstack([(labels % 2)[:, None] * 2.0 - 1, rng.normal(size=(n, 7))]) + rng.normal(scale=0.3, size=(n, 8))
        return image, text, labels

    (image, text, labels), (test_image, test_text, test_labels) = sample(400), sample(400)
    accuracy = {}
    for name, train_x, test_x in (("image", image, test_image), ("text", text, test_text),
                                  ("fusion", np.hstack([image, text]), np.hstack([test_image, test_text]))):
        model, losses = train_fusion_mlp(train_x, labels, 4, epochs=25, seed=0)
        assert losses[-1] < losses[0]
        accuracy[name] = float((mlp_probabilities(model, test_x).argmax(1) == test_labels).mean())
    assert max(accuracy["image"], accuracy["text"]) < 0.6
    assert accuracy["fusion"] > 0.9, accuracy


def test_the_reducer_keeps_at_most_n_minus_one_components_on_a_unit_scale():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(30, 50)) @ rng.normal(size=(50, 50))
    reducer = Reducer(128).fit(features)
    assert reducer.kept == 29
    np.testing.assert_allclose(reducer.transform(features).var(0, ddof=1).mean(), 1.0, rtol=1e-6)


def test_caption_models_learn_separable_captions():
    captions = ["a dog in the park", "my dog runs", "cute dog 🐶", "pizza for dinner", "best pizza ever", "hot pizza slice"] * 3
    labels = np.array([0, 0, 0, 1, 1, 1] * 3)
    fasttext = fit_fasttext(captions, dim=16, epochs=30, seed=0)
    vectors = caption_vectors(fasttext, captions + [""])
    assert vectors.shape == (19, 16) and not vectors[-1].any()
    softmax = SoftmaxCaptionClassifier(num_classes=3).fit(vectors[:18], labels)
    probabilities = softmax.predict_proba(vectors[:18])
    assert probabilities.shape == (18, 3) and (probabilities[:, 2] == 0).all()  # class 2 never seen: probability 0
    assert (probabilities.argmax(1) == labels).all()
    svm, choice = fit_caption_svm((vectors[:12], labels[:12]), (vectors[12:18], labels[12:18]))
    # the grid's best validation accuracy, computed here with scikit-learn alone; ties go to the first in grid order
    scores = {}
    for gamma in SVM_GAMMAS:
        for c in SVM_CS:
            reference = make_pipeline(StandardScaler(), SVC(kernel="rbf", gamma=gamma, C=c, random_state=0)).fit(vectors[:12], labels[:12])
            scores[gamma, c] = float((reference.predict(vectors[12:18]) == labels[12:18]).mean())
    best = max(scores.values())
    assert choice["val_acc"] == best and (choice["gamma"], choice["C"]) == next(key for key, value in scores.items() if value == best)
    assert (svm.predict(vectors[12:18]) == labels[12:18]).all()


def test_the_influencer_decision_on_a_hand_computed_case():
    # ana: 3 classified posts (0, 0, 1) and one the rule left UNKNOWN; bo: (2, 2); cy: (2) only
    usernames = ["ana", "ana", "ana", "ana", "bo", "bo", "cy"]
    predictions = np.array([0, 0, 1, UNKNOWN, 2, 2, 2])
    shares, classified = category_shares(usernames, predictions, 3, ["ana", "bo", "cy"])
    np.testing.assert_allclose(shares, [[2 / 3, 1 / 3, 0], [0, 0, 1], [0, 0, 1]])
    assert classified.tolist() == [3, 2, 1]
    truth = np.array([[1, 1, 0], [0, 0, 1], [0, 1, 0]], dtype=bool)
    # threshold 0.5, min_posts 2: ana {0}, bo {2}, cy unknown → TP 2, FP 0, FN 2; 2 wrong cells of 9
    decided = decide(shares, classified, 0.5, min_posts=2)
    assert decided.tolist() == [[True, False, False], [False, False, True], [False, False, False]]
    assert decision_metrics(truth, decided) == pytest.approx({"precision": 1.0, "recall": 0.5, "hamming_loss": 2 / 9})
    # threshold 0.3: ana {0, 1} → TP 3, FN 1; 1 wrong cell
    assert decision_metrics(truth, decide(shares, classified, 0.3, 2)) == pytest.approx({"precision": 1.0, "recall": 0.75, "hamming_loss": 1 / 9})
    sweep = threshold_sweep(truth, shares, classified, np.array([0.0, 0.3, 0.5, 0.7, 1.0]), min_posts=1)
    # min_posts 1: cy decides {2} (2 wrong cells) at every threshold; at 0.0 everyone gets every category
    np.testing.assert_allclose(sweep["hamming_loss"], [5 / 9, 2 / 9, 3 / 9, 4 / 9, 4 / 9])
    np.testing.assert_allclose(sweep["precision"], [4 / 9, 3 / 4, 2 / 3, 1 / 2, 1 / 2])
    for threshold, loss in zip(sweep["threshold"], sweep["hamming_loss"]):
        wrong_cells = (decide(shares, classified, threshold) != truth).mean()
        assert loss == pytest.approx(wrong_cells) == pytest.approx(hamming_loss(truth, decide(shares, classified, threshold)))


def test_coco_captions_give_tags_by_annotator_agreement():
    assert caption_objects("Two dogs and a man near a fire hydrant.") == {"dog", "person", "fire hydrant"}
    assert caption_objects("A plane over the bikes") == {"airplane", "bicycle"}
    captions = ["A dog on a bench.", "A puppy sits on a bench.", "A dog and a cat.", "Some cake.", "A bench."]
    assert image_tags(captions) == ["bench", "dog"]  # cat and cake: one caption each


def test_the_coco_posts_table_is_built_as_the_readme_says(shared_data, tmp_path):
    table = tmp_path / "posts.csv"
    counts = build_coco_posts(shared_data / "coco_mini", table, coco_tag_map())
    coco = json.loads((shared_data / "coco_mini" / "captions.json").read_text())
    captions = {}
    for annotation in sorted(coco["annotations"], key=lambda annotation: annotation["id"]):
        captions.setdefault(str(annotation["image_id"]), []).append(annotation["caption"].strip())
    # every COCO image is a post or left out for want of a category; each post once, with its image's
    # first caption and the tags its captions agree on
    assert counts["posts"] + counts["left_out_no_category"] == len(coco["images"])
    assert sum(counts["posts_per_class"].values()) == counts["posts"]
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len({row["post_id"] for row in rows}) == counts["posts"] and len({row["username"] for row in rows}) == counts["users"]
    for row in rows:
        assert row["caption"] == captions[row["post_id"]][0] and row["tags"].split("|") == image_tags(captions[row["post_id"]])
    read = read_posts_table(table, tag_map=coco_tag_map())
    assert len(read.posts) == counts["posts"]
    assert {name: sum(post.labels[0] == name for post in read.posts) for name in counts["posts_per_class"]} == counts["posts_per_class"]
    for user in {post.username for post in read.posts}:
        posts = [post for post in read.posts if post.username == user]
        assert set(posts[0].user_categories) == {post.labels[0] for post in posts}
        assert 3 <= len(posts) <= 9
    assert all(post.image.is_file() for post in read.posts)


@pytest.mark.slow
def test_the_posts_study_runs_on_a_trained_image_run(shared_data, tmp_path, capsys):
    table = tmp_path / "posts.csv"
    build_coco_posts(shared_data / "coco_mini", table, coco_tag_map())
    run_dir = tmp_path / "run"
    cfg = compose_config("train.yaml", ["experiment=posts_image", f"data.table={table}", "data.image_size=32", "trainer.max_epochs=1",
                                        "logger=none", "extras.print_config=false", f"paths.data_dir={tmp_path / 'data'}"], run_dir)
    train(cfg)
    posts_main(["run", "--run", str(run_dir), "--text-vectors", "minilm", "--mlp-epochs", "5"])
    out = run_dir / "posts_study_minilm"  # named by its caption vectors: a fastText study goes beside it
    study = json.loads((out / "results.json").read_text())
    assert study["counts"]["posts"]["train"] + study["counts"]["posts"]["val"] + study["counts"]["posts"]["test"] == 138
    assert set(study["influencers"]) == {"image", "text", "fusion", "no category for anyone (baseline)"}
    # COCO posts' categories come from the objects their captions name: the caption model and the late fusion
    # must beat the majority class by far on the test posts
    posts = study["posts"]
    majority = posts["majority class of train (baseline)"]["test"]["acc"]
    late = next(name for name in posts if name.startswith("fusion: late"))
    assert posts["text: minilm softmax"]["test"]["acc"] > majority + 0.2 and posts[late]["test"]["acc"] > majority + 0.2, posts
    assert len(study["fusion_weight_curve"]["val_acc"]) == 101
    decisions = json.loads((out / "influencers.json").read_text())
    assert len(decisions) == 24 and set(decisions[0]["categories"]) == {"image", "text", "fusion"}
    assert (out / "fusion_weight.png").stat().st_size > 0 and (out / "thresholds.png").stat().st_size > 0
    assert (out / "captions_train.txt").read_text().startswith("__label__")
    assert "| image |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        posts_main(["run", "--run", str(tmp_path)])  # not a run dir: one line, exit status 2
    before = (out / "results.json").read_bytes()
    with pytest.raises(SystemExit) as refused:
        posts_main(["run", "--run", str(run_dir), "--text-vectors", "minilm"])  # the same study again: never silently replaced
    assert refused.value.code == 2 and "--overwrite" in capsys.readouterr().err and (out / "results.json").read_bytes() == before
