"""Geometry metrics at N = 1k, 10k, 100k (d = 512): time and peak memory, and the ratio against a naive
torch.pdist implementation of uniformity at 10k (at 100k the naive one would need tens of GB); and the
whole `memegap-geometry` report (every measure but the files, O(N²) ones on its default sample of 10,000)
at each N given by --report-sizes; and the pooled R@k (pools of 90, 10 permutations) against a plain loop over
the pools at --pooled-at.

Each measurement runs in a fresh process, so its peak RSS is its own: `peak_mb` is the peak resident
memory above what the process held once the inputs were made. Prints one JSON document.
    python benchmarks/geometry.py [--sizes 1000 10000 100000] [--dim 512] [--report-sizes 10000 100000] [--pooled-at 100000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import time

import torch


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def naive_uniformity(x: torch.Tensor, t: float = 2.0) -> float:
    """The textbook version: all N(N−1)/2 pairwise distances at once."""
    x_hat = torch.nn.functional.normalize(x, dim=1)
    return float(torch.pdist(x_hat).pow(2).mul(-t).exp().mean().log())


def naive_pooled_recall(x: torch.Tensor, y: torch.Tensor, pool_size: int = 90, repeats: int = 10) -> float:
    """The obvious loop: text→image R@1 in pools of 90 (10 permutations), one small product per pool."""
    from memegap.metrics.retrieval import pools

    x_hat, y_hat = torch.nn.functional.normalize(x, dim=1), torch.nn.functional.normalize(y, dim=1)
    hits = total = 0
    for pool in pools(len(x), pool_size, repeats=repeats):
        scores = y_hat[pool] @ x_hat[pool].T
        hits += int((scores > scores.diagonal()[:, None]).sum(1).eq(0).sum())
        total += len(pool)
    return hits / total


def measure(task: str, n: int, dim: int, queue) -> None:
    from memegap.metrics.geometry import alignment, modality_gap, uniformity
    from memegap.metrics.retrieval import recall_at_k

    torch.manual_seed(0)
    x, y = torch.randn(n, dim), torch.randn(n, dim)
    baseline = rss_peak_mb()
    functions = {
        "report": lambda: whole_report(x, y),
        "uniformity": lambda: uniformity(x),
        "naive_uniformity": lambda: naive_uniformity(x),
        "gap": lambda: modality_gap(x, y)[0],
        "alignment": lambda: alignment(x, y),
        "pooled_recall": lambda: recall_at_k(x, y, pool_size=90, pool_repeats=10)["text_to_image_R@1_pool90"],
        "naive_pooled_recall": lambda: naive_pooled_recall(x, y),
    }
    start = time.perf_counter()
    value = functions[task]()
    seconds = time.perf_counter() - start
    queue.put({"task": task, "n": n, "dim": dim, "seconds": round(seconds, 4), "peak_mb": round(rss_peak_mb() - baseline, 1), "value": value})


def whole_report(x: torch.Tensor, y: torch.Tensor) -> float:
    """memegap-geometry's report of paired x, y with its default options; returns the gap."""
    from memegap.studies.modality_gap.geometry_report import parse_arguments, report

    args = parse_arguments(["image.npy", "text.npy", "--out", "unused"])
    return report(x, y, None, None, ["image", "text"], args)["gap"]


def run_in_fresh_process(task: str, n: int, dim: int) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=measure, args=(task, n, dim, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--naive-at", type=int, default=10_000, help="N at which the naive pdist version is also run")
    parser.add_argument("--pooled-at", type=int, default=100_000, help="N at which pooled R@k (pools of 90, 10 permutations) is timed against a loop over pools")
    parser.add_argument("--report-sizes", type=int, nargs="*", default=[10_000, 100_000], help="N at which the whole memegap-geometry report is timed")
    args = parser.parse_args()

    results = [run_in_fresh_process(task, n, args.dim) for n in args.sizes for task in ("uniformity", "gap", "alignment")]
    results += [run_in_fresh_process("report", n, args.dim) for n in args.report_sizes]
    report = {"threads": torch.get_num_threads(), "dim": args.dim, "results": results}
    if args.naive_at in args.sizes:
        ours = next(r for r in results if r["task"] == "uniformity" and r["n"] == args.naive_at)
        naive = run_in_fresh_process("naive_uniformity", args.naive_at, args.dim)
        report["naive_at"] = {
            "n": args.naive_at,
            "naive": naive,
            "time_ratio_ours_over_naive": round(ours["seconds"] / naive["seconds"], 3),
            "peak_memory_ratio_ours_over_naive": round(ours["peak_mb"] / max(naive["peak_mb"], 1e-9), 3),
            "same_value": abs(ours["value"] - naive["value"]) < 1e-4,
        }
    if args.pooled_at:
        ours, naive = (run_in_fresh_process(task, args.pooled_at, args.dim) for task in ("pooled_recall", "naive_pooled_recall"))
        report["pooled_recall_at"] = {"n": args.pooled_at, "ours": ours, "naive": naive,
                                      "time_ratio_ours_over_naive": round(ours["seconds"] / naive["seconds"], 3),
                                      "same_value": abs(ours["value"] - naive["value"]) < 1e-9}
    largest = max(args.sizes)
    report["naive_memory_needed_gb_at_largest_n"] = {
        "n": largest,
        "pairwise_distances_float32_gb": round(largest * (largest - 1) / 2 * 4 / 1e9, 1),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
