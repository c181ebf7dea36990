"""Zero-shot classification and linear probes on embeddings, as LAION's CLIP_benchmark measures them.

Zero-shot: each class's prompt embeddings (one per template, "A photo of {}.") are unit-normalised, averaged
and normalised again (CLIP's prompt ensembling, Radford et al. 2021, their notebook's `zeroshot_classifier`);
an image's class is the prototype of highest cosine. Linear probe: scikit-learn's logistic regression on the
frozen image embeddings, its inverse regularisation C chosen on the validation split, then refitted on train +
validation (as CLIP_benchmark's linear probe). Both report CLIP_benchmark's metric names: acc1, acc5 and
mean_per_class_recall (balanced accuracy), with the baselines beside them: chance (1 / C) and the majority
answer (the largest class of the labels scored, or of the training labels for the probe).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

# Prompt templates by language (ours; the first is the prompt the offline pair sources train with).
TEMPLATES = {
    "en": ["A picture of {}", "A photo of {}.", "An image of {}.", "A drawing of {}.", "An icon of {}."],
    "es": ["Una imagen de {}", "Una foto de {}.", "Una imagen de {}.", "Un dibujo de {}.", "Un icono de {}."],
}
# Inverse regularisation strengths the probe tries on the validation split (ours: a log grid, 1e-3 .. 1e3).
PROBE_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)


def class_prototypes(prompt_embeddings: Tensor) -> Tensor:
    """C×T×d embeddings of C classes under T templates -> C×d unit prototypes: normalise each prompt's
    embedding, average over the templates, normalise the mean."""
    if prompt_embeddings.ndim != 3:
        raise ValueError(f"prompt embeddings must be classes × templates × d, got shape {tuple(prompt_embeddings.shape)}")
    unit = torch.nn.functional.normalize(prompt_embeddings.double(), dim=2)
    return torch.nn.functional.normalize(unit.mean(1), dim=1)


def prompt_prototypes(embed_texts: Callable[[list[str]], Tensor], words: Sequence[str], templates: Sequence[str]) -> Tensor:
    """C×d unit prototypes of C classes: each class's words fill every template ({}), `embed_texts` (strings ->
    N×d) embeds the C·T prompts, class_prototypes averages them per class."""
    prompts = [template.format(name) for name in words for template in templates]
    return class_prototypes(embed_texts(prompts).reshape(len(words), len(templates), -1))


def balanced_recall_p_value(predicted: Tensor, labels: Tensor, permutations: int = 1000, seed: int = 0) -> float:
    """How often answers unrelated to the images score as well: the share of `permutations` random relabellings
    (labels shuffled, the predictions N kept, so the answers' own class frequencies stay) whose mean per-class recall
    reaches the observed one, counted as (1 + hits) / (1 + permutations). Small: the answers follow the classes."""
    labels, predicted = labels.long(), predicted.long()
    count = int(max(labels.max(), predicted.max())) + 1
    sizes = torch.bincount(labels, minlength=count).double()
    present = sizes > 0

    def balanced(truth: Tensor) -> Tensor:  # truth: P×N -> P mean per-class recalls
        right = (truth == predicted).double()
        per_class = torch.zeros(len(truth), count, dtype=torch.float64).scatter_add_(1, truth, right)
        return (per_class[:, present] / sizes[present]).mean(1)

    generator = torch.Generator().manual_seed(seed)
    observed = balanced(labels[None])[0]
    hits = 0
    for start in range(0, permutations, 100):  # 100 relabellings at a time: memory O(100 × N)
        shuffled = torch.stack([labels[torch.randperm(len(labels), generator=generator)] for _ in range(min(100, permutations - start))])
        hits += int((balanced(shuffled) >= observed - 1e-12).sum())
    return (1 + hits) / (1 + permutations)


def classification_metrics(scores: Tensor, labels: Tensor, class_count: int | None = None, majority_class: int | None = None,
                           permutations: int = 1000) -> dict:
    """Scores (N×C, higher = more likely) against labels (N, in 0..C−1): acc1, acc5 (top-5, or top-C when C < 5),
    mean_per_class_recall (over the classes present in labels), per_class_recall ({class: share}), and the
    baselines: chance_acc1 (1 / C), majority_acc1, the share of `majority_class` (default: the largest class of
    `labels`), with its mean per-class recall, and chance_p (balanced_recall_p_value of the top-1 answers over
    `permutations` relabellings; None when 0)."""
    count = class_count or scores.shape[1]
    labels = labels.long()
    order = scores.argsort(dim=1, descending=True)
    k = min(5, scores.shape[1])
    hits = order[:, :k] == labels[:, None]
    present = labels.unique()
    per_class = {int(c): float(hits[labels == c, 0].double().mean()) for c in present}
    counts = torch.bincount(labels, minlength=count)
    majority = int(counts.argmax()) if majority_class is None else majority_class
    return {
        "acc1": float(hits[:, 0].double().mean()),
        "acc5": float(hits.any(1).double().mean()),
        "mean_per_class_recall": float(np.mean(list(per_class.values()))),
        "per_class_recall": per_class,
        "chance_acc1": 1.0 / count,
        "majority_acc1": float(counts[majority] / len(labels)),
        "majority_mean_per_class_recall": float(majority in per_class) / len(present),  # recall 1 on its class, 0 elsewhere
        "chance_p": balanced_recall_p_value(order[:, 0].cpu(), labels.cpu(), permutations) if permutations else None,
        "samples": len(labels),
    }


def zero_shot(image_embeddings: Tensor, prototypes: Tensor, labels: Tensor, permutations: int = 1000) -> dict:
    """classification_metrics of the cosine of each image (N×d) with each class prototype (C×d)."""
    scores = torch.nn.functional.normalize(image_embeddings.double(), dim=1) @ prototypes.double().T
    return classification_metrics(scores, labels, class_count=len(prototypes), permutations=permutations)


def linear_probe(train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], class_count: int,
                 cs: tuple[float, ...] = PROBE_CS, seed: int = 0) -> dict:
    """Logistic regression on (embeddings N×d, labels N) of each split: C from `cs` by validation acc1 (the
    smaller C on a tie), refitted on train + val, scored on test (classification_metrics; the majority baseline is
    the largest training class). Adds `C` and `val_acc1` ({C: acc1})."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    def features(split: tuple[Tensor, Tensor]) -> tuple[np.ndarray, np.ndarray]:
        return split[0].double().cpu().numpy(), split[1].long().cpu().numpy()

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = features(train), features(val), features(test)
    if len(np.unique(y_train)) < 2:
        raise ValueError(f"the linear probe needs at least two classes in the training split, got {np.unique(y_train).tolist()}")

    def fit(x: np.ndarray, y: np.ndarray, c: float):
        scaler = StandardScaler().fit(x)
        return scaler, LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(scaler.transform(x), y)

    def class_scores(model, x: np.ndarray) -> Tensor:
        scaler, classifier = model
        probabilities = np.full((len(x), class_count), -np.inf)
        probabilities[:, classifier.classes_] = classifier.predict_log_proba(scaler.transform(x))
        return torch.from_numpy(probabilities)

    val_acc1 = {}
    for c in cs:
        predicted = class_scores(fit(x_train, y_train, c), x_val).argmax(1).numpy()
        val_acc1[c] = float((predicted == y_val).mean())
    best = max(cs, key=lambda c: (val_acc1[c], -c))
    model = fit(np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val]), best)
    majority = int(np.bincount(y_train, minlength=class_count).argmax())
    metrics = classification_metrics(class_scores(model, x_test), torch.from_numpy(y_test), class_count, majority_class=majority)
    return {**metrics, "C": best, "val_acc1": {str(c): value for c, value in val_acc1.items()}}
