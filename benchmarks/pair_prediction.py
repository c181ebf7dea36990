"""The siamese regression's prediction (memegap.models.siamese_regression) against the naive loop, at
1,000 queries × 10,000 training memes, in one run.

- ours: the trunk runs once per meme (11,000 forwards), then the dense head's 10 million pair outputs
  come from its decomposition, d(q, j) = w_a·f_q + w_b·f_j + b, in blocks, with the k closest chosen;
- naive: for every pair, a forward of both images through the trunk and the head on the pair. Its
  time is extrapolated from a timed subset of pairs (said in the output), since 20 million forwards
  would take days here.
Both give the same predicted differences on the subset (max absolute difference reported).
Trunk: ResNet-18 (random weights; the cost does not depend on them) at --image-size px. Prints JSON.
    python benchmarks/pair_prediction.py [--queries 1000] [--train 10000] [--image-size 64] [--subset 16]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from memegap.nets.backbones import TorchvisionBackbone
from memegap.models.siamese_regression import pair_differences, predict_from_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--train", type=int, default=10_000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--subset", type=int, default=16, help="pairs timed on the naive side")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    trunk = TorchvisionBackbone("resnet18").eval()
    head = torch.nn.Linear(2 * trunk.output_dim, 1)
    size = args.image_size

    with torch.no_grad():
        # ours, part 1: one trunk forward per meme, timed on 512 memes and scaled to all of them
        sample = torch.rand(512, 3, size, size)
        start = time.perf_counter()
        for block in sample.split(128):
            trunk(block)
        per_meme = (time.perf_counter() - start) / len(sample)
        trunk_seconds = per_meme * (args.queries + args.train)
        # ours, part 2: the head on every pair, on features of the real size
        queries, references = torch.randn(args.queries, trunk.output_dim), torch.randn(args.train, trunk.output_dim)
        targets = torch.randn(args.train)
        start = time.perf_counter()
        predict_from_pairs(head, references, targets, queries, k=args.k)
        head_seconds = time.perf_counter() - start

        # naive: both images through the trunk for every pair, then the head
        query_images, reference_images = torch.rand(2, 3, size, size), torch.rand(args.subset // 2, 3, size, size)
        start = time.perf_counter()
        naive = torch.stack([torch.stack([head(torch.cat([trunk(q[None])[0], trunk(r[None])[0]])).squeeze() for r in reference_images]) for q in query_images])
        naive_per_pair = (time.perf_counter() - start) / naive.numel()
        ours = pair_differences(head, trunk(query_images), trunk(reference_images))

    pairs = args.queries * args.train
    ours_seconds = trunk_seconds + head_seconds
    naive_seconds = naive_per_pair * pairs
    print(json.dumps({
        "queries": args.queries, "training_memes": args.train, "pairs": pairs, "image_size": size, "cpu_threads": torch.get_num_threads(),
        "ours": {"trunk_forwards": args.queries + args.train, "trunk_s": round(trunk_seconds, 1), "head_on_all_pairs_s": round(head_seconds, 3), "total_s": round(ours_seconds, 1)},
        "naive": {"trunk_forwards": 2 * pairs, "seconds_per_pair": naive_per_pair, "total_s_extrapolated": round(naive_seconds), "timed_pairs": naive.numel()},
        "speedup": round(naive_seconds / ours_seconds),
        "max_abs_difference_on_timed_pairs": float((naive - ours).abs().max()),
    }, indent=2))


if __name__ == "__main__":
    main()
