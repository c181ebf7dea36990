"""Geometry of paired embeddings (modality gap, alignment, uniformity, cosine histograms).

Every function takes *raw* embeddings of shape N×d (any float dtype), L2-normalises them inside and
accumulates in float64. Nothing builds an N×N matrix: pairwise terms are computed block by block
(block_size × block_size), and per-row terms block_size rows at a time, so memory stays
O(block_size² + N·d) whatever N is (N = 100,000, d = 512: about 0.3 GB, see benchmarks/geometry.py).
They run on the device the embeddings are on (a GPU's when the callbacks hand them over from one);
histogram counts come back on the CPU.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

DEFAULT_BLOCK_SIZE = 2048


def _normalise(x: Tensor) -> Tensor:
    """Rows of `x` (N×d) scaled to unit L2 norm, float32 at least (float64 kept as is)."""
    if x.ndim != 2:
        raise ValueError(f"embeddings must be N×d, got shape {tuple(x.shape)}")
    x = x.detach()
    if x.dtype != torch.float64:
        x = x.float()
    return torch.nn.functional.normalize(x, dim=1)


def _check_paired(x: Tensor, y: Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"paired embeddings must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def _normalised_blocks(x: Tensor, block_size: int) -> Iterator[Tensor]:
    """x̂ one block of rows at a time (memory O(block_size · d))."""
    for rows in _blocks(x.shape[0], block_size):
        yield _normalise(x[rows])


def modality_gap(x: Tensor, y: Tensor, block_size: int = DEFAULT_BLOCK_SIZE) -> tuple[float, Tensor]:
    """‖mean(x̂) − mean(ŷ)‖₂ and the gap vector mean(x̂) − mean(ŷ) (d, float64).

    x: N×d, y: M×d (the two modalities need not be paired).
    """
    mean_x = sum(block.sum(0, dtype=torch.float64) for block in _normalised_blocks(x, block_size)) / x.shape[0]
    mean_y = sum(block.sum(0, dtype=torch.float64) for block in _normalised_blocks(y, block_size)) / y.shape[0]
    gap_vector = mean_x - mean_y
    return float(gap_vector.norm()), gap_vector


def alignment(x: Tensor, y: Tensor, block_size: int = DEFAULT_BLOCK_SIZE) -> float:
    """Misalignment of pairs: mean over i of ‖x̂ᵢ − ŷᵢ‖² (0 = identical, 4 = antipodal). x, y: N×d."""
    _check_paired(x, y)
    total = sum(
        (x_hat - y_hat).pow(2).sum(dtype=torch.float64)
        for x_hat, y_hat in zip(_normalised_blocks(x, block_size), _normalised_blocks(y, block_size))
    )
    return float(total / x.shape[0])


def _blocks(n: int, block_size: int) -> list[slice]:
    return [slice(start, min(start + block_size, n)) for start in range(0, n, block_size)]


def uniformity(x: Tensor, t: float = 2.0, block_size: int = DEFAULT_BLOCK_SIZE) -> float:
    """log mean over i≠j of exp(−t‖x̂ᵢ − x̂ⱼ‖²) (Wang & Isola, 2020). x: N×d, N ≥ 2.

    With g = x̂ᵢ·x̂ⱼ, exp(−t‖x̂ᵢ − x̂ⱼ‖²) = e^{−2t} · exp(2t·g). Only the blocks on and above the diagonal
    are computed (the sum is symmetric), the diagonal i = j is left out, and sums accumulate in float64.
    """
    x_hat = _normalise(x)
    n = x_hat.shape[0]
    if n < 2:
        raise ValueError("uniformity needs at least 2 embeddings")
    total = torch.zeros((), dtype=torch.float64, device=x_hat.device)
    blocks = _blocks(n, block_size)
    for bi, rows in enumerate(blocks):
        for cols in blocks[bi:]:
            kernel = (x_hat[rows] @ x_hat[cols].T).mul_(2.0 * t).exp_()
            if rows == cols:
                total += kernel.sum(dtype=torch.float64) - kernel.diagonal().sum(dtype=torch.float64)
            else:
                total += 2.0 * kernel.sum(dtype=torch.float64)
    return float(torch.log(total / (n * (n - 1))) - 2.0 * t)


def cosine_spread(x: Tensor, block_size: int = DEFAULT_BLOCK_SIZE) -> dict[str, float]:
    """Mean and minimum cos(x̂ᵢ, x̂ⱼ) over pairs i < j of one modality (x: N×d, N ≥ 2): the cone effect
    (Liang et al., 2022) shows as a mean far above 0 and a minimum above −1. The mean is exact in O(N·d):
    Σ_{i<j} cos = (‖Σᵢ x̂ᵢ‖² − N) / 2; the minimum is taken block by block."""
    x_hat = _normalise(x)
    n = x_hat.shape[0]
    if n < 2:
        raise ValueError("the cosine spread needs at least 2 embeddings")
    total = (x_hat.double().sum(0).pow(2).sum() - n) / 2
    smallest = torch.tensor(float("inf"), dtype=torch.float64, device=x_hat.device)
    blocks = _blocks(n, block_size)
    for bi, rows in enumerate(blocks):
        for cols in blocks[bi:]:
            cosines = x_hat[rows] @ x_hat[cols].T
            if rows == cols:
                ids = torch.arange(rows.start, rows.stop, device=x_hat.device)
                cosines = cosines[ids.unsqueeze(1) < ids.unsqueeze(0)]
            if cosines.numel():
                smallest = torch.minimum(smallest, cosines.min().double())
    return {"mean_cosine": float(total / (n * (n - 1) / 2)), "min_cosine": float(smallest)}


COSINE_HISTOGRAMS = ("intra_x", "intra_y", "inter_paired", "inter_cross")


def cosine_histograms(
    x: Tensor, y: Tensor, bins: int = 50, block_size: int = DEFAULT_BLOCK_SIZE
) -> tuple[dict[str, Tensor], Tensor]:
    """Histograms of cosine similarities over `bins` equal bins of [−1, 1].

    x, y: N×d paired embeddings. Returns (counts, edges): counts[name] is an int64 tensor of length
    `bins` for each name in COSINE_HISTOGRAMS, edges the bins+1 bin edges (float64):
      - intra_x / intra_y: cos(x̂ᵢ, x̂ⱼ) over unordered pairs i < j  (N(N−1)/2 values each)
      - inter_paired: cos(x̂ᵢ, ŷᵢ), the matching pairs                (N values)
      - inter_cross: cos(x̂ᵢ, ŷⱼ) over i ≠ j, the non-matching pairs   (N(N−1) values)
    """
    _check_paired(x, y)
    x_hat, y_hat = _normalise(x), _normalise(y)
    n = x_hat.shape[0]
    edges = torch.linspace(-1.0, 1.0, bins + 1, dtype=torch.float64)
    counts = {name: torch.zeros(bins, dtype=torch.int64, device=x_hat.device) for name in COSINE_HISTOGRAMS}

    def add(name: str, cosines: Tensor) -> None:
        # Bin k holds [edges[k], edges[k+1]); cos = 1 (and rounding above it) falls in the last bin.
        index = ((cosines.double().clamp(-1.0, 1.0) + 1.0) * (bins / 2.0)).long().clamp_(0, bins - 1)
        counts[name] += torch.bincount(index.flatten(), minlength=bins)

    blocks = _blocks(n, block_size)
    for bi, rows in enumerate(blocks):
        for bj, cols in enumerate(blocks):
            if bi == bj:
                row_ids = torch.arange(rows.start, rows.stop, device=x_hat.device).unsqueeze(1)
                col_ids = torch.arange(cols.start, cols.stop, device=x_hat.device).unsqueeze(0)
                upper, off_diagonal = col_ids > row_ids, col_ids != row_ids
                add("intra_x", (x_hat[rows] @ x_hat[cols].T)[upper])
                add("intra_y", (y_hat[rows] @ y_hat[cols].T)[upper])
                add("inter_cross", (x_hat[rows] @ y_hat[cols].T)[off_diagonal])
            else:
                if bj > bi:
                    add("intra_x", x_hat[rows] @ x_hat[cols].T)
                    add("intra_y", y_hat[rows] @ y_hat[cols].T)
                add("inter_cross", x_hat[rows] @ y_hat[cols].T)
    add("inter_paired", (x_hat * y_hat).sum(1))
    return {name: values.cpu() for name, values in counts.items()}, edges


def class_cosine_histograms(x: Tensor, labels: Tensor, bins: int = 50, block_size: int = DEFAULT_BLOCK_SIZE) -> tuple[dict[str, Tensor], Tensor]:
    """Histograms of cos(x̂ᵢ, x̂ⱼ) over unordered pairs i < j of one modality, split by class.

    x: N×d embeddings, labels: N class ids. Returns (counts, edges) as cosine_histograms does, with
    counts["same_class"] (pairs with labels[i] == labels[j]) and counts["other_class"] (the rest);
    together they hold N(N−1)/2 values.
    """
    if labels.shape != (x.shape[0],):
        raise ValueError(f"labels must hold one class per row of x: shapes {tuple(labels.shape)} and {tuple(x.shape)}")
    x_hat = _normalise(x)
    edges = torch.linspace(-1.0, 1.0, bins + 1, dtype=torch.float64)
    counts = {name: torch.zeros(bins, dtype=torch.int64, device=x_hat.device) for name in ("same_class", "other_class")}
    labels = labels.to(x_hat.device)
    blocks = _blocks(x_hat.shape[0], block_size)
    for bi, rows in enumerate(blocks):
        for cols in blocks[bi:]:
            cosines = x_hat[rows] @ x_hat[cols].T
            same = labels[rows].unsqueeze(1) == labels[cols].unsqueeze(0)
            pairs = torch.ones_like(same)
            if rows == cols:
                ids = torch.arange(rows.start, rows.stop, device=x_hat.device)
                pairs = ids.unsqueeze(1) < ids.unsqueeze(0)
            index = ((cosines.double().clamp(-1.0, 1.0) + 1.0) * (bins / 2.0)).long().clamp_(0, bins - 1)
            counts["same_class"] += torch.bincount(index[pairs & same], minlength=bins)
            counts["other_class"] += torch.bincount(index[pairs & ~same], minlength=bins)
    return {name: values.cpu() for name, values in counts.items()}, edges


def class_cosine_means(x: Tensor, labels: Tensor) -> dict[str, float]:
    """Mean cos(x̂ᵢ, x̂ⱼ) over pairs i < j of the same class and of different classes (nan when a kind has
    no pair), exactly and in O(N·d): with s_c = Σ_{i∈c} x̂ᵢ and s = Σ x̂ᵢ,
    Σ_{i<j, same class} cos = (Σ_c ‖s_c‖² − N) / 2 and Σ_{i<j} cos = (‖s‖² − N) / 2."""
    x_hat = _normalise(x).double()
    n = x_hat.shape[0]
    labels = labels.long().to(x_hat.device)
    class_sums = torch.zeros(int(labels.max()) + 1, x_hat.shape[1], dtype=torch.float64, device=x_hat.device).index_add_(0, labels, x_hat)
    class_sizes = torch.bincount(labels).double()
    same_pairs = float((class_sizes * (class_sizes - 1) / 2).sum())
    all_pairs = n * (n - 1) / 2
    same_total = float((class_sums.pow(2).sum() - n) / 2)
    all_total = float((x_hat.sum(0).pow(2).sum() - n) / 2)
    other_pairs = all_pairs - same_pairs
    return {
        "cosine_same_class_mean": same_total / same_pairs if same_pairs else float("nan"),
        "cosine_other_class_mean": (all_total - same_total) / other_pairs if other_pairs else float("nan"),
    }


def _mean_intra_cosine(x_hat_sum: Tensor, n: int) -> Tensor:
    """Mean cos(x̂ᵢ, x̂ⱼ) over i ≠ j from Σᵢ x̂ᵢ (d): (‖Σ x̂‖² − N) / (N(N − 1)), exact in O(N·d)."""
    return (x_hat_sum.pow(2).sum() - n) / (n * (n - 1))


def relative_modality_gap(x: Tensor, y: Tensor, block_size: int = DEFAULT_BLOCK_SIZE) -> float:
    """The relative modality gap (RMG) of paired embeddings x, y (N×d, N ≥ 2), as we read Schrodi et al.
    (ICLR 2025, "Two effects, one trigger", §3): the mean dissimilarity of the matching pairs relative to
    the spread within the modalities,

        RMG = m_paired / ((m_x + m_y) / 2 + m_paired),   d(u, v) = 1 − cos(u, v),
        m_paired = mean_i d(xᵢ, yᵢ),   m_x = mean_{i≠j} d(xᵢ, xⱼ)   (m_y likewise),

    0 when every pair coincides, 1 when each modality is a single point and the two differ; unlike the
    mean-difference gap it does not fall just because the clouds spread. The published formula could not be
    checked offline here (only the paper's abstract was at hand): should it scale d or weight the terms
    otherwise, the ranking of models by RMG is what to compare. O(N·d): the intra-modality means come from
    Σ x̂ (`_mean_intra_cosine`)."""
    _check_paired(x, y)
    n = x.shape[0]
    if n < 2:
        raise ValueError("the relative modality gap needs at least 2 pairs")
    sum_x = sum(block.sum(0, dtype=torch.float64) for block in _normalised_blocks(x, block_size))
    sum_y = sum(block.sum(0, dtype=torch.float64) for block in _normalised_blocks(y, block_size))
    m_x, m_y = 1 - _mean_intra_cosine(sum_x, n), 1 - _mean_intra_cosine(sum_y, n)
    m_paired = alignment(x, y, block_size) / 2  # ‖x̂ − ŷ‖² = 2 − 2 cos
    denominator = (m_x + m_y) / 2 + m_paired
    return float(m_paired / denominator) if denominator > 0 else 0.0


def instance_gap(x: Tensor, y: Tensor, block_size: int = DEFAULT_BLOCK_SIZE) -> float:
    """L2I, the instance-wise gap (Schrodi et al., 2025, beside L2M, the distance of the modality means):
    mean over pairs of ‖x̂ᵢ − ŷᵢ‖₂, the Euclidean distance, not its square (the misalignment, `alignment`,
    is the mean square). x, y: N×d, paired."""
    _check_paired(x, y)
    total = sum((x_hat - y_hat).norm(dim=1).sum(dtype=torch.float64)
                for x_hat, y_hat in zip(_normalised_blocks(x, block_size), _normalised_blocks(y, block_size)))
    return float(total / x.shape[0])


def gap_concentration(gap_vector: Tensor, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float | list[int]]:
    """How few coordinates carry the gap (Schrodi et al. find a handful do): the share of ‖g‖² in the k largest
    squared coordinates of the gap vector g = mean(x̂) − mean(ŷ) (modality_gap's; centring the joint cloud moves
    both means alike and leaves g as it is), `top<k>_share` for each k, and `top_coordinates`, the 10 largest,
    largest first. A gap spread evenly over d coordinates has top-k share k/d."""
    squares = gap_vector.pow(2)
    total = float(squares.sum())
    order = torch.argsort(squares, descending=True)
    shares = {f"top{k}_share": float(squares[order[:k]].sum()) / total if total > 0 else 0.0 for k in ks}
    return {**shares, "top_coordinates": order[:10].tolist()}


def effective_rank(x: Tensor, block_size: int = DEFAULT_BLOCK_SIZE) -> float:
    """RankMe (Garrido et al., ICML 2023) of the unit-normalised embeddings x̂ (N×d): exp of the entropy of the
    singular values normalised to sum 1, p_k = σ_k / Σσ (+1e-7 as the paper); r equal singular values give r."""
    return _effective_rank_of_gram(_gram(x, block_size))


def _gram(x: Tensor, block_size: int = DEFAULT_BLOCK_SIZE) -> Tensor:
    """x̂ᵀx̂ (d×d, float64) of the unit-normalised rows of x, accumulated block by block: memory O(d²), not O(N·d)."""
    return sum(block.double().T @ block.double() for block in _normalised_blocks(x, block_size))


def _effective_rank_of_gram(gram: Tensor) -> float:
    """RankMe from x̂ᵀx̂, whose eigenvalues are the squared singular values of x̂."""
    singular = torch.linalg.eigvalsh(gram).clamp(min=0).sqrt()
    p = singular / singular.sum() + 1e-7
    return float(torch.exp(-(p * p.log()).sum()))


def joint_clustering(x: Tensor, y: Tensor, labels: Tensor, seed: int = 0) -> dict[str, float]:
    """k-means (scikit-learn, k = the number of classes, 10 starts) on the joint cloud of x̂ and ŷ (2N points,
    each pair's label on both), scored against the labels by NMI and ARI: 1 when the joint space groups by
    class whatever the modality, near 0 when it groups by modality (a gap that splits the clusters)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    _check_paired(x, y)
    points = torch.cat([_normalise(x), _normalise(y)]).double().cpu().numpy()
    truth = torch.cat([labels, labels]).cpu().numpy()
    k = len(set(truth.tolist()))
    found = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(points)
    return {"kmeans_nmi": float(normalized_mutual_info_score(truth, found)), "kmeans_ari": float(adjusted_rand_score(truth, found))}


def linear_geometry(x: Tensor, y: Tensor, names: tuple[str, str] = ("x", "y")) -> dict[str, float]:
    """The O(N·d) (and O(d²) memory) measures of paired embeddings, cheap enough for every epoch: gap,
    alignment, rmg, l2i, gap_top{1,5,10}_share and effective_rank_<name> for each modality and _joint."""
    gap, gap_vector = modality_gap(x, y)
    concentration = gap_concentration(gap_vector)
    grams = (_gram(x), _gram(y))
    return {
        "gap": gap,
        "alignment": alignment(x, y),
        "rmg": relative_modality_gap(x, y),
        "l2i": instance_gap(x, y),
        **{f"gap_{key}": value for key, value in concentration.items() if key.endswith("_share")},
        **{f"effective_rank_{name}": _effective_rank_of_gram(gram) for name, gram in zip(names, grams)},
        "effective_rank_joint": _effective_rank_of_gram(grams[0] + grams[1]),  # the joint cloud's x̂ᵀx̂ is the sum
    }


def geometry_summary(x: Tensor, y: Tensor, names: tuple[str, str] = ("x", "y"), t: float = 2.0) -> dict[str, float]:
    """Scalar geometry of paired embeddings x, y (N×d) as a flat dict.

    Keys: those of linear_geometry (gap, alignment, rmg, l2i, gap concentration, effective ranks), then
    uniformity_<name> for each modality and uniformity (their mean).
    """
    uniformities = {f"uniformity_{name}": uniformity(z, t) for name, z in zip(names, (x, y))}
    return {**linear_geometry(x, y, names), **uniformities, "uniformity": sum(uniformities.values()) / 2.0}
