"""memegap-posts: the posts study of the influencer thesis (001) after its image classifier.

    memegap-posts build-coco --out data/posts/coco_posts.csv     # the COCO-built posts table
    memegap-train experiment=posts_image                         # step 1: the image classifier
    memegap-posts run --run logs/posts_image/runs/<run>          # captions, fusion, influencers

`run` reads the image run's best checkpoint and its data config (`--table` for another posts table),
then on the same user split: pseudo-labels the caption training set, fits the caption models
(fastText vectors, softmax, RBF SVM), the fusions (MLP and SVM on [PCA image ‖ caption], late fusion
with λ chosen on validation, the thesis's agreement rule), and the per-influencer decision with its
threshold chosen on validation users. It writes into --out (default: <run>/posts_study_<text vectors>/, e.g. posts_study_minilm/;
an existing study there is replaced only with --overwrite):
results.json, report.md, fusion_weight.png, thresholds.png, influencers.json and captions_train.txt
(the caption training set in fastText's `__label__` format).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn.metrics import f1_score

from memegap.batch import float_images
from memegap.config import CONFIG_DIR
from memegap.studies.posts.coco_posts import build_coco_posts
from memegap.data.splits import SPLITS
from memegap.errors import UserError, reported_as_one_line
from memegap.utils.cli import HelpFormatter, number_in
from memegap.studies.posts.influencers import THRESHOLDS, category_shares, decide, decision_metrics, threshold_sweep
from memegap.studies.posts.caption_text import (
    SoftmaxCaptionClassifier, caption_vectors, class_scores, fasttext_training_file, fit_caption_svm, fit_fasttext, has_words, sentence_vectors,
)
from memegap.studies.posts.fusion import UNKNOWN, Reducer, agreement_rule, fusion_weight_sweep, late_fusion, mlp_probabilities, train_fusion_mlp
from memegap.utils.io import write_text_atomic
from memegap.utils.quiet import silence_library_noise
from memegap.utils.run_dir import CONFIG_KEY, load_checkpoint
from memegap.studies.posts.sweep import plateau_centre
from memegap.utils.trained_run import best_checkpoint
from memegap.utils.figures import save_figure

PROGRAM = "memegap-posts"
log = logging.getLogger(__name__)


def load_image_run(run_dir: Path, table: str | None):
    """The posts data module (set up) and the trained image classifier (eval mode) of an image run."""
    checkpoint_path = best_checkpoint(run_dir)
    checkpoint = load_checkpoint(checkpoint_path)
    config = checkpoint.get(CONFIG_KEY)
    if not config or config.get("data", {}).get("_target_") != "memegap.data.posts.PostsDataModule":
        raise UserError(f"{checkpoint_path}: not a run of data=posts (train one with memegap-train experiment=posts_image)")
    data_config = {**config["data"], **({"table": table} if table else {})}
    datamodule = instantiate(data_config, _convert_="all")
    datamodule.setup("fit")
    model = instantiate(config["model"], num_classes=datamodule.num_classes, _convert_="all")
    model.load_state_dict(checkpoint["state_dict"])
    log.info("image classifier: %s", checkpoint_path)
    return datamodule, model.eval()


@torch.no_grad()
def image_outputs(model, images: torch.Tensor, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features N×D and class probabilities N×C of uint8 images N×3×S×S."""
    features, probabilities = [], []
    for start in range(0, len(images), batch_size):
        batch = model.backbone(float_images(images[start : start + batch_size]))
        features.append(batch)
        probabilities.append(torch.softmax(model.head(batch), dim=1))
    return torch.cat(features).numpy(), torch.cat(probabilities).numpy()


