"""Retrieval R@k and the InfoNCE loss on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from memegap.losses.contrastive import clip_loss
from memegap.metrics.retrieval import pools, recall_at_k


def test_identical_embeddings_retrieve_perfectly():
    x = torch.randn(20, 8, generator=torch.Generator().manual_seed(0))
    metrics = recall_at_k(x, 3 * x, ks=(1, 5))
    assert metrics == {f"{direction}_{key}": value for direction in ("image_to_text", "text_to_image")
                       for key, value in (("R@1", 1.0), ("R@5", 1.0), ("mean_rank", 1.0), ("median_rank", 1.0))}


def test_hand_computed_ranks():
    # image 0 is closest to text 1, images 1 and 2 to their own texts.
    # image→text ranks: image0 -> text0 ranks 2nd (text1 closer); images 1, 2 rank 1st. R@1 = 2/3, R@2 = 1.
    # text→image: text0 = e1 is closest to image0 (cos 0.6) vs image1 (0); text1 = (0.8,0.6,0) is closer to
    # image0 (0.6·0.8+0.8·0.6 = 0.96) than to image1 (0.6): rank 2. R@1 = 2/3.
    image = torch.tensor([[0.6, 0.8, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0]])
    metrics = recall_at_k(image, text, ks=(1, 2))
    assert metrics["image_to_text_R@1"] == pytest.approx(2 / 3)
    assert metrics["image_to_text_R@2"] == pytest.approx(1.0)
    assert metrics["text_to_image_R@1"] == pytest.approx(2 / 3)
    # ranks (1 = first): image→text 2, 1, 1; text→image 1, 2, 1
    assert (metrics["image_to_text_mean_rank"], metrics["image_to_text_median_rank"]) == (pytest.approx(4 / 3), 1.0)
    assert (metrics["text_to_image_mean_rank"], metrics["text_to_image_median_rank"]) == (pytest.approx(4 / 3), 1.0)


def test_pools_leave_out_the_remainder():
    # 11 orthogonal pairs in pools of 2: 5 pools, 1 pair left out, every pool retrieved perfectly.
    pooled = recall_at_k(torch.eye(11), torch.eye(11), ks=(1,), pool_size=2)
    assert {key: value for key, value in pooled.items() if "R@" in key} == {"image_to_text_R@1_pool2": 1.0, "text_to_image_R@1_pool2": 1.0}
    with pytest.raises(ValueError, match="at least one pool"):
        recall_at_k(torch.eye(11), torch.eye(11), pool_size=12)


def test_recall_refuses_non_finite_embeddings():
    # NaN scores compare false: without the check, every rank would be 0 and R@1 a perfect 1.0.
    image = torch.eye(4)
    image[2, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        recall_at_k(image, torch.eye(4), ks=(1,))


def test_repeated_pools_average_the_recall_of_each_permutation():
    # Same number of queries per permutation, so the pooled R@1 over 3 permutations is their mean.
    generator = torch.Generator().manual_seed(0)
    image, text = torch.randn(95, 16, generator=generator), torch.randn(95, 16, generator=generator)
    text = image + 1.5 * text  # noisy pairs: R@1 strictly between 0 and 1
    single = [recall_at_k(image, text, ks=(1,), pool_size=10, pool_seed=seed)["image_to_text_R@1_pool10"] for seed in range(3)]
    repeated = recall_at_k(image, text, ks=(1,), pool_size=10, pool_repeats=3)["image_to_text_R@1_pool10"]
    assert repeated == pytest.approx(sum(single) / 3)
    assert len(set(single)) > 1 and 0.0 < repeated < 1.0
    assert len(pools(95, 10, repeats=3)) == 27  # 9 pools of 10 per permutation, 5 pairs left out of each


def test_pooled_recall_counts_only_confusions_inside_a_pool():
    # 40 pairs; text i is the one-hot of i, image i is one-hot of i for even i and of i−1 for odd i
    # (odd images copy their even neighbour). Whole split: an odd image ties its own text (score 0)
    # with 38 texts and loses to text i−1 (score 1) -> rank 1; an even image ranks 0. R@1 = 1/2.
    # In pools of 10 from a permutation, an odd image is wrong only when its neighbour i−1 shares its pool.
    n = 40
    text = torch.eye(n)
    image = torch.stack([torch.eye(n)[i - i % 2] for i in range(n)])
    assert recall_at_k(image, text, ks=(1,))["image_to_text_R@1"] == 0.5
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    pool_of = {int(row): position // 10 for position, row in enumerate(order)}
    wrong = sum(1 for i in range(1, n, 2) if pool_of[i] == pool_of[i - 1])
    pooled = recall_at_k(image, text, ks=(1,), pool_size=10, pool_seed=0)
    assert pooled["image_to_text_R@1_pool10"] == pytest.approx(1 - wrong / n)
    assert pooled["image_to_text_R@1_pool10"] > 0.5
    # pool_mode="batches": consecutive rows, so every odd image shares its pool with its copy i − 1
    batches = recall_at_k(image, text, ks=(1,), pool_size=10, pool_mode="batches")
    assert batches["image_to_text_R@1_batch10"] == 0.5 and batches["image_to_text_median_rank_batch10"] == 1.5
    assert [pool.tolist() for pool in pools(25, 10, mode="batches")] == [list(range(10)), list(range(10, 20))]


@pytest.mark.parametrize("captions_per_image", [1, 3])
def test_pooled_recall_is_the_definition_counted_pool_by_pool(captions_per_image):
    # Counted by hand in each pool (the definition in _ranks' docstring): a text's rank is the number of the pool's
    # images scoring above its own; an image's, the number of other images' texts scoring above its best own text.
    # One caption per image takes the batched path (_pooled_ranks), several the grouped rows (_pool_rows).
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(47, 8, generator=generator)
    owner = torch.arange(47).repeat_interleave(captions_per_image)[torch.randperm(47 * captions_per_image, generator=generator)]
    image, text = images[owner], images[owner] + 1.2 * torch.randn(len(owner), 8, generator=generator)
    pooled = recall_at_k(image, text, ks=(1, 5), pool_size=6, pool_repeats=2, image_of_row=owner if captions_per_image > 1 else None)
    cosine = torch.nn.functional.normalize(text, dim=1) @ torch.nn.functional.normalize(images, dim=1).T  # texts × images
    first_seen = list(dict.fromkeys(owner.tolist()))  # recall_at_k's image order, which the pools index
    ranks = {"image_to_text": [], "text_to_image": []}
    for pool in pools(47, 6, repeats=2):
        chosen = [first_seen[i] for i in pool.tolist()]
        rows = [row for row in range(len(owner)) if owner[row] in chosen]
        for row in rows:
            ranks["text_to_image"].append(sum(bool(cosine[row, other] > cosine[row, owner[row]]) for other in chosen))
        for key in chosen:
            best_own = max(float(cosine[row, key]) for row in rows if owner[row] == key)
            ranks["image_to_text"].append(sum(bool(cosine[row, key] > best_own) for row in rows if owner[row] != key))
    for direction, counted in ranks.items():
        for k in (1, 5):
            assert pooled[f"{direction}_R@{k}_pool6"] == pytest.approx(sum(rank < k for rank in counted) / len(counted))
        assert pooled[f"{direction}_mean_rank_pool6"] == pytest.approx(1 + sum(counted) / len(counted))
    assert 0.0 < pooled["image_to_text_R@1_pool6"] < 1.0 and 0.0 < pooled["text_to_image_R@1_pool6"] < 1.0


def test_infonce_on_orthonormal_pairs():
    # logits = s·I with s = exp(logit_scale) = 10: CE per row = log(1 + e^{−10}); both directions equal.
    eye = torch.eye(2, dtype=torch.float64)
    loss = clip_loss(eye, 5 * eye, torch.tensor(math.log(10.0), dtype=torch.float64))
    assert float(loss) == pytest.approx(math.log1p(math.exp(-10.0)), rel=1e-9)


def test_infonce_on_swapped_pairs():
    # each image matches the other text: CE per row = log(1 + e^{10}) ≈ 10.0000454.
    eye = torch.eye(2, dtype=torch.float64)
    loss = clip_loss(eye, eye.flip(0), torch.tensor(math.log(10.0), dtype=torch.float64))
    assert float(loss) == pytest.approx(math.log1p(math.exp(10.0)), rel=1e-6)
