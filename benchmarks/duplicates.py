"""Duplicate images: how well DUPLICATE_THRESHOLD tells a copy of a photo from a look-alike, and what the check costs.

Quality, on the grocery photos (real data): the 81 products are the shop's products, their photos
and catalogue images its images. Copies of ``copies`` photos are planted on *another* product, made
five ways (resized to 50 %, re-compressed at JPEG quality 40, cropped by 10 %, mirrored, a text
banner drawn over), and embedded by the product's extractor with the settings' views. At each
threshold:

- recall, per kind: the copy scores at least the threshold against its source photo;
- false positives: the share of the original images whose most similar image of *another* product
  (no copy planted) reaches the threshold: look-alikes flagged (two milk cartons);
- precision: of the images flagged in the planted catalogue, the share flagged for the right reason
  (a copy and its source).

It also checks the candidate step: the source must be among the copy's ``NEIGHBOURS`` nearest rows in
the whitened space the backend searches, since the detector re-scores only those.

Cost, on synthetic random vectors (cost does not depend on content): one image's check (the backend's
nearest rows, their raw vectors read back, the same-checksum query) at 10k and 100k rows, the
first check in a process (the backend loads its matrix), and the exhaustive scan of
``manage.py visual_search_duplicates``.
"""

from __future__ import annotations

import io
import random
import time

import numpy as np

from .common import dataset
from .features import images, view_vectors

KINDS = ("resized", "jpeg40", "cropped", "mirrored", "text")
THRESHOLDS = (0.90, 0.95, 0.98, 0.99, 0.995, 0.997, 0.998, 0.999, 0.9995)
# The same measurements where the vectors are compared otherwise, for the record: minus the catalogue's
# mean (then unit length), and as the search compares them (the learned whitening).
SPACES = ("raw", "centred", "whitened")


