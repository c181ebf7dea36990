"""k nearest neighbours of query embeddings among reference embeddings, and the kNN likes predictor.

Backends: faiss (`flat`: exact; `ivf`: an inverted file of `nlist` k-means cells, `nprobe` of them
searched, approximate) or torch (exact, block by block). The default ("auto") is the faster one here:
torch for exact search (faiss flat ran at 0.47× of it on 100,000 × 512, benchmarks/knn.py) and faiss
for the inverted file, which torch has not. Metrics: "l2" (euclidean) or "cosine"
(inner product of L2-normalised rows). Distances come back as euclidean distances (l2) or as
1 − cosine (cosine), so smaller is nearer for both.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

BACKENDS = ("auto", "faiss", "torch")
KINDS = ("flat", "ivf")
METRICS = ("l2", "cosine")


def _prepare(x: Tensor | np.ndarray, metric: str) -> Tensor:
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach().float().cpu()
    return torch.nn.functional.normalize(x, dim=1) if metric == "cosine" else x


def default_backend(kind: str) -> str:
    """The backend "auto" means for an index kind: torch for exact ("flat") search, faiss for "ivf"."""
    return "faiss" if kind == "ivf" else "torch"


class KnnIndex:
    """Reference embeddings (N×d) ready to search; `search(queries, k)` -> (distances, indices), Q×k each."""

    def __init__(self, reference, metric: str = "l2", backend: str = "auto", kind: str = "flat", nlist: int = 1024, nprobe: int = 16) -> None:
        if metric not in METRICS or backend not in BACKENDS or kind not in KINDS:
            raise ValueError(f"metric in {METRICS}, backend in {BACKENDS}, kind in {KINDS}; got {metric}, {backend}, {kind}")
        if backend == "torch" and kind == "ivf":
            raise ValueError("an inverted file (kind='ivf') is faiss's: use backend='faiss' or 'auto'")
        self.metric, self.backend = metric, default_backend(kind) if backend == "auto" else backend
        self.reference = _prepare(reference, metric)
        if self.backend == "faiss":
            import faiss

            d = self.reference.shape[1]
            flat = faiss.IndexFlatIP(d) if metric == "cosine" else faiss.IndexFlatL2(d)
            if kind == "ivf":
                faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
                self.index = faiss.IndexIVFFlat(flat, d, min(nlist, len(self.reference)), faiss_metric)
                self.index.train(self.reference.numpy())
                self.index.nprobe = nprobe
                self.quantizer = flat  # IndexIVFFlat does not own it
            else:
                self.index = flat
            self.index.add(self.reference.numpy())

    def search(self, queries, k: int, block_size: int = 4096) -> tuple[Tensor, Tensor]:
        q = _prepare(queries, self.metric)
        k = min(k, len(self.reference))
        if self.backend == "faiss":
            scores, indices = self.index.search(q.numpy(), k)
            scores, indices = torch.from_numpy(scores), torch.from_numpy(indices)
        else:
            parts = [self._exact_block(q[start : start + block_size], k) for start in range(0, len(q), block_size)]
            scores, indices = (torch.cat(part) for part in zip(*parts))
        distances = 1.0 - scores if self.metric == "cosine" else scores.clamp(min=0).sqrt()  # faiss L2 gives squares
        return distances, indices

    def _exact_block(self, q: Tensor, k: int) -> tuple[Tensor, Tensor]:
        if self.metric == "cosine":
            return (q @ self.reference.T).topk(k, dim=1)
        squared = torch.cdist(q, self.reference).pow(2)
        values, indices = squared.topk(k, dim=1, largest=False)
        return values, indices


def neighbour_mean(reference_targets: Tensor, distances: Tensor, indices: Tensor, weighting: str = "mean") -> Tensor:
    """Each query's prediction from its neighbours (Q×k distances and reference rows): the mean of their
    targets (the thesis), or with weighting="distance" that mean weighted by 1 / (distance + 1e-8). Q values."""
    neighbours = reference_targets.double()[indices]
    if weighting == "mean":
        return neighbours.mean(1)
    weights = 1.0 / (distances.double() + 1e-8)
    return (weights * neighbours).sum(1) / weights.sum(1)


def knn_predict(index: KnnIndex, reference_targets: Tensor, queries, k: int = 10, weighting: str = "mean") -> Tensor:
    """Predicted target of each query: neighbour_mean of its k nearest references. Q values."""
    distances, indices = index.search(queries, k)
    return neighbour_mean(reference_targets, distances, indices, weighting)
