"""Searching a region of the customer's photo (``box``) against the whole photo, on the grocery photos.

The 296 ``val`` shop photos are searched with the default ranking (learned whitening, views,
prototypes: :mod:`benchmarks.levers`'s default) in both catalogues, once whole and once with each
simulated customer box. The dataset has no boxes around the products, so a customer's box is
simulated by centred regions (customers centre what they photograph); each is a share of the
photo's width and height. Query vectors are computed here (cached); catalogue vectors are the
quality suite's.
"""

from __future__ import annotations

import hashlib

import numpy as np

from visual_search import ranking
from visual_search.embeddings import views as view_names
from visual_search.embeddings.images import Box
from visual_search.embeddings.pooling import l2_normalise

from .common import dataset
from .features import CACHE, _cached, images, view_vectors
from .levers import protocols

# Centred boxes, as (name, share of each side kept).
BOXES = [("centre 80 %", 0.8), ("centre 60 %", 0.6), ("centre 40 %", 0.4)]


def _box(share: float) -> Box:
    margin = (1.0 - share) / 2
    return Box(margin, margin, 1.0 - margin, 1.0 - margin)


def query_vectors(rows: list[dict], wanted: np.ndarray, box: Box) -> np.ndarray:
    from visual_search.embeddings.spec import EmbeddingSpec
    from visual_search.serving import get_extractor

    spec = EmbeddingSpec.from_settings()
    key = hashlib.sha256(f"{spec.fingerprint}:{box}:{len(wanted)}:v1".encode()).hexdigest()[:10]

    def compute() -> list[np.ndarray]:
        extractor, out = get_extractor(), []
        for n, row in enumerate(wanted):
            data = (dataset() / rows[int(row)]["file"]).read_bytes()
            out.append(extractor.embed_bytes(data, box=box)[None, :])
            print(f"\r  {box}: {n + 1}/{len(wanted)}", end="", flush=True)
        return out

    return _cached(CACHE / f"box-{key}.npy", compute, len(wanted))


def run() -> dict:
    dataset()
    rows = images()
    vectors = view_vectors()
    products = np.array([r["product"] for r in rows])
    results: dict = {}
    for protocol, (gallery, queries) in protocols(rows).items():
        wanted = np.flatnonzero(queries)
        g = l2_normalise(vectors[gallery].mean(axis=1))
        names, codes = np.unique(products[gallery], return_inverse=True)
        policy = ranking.Policy(expansion=3, alpha=3.0, prototype=0.5)
        whole = l2_normalise(vectors[queries][:, list(range(len(view_names.VIEWS)))].mean(axis=1))
        print(f"\nprotocol {protocol}: {int(gallery.sum())} catalogue images, {len(wanted)} queries")
        print(f"  {'query':16s} {'P@1':>6s} {'hit@5':>6s}  changed first result: right->wrong, wrong->right")
        base = None
        for name, share in [("whole photo", 1.0), *BOXES]:
            q = whole if share == 1.0 else query_vectors(rows, wanted, _box(share))
            scores = ranking.result_scores(q, g, codes, whitening_dims=128, policy=policy, learned=True)
            order = np.argsort(-scores, axis=1)[:, :5]
            right = names[order] == products[queries][:, None]
            first = right[:, 0]
            if base is None:
                base = first
            lost, gained = int((base & ~first).sum()), int((~base & first).sum())
            results[f"{protocol}: {name}"] = {
                "p_at_1": round(float(first.mean()), 4), "hit_at_5": round(float(right.any(axis=1).mean()), 4),
                "right_to_wrong": lost, "wrong_to_right": gained,
            }
            print(f"  {name:16s} {first.mean():6.3f} {right.any(axis=1).mean():6.3f}  {lost}, {gained}", flush=True)
    return results
