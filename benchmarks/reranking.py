"""Re-ranking levers, each measured against the default ranking on the same photos (issue 13).

The default scores a product by its best image and its prototype (``ranking.result_scores``). The
levers here change which gallery images look alike before that product scoring:

- **image votes**: a product scores the mean of its ``m`` best images instead of its best one;
- **αDBA** (database-side augmentation, Arandjelović and Zisserman 2012; Radenović et al. 2018):
  each stored vector is replaced, once at indexing time, by the mean of itself and its ``k - 1``
  nearest stored vectors weighted by similarity to the power α, so a product's images pull together;
- **k-reciprocal re-ranking** (Zhong et al. 2017): two images are close when their k-reciprocal
  neighbourhoods overlap (Jaccard distance), mixed with the original distance by λ;
- **diffusion** (Iscen et al. 2017): the query's similarities spread over the stored images' mutual
  k-nearest-neighbour graph (α 0.99), alone or added to the original similarities.

Each is scored at the product level as the default is, with its P@1 and hit@5, the difference in
P@1 paired over the same photos with its standard error
(:func:`visual_search.training.evaluation.paired_difference`), and what it costs: per query, and
once for the catalogue (the graph, the augmented vectors). Measured only; none is in the product
unless it beats the default by more than the noise on both protocols.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from visual_search import ranking
from visual_search.embeddings.pooling import l2_normalise
from visual_search.training.evaluation import paired_difference


def product_scores(
    similarities: np.ndarray, codes: np.ndarray, *, votes: int = 1, weight: float = 0.0, queries: np.ndarray | None = None,
    gallery: np.ndarray | None = None,
) -> np.ndarray:
    """``(q, products)`` from the images' ``(q, g)`` similarities, scored as the default scores them
    (:func:`visual_search.ranking.scores_by_result`: the best image, fused by ``weight`` with the
    prototype of ``gallery`` compared with ``queries``); with ``votes`` > 1, the mean of a product's
    ``votes`` best images in place of its best."""
    if votes > 1:
        similarities = similarities.copy()
        for code in range(int(codes.max()) + 1):
            mine = codes == code
            similarities[:, mine] = np.sort(similarities[:, mine], axis=1)[:, -votes:].mean(axis=1, keepdims=True)
    return ranking.scores_by_result(similarities, queries, gallery, codes, weight)


def augmented_database(gallery: np.ndarray, k: int, power: float = 3.0) -> np.ndarray:
    """αDBA: each unit vector replaced by the unit mean of its ``k`` nearest (itself included),
    weighted by similarity ** ``power``."""
    similarities = gallery @ gallery.T
    k = min(k, len(gallery))
    nearest = np.argpartition(-similarities, k - 1, axis=1)[:, :k]
    weights = np.maximum(np.take_along_axis(similarities, nearest, axis=1), 0.0) ** power
    return l2_normalise((gallery[nearest] * weights[..., None]).sum(axis=1))


def k_reciprocal(queries: np.ndarray, gallery: np.ndarray, k1: int = 20, k2: int = 6, mix: float = 0.3) -> np.ndarray:
    """Similarities ``(q, g)`` after k-reciprocal re-ranking (higher is closer): minus the Jaccard
    distance of k-reciprocal neighbourhoods, mixed with the original distance by ``mix`` (λ)."""
    points = np.vstack([queries, gallery])
    count, n_queries = len(points), len(queries)
    k1 = min(k1, count - 1)
    distance = 2.0 - 2.0 * (points @ points.T)
    distance = distance / distance.max(axis=0, keepdims=True)
    order = np.argsort(distance, axis=1)
    half = int(round(k1 / 2))

    def reciprocal(i: int, k: int) -> np.ndarray:
        forward = order[i, : k + 1]
        return forward[(order[forward, : k + 1] == i).any(axis=1)]

    weights = np.zeros((count, count), dtype=np.float32)
    for i in range(count):
        mine = reciprocal(i, k1)
        grown = [mine]
        for candidate in mine:
            theirs = reciprocal(candidate, half)
            if len(np.intersect1d(theirs, mine)) > 2 / 3 * len(theirs):
                grown.append(theirs)
        members = np.unique(np.concatenate(grown))
        w = np.exp(-distance[i, members])
        weights[i, members] = w / w.sum()
    if k2 > 1:
        weights = weights[order[:, :k2]].mean(axis=1)
    mins = np.stack([np.minimum(weights[i][None, :], weights[n_queries:]).sum(axis=1) for i in range(n_queries)])
    jaccard = 1.0 - mins / (2.0 - mins)
    return -((1.0 - mix) * jaccard + mix * distance[:n_queries, n_queries:])


def diffusion(queries: np.ndarray, gallery: np.ndarray, k: int = 50, seeds: int = 10, power: float = 3.0, alpha: float = 0.99, steps: int = 20) -> np.ndarray:
    """Scores ``(q, g)`` of the query's ``seeds`` nearest images spread over the gallery's mutual
    ``k``-nearest-neighbour graph (symmetrically normalised, ``steps`` iterations at ``alpha``)."""
    similarities = gallery @ gallery.T
    np.fill_diagonal(similarities, 0.0)
    k, seeds = min(k, len(gallery) - 1), min(seeds, len(gallery))
    nearest = np.argpartition(-similarities, k - 1, axis=1)[:, :k]
    graph = np.zeros_like(similarities)
    np.put_along_axis(graph, nearest, np.maximum(np.take_along_axis(similarities, nearest, axis=1), 0.0) ** power, axis=1)
    graph = np.minimum(graph, graph.T)
    degree = np.sqrt(np.maximum(graph.sum(axis=1), 1e-12))
    graph = graph / degree[:, None] / degree[None, :]
    asked = queries @ gallery.T
    start = np.zeros_like(asked)
    top = np.argpartition(-asked, seeds - 1, axis=1)[:, :seeds]
    np.put_along_axis(start, top, np.maximum(np.take_along_axis(asked, top, axis=1), 0.0) ** power, axis=1)
    spread = start.copy()
    for _ in range(steps):
        spread = alpha * spread @ graph + (1.0 - alpha) * start
    return spread


def _spread_added(queries: np.ndarray, gallery: np.ndarray, share: float = 0.3, **options) -> np.ndarray:
    spread = diffusion(queries, gallery, **options)
    return queries @ gallery.T + share * spread / np.maximum(spread.max(axis=1, keepdims=True), 1e-12)


# (name, how the (q, g) similarities are made, votes, prototype weight, augmented database k)
Lever = tuple[str, Callable[[np.ndarray, np.ndarray], np.ndarray], int, float, int]
LEVERS: list[Lever] = [
    ("product = mean of its 2 best images", lambda q, g: q @ g.T, 2, 0.5, 0),
    ("product = mean of its 3 best images", lambda q, g: q @ g.T, 3, 0.5, 0),
    ("αDBA k=3 (α 3)", lambda q, g: q @ g.T, 1, 0.5, 3),
    ("αDBA k=5 (α 3)", lambda q, g: q @ g.T, 1, 0.5, 5),
    ("αDBA k=10 (α 3)", lambda q, g: q @ g.T, 1, 0.5, 10),
    ("k-reciprocal k1=20 k2=6 λ=0.3", lambda q, g: k_reciprocal(q, g, 20, 6, 0.3), 1, 0.5, 0),
    ("k-reciprocal k1=10 k2=3 λ=0.3", lambda q, g: k_reciprocal(q, g, 10, 3, 0.3), 1, 0.5, 0),
    ("k-reciprocal k1=20 k2=6 λ=0.6", lambda q, g: k_reciprocal(q, g, 20, 6, 0.6), 1, 0.5, 0),
    ("diffusion k=50 (alone)", lambda q, g: diffusion(q, g, k=50), 1, 0.0, 0),
    ("diffusion k=50, 0.3 added to the similarities", lambda q, g: _spread_added(q, g, k=50), 1, 0.5, 0),
    ("diffusion k=50 γ=1, 20 seeds, added", lambda q, g: _spread_added(q, g, k=50, seeds=20, power=1.0), 1, 0.5, 0),
]


def run(queries: np.ndarray, gallery: np.ndarray, gallery_products: np.ndarray, query_products: np.ndarray, *, dims: int = 128, prototype: float = 0.5) -> dict:
    """Every lever against the default on unit vectors (each image's views already averaged),
    whitened as the default whitens (learned, on the gallery only); prints a table."""
    names, codes = np.unique(gallery_products, return_inverse=True)
    policy = ranking.Policy(expansion=0, prototype=prototype)
    queries, gallery = ranking.held_out_space(queries, gallery, whitening_dims=dims, policy=policy, labels=codes)
    truth = np.searchsorted(names, query_products)
    known = np.isin(query_products, names)

    def figures(scores: np.ndarray) -> tuple[dict, dict]:
        order = np.argsort(-scores, axis=1)[:, :5]
        right = (order == truth[:, None]) & known[:, None]
        first = {n: bool(right[n, 0]) for n in range(len(right))}
        return {"p_at_1": round(float(right[:, 0].mean()), 4), "hit_at_5": round(float(right.any(axis=1).mean()), 4)}, first

    started = time.perf_counter()
    default, default_first = figures(product_scores(queries @ gallery.T, codes, weight=prototype, queries=queries, gallery=gallery))
    default["ms_per_query"] = round(1000 * (time.perf_counter() - started) / len(queries), 3)
    results = {"the default (best image + prototype 0.5)": default}
    print(f"  re-ranking, each against the default over the same {len(queries)} photos:")
    print(f"    {'lever':48s} {'P@1':>6s} {'hit@5':>6s} {'P@1 change':>17s}  {'ms/query':>8s}  once")
    print(f"    {'the default (best image + prototype 0.5)':48s} {default['p_at_1']:6.3f} {default['hit_at_5']:6.3f} {'':17s}  {default['ms_per_query']:8.2f}")
    for name, similarities, votes, weight, augment in LEVERS:
        started = time.perf_counter()
        stored = augmented_database(gallery, augment) if augment else gallery
        once = time.perf_counter() - started
        started = time.perf_counter()
        scores = product_scores(similarities(queries, stored), codes, votes=votes, weight=weight, queries=queries, gallery=stored)
        measured, first = figures(scores)
        measured["ms_per_query"] = round(1000 * (time.perf_counter() - started) / len(queries), 3)
        measured["once_s"] = round(once, 3)
        measured["difference"] = paired_difference(default_first, first)
        results[name] = measured
        change = measured["difference"]
        noise = "" if change["within_noise"] else " *"
        print(f"    {name:48s} {measured['p_at_1']:6.3f} {measured['hit_at_5']:6.3f} "
              f"{change['p_at_1']:+7.3f} ± {change['standard_error']:.3f}{noise:2s} {measured['ms_per_query']:8.2f}  {once:.2f} s", flush=True)
    print("    (± one standard error of the paired difference; * beyond two: more than the noise)")
    return results
