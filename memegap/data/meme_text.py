"""Text features of a meme (the memes thesis, 000, and its companion study): the AFINN-111 sentiment
of the post text, LDA topics of the training texts, the text inside the image read by OCR, and the
packaged MiniLM sentence embedding, as extra columns of the memes table.

- afinn: the sum of the valences (−5…+5) of the words and phrases of AFINN-111 (2,477 entries) found
  in the text, 0 for an empty one (the `afinn` package's matcher; its own copy of AFINN-111, or
  `lexicon` for another file).
- lda: topic proportions (K columns, summing to 1) of a gensim LdaModel fitted on the training texts
  only, after lowercasing and dropping punctuation, numbers and English stop words (the companion
  study's topics were full of "The", "-", "New"); `coherence` (c_v, gensim CoherenceModel on the
  training texts) says how readable the topics are, to choose K.
- ocr: the text inside the image (rapidocr-onnxruntime, whose models ship in the wheel: offline),
  cached per image file content, so a table is read once. With it, afinn and minilm gain a column
  set for the OCR text, and LDA reads post text and OCR text as one document.
- minilm: the 384-d MiniLM-L6 sentence embedding (packaged, offline).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memegap.errors import UserError

log = logging.getLogger(__name__)

TEXT_FEATURES = ("afinn", "lda", "ocr", "minilm")


def check_text_features(features: Sequence[str]) -> None:
    """A UserError naming any entry of data.text_features that is not one of TEXT_FEATURES."""
    unknown = sorted(set(features) - set(TEXT_FEATURES))
    if unknown:
        raise UserError(f"data.text_features: {unknown} unknown; choose from {list(TEXT_FEATURES)}")


def afinn_scorer(lexicon: str | Path | None = None):
    """The afinn package's scorer on AFINN-111 (its own copy, or the file `lexicon`: word<TAB>valence)."""
    from afinn import Afinn

    scorer = Afinn()
    path = Path(lexicon) if lexicon else Path(scorer.full_filename("AFINN-111.txt"))
    if not path.is_file():
        raise UserError(f"data.afinn_lexicon={path}: no such file (a tab-separated word list with valences −5…+5)")
    scorer.setup_from_file(str(path))
    return scorer


def afinn_scores(texts: Sequence[str], lexicon: str | Path | None = None) -> np.ndarray:
    """float N: each text's AFINN score (0 for an empty text)."""
    scorer = afinn_scorer(lexicon)
    return np.array([scorer.score(text) if text else 0.0 for text in texts], dtype=np.float64)


def topic_tokens(text: str) -> list[str]:
    """Lowercase words of 2–15 letters, accents stripped, numbers, punctuation and English stop words out."""
    from gensim.parsing.preprocessing import STOPWORDS
    from gensim.utils import simple_preprocess

    return [word for word in simple_preprocess(text, deacc=True) if word not in STOPWORDS and word.isalpha()]


@dataclass
class TopicModel:
    """LDA fitted on training texts: `proportions(texts)` gives N×K topic shares."""

    model: object  # gensim LdaModel
    dictionary: object  # gensim Dictionary
    coherence: float  # c_v on the training texts

    def proportions(self, texts: Sequence[str]) -> np.ndarray:
        shares = np.zeros((len(texts), self.model.num_topics))
        for row, text in enumerate(texts):
            for topic, share in self.model.get_document_topics(self.dictionary.doc2bow(topic_tokens(text)), minimum_probability=0.0):
                shares[row, topic] = share
        return shares

    def top_words(self, count: int = 8) -> list[list[str]]:
        return [[word for word, _ in self.model.show_topic(topic, count)] for topic in range(self.model.num_topics)]


def fit_topics(train_texts: Sequence[str], topics: int = 10, seed: int = 0, passes: int = 10) -> TopicModel:
    """LDA with `topics` topics on the training texts (words in fewer than 2 of them dropped)."""
    from gensim.corpora import Dictionary
    from gensim.models import CoherenceModel, LdaModel

    logging.getLogger("gensim").setLevel(logging.WARNING)
    documents = [topic_tokens(text) for text in train_texts]
    dictionary = Dictionary(documents)
    dictionary.filter_extremes(no_below=2, no_above=0.5, keep_n=None)
    if len(dictionary) < topics:
        raise UserError(f"LDA: the training texts have {len(dictionary)} words in 2 or more texts, fewer than data.lda_topics={topics}")
    corpus = [dictionary.doc2bow(document) for document in documents]
    model = LdaModel(corpus, num_topics=topics, id2word=dictionary, passes=passes, random_state=seed, alpha="auto")
    coherence = CoherenceModel(model=model, texts=documents, dictionary=dictionary, coherence="c_v", processes=1).get_coherence()
    return TopicModel(model, dictionary, float(coherence))


class OcrCache:
    """Text read from images by rapidocr, kept in a JSON-lines file keyed by the SHA-1 of each image
    file's bytes (appended one line per image, so an interrupted read keeps what it has done)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.texts: dict[str, str] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                    self.texts[record["sha1"]] = record["text"]
                except (json.JSONDecodeError, KeyError):  # a line cut by a kill mid-write: read it again
                    continue

    def read(self, images: Sequence[Path]) -> list[str]:
        """The text of each image (lines joined by spaces; "" where none is found), from the cache
        where it is there."""
        keys = [hashlib.sha1(Path(image).read_bytes()).hexdigest() for image in images]
        missing = [k for k, key in enumerate(keys) if key not in self.texts]
        if missing:
            from rapidocr_onnxruntime import RapidOCR

            logging.getLogger("RapidOCR").setLevel(logging.WARNING)
            engine = RapidOCR()
            log.info("reading the text of %d images (OCR, once; cached in %s)", len(missing), self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                for done, k in enumerate(missing, 1):
                    result, _ = engine(str(images[k]))
                    self.texts[keys[k]] = " ".join(line[1] for line in result or [])
                    handle.write(json.dumps({"sha1": keys[k], "text": self.texts[keys[k]]}, ensure_ascii=False) + "\n")
                    handle.flush()
                    if done % 200 == 0:
                        log.info("OCR: %d of %d images", done, len(missing))
                os.fsync(handle.fileno())
        return [self.texts[key] for key in keys]


def text_feature_columns(texts: Sequence[str], ocr_texts: Sequence[str] | None, train_rows: np.ndarray, features: Sequence[str],
                         lexicon: str | Path | None = None, topics: int = 10, seed: int = 0) -> tuple[dict[str, np.ndarray], dict]:
    """The columns (name → float N) of the chosen features for N memes; LDA is fitted on `train_rows`
    (indices). Returns them and a report: the LDA coherence and top words when LDA is on."""
    check_text_features(features)
    sources = {"": list(texts)} | ({"_ocr": list(ocr_texts)} if ocr_texts is not None else {})
    columns, report = {}, {}
    if "afinn" in features:
        for suffix, source in sources.items():
            columns[f"afinn{suffix}"] = afinn_scores(source, lexicon)
    if "lda" in features:
        documents = [" ".join(parts) for parts in zip(*sources.values())]
        topic_model = fit_topics([documents[k] for k in train_rows], topics, seed)
        for topic, shares in enumerate(topic_model.proportions(documents).T):
            columns[f"topic_{topic}"] = shares
        report |= {"lda_coherence": topic_model.coherence, "lda_top_words": topic_model.top_words()}
    if "minilm" in features:
        from memegap.nets.frozen_features import text_features

        for suffix, source in sources.items():
            for dim, values in enumerate(text_features(source).T):
                columns[f"minilm{suffix}_{dim}"] = values
    return columns, report
