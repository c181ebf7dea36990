"""Text features of memes (part 2): AFINN against the lexicon and the labelled tweets, LDA on texts of
two clear topics fitted on training texts only, OCR reading a rendered caption offline (and its cache),
and both memes models trained with fusion."""

from __future__ import annotations

import json
import os
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFont

from memegap.data.meme_text import OcrCache, afinn_scores, fit_topics, text_feature_columns, topic_tokens
from memegap.data.memes import MemesDataModule
from memegap.errors import UserError
from memegap.train import train
from tests.conftest import assert_spearman_of_the_written_predictions, compose_config


def test_afinn_sums_the_valences_of_words_and_phrases():
    # AFINN-111: good 3, bad −3, love 3, hate −3, "can't stand" −3, "does not work" −3
    scores = afinn_scores(["This is good and bad", "I LOVE it, love it!", "I can't stand it", "It does not work", "", "the table"])
    assert scores.tolist() == [0.0, 6.0, -3.0, -3.0, 0.0, 0.0]


def test_afinn_with_the_lexicon_file_separates_the_labelled_tweets(shared_data, tmp_path):
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("good\t3\nbad\t-3\nnot good\t-2\n", encoding="utf-8")
    # each word's valence summed; the phrase "not good" counts as itself, not as "good"
    assert afinn_scores(["good good bad", "this is not good", "nothing here"], lexicon).tolist() == [3.0, -2.0, 0.0]
    tweets = pd.read_csv(shared_data / "text" / "sanders_tweets.csv", dtype=str, keep_default_na=False)
    tweets = tweets[tweets.Sentiment.isin(["positive", "negative"])]
    scores = afinn_scores(tweets.TweetText.tolist(), shared_data / "text" / "AFINN-111.txt")
    positive = (tweets.Sentiment == "positive").to_numpy()
    assert len(open(shared_data / "text" / "AFINN-111.txt", encoding="utf-8").read().splitlines()) == 2477
    assert scores[positive].mean() > 0 > scores[~positive].mean()
    # the sign of the score beats always answering the commoner label, on the tweets that have a score
    decided = scores != 0
    sign_accuracy = ((scores > 0) == positive)[decided].mean()
    majority = max(positive[decided].mean(), 1 - positive[decided].mean())
    assert sign_accuracy > majority + 0.1, (sign_accuracy, majority)
    assert np.array_equal(scores, afinn_scores(tweets.TweetText.tolist()))  # the package's own AFINN-111 is the same
    with pytest.raises(UserError, match="no such file"):
        afinn_scores(["x"], shared_data / "text" / "missing.txt")


def test_topic_words_drop_case_punctuation_numbers_and_stop_words():
    assert topic_tokens("The New - Meme, 2019! Café & THE dogs") == ["new", "meme", "cafe", "dogs"]


def test_lda_finds_two_clear_topics_from_the_training_texts_only():
    pets = ["dog cat puppy kitten bark", "cat dog kitten fur paw", "puppy dog bark paw fur"]
    food = ["pizza pasta cheese tomato bread", "bread cheese pizza oven tomato", "pasta tomato cheese oven bread"]
    train = [text for pair in zip(pets * 4, food * 4) for text in pair]
    model = fit_topics(train, topics=2, seed=0, passes=30)
    shares = model.proportions(["dog puppy bark kitten", "cheese pizza bread pasta", "spaceship rocket"])
    assert np.allclose(shares.sum(1), 1.0)
    assert shares[0].argmax() != shares[1].argmax() and shares[0].max() > 0.8 and shares[1].max() > 0.8
    assert "spaceship" not in model.dictionary.token2id  # a word of no training text has no place
    # c_v of the model's topics (gensim's 20 top words each) on the training texts, computed here from the word lists
    from gensim.models import CoherenceModel

    words = [[word for word, _ in model.model.show_topic(topic, topn=20)] for topic in range(2)]
    expected = CoherenceModel(topics=words, texts=[topic_tokens(text) for text in train], dictionary=model.dictionary, coherence="c_v",
                              processes=1).get_coherence()
    assert model.coherence == pytest.approx(expected, abs=1e-6)
    with pytest.raises(UserError, match="fewer than data.lda_topics"):
        fit_topics(["one two", "two three"], topics=10)