def copy_of(data: bytes, kind: str) -> bytes:
    """A copy of an image file as a shop would upload it again."""
    from PIL import Image, ImageDraw, ImageFont, ImageOps

    picture = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    quality = 90
    if kind == "resized":
        picture = picture.resize((max(1, picture.width // 2), max(1, picture.height // 2)), Image.LANCZOS)
    elif kind == "jpeg40":
        quality = 40
    elif kind == "cropped":
        dx, dy = picture.width // 20, picture.height // 20  # 10 % of each side in all
        picture = picture.crop((dx, dy, picture.width - dx, picture.height - dy))
    elif kind == "mirrored":
        picture = ImageOps.mirror(picture)
    elif kind == "text":
        draw = ImageDraw.Draw(picture)
        size = max(12, picture.height // 10)
        font = ImageFont.load_default(size=size)
        draw.rectangle((0, picture.height - 2 * size, picture.width, picture.height), fill=(200, 20, 20))
        draw.text((size // 2, picture.height - 1.7 * size), "SALE -20% TODAY", fill="white", font=font)
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=quality)
    return out.getvalue()


def catalogue() -> tuple[list[dict], np.ndarray, np.ndarray]:
    """Every grocery image, its vector as the shop stores it (the settings' views averaged) and its product code."""
    from visual_search.embeddings import views
    from visual_search.embeddings.spec import EmbeddingSpec

    rows = images()
    seen = view_vectors(tuple(EmbeddingSpec.from_settings().views))
    vectors = np.stack([views.average(v) for v in seen])
    _, products = np.unique([r["product"] for r in rows], return_inverse=True)
    return rows, vectors, products


def plant(rows: list[dict], products: np.ndarray, copies: int, seed: int) -> list[tuple[int, str, int]]:
    """(source image, kind, product the copy is put on): distinct photos, kinds in turn, another product."""
    rng = random.Random(seed)
    photos = [n for n, r in enumerate(rows) if r["split"] != "catalogue"]
    chosen = rng.sample(photos, copies)
    others = sorted(set(products.tolist()))
    return [(n, KINDS[k % len(KINDS)], rng.choice([p for p in others if p != products[n]])) for k, n in enumerate(chosen)]


def embed_copies(rows: list[dict], planted: list[tuple[int, str, int]], batch: int = 8) -> np.ndarray:
    """The copies' vectors, cached by the spec's fingerprint and the planted list."""
    import hashlib

    from visual_search.embeddings.spec import EmbeddingSpec

    from .features import CACHE, _cached

    key = hashlib.sha256(f"{EmbeddingSpec.from_settings().fingerprint}:{planted}:v1".encode()).hexdigest()[:10]
    return _cached(CACHE / f"copies-{key}.npy", lambda: _embed_copies(rows, planted, batch), len(planted))


def _embed_copies(rows: list[dict], planted: list[tuple[int, str, int]], batch: int) -> list[np.ndarray]:
    from visual_search.embeddings import views
    from visual_search.serving import get_extractor

    extractor, out = get_extractor(), []
    for start in range(0, len(planted), batch):
        chunk = planted[start : start + batch]
        inputs = [extractor.prepare(copy_of((dataset() / rows[n]["file"]).read_bytes(), kind)) for n, kind, _ in chunk]
        vectors = extractor.embed_arrays(np.concatenate(inputs))
        at = np.cumsum([0] + [len(i) for i in inputs])
        out += [views.average(vectors[a:b]) for a, b in zip(at[:-1], at[1:])]
        print(f"\r  copies {min(start + batch, len(planted))}/{len(planted)}", end="", flush=True)
    return [np.stack(out)]


def quality(copies: int = 150, seed: int = 0) -> dict:
    from visual_search import duplicates, ranking
    from visual_search.conf import settings
    from visual_search.embeddings.pooling import l2_normalise

    rows, originals, products = catalogue()
    planted = plant(rows, products, copies, seed)
    started = time.perf_counter()
    copied = embed_copies(rows, planted)
    embed_s = time.perf_counter() - started
    figures: dict = {
        "catalogue_images": len(originals), "products": int(products.max() + 1), "copies": len(planted),
        "embed_copy_s": round(embed_s / len(planted), 3), "threshold_default": settings.DUPLICATE_THRESHOLD,
        "neighbours": duplicates.NEIGHBOURS,
    }
    whitening = ranking.fit_whitening(originals, int(settings.WHITENING_DIMS), products)
    mean = originals.mean(axis=0)
    for space in SPACES:
        if space == "raw":
            seen = (originals, copied)
        elif space == "centred":
            seen = (l2_normalise(originals - mean), l2_normalise(copied - mean))
        else:
            seen = (ranking.transform(originals, whitening), ranking.transform(copied, whitening))
        figures[space] = separation(*seen, products, planted)
    figures["raw"].update(candidates(originals, copied, products, planted, whitening))
    return figures


def separation(originals: np.ndarray, copied: np.ndarray, products: np.ndarray, planted: list) -> dict:
    """Recall by kind, look-alikes' false-positive rate and precision at each threshold, in one space."""
    sources = np.array([n for n, _, _ in planted])
    kinds = np.array([k for _, k, _ in planted])
    # The catalogue with the copies: each copy belongs to the product it was put on.
    vectors = np.vstack([originals, copied])
    owner = np.concatenate([products, np.array([p for _, _, p in planted])])
    scores = vectors @ vectors.T
    scores[owner[:, None] == owner[None, :]] = -np.inf  # two images of one product: never compared
    best, best_at = scores.max(axis=1), scores.argmax(axis=1)
    n = len(originals)
    pair_scores = np.einsum("ij,ij->i", copied, originals[sources])
    # Look-alikes: the originals alone, before any copy is planted.
    clean = scores[:n, :n].max(axis=1)
    # Right reasons: a copy matched with its source's product, a source matched with one of its copies.
    copy_right = products[np.minimum(best_at[n:], n - 1)] == products[sources]
    copy_right &= best_at[n:] < n
    source_of = {int(s): n + k for k, s in enumerate(sources)}
    figures: dict = {
        "pair_score_min": {k: round(float(pair_scores[kinds == k].min()), 4) for k in KINDS},
        "pair_score_median": {k: round(float(np.median(pair_scores[kinds == k])), 4) for k in KINDS},
        "look_alike_score_p99": round(float(np.percentile(clean, 99)), 4),
        "look_alike_score_max": round(float(clean.max()), 4),
        "by_threshold": {},
    }
    for t in THRESHOLDS:
        flagged = best >= t
        right = int((flagged[n:] & copy_right).sum())
        right += sum(1 for s, c in source_of.items() if flagged[s] and best_at[s] >= n and sources[best_at[s] - n] == s)
        figures["by_threshold"][t] = {
            "recall": {k: round(float((pair_scores[kinds == k] >= t).mean()), 3) for k in KINDS},
            "recall_all": round(float((pair_scores >= t).mean()), 3),
            "false_positive_rate": round(float((clean >= t).mean()), 4),
            "precision": round(right / max(int(flagged.sum()), 1), 3),
            "flagged": int(flagged.sum()),
        }
    return figures


def candidates(originals, copied, products, planted, whitening) -> dict:
    """The candidate step: the source among the copy's nearest rows of other products, whitened."""
    from visual_search import duplicates, ranking

    space, queries = ranking.transform(originals, whitening), ranking.transform(copied, whitening)
    ranks = []
    for k, (source, _, product) in enumerate(planted):
        similar = space @ queries[k]
        similar[products == product] = -np.inf
        ranks.append(int((similar > similar[source]).sum()))
    return {"source_in_neighbours": round(float((np.array(ranks) < duplicates.NEIGHBOURS).mean()), 3), "source_rank_max": max(ranks)}


def cost(sizes=(10_000, 100_000), checks: int = 50) -> dict:
    from django.db import connection

    from visual_search import duplicates
    from visual_search.backends import forget_backends
    from visual_search.models import ImageEmbedding

    from .search import fill

    figures: dict = {"check_ms_p50": {}, "check_ms_p95": {}, "first_check_s": {}, "scan_s": {}}
    for size in sizes:
        fill(size)
        with connection.cursor() as cursor:
            cursor.execute("UPDATE visual_search_imageembedding SET checksum = printf('%064d', id)")
        forget_backends()
        rows = list(ImageEmbedding.objects.order_by("?")[: checks + 1])
        started = time.perf_counter()
        duplicates.best_match(rows[0], 0.95)  # the backend loads the catalogue's matrix
        figures["first_check_s"][size] = round(time.perf_counter() - started, 2)
        times = []
        for row in rows[1:]:
            started = time.perf_counter()
            duplicates.best_match(row, 0.95)
            times.append(time.perf_counter() - started)
        figures["check_ms_p50"][size] = round(float(np.percentile(times, 50)) * 1000, 2)
        figures["check_ms_p95"][size] = round(float(np.percentile(times, 95)) * 1000, 2)
        if size <= 20_000:
            started = time.perf_counter()
            duplicates.find_pairs(0.95)
            figures["scan_s"][size] = round(time.perf_counter() - started, 1)
        else:  # the scan is quadratic: time one chunk and scale
            matrix = np.random.default_rng(1).standard_normal((size, 512)).astype(np.float32)
            started = time.perf_counter()
            scores = matrix[: duplicates.SCAN_CHUNK] @ matrix.T
            np.nonzero(scores >= 0.95)
            chunk_s = time.perf_counter() - started
            figures["scan_s"][size] = f"~{round(chunk_s * size / duplicates.SCAN_CHUNK)} (extrapolated from one chunk)"
    ImageEmbedding.objects.all().delete()
    return figures


def run(copies: int = 150) -> dict:
    figures = quality(copies)
    figures["cost"] = cost()
    print_table(figures)
    return figures


def print_table(figures: dict) -> None:
    print(f"\n{figures['copies']} copies planted among {figures['catalogue_images']} images of {figures['products']} products"
          f" ({figures['embed_copy_s']} s to embed a copy)")
    for space in SPACES:
        print(f"\n== {space} vectors" + (" (what the detector compares)" if space == "raw" else ""))
        print_space(figures[space])
    print(f"\nsource among the backend's {figures['neighbours']} nearest rows (whitened): {figures['raw']['source_in_neighbours']:.3f}"
          f" (worst rank {figures['raw']['source_rank_max']})")
    cost = figures["cost"]
    for size in cost["check_ms_p50"]:
        print(f"{size:>7} rows: check p50 {cost['check_ms_p50'][size]} ms, p95 {cost['check_ms_p95'][size]} ms;"
              f" first check {cost['first_check_s'][size]} s; full scan {cost['scan_s'][size]} s")


def print_space(figures: dict) -> None:
    print("copy vs its source, min / median cosine: " + ", ".join(
        f"{k} {figures['pair_score_min'][k]:.3f}/{figures['pair_score_median'][k]:.3f}" for k in KINDS))
    print(f"look-alikes (best match of another product, no copy): p99 {figures['look_alike_score_p99']:.3f},"
          f" max {figures['look_alike_score_max']:.3f}")
    print(f"{'threshold':>9} {'precision':>9} {'FP rate':>8} {'recall':>7}  " + " ".join(f"{k:>8}" for k in KINDS))
    for t, row in figures["by_threshold"].items():
        print(f"{t:>9.4g} {row['precision']:>9.3f} {row['false_positive_rate']:>8.4f} {row['recall_all']:>7.3f}  "
              + " ".join(f"{row['recall'][k]:>8.3f}" for k in KINDS))
