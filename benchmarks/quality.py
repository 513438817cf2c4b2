"""Search quality on the grocery photos: the seed's choice against what the retrieval literature does.

Queries are the ``val`` shop photos; the searched catalogue is the ``train`` photos plus the 81
catalogue images, each labelled with its product and category. Whitening is learned on that
catalogue only (what a shop has), never on the queries.
"""

from __future__ import annotations

import numpy as np

from visual_search import ranking
from visual_search.embeddings.pooling import l2_normalise as l2

from .features import compute, images


def rank(queries: np.ndarray, db: np.ndarray, metric: str = "cosine") -> np.ndarray:
    if metric == "euclidean":
        q2 = (queries.astype(np.float32) ** 2).sum(1)[:, None]
        d2 = (db.astype(np.float32) ** 2).sum(1)[None, :]
        distances = q2 + d2 - 2 * queries.astype(np.float32) @ db.astype(np.float32).T
        return np.argsort(distances, axis=1)
    return np.argsort(-(queries @ db.T), axis=1)


def query_expansion(queries: np.ndarray, db: np.ndarray, k: int = 3, alpha: float = 3.0) -> np.ndarray:
    """alpha-QE as the product ranks (visual_search.ranking): the query plus its top-k, weighted by similarity^alpha."""
    return ranking.expand_against(queries, db, ranking.Policy(expansion=k, alpha=alpha))


def metrics(order: np.ndarray, q_labels: np.ndarray, db_labels: np.ndarray) -> dict:
    hits = db_labels[order] == q_labels[:, None]
    p1 = hits[:, 0].mean()
    p10 = hits[:, :10].mean()
    precisions = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    ap = (precisions * hits).sum(1) / np.maximum(hits.sum(1), 1)
    return {"p_at_1": float(p1), "p_at_10": float(p10), "map": float(ap.mean())}


def evaluate(name: str, q: np.ndarray, db: np.ndarray, cat_q: np.ndarray, cat_db: np.ndarray, labels: dict, metric="cosine") -> dict:
    order = rank(q, db, metric)
    result = metrics(order, labels["q_product"], labels["db_product"])
    result["category_p_at_10"] = metrics(order, labels["q_category"], labels["db_category"])["p_at_10"]
    cat_order = rank(cat_q, cat_db, metric)
    cat_hits = labels["cat_product"][cat_order] == labels["q_product"][:, None]
    result["catalogue_recall_at_1"] = float(cat_hits[:, 0].mean())
    result["catalogue_recall_at_5"] = float(cat_hits[:, :5].any(axis=1).mean())
    return result


def default_config() -> tuple[str, int | None, bool]:
    """The features key the product's settings compute (block, pooling), whitening dims, and QE."""
    from visual_search.conf import settings
    from visual_search.embeddings.spec import resolve_layer

    block = "b4" if resolve_layer(settings.LAYER, settings.WEIGHTS).startswith("block4") else "b5"
    whiten = int(settings.WHITENING_DIMS) if settings.WHITENING else None
    return f"{block}_{settings.POOLING}", whiten, bool(settings.QUERY_EXPANSION)


def run(weights: str) -> dict:
    from visual_search.conf import settings

    rows = images()
    features = compute(weights, size=int(settings.IMAGE_SIZE))
    split = np.array([r["split"] for r in rows])
    product = np.array([r["product"] for r in rows])
    category = np.array([r["category"] for r in rows])
    q, db, cat = split == "val", np.isin(split, ["train", "catalogue"]), split == "catalogue"
    labels = {
        "q_product": product[q], "db_product": product[db], "q_category": category[q],
        "db_category": category[db], "cat_product": product[cat],
    }

    def run_method(name, vectors, metric="cosine", white=None, qe=False):
        if isinstance(vectors, str):
            vectors = features[vectors]
        v = vectors.astype(np.float32)
        if metric == "cosine":
            v = l2(v)
        if white is not None:
            # The product's own whitening (visual_search.ranking), learned on the searched set only.
            v = ranking.whiten(v, *ranking.fit_whitening(v[db], white))
        qv = query_expansion(v[q], v[db]) if qe else v[q]
        cat_qv = query_expansion(v[q], v[cat]) if qe else v[q]
        return evaluate(name, qv, v[db], cat_qv, v[cat], labels, metric)

    multi = np.concatenate([l2(features["b4_gem"]), l2(features["b5_gem"])], axis=1)
    methods = {
        "seed": lambda: run_method("seed", features["b5_flat"], metric="euclidean"),
        "avg": lambda: run_method("avg", features["b5_avg"]),
        "max": lambda: run_method("max", features["b5_max"]),
        "gem": lambda: run_method("gem", features["b5_gem"]),
        "avg+whiten": lambda: run_method("avg+whiten", features["b5_avg"], white=256),
        "gem+whiten": lambda: run_method("gem+whiten", features["b5_gem"], white=256),
        "max+whiten": lambda: run_method("max+whiten", features["b5_max"], white=256),
        "gem-b4+b5": lambda: run_method("gem-b4+b5", multi),
        "gem-b4+b5+whiten": lambda: run_method("gem-b4+b5+whiten", multi, white=256),
        "gem+whiten+qe": lambda: run_method("gem+whiten+qe", features["b5_gem"], white=256, qe=True),
        "b4-avg": lambda: run_method("b4-avg", features["b4_avg"]),
        "b4-max": lambda: run_method("b4-max", features["b4_max"]),
        "b4-gem": lambda: run_method("b4-gem", features["b4_gem"]),
        "b4-gem+whiten128": lambda: run_method("b4-gem+whiten128", features["b4_gem"], white=128),
        "b4-gem+whiten128+qe": lambda: run_method("b4-gem+whiten128+qe", features["b4_gem"], white=128, qe=True),
        "default": lambda: run_method("default", default_config()[0], white=default_config()[1], qe=default_config()[2]),
    }
    key, white_dims, qe = default_config()
    results = {"default_config": f"{key}" + (f"+whiten{white_dims}" if white_dims else "") + ("+qe" if qe else "")}
    print(f"{'method':20s} {'P@1':>6s} {'P@10':>6s} {'mAP':>6s} {'catP@10':>8s} {'catR@1':>7s} {'catR@5':>7s}")
    print(f"default = {results['default_config']}")
    for name, method in methods.items():
        r = results[name] = method()
        print(f"{name:20s} {r['p_at_1']:6.3f} {r['p_at_10']:6.3f} {r['map']:6.3f} {r['category_p_at_10']:8.3f} "
              f"{r['catalogue_recall_at_1']:7.3f} {r['catalogue_recall_at_5']:7.3f}", flush=True)
    return results