def scores(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    predictions = probabilities.argmax(1)
    return {"acc": float((predictions == labels).mean()), "f1_macro": float(f1_score(labels, predictions, average="macro", zero_division=0))}


def run_study(run_dir: Path, out_dir: Path, table: str | None = None, text_train: str = "agreeing", text_vectors: str = "fasttext", fasttext_model: str = "skipgram",
              dim: int = 128, epochs: int = 15, mlp_epochs: int = 25, min_posts: int = 3, seed: int = 0) -> dict:
    datamodule, model = load_image_run(run_dir, table)
    names, num_classes = datamodule.class_names, datamodule.num_classes
    posts = datamodule.posts
    labels = {split: datamodule.datasets[split].labels.numpy() for split in SPLITS}
    captions = {split: [post.caption for post in posts[split]] for split in SPLITS}
    worded = {split: has_words(captions[split]) for split in SPLITS}
    image = {split: image_outputs(model, datamodule.datasets[split].images) for split in SPLITS}
    features, p_image = {split: image[split][0] for split in SPLITS}, {split: image[split][1] for split in SPLITS}
    counts = {"posts": {split: len(posts[split]) for split in SPLITS}, "no_words_caption": {split: int((~worded[split]).sum()) for split in SPLITS},
              "left_out": {key: value for key, value in datamodule.counts.items() if key != "rows"}}

    # the caption training set: training posts with words, and (thesis) whose tag class the image model agrees with
    agreeing = p_image["train"].argmax(1) == labels["train"]
    text_rows = worded["train"] & (agreeing if text_train == "agreeing" else True)
    counts["pseudo_labelling"] = {names[k]: {"posts": int((labels["train"] == k).sum()), "kept": int(((labels["train"] == k) & text_rows).sum())}
                                  for k in range(num_classes)}
    train_captions = [caption for caption, keep in zip(captions["train"], text_rows) if keep]
    if text_vectors == "fasttext":
        fasttext = fit_fasttext(train_captions, dim, epochs, fasttext_model, seed)
        vectors = {split: caption_vectors(fasttext, captions[split]) for split in SPLITS}
    else:
        vectors = {split: sentence_vectors(captions[split]) for split in SPLITS}
    uniform = np.full(num_classes, 1.0 / num_classes)

    def text_outputs(classifier) -> dict[str, np.ndarray]:
        """A caption classifier's rows; a caption with no words gets the uniform row (no opinion)."""
        return {split: np.where(worded[split][:, None], classifier(vectors[split]), uniform) for split in SPLITS}

    softmax = SoftmaxCaptionClassifier(num_classes, seed).fit(vectors["train"][text_rows], labels["train"][text_rows])
    p_text = text_outputs(softmax.predict_proba)
    svm, svm_choice = fit_caption_svm((vectors["train"][text_rows], labels["train"][text_rows]),
                                      (vectors["val"][worded["val"]], labels["val"][worded["val"]]), seed=seed)
    svm_text = text_outputs(lambda inputs: class_scores(svm, inputs, num_classes))

    image_reducer = Reducer(128).fit(features["train"])
    text_reducer = Reducer(128).fit(vectors["train"][worded["train"]])
    joint = {split: np.hstack([image_reducer.transform(features[split]), text_reducer.transform(vectors[split])]) for split in SPLITS}
    mlp, mlp_losses = train_fusion_mlp(joint["train"], labels["train"], num_classes, epochs=mlp_epochs, seed=seed)
    p_mlp = {split: mlp_probabilities(mlp, joint[split]) for split in SPLITS}
    fusion_svm, fusion_svm_choice = fit_caption_svm((joint["train"], labels["train"]), (joint["val"], labels["val"]), seed=seed, standardise=False)
    svm_joint = {split: class_scores(fusion_svm, joint[split], num_classes) for split in SPLITS}
    weights, val_curve = fusion_weight_sweep(p_image["val"], p_text["val"], labels["val"])
    weight = plateau_centre(weights, val_curve)
    p_late = {split: late_fusion(p_image[split], p_text[split], weight) for split in SPLITS}

    majority = np.bincount(labels["train"], minlength=num_classes).argmax()
    models = {"majority class of train (baseline)": {split: np.eye(num_classes)[np.full(len(labels[split]), majority)] for split in SPLITS},
              "image": p_image, f"text: {text_vectors} softmax": p_text, f"text: {text_vectors} SVM": svm_text,
              "fusion: MLP [PCA image ‖ text]": p_mlp, "fusion: SVM [PCA image ‖ text]": svm_joint, f"fusion: late, λ = {weight:.2f}": p_late}
    results = {name: {split: scores(probabilities[split], labels[split]) for split in ("val", "test")} for name, probabilities in models.items()}
    rule = {split: agreement_rule(p_image[split].argmax(1), p_mlp[split].argmax(1)) for split in SPLITS}
    results["fusion: MLP, agreement rule"] = {split: {
        "acc_of_decided": float((rule[split] == labels[split])[rule[split] != UNKNOWN].mean()) if (rule[split] != UNKNOWN).any() else float("nan"),
        "decided": float((rule[split] != UNKNOWN).mean())} for split in ("val", "test")}

    post_predictions = {"image": {s: p_image[s].argmax(1) for s in SPLITS}, "text": {s: np.where(worded[s], p_text[s].argmax(1), UNKNOWN) for s in SPLITS},
                        "fusion": {s: p_late[s].argmax(1) for s in SPLITS}}
    influencers = influencer_decisions(posts, post_predictions, names, min_posts)
    study = {"run": str(run_dir), "classes": names, "counts": counts, "settings": {
        "text_train": text_train, "text_vectors": text_vectors, "fasttext_model": fasttext_model, "dim": dim, "epochs": epochs, "mlp_epochs": mlp_epochs, "min_posts": min_posts, "seed": seed,
        "svm": svm_choice, "fusion_svm": fusion_svm_choice, "fusion_weight": weight, "image_pca_components": image_reducer.kept, "text_pca_components": text_reducer.kept},
        "posts": results, "fusion_weight_curve": {"weight": weights.tolist(), "val_acc": val_curve.tolist(),
                                                  "test_acc": fusion_weight_sweep(p_image["test"], p_text["test"], labels["test"])[1].tolist()},
        "mlp_train_loss": mlp_losses, "influencers": influencers["metrics"]}
    write_outputs(out_dir, study, influencers["decisions"])
    write_text_atomic(out_dir / "captions_train.txt", fasttext_training_file(train_captions, [names[k] for k in labels["train"][text_rows]]))
    return study


def influencer_decisions(posts: dict, predictions: dict, names: list[str], min_posts: int) -> dict:
    """Each user's categories by each model's post predictions, at the threshold of lowest Hamming loss
    on validation users (when the table has user_categories), else at 0.28 (the thesis's P = R point).
    Baseline: deciding no category for anyone (its Hamming loss is the share of true user-category cells)."""
    users = {split: sorted({post.username for post in posts[split]}) for split in SPLITS}
    known = all(post.user_categories is not None for split in SPLITS for post in posts[split])
    truth = {split: true_categories(posts[split], users[split], names) for split in SPLITS} if known else {}
    metrics, decided = {}, {}
    for model, by_split in predictions.items():
        shares = {split: category_shares([post.username for post in posts[split]], by_split[split], len(names), users[split]) for split in SPLITS}
        threshold = 0.28
        if known:
            sweeps = {split: threshold_sweep(truth[split], *shares[split], THRESHOLDS, min_posts) for split in ("val", "test")}
            threshold = plateau_centre(THRESHOLDS, -sweeps["val"]["hamming_loss"])
            crossing = THRESHOLDS[np.argmin(np.abs(sweeps["val"]["precision"] - sweeps["val"]["recall"]))]
            metrics[model] = {"threshold": threshold, "val_precision_equals_recall_at": float(crossing),
                              "test": decision_metrics(truth["test"], decide(*shares["test"], threshold, min_posts)),
                              "sweeps": {split: {key: value.tolist() for key, value in sweep.items()} for split, sweep in sweeps.items()}}
        decided[model] = {split: (decide(*shares[split], threshold, min_posts), shares[split][1]) for split in SPLITS}
    if known:
        metrics["no category for anyone (baseline)"] = {"test": decision_metrics(truth["test"], np.zeros_like(truth["test"]))}
    decisions = []
    for split in SPLITS:
        for row, user in enumerate(users[split]):
            categories = {}
            for model in predictions:
                chosen, classified = decided[model][split]
                categories[model] = [names[k] for k in np.flatnonzero(chosen[row])] if classified[row] >= min_posts else "unknown"
            decisions.append({"username": user, "split": split, "categories": categories})
    return {"metrics": metrics, "decisions": decisions}


def true_categories(posts: list, users: list[str], names: list[str]) -> np.ndarray:
    """bool U×C: each user's categories from the table's user_categories column."""
    truth = np.zeros((len(users), len(names)), dtype=bool)
    row_of = {user: row for row, user in enumerate(users)}
    for post in posts:
        for category in post.user_categories:
            if category not in names:
                raise UserError(f"user {post.username}: user_categories names {category!r}, not a class {names}")
            truth[row_of[post.username], names.index(category)] = True
    return truth


def write_outputs(out_dir: Path, study: dict, decisions: list[dict]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "results.json", json.dumps(study, indent=2) + "\n")
    write_text_atomic(out_dir / "influencers.json", json.dumps(decisions, indent=2, ensure_ascii=False) + "\n")
    write_text_atomic(out_dir / "report.md", report(study))
    plot_curves(study, out_dir)


def report(study: dict) -> str:
    """The study's tables as Markdown."""
    settings, counts = study["settings"], study["counts"]
    lines = [f"# Posts study of {study['run']}", "",
             f"Posts (train / val / test): {' / '.join(str(counts['posts'][s]) for s in SPLITS)}; classes: {', '.join(study['classes'])}; "
             f"seed {settings['seed']}; captions with no words (image only): {sum(counts['no_words_caption'].values())}.", "",
             "| model | val acc | val macro F1 | test acc | test macro F1 |", "|---|---|---|---|---|"]
    for name, result in study["posts"].items():
        if "acc" in result["val"]:
            lines.append(f"| {name} | {result['val']['acc']:.3f} | {result['val']['f1_macro']:.3f} | {result['test']['acc']:.3f} | {result['test']['f1_macro']:.3f} |")
        else:
            lines.append(f"| {name} | {result['val']['acc_of_decided']:.3f} of {result['val']['decided']:.0%} decided | | "
                         f"{result['test']['acc_of_decided']:.3f} of {result['test']['decided']:.0%} decided | |")
    kept = counts["pseudo_labelling"]
    lines += ["", f"Caption training set ({settings['text_train']}): " + ", ".join(f"{name} {row['kept']}/{row['posts']}" for name, row in kept.items()),
              f"SVM: γ = {settings['svm']['gamma']}, C = {settings['svm']['C']}; late fusion λ = {settings['fusion_weight']:.2f} (chosen on val); "
              f"PCA components kept: image {settings['image_pca_components']}, text {settings['text_pca_components']}.", ""]
    if study["influencers"]:
        lines += ["| influencers (test users) | threshold (val) | precision | recall | Hamming loss | val P = R at |", "|---|---|---|---|---|---|"]
        for model, row in study["influencers"].items():
            test = row["test"]
            threshold, crossing = (f"{row['threshold']:.2f}", f"{row['val_precision_equals_recall_at']:.2f}") if "sweeps" in row else ("–", "–")
            lines.append(f"| {model} | {threshold} | {test['precision']:.3f} | {test['recall']:.3f} | {test['hamming_loss']:.3f} | {crossing} |")
    return "\n".join(lines) + "\n"


def plot_curves(study: dict, out_dir: Path) -> None:
    """fusion_weight.png (accuracy against λ, val and test) and thresholds.png (precision, recall and
    Hamming loss of the fusion's influencer decision against the threshold, val and test)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = study["fusion_weight_curve"]
    figure, axis = plt.subplots(figsize=(6, 4))
    for split in ("val", "test"):
        axis.plot(curve["weight"], curve[f"{split}_acc"], label=split)
    axis.axvline(study["settings"]["fusion_weight"], color="grey", linestyle=":", label="λ chosen on val")
    axis.set(xlabel="λ (weight of the image model)", ylabel="accuracy", title="late fusion λ·p_image + (1 − λ)·p_text")
    axis.legend()
    figure.tight_layout()
    save_figure(figure, out_dir / "fusion_weight.png")
    if "fusion" not in study["influencers"]:
        return
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    row = study["influencers"]["fusion"]
    for axis, split in zip(axes, ("val", "test")):
        sweep = row["sweeps"][split]
        for key in ("precision", "recall", "hamming_loss"):
            axis.plot(sweep["threshold"], sweep[key], label=key.replace("_", " "))
        axis.axvline(row["threshold"], color="grey", linestyle=":", label="threshold chosen on val")
        axis.set(xlabel="threshold (share of a user's posts)", title=f"{split} users")
    axes[0].legend()
    figure.tight_layout()
    save_figure(figure, out_dir / "thresholds.png")


def coco_tag_map() -> dict:
    return OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "data" / "posts.yaml").tag_map)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=PROGRAM, description=__doc__, formatter_class=HelpFormatter)
    top.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    commands = top.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build-coco", help="write the COCO-built posts table", formatter_class=HelpFormatter)
    build.add_argument("--coco", default="../shared/data/coco_mini", help="a COCO captions folder (captions.json + images)")
    build.add_argument("--out", default="data/posts/coco_posts.csv", help="the posts table to write (CSV)")
    build.add_argument("--posts-per-user", type=number_in(1), default=6)
    build.add_argument("--seed", type=int, default=0, help="the shuffle that groups posts into users")
    run = commands.add_parser("run", help="captions, fusion and influencers on a trained image run", formatter_class=HelpFormatter)
    run.add_argument("--run", required=True, help="the run dir of memegap-train experiment=posts_image")
    run.add_argument("--table", help="another posts table (default: the run's)")
    run.add_argument("--out", help="where to write (default: <run>/posts_study_<text vectors>, e.g. posts_study_minilm)")
    run.add_argument("--overwrite", action="store_true", help="replace the results already in --out (refused otherwise)")
    run.add_argument("--text-train", choices=("agreeing", "all"), default="agreeing",
                     help="caption training posts: those whose tag class the image model agrees with (the thesis), or all")
    run.add_argument("--text-vectors", choices=("fasttext", "minilm"), default="fasttext",
                     help="caption vectors: fastText fitted on the training captions, or the packaged MiniLM sentence encoder")
    run.add_argument("--fasttext-model", choices=("skipgram", "cbow"), default="skipgram")
    run.add_argument("--dim", type=number_in(1), default=128, help="fastText vector size")
    run.add_argument("--epochs", type=number_in(1), default=15, help="fastText epochs")
    run.add_argument("--mlp-epochs", type=number_in(1), default=25)
    run.add_argument("--min-posts", type=number_in(1), default=3, help="fewer classified posts make a user 'unknown' (ours)")
    run.add_argument("--seed", type=int, default=0)
    return top


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("litdata", "PIL", "lightning.pytorch", "lightning.fabric"):  # cache and device lines say nothing here
        logging.getLogger(noisy).setLevel(logging.WARNING)
    silence_library_noise()
    args = parser().parse_args(argv)
    with reported_as_one_line(PROGRAM, verbose=args.verbose):
        if args.command == "build-coco":
            counts = build_coco_posts(args.coco, args.out, coco_tag_map(), args.posts_per_user, args.seed)
            print(f"{args.out}: {counts['posts']} posts of {counts['users']} users; {counts['left_out_no_category']} images without a category left out; "
                  f"per class: {json.dumps(counts['posts_per_class'])}")
            return
        run_dir = Path(args.run)
        out_dir = Path(args.out) if args.out else run_dir / f"posts_study_{args.text_vectors}"
        if (out_dir / "results.json").exists() and not args.overwrite:
            raise UserError(f"{out_dir / 'results.json'} exists (an earlier posts study): pass --overwrite to replace it, or --out <another folder>")
        study = run_study(run_dir, out_dir, args.table, args.text_train, args.text_vectors, args.fasttext_model, args.dim, args.epochs, args.mlp_epochs, args.min_posts, args.seed)
        print(report(study))
        print(f"written to {out_dir}: results.json, report.md, influencers.json, fusion_weight.png, thresholds.png, captions_train.txt")


if __name__ == "__main__":
    main()
