"""Held-out figures that tell staff whether a trained version helps: precision by product and category.

Each held-out image is a query against the training images (the gallery), ranked the way the shop
searches: whitening learned on the gallery (``WHITENING``/``WHITENING_DIMS``), query expansion
(``QUERY_EXPANSION``, off by default) and each product scored by its best image and its prototype
(``PROTOTYPE_WEIGHT``, :func:`visual_search.ranking.result_scores`), so "before" and "after" are
what customers would see.

- ``p_at_1``: the first product shown is the query's; ``hit_at_5``: it is among the first five;
- ``p_at_10``: share of the first 10 gallery images that show the query's product;
- ``category_p_at_1``: the first image is in the query's category (when categories are known).

:func:`paired_difference` says whether two models' P@1 on the same photos differ by more than the
noise of that many photos.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..ranking import Policy, result_scores, score_matrix


def evaluate(
    queries: np.ndarray,
    query_products: Sequence,
    gallery: np.ndarray,
    gallery_products: Sequence,
    query_categories: Sequence | None = None,
    gallery_categories: Sequence | None = None,
    *,
    whitening_dims: int | None = None,
    expansion: int = 0,
    alpha: float = 3.0,
    learned: bool = False,
    prototype: float = 0.0,
    per_query: bool = False,
) -> dict:
    """Precision figures of ``queries`` (held-out vectors) searched among ``gallery`` vectors;
    ``learned``: the whitening is learned from the gallery's products (``WHITENING="learned"``);
    ``per_query``: also ``"first_right"``, whether each query's first product was right."""
    if len(queries) == 0 or len(gallery) == 0:
        return {"queries": 0}
    policy = Policy(expansion=int(expansion), alpha=float(alpha))
    scores = score_matrix(np.asarray(queries), np.asarray(gallery), whitening_dims=whitening_dims, policy=policy,
                          labels=list(gallery_products) if learned else None)
    k = min(10, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    qp, gp = np.asarray(query_products), np.asarray(gallery_products)
    same = gp[order] == qp[:, None]
    names, codes = np.unique(gp.astype(str), return_inverse=True)
    products = result_scores(np.asarray(queries), np.asarray(gallery), codes, whitening_dims=whitening_dims,
                             policy=Policy(expansion=int(expansion), alpha=float(alpha), prototype=float(prototype)), learned=learned)
    first = names[np.argsort(-products, axis=1, kind="stable")[:, :5]] == qp.astype(str)[:, None]
    figures = {
        "queries": int(len(qp)),
        "gallery": int(len(gp)),
        "p_at_1": round(float(first[:, 0].mean()), 4),
        "hit_at_5": round(float(first.any(axis=1).mean()), 4),
        "p_at_10": round(float(same.mean()), 4),
    }
    if query_categories is not None and gallery_categories is not None:
        qc, gc = np.asarray(query_categories), np.asarray(gallery_categories)
        figures["category_p_at_1"] = round(float((gc[order[:, 0]] == qc).mean()), 4)
        figures["category_p_at_10"] = round(float((gc[order] == qc[:, None]).mean()), 4)
    if per_query:
        figures["first_right"] = [bool(x) for x in first[:, 0]]
    return figures


def paired_difference(before: Mapping | None, after: Mapping | None) -> dict | None:
    """How much more often ``after`` puts the right product first than ``before`` on the photos both
    measured (each a mapping photo -> first result right), with the standard error of that
    difference, or None when fewer than two photos are shared.

    ``{"p_at_1": mean difference, "standard_error": ..., "photos": n, "within_noise": bool}``:
    within the noise when the difference is under two standard errors (about 95 % of the
    differences two equally good models would show on these photos).
    """
    if not before or not after:
        return None
    shared = [key for key in after if key in before]
    if len(shared) < 2:
        return None
    changes = np.array([float(after[key]) - float(before[key]) for key in shared])
    difference = float(changes.mean())
    error = float(changes.std(ddof=1) / np.sqrt(len(changes)))
    return {
        "p_at_1": round(difference, 4),
        "standard_error": round(error, 4),
        "photos": len(changes),
        "within_noise": bool(abs(difference) < 2 * error or difference == 0.0),
    }
