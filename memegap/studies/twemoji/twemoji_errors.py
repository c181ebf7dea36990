"""Where a trained Twemoji dual encoder goes wrong: image→text R@1 errors in the test pools, by kind.

    python -m memegap.studies.twemoji.twemoji_errors logs/twemoji_gap/runs/<run> [--split test] [--checkpoint C]

Embeds the split with the run's best checkpoint (checkpoints/epoch_*.ckpt, or --checkpoint), takes the
same pools as the run's CrossModalRetrieval callback (its pool_size and pool_repeats), and sorts every image→text top-1 answer into:
correct; a sibling (another variant of the same base emoji); another base emoji. For wrong answers it
also says whether the skin-tone modifiers and the person characters (man / woman / person ..., gender
signs) differ from the truth: the code points that `base_emoji` strips to find the base.
`sibling_oracle_R@1` is the R@1 of a model that always finds the right base emoji and picks among its
variants in the pool at random: what telling variants apart is worth. `R@1_by_kind` splits the R@1 by
kind of query pictogram: country and region flags, other single emoji, and families of N variants.
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import torch

from memegap.data.twemoji import GENDER_SIGNS, GENDERED_PEOPLE, SKIN_TONES, list_pictograms
from memegap.errors import reported_as_one_line
from memegap.metrics.retrieval import pools
from memegap.utils.trained_run import DUAL_ENCODERS, embed_split, require_run_of, run_config, set_up_data, trained_model

# The code points that base_emoji() drops or maps to make the base key: a variant is its base plus these.
PERSON_MARKS = GENDER_SIGNS | set(GENDERED_PEOPLE) | set(GENDERED_PEOPLE.values())


def skin_tones(sequence: str) -> str:
    """The skin-tone modifiers of an emoji sequence, in order ("" for none; two for some couples)."""
    return "".join(c for c in sequence if c in SKIN_TONES)


def pictogram_kind(sequence: str, family_size: int) -> str:
    """'flag' (regional-indicator pairs and tag sequences such as England's), 'single' (an emoji without
    variants) or '<N> variants' (the size of its family of skin-tone and gender variants)."""
    if any(0x1F1E6 <= ord(c) <= 0x1F1FF or 0xE0061 <= ord(c) <= 0xE007A for c in sequence):
        return "flag"
    return "single" if family_size == 1 else f"{family_size} variants"


def person_marks(sequence: str) -> str:
    """The man / woman / person (boy, girl, child ...) characters and gender signs of an emoji sequence."""
    return "".join(c for c in sequence if c in PERSON_MARKS)


def error_kinds(embeddings: dict[str, torch.Tensor], ids: list[str], pool_size: int, pool_repeats: int = 1) -> dict[str, float]:
    """Fractions of image→text top-1 answers by kind (see the module docstring), over all pooled queries."""
    pictogram_of = {p.path.stem: p for p in list_pictograms()}
    bases = [pictogram_of[row_id].base for row_id in ids]
    sequences = [pictogram_of[row_id].emoji for row_id in ids]
    family_size = Counter(p.base for p in pictogram_of.values())
    query_kinds = [pictogram_kind(sequence, family_size[base]) for sequence, base in zip(sequences, bases)]
    queries_of_kind, correct_of_kind = Counter(), Counter()
    image = torch.nn.functional.normalize(embeddings["image"].float(), dim=1)
    text = torch.nn.functional.normalize(embeddings["text"].float(), dim=1)
    kinds, oracle, queries = Counter(), 0.0, 0
    for pool in pools(len(ids), pool_size, repeats=pool_repeats):
        pool = pool.tolist()
        answers = (image[pool] @ text[pool].T).argmax(dim=1).tolist()
        for query, answer in zip(pool, (pool[a] for a in answers)):
            queries += 1
            queries_of_kind[query_kinds[query]] += 1
            correct_of_kind[query_kinds[query]] += answer == query
            oracle += 1.0 / sum(bases[other] == bases[query] for other in pool)
            if answer == query:
                kinds["correct"] += 1
                continue
            kinds["sibling" if bases[answer] == bases[query] else "other_base"] += 1
            kinds["wrong_skin_tone"] += skin_tones(sequences[answer]) != skin_tones(sequences[query])
            kinds["wrong_person"] += person_marks(sequences[answer]) != person_marks(sequences[query])
    summary = {f"{kind}": count / queries for kind, count in sorted(kinds.items())}
    summary["sibling_oracle_R@1"] = oracle / queries
    summary["queries"] = queries
    summary["R@1_by_kind"] = {kind: correct_of_kind[kind] / count for kind, count in sorted(queries_of_kind.items())}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run dir of experiment=twemoji_gap (holds .hydra/ and checkpoints/)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--checkpoint", type=Path, help="a .ckpt of the run (default: its best, checkpoints/epoch_*.ckpt)")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = parser.parse_args()
    with reported_as_one_line("twemoji_errors.py", verbose=args.verbose):
        cfg = run_config(args.run_dir)
        require_run_of(args.run_dir, "twemoji_errors.py", models=DUAL_ENCODERS, data=("twemoji",))
        embeddings, ids = embed_split(set_up_data(cfg), trained_model(cfg, args.run_dir, args.checkpoint), args.split)
        retrieval = cfg.callbacks.cross_modal_retrieval
        kinds = error_kinds(embeddings, ids, retrieval.pool_size, retrieval.get("pool_repeats", 1))
        print(json.dumps({"run": str(args.run_dir), "split": args.split, **kinds}, indent=2))


if __name__ == "__main__":
    main()
