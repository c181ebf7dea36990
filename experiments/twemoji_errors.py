"""Where a trained Twemoji dual encoder goes wrong: image→text R@1 errors in the test pools, by kind.

    python experiments/twemoji_errors.py logs/twemoji_gap/runs/<run> [--split test] [--pool-size 90]

Embeds the split with the run's best checkpoint (checkpoints/epoch_*.ckpt, else last.ckpt), takes the
same pools as the CrossModalRetrieval callback, and sorts every image→text top-1 answer into:
correct; a sibling (another variant of the same base emoji); another base emoji. For wrong answers it
also says whether the skin tone and the person word (man / woman / person ...) differ from the truth.
`sibling_oracle_R@1` is the R@1 of a model that always finds the right base emoji and picks among its
variants in the pool at random: what telling variants apart is worth. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import hydra
import torch
from omegaconf import OmegaConf

from memegap.data.twemoji import list_pictograms
from memegap.metrics.retrieval import pools

SKIN_TONES = ("medium-light skin tone", "medium-dark skin tone", "light skin tone", "medium skin tone", "dark skin tone")
PERSON_WORDS = ("man", "woman", "person", "men", "women", "people", "boy", "girl", "child")


def skin_tone(name: str) -> str:
    return next((tone for tone in SKIN_TONES if tone in name), "none")


def person_word(name: str) -> str:
    return next((word for word in name.split() if word in PERSON_WORDS), "none")


def best_checkpoint(run_dir: Path) -> Path:
    candidates = sorted((run_dir / "checkpoints").glob("epoch_*.ckpt")) or [run_dir / "checkpoints" / "last.ckpt"]
    if not candidates[-1].is_file():
        raise FileNotFoundError(f"{run_dir}/checkpoints holds no checkpoint: train the run first")
    return candidates[-1]


@torch.no_grad()
def embed_split(run_dir: Path, split: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Image and text embeddings (N×d each) of `split` under the run's best checkpoint, and the row ids."""
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    datamodule.setup()
    model = hydra.utils.instantiate(cfg.model, _convert_="all")
    checkpoint = torch.load(best_checkpoint(run_dir), map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    loader = getattr(datamodule, f"{split}_dataloader")()
    parts = [(model.embed(batch), batch["id"]) for batch in loader]
    embeddings = {key: torch.cat([part[key] for part, _ in parts]) for key in ("image", "text")}
    return embeddings, [row_id for _, ids in parts for row_id in ids]


def error_kinds(embeddings: dict[str, torch.Tensor], ids: list[str], pool_size: int) -> dict[str, float]:
    """Fractions of image→text top-1 answers by kind (see the module docstring), over all pooled queries."""
    pictogram_of = {p.path.stem: p for p in list_pictograms()}
    bases = [pictogram_of[row_id].base for row_id in ids]
    names = [pictogram_of[row_id].names["en"] for row_id in ids]
    image = torch.nn.functional.normalize(embeddings["image"].float(), dim=1)
    text = torch.nn.functional.normalize(embeddings["text"].float(), dim=1)
    kinds, oracle, queries = Counter(), 0.0, 0
    for pool in pools(len(ids), pool_size):
        pool = pool.tolist()
        answers = (image[pool] @ text[pool].T).argmax(dim=1).tolist()
        for query, answer in zip(pool, (pool[a] for a in answers)):
            queries += 1
            oracle += 1.0 / sum(bases[other] == bases[query] for other in pool)
            if answer == query:
                kinds["correct"] += 1
                continue
            kinds["sibling" if bases[answer] == bases[query] else "other_base"] += 1
            kinds["wrong_skin_tone"] += skin_tone(names[answer]) != skin_tone(names[query])
            kinds["wrong_person_word"] += person_word(names[answer]) != person_word(names[query])
    summary = {f"{kind}": count / queries for kind, count in sorted(kinds.items())}
    summary["sibling_oracle_R@1"] = oracle / queries
    summary["queries"] = queries
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run dir of experiment=twemoji_gap (holds .hydra/ and checkpoints/)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--pool-size", type=int, default=90)
    args = parser.parse_args()
    embeddings, ids = embed_split(args.run_dir, args.split)
    print(json.dumps({"run": str(args.run_dir), "split": args.split, **error_kinds(embeddings, ids, args.pool_size)}, indent=2))


if __name__ == "__main__":
    main()
