"""Caption models of the posts study (the influencer thesis, 001): fastText word vectors (gensim),
a caption vector as the mean of its words' vectors, and two classifiers on those vectors.

- `fit_fasttext`: unsupervised fastText (gensim FastText; the thesis: dimension 128, 15 epochs,
  skip-gram better than CBOW), fitted on the training captions only.
- `SoftmaxCaptionClassifier`: fastText's supervised model is a softmax layer on the mean of a text's
  word vectors; here that layer is scikit-learn's multinomial logistic regression on the fastText
  caption vectors (the official `fasttext` bindings stop with "Encountered NaN" on every supervised
  run on this project's machines, so they are not used; `fasttext_training_file` writes the caption
  training set in their `__label__` format for `fasttext supervised` where it runs).
- `fit_caption_svm`: an RBF SVM (scikit-learn SVC, one-vs-one) on standardised vectors; γ and C from
  the thesis's grid (γ 0.001–0.01, C 1–100; its choice γ = 0.002, C = 90) by validation accuracy. It
  gives classes, not probabilities (`class_scores`: one-hot rows).
- `sentence_vectors`: offline, the packaged MiniLM sentence encoder instead of fastText vectors.

A caption with no word once cleaned (empty, or only emoji and punctuation) gives no text prediction:
`has_words` says which; the study counts them and uses the image alone for those posts.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from memegap.data.posts import clean_caption

SVM_GAMMAS = (0.001, 0.002, 0.005, 0.01)  # the thesis's grid bounds, with its choice 0.002
SVM_CS = (1.0, 10.0, 30.0, 90.0, 100.0)  # the thesis's grid bounds, with its choice 90
FASTTEXT_MODELS = {"skipgram": 1, "cbow": 0}


def words(caption: str) -> list[str]:
    """The cleaned caption's space-separated words (emoji kept as words)."""
    return clean_caption(caption).split()


def has_words(captions: list[str]) -> np.ndarray:
    """bool N: the caption holds at least one letter or digit once cleaned."""
    return np.array([any(character.isalnum() for character in clean_caption(caption)) for caption in captions])


def fasttext_training_file(captions: list[str], labels: list[str]) -> str:
    """The captions in fastText's supervised format, one `__label__<class> <cleaned caption>` a line
    (class names with spaces joined by "_"), for the fastText command line where it runs."""
    return "".join(f"__label__{label.replace(' ', '_')} {clean_caption(caption)}\n" for caption, label in zip(captions, labels))


def fit_fasttext(captions: list[str], dim: int = 128, epochs: int = 15, model: str = "skipgram", seed: int = 0):
    """gensim FastText word vectors (subword n-grams 3–6, every word kept) of the captions."""
    from gensim.models import FastText

    logging.getLogger("gensim").setLevel(logging.WARNING)  # one INFO line per epoch says nothing to a user
    if model not in FASTTEXT_MODELS:
        raise ValueError(f"fastText model must be one of {list(FASTTEXT_MODELS)}, got {model!r}")
    sentences = [words(caption) for caption in captions]
    sentences = [sentence for sentence in sentences if sentence]
    if not sentences:
        raise ValueError("no training caption has a word: cannot fit fastText vectors")
    return FastText(sentences=sentences, vector_size=dim, sg=FASTTEXT_MODELS[model], epochs=epochs, min_count=1, window=5,
                    seed=seed, workers=1)


def caption_vectors(fasttext_model, captions: list[str]) -> np.ndarray:
    """float32 N×dim: the mean of each caption's word vectors (zeros for a caption with no word)."""
    vectors = fasttext_model.wv
    return np.stack([
        vectors.get_mean_vector(tokens) if tokens else np.zeros(vectors.vector_size, dtype=np.float32)
        for tokens in map(words, captions)
    ]).astype(np.float32)


def sentence_vectors(captions: list[str]) -> np.ndarray:
    """float32 N×384: MiniLM-L6 sentence embeddings of the cleaned captions."""
    from memegap.nets.frozen_features import text_features

    return text_features([clean_caption(caption) for caption in captions]).astype(np.float32)


class SoftmaxCaptionClassifier:
    """A softmax layer on standardised caption vectors (fastText's supervised classifier on fixed
    vectors). predict_proba gives N×num_classes, columns in class order (absent classes 0)."""

    def __init__(self, num_classes: int, seed: int = 0) -> None:
        self.num_classes = num_classes
        self.model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))

    def fit(self, vectors: np.ndarray, labels: np.ndarray) -> SoftmaxCaptionClassifier:
        self.model.fit(vectors, labels)
        return self

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        return class_probabilities(self.model, vectors, self.num_classes)


def fit_caption_svm(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    gammas: tuple[float, ...] = SVM_GAMMAS,
    cs: tuple[float, ...] = SVM_CS,
    seed: int = 0,
    standardise: bool = True,
) -> tuple[Pipeline, dict]:
    """The RBF SVM of the (γ, C) with the best validation accuracy (ties: the first in grid order),
    fitted on train. Returns it and {gamma, C, val_acc}. standardise: scale each input column to unit
    variance first (False for inputs already on that scale, such as a Reducer's)."""
    best = None
    for gamma in gammas:
        for c in cs:
            svm = make_pipeline(*([StandardScaler()] if standardise else []), SVC(kernel="rbf", gamma=gamma, C=c, random_state=seed))
            accuracy = float((svm.fit(*train).predict(val[0]) == val[1]).mean())
            if best is None or accuracy > best[1]["val_acc"]:
                best = (svm, {"gamma": gamma, "C": c, "val_acc": accuracy})
    return best


def class_probabilities(model, inputs: np.ndarray, num_classes: int) -> np.ndarray:
    """A fitted scikit-learn classifier's probabilities as N×num_classes (classes that did not occur in
    its training labels get 0)."""
    probabilities = np.zeros((len(inputs), num_classes), dtype=np.float64)
    probabilities[:, model.classes_] = model.predict_proba(inputs)
    return probabilities


def class_scores(model, inputs: np.ndarray, num_classes: int) -> np.ndarray:
    """A fitted classifier's predicted classes as one-hot rows N×num_classes."""
    return np.eye(num_classes)[model.predict(inputs)]
