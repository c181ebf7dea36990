"""k-nearest-neighbour search for the kNN likes predictor (memegap.index.knn): faiss flat (exact) and
faiss IVF (approximate) against exact torch search (block-wise cdist + topk), in one run.

Data: N reference and Q query vectors of dimension d (default 100,000 × 512 and 10,000 queries, k = 10),
drawn two ways: "clustered" (a mixture of 1,000 Gaussian clusters, as embeddings of real data are) and
"uniform" (one isotropic Gaussian, the worst case for an inverted file, which needs clusters).
Reports seconds and the ratio over torch for each method, the build time of the IVF index, and the
IVF recall@k against the exact neighbours, for several nprobe. Prints one JSON document.
    python benchmarks/knn.py [--n 100000] [--queries 10000] [--dim 512] [--k 10] [--nlist 1024]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from memegap.index.knn import KnnIndex, default_backend


def vectors(kind: str, n: int, q: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    if kind == "uniform":
        return torch.randn(n, dim, generator=generator), torch.randn(q, dim, generator=generator)
    centres = torch.randn(1000, dim, generator=generator)
    reference = centres[torch.randint(1000, (n,), generator=generator)] + 0.5 * torch.randn(n, dim, generator=generator)
    queries = centres[torch.randint(1000, (q,), generator=generator)] + 0.5 * torch.randn(q, dim, generator=generator)
    return reference, queries


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def recall(found: torch.Tensor, exact: torch.Tensor) -> float:
    hits = (found.unsqueeze(2) == exact.unsqueeze(1)).any(2).float().sum(1)
    return float((hits / exact.shape[1]).mean())


def run(kind: str, args: argparse.Namespace) -> dict:
    reference, queries = vectors(kind, args.n, args.queries, args.dim)
    (_, exact), torch_seconds = timed(lambda: KnnIndex(reference, backend="torch").search(queries, args.k, block_size=1024))
    flat, flat_build = timed(lambda: KnnIndex(reference, backend="faiss"))
    (_, flat_found), flat_seconds = timed(lambda: flat.search(queries, args.k))
    ivf, ivf_build = timed(lambda: KnnIndex(reference, kind="ivf", nlist=args.nlist))
    result = {
        "torch_exact_s": round(torch_seconds, 2),
        "faiss_flat_s": round(flat_seconds + flat_build, 2),
        "faiss_flat_speedup_over_torch": round(torch_seconds / (flat_seconds + flat_build), 2),
        "faiss_flat_recall": recall(flat_found, exact),
        "ivf_build_s": round(ivf_build, 2),
        "ivf": [],
    }
    for nprobe in args.nprobe:
        ivf.index.nprobe = nprobe
        (_, found), seconds = timed(lambda: ivf.search(queries, args.k))
        result["ivf"].append({"nprobe": nprobe, "search_s": round(seconds, 3), "speedup_over_torch": round(torch_seconds / seconds, 1),
                              "speedup_with_build": round(torch_seconds / (seconds + ivf_build), 1), f"recall@{args.k}": round(recall(found, exact), 3)})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[1, 2, 4, 16, 64])
    args = parser.parse_args()
    import faiss

    print(json.dumps({
        "n": args.n, "queries": args.queries, "dim": args.dim, "k": args.k, "nlist": args.nlist,
        "cpu_threads": torch.get_num_threads(), "faiss_threads": faiss.omp_get_max_threads(),
        "default_backend": {kind: default_backend(kind) for kind in ("flat", "ivf")},  # what KnnIndex(backend="auto") uses
        "results": {kind: run(kind, args) for kind in ("clustered", "uniform")},
    }, indent=2))


if __name__ == "__main__":
    main()