def test_ocr_reads_a_rendered_caption_offline_and_caches_it(tmp_path):
    image = Image.new("RGB", (640, 200), "white")
    ImageDraw.Draw(image).text((30, 60), "HELLO MEMES", fill="black", font=ImageFont.load_default(size=64))
    image.save(tmp_path / "meme.png")
    cache = OcrCache(tmp_path / "ocr.jsonl")
    assert cache.read([tmp_path / "meme.png"])[0].replace(" ", "").upper() == "HELLOMEMES"
    (tmp_path / "ocr.jsonl").open("a").write('{"sha1": "cut mid-wri')  # a line cut by a kill
    again = OcrCache(tmp_path / "ocr.jsonl")
    assert again.read([tmp_path / "meme.png"]) == cache.read([tmp_path / "meme.png"])  # from the cache
    records = [line for line in (tmp_path / "ocr.jsonl").read_text().splitlines() if line.startswith('{"sha1": "') and line.endswith("}")]
    assert len(records) == 1 and json.loads(records[0])["text"]


def test_text_feature_columns_and_their_errors():
    texts = ["good dog", "bad cat", "good pizza", "bad pasta"] * 3
    columns, report = text_feature_columns(texts, ["love", "", "", ""] * 3, np.arange(8), ["afinn"])
    assert columns["afinn"].tolist() == [3.0, -3.0, 3.0, -3.0] * 3 and columns["afinn_ocr"][0] == 3.0 and report == {}
    with pytest.raises(UserError, match="unknown"):
        text_feature_columns(texts, None, np.arange(8), ["sentiment"])


@pytest.mark.parametrize("experiment", ["memes_regression", "memes_triplet"])
def test_both_memes_models_train_with_text_fusion(experiment, shared_data, tmp_path):
    cfg = compose_config("train.yaml", [
        f"experiment={experiment}", f"data.table={shared_data / 'memes_reddit' / 'memes.csv'}", "data.image_size=32", "data.max_per_split=60",
        "data.text_features=[afinn,lda]", "data.lda_topics=3", "model.fusion=true", "trainer.max_epochs=1", "logger=none",
        "extras.print_config=false", "test_before_fit=false", "callbacks.popularity_report.baselines=false", "callbacks.popularity_report.pictures=false",
    ], tmp_path / "run")
    memes = hydra.utils.instantiate(cfg.data)
    memes.setup()
    metrics = train(cfg)
    assert_spearman_of_the_written_predictions(metrics, tmp_path / "run", shared_data)
    # the logged coherence is that of the 3 LDA topics of the training titles (as the data module reports it)
    assert metrics["fit"]["data/lda_coherence"] == pytest.approx(memes.text_report["lda_coherence"], abs=1e-6)


def test_the_memes_table_gains_text_columns_standardised_on_train(shared_data):
    store = str(Path(os.environ["MEMEGAP_DATA_DIR"]) / "store")  # the tests' shared store (the fusion runs' 32 px one)
    module = MemesDataModule(table=str(shared_data / "memes_reddit" / "memes.csv"), image_size=32, max_per_split=50,
                             text_features=["afinn", "lda"], lda_topics=4, store_dir=store)
    module.setup()
    table = module.text_table
    assert list(table.columns[:3]) == ["id", "split", "text"] and {"afinn", "topic_0", "topic_3"} <= set(table.columns)
    assert len(table) == 150 and np.allclose(table[[f"topic_{k}" for k in range(4)]].sum(1), 1.0)
    train = module.datasets["train"].text_features
    assert train.shape == (50, 5) and np.allclose(train.mean(0), 0.0, atol=1e-5)
    batch = module.datasets["val"][0]
    assert batch["text_features"].shape == (5,)
    module_without = MemesDataModule(table=str(shared_data / "memes_reddit" / "memes.csv"), image_size=32, max_per_split=50, store_dir=store)
    module_without.setup()
    assert "text_features" not in module_without.datasets["val"][0]
