"""Held-out figures that tell staff whether a trained version helps: precision by product and category.

Each held-out image is a query against the training images (the gallery), ranked the way the shop
searches (:func:`visual_search.ranking.score_matrix`): whitening learned on the gallery
(``WHITENING``/``WHITENING_DIMS``) and alpha query expansion (``QUERY_EXPANSION``), so "before"
and "after" are what customers would see.

- ``p_at_1``: the first result shows the query's product;
- ``p_at_10``: share of the first 10 gallery images that show the query's product;
- ``category_p_at_1``: the first result is in the query's category (when categories are known).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..ranking import Policy, score_matrix


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
) -> dict:
    """Precision figures of ``queries`` (held-out vectors) searched among ``gallery`` vectors;
    ``learned``: the whitening is learned from the gallery's products (``WHITENING="learned"``)."""
    if len(queries) == 0 or len(gallery) == 0:
        return {"queries": 0}
    policy = Policy(expansion=int(expansion), alpha=float(alpha))
    scores = score_matrix(np.asarray(queries), np.asarray(gallery), whitening_dims=whitening_dims, policy=policy,
                          labels=list(gallery_products) if learned else None)
    k = min(10, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    qp, gp = np.asarray(query_products), np.asarray(gallery_products)
    same = gp[order] == qp[:, None]
    figures = {
        "queries": int(len(qp)),
        "gallery": int(len(gp)),
        "p_at_1": round(float(same[:, 0].mean()), 4),
        "p_at_10": round(float(same.mean()), 4),
    }
    if query_categories is not None and gallery_categories is not None:
        qc, gc = np.asarray(query_categories), np.asarray(gallery_categories)
        figures["category_p_at_1"] = round(float((gc[order[:, 0]] == qc).mean()), 4)
        figures["category_p_at_10"] = round(float((gc[order] == qc[:, None]).mean()), 4)
    return figures
