"""Search quality levers on the grocery photos, each measured with and without, at the product level.

What a customer sees is products, so a query counts as right when the first product shown is the
one in the photo (P@1), or is among the first five products (hit@5). Two protocols:

- ``val``: the searched catalogue is the 2,640 ``train`` photos and the 81 catalogue images; the
  queries are the 296 ``val`` photos (the protocol of the training figures).
- ``demo``: the demo shop's catalogue (6 ``train`` photos and the catalogue image per product, 567
  images); the queries are the same 296 ``val`` photos, customer photos the shop has never seen.

Vectors come from the product's own extractor (``VISUAL_SEARCH`` of the benchmark settings), one per
view (full, flip, crop, crop-flip), cached; a configuration averages the views it uses. Ranking is
:func:`visual_search.ranking.result_scores`, the same code a search runs (every product scored).
"""

from __future__ import annotations

import csv
import time
from dataclasses import replace

import numpy as np

from visual_search import ranking
from visual_search.embeddings import views as view_names
from visual_search.embeddings.pooling import l2_normalise

from . import confidence, reranking
from .common import RESULTS, dataset
from .features import customer_vectors, images, view_vectors

DEMO_PHOTOS = RESULTS.parent.parent / "demo_shop" / "data" / "grocery_store" / "photos.csv"

# (name, stored views, query views, whitening dims, query expansion, prototype weight[, learned whitening])
ALL = view_names.VIEWS
DEFAULT = "+ learned whitening, no query expansion (the default)"
CONFIGS = [
    ("0.1: full view, whitened 128, QE 3", ("full",), ("full",), 128, 3, 0.0),
    ("  no query expansion", ("full",), ("full",), 128, 0, 0.0),
    ("  no whitening", ("full",), ("full",), None, 3, 0.0),
    ("+ flip on both sides", ("full", "flip"), ("full", "flip"), 128, 3, 0.0),
    ("+ crop views in the query", ("full", "flip"), ALL, 128, 3, 0.0),
    ("+ crop views stored too", ALL, ALL, 128, 3, 0.0),
    ("+ prototypes 0.5", ALL, ALL, 128, 3, 0.5),
    ("+ whitened 256", ALL, ALL, 256, 3, 0.5),
    ("  prototypes 0.25", ALL, ALL, 256, 3, 0.25),
    ("  prototypes 0.75", ALL, ALL, 256, 3, 0.75),
    ("  prototypes 1.0", ALL, ALL, 256, 3, 1.0),
    ("  no query expansion", ALL, ALL, 256, 0, 0.5),
    ("  query expansion 5", ALL, ALL, 256, 5, 0.5),
    ("  whitened 384", ALL, ALL, 384, 3, 0.5),
    ("2 stored views, 4 in the query, whitened 256, prototypes 0.5", ("full", "flip"), ALL, 256, 3, 0.5),
    ("1 view each, whitened 256, prototypes 0.5", ("full",), ("full",), 256, 3, 0.5),
    (DEFAULT, ALL, ALL, 128, 0, 0.5, True),
    ("  learned, query expansion 3", ALL, ALL, 128, 3, 0.5, True),
    ("  learned, whitened 256", ALL, ALL, 256, 0, 0.5, True),
    ("  learned, no prototypes", ALL, ALL, 128, 0, 0.0, True),
    ("  learned, 1 view each", ("full",), ("full",), 128, 0, 0.5, True),
    ("  learned, 2 stored views, 4 in the query", ("full", "flip"), ALL, 128, 0, 0.5, True),
    # Speed against quality (issue 17): each query view is one more VGG16 pass the customer waits for.
    ("  learned, 4 stored views, 1 in the query", ALL, ("full",), 128, 0, 0.5, True),
    ("  learned, 4 stored views, 2 in the query", ALL, ("full", "flip"), 128, 0, 0.5, True),
    ("  learned, 4 stored views, full + crop in the query", ALL, ("full", "crop"), 128, 0, 0.5, True),
    ("  learned, 2 stored views, 2 in the query", ("full", "flip"), ("full", "flip"), 128, 0, 0.5, True),
]


def protocols(rows: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{name: (gallery mask, query mask)}`` over ``rows``."""
    split = np.array([r["split"] for r in rows])
    with open(DEMO_PHOTOS) as handle:
        demo = {r["file"] for r in csv.DictReader(handle) if r["split"] == "train"}
    in_demo = np.array([r["file"] in demo or r["split"] == "catalogue" for r in rows])
    # The demo's queries are the val photos too: the other train photos were taken in the same
    # sessions as the demo's own, near-copies a customer's photo is not.
    return {
        "val": (np.isin(split, ["train", "catalogue"]), split == "val"),
        "demo": (in_demo, split == "val"),
    }


def measure(vectors: np.ndarray, products: np.ndarray, gallery: np.ndarray, queries: np.ndarray, config: tuple) -> dict:
    _, stored, asked, dims, expansion, weight, *learned = config
    index = {name: n for n, name in enumerate(view_names.VIEWS)}
    g = l2_normalise(vectors[gallery][:, [index[v] for v in stored]].mean(axis=1))
    q = l2_normalise(vectors[queries][:, [index[v] for v in asked]].mean(axis=1))
    names, codes = np.unique(products[gallery], return_inverse=True)
    policy = ranking.Policy(expansion=expansion, alpha=3.0, prototype=weight)
    started = time.perf_counter()
    scores = ranking.result_scores(q, g, codes, whitening_dims=dims, policy=policy, learned=bool(learned and learned[0]))
    order = np.argsort(-scores, axis=1)[:, :5]
    right = names[order] == products[queries][:, None]
    return {
        "p_at_1": round(float(right[:, 0].mean()), 4),
        "hit_at_5": round(float(right.any(axis=1).mean()), 4),
        "stored_views": len(stored),
        "query_views": len(asked),
        "ranking_ms_per_query": round(1000 * (time.perf_counter() - started) / max(1, queries.sum()), 3),
    }


def run() -> dict:
    dataset()  # a clear error when the data set is missing
    rows = images()
    vectors = view_vectors()
    products = np.array([r["product"] for r in rows])
    results: dict = {}
    curves = {}
    for protocol, (gallery, queries) in protocols(rows).items():
        print(f"\nprotocol {protocol}: {int(gallery.sum())} catalogue images, {int(queries.sum())} queries")
        print(f"  {'configuration':44s} {'P@1':>6s} {'hit@5':>6s} {'views':>7s}")
        for config in CONFIGS:
            figures = measure(vectors, products, gallery, queries, config)
            results[f"{protocol}: {config[0].strip()}"] = figures
            views = f"{figures['stored_views']}/{figures['query_views']}"
            print(f"  {config[0]:44s} {figures['p_at_1']:6.3f} {figures['hit_at_5']:6.3f} {views:>7s}", flush=True)
        g, q = (l2_normalise(vectors[mask].mean(axis=1)) for mask in (gallery, queries))
        results[f"{protocol}: re-ranking"] = reranking.run(q, g, products[gallery], products[queries])
        print("  honest scores (calibrated on the catalogue, with or without customer views; checked on the queries):")
        for config in [c for c in CONFIGS if c[0] in HONEST]:
            for with_customers in (False, True):
                extra = _customers(rows, products) if with_customers else None
                figures = honest_scores(vectors, products, gallery, queries, config, extra)
                name = f"{config[0].strip()}{' + customer views' if with_customers else ''}"
                results[f"{protocol}: {name}: scores"] = figures
                curves[f"{protocol} catalogue, {name}"] = CURVES.pop(name)
                print(f"    {name:58s} ECE {figures['top1_calibration_error']:.3f} (a perfect calibration: "
                      f"{figures['perfect_calibration_error_mean']:.3f}; noise taken out, L2: "
                      f"{figures['debiased_l2_calibration_error']:.3f}, perfect {figures['perfect_debiased_l2_calibration_error_mean']:.3f})"
                      f"  right {_three(figures['mean_score_right'])}"
                      f"  wrong {_three(figures['mean_score_wrong'])}  confident {figures['confident_share_at_0.5']:.2f}"
                      f" (right {figures['right_when_confident_at_0.5']}, unsure right {figures['right_when_unsure_at_0.5']})", flush=True)
        results[f"{protocol}: confidence features"] = _confidence(rows, vectors, products, gallery, queries)
    results.update(one_image_shops(rows, vectors, products))
    results.update(absent_products(rows, vectors, products))
    default = {k: v for k, v in curves.items() if f"{DEFAULT} + customer views" in k}
    reliability_diagram(default, DIAGRAM)
    print(f"  reliability diagram of the default: {DIAGRAM}")
    return results


# (probabilities, right) of the first results of each honest_scores run, for the diagram.
CURVES: dict[str, tuple[np.ndarray, np.ndarray]] = {}
DIAGRAM = RESULTS.parent.parent / "docs" / "images" / "reliability.png"

# The configurations whose calibrated scores are measured too: 0.1's and the default.
HONEST = {CONFIGS[0][0], "+ prototypes 0.5", "  learned, query expansion 3", DEFAULT}


def _customers(rows: list[dict], products: np.ndarray):
    """Two customer views of each of the demo's catalogue images (in both protocols' catalogues)."""
    gallery, _ = protocols(rows)["demo"]
    wanted = [int(n) for n in np.flatnonzero(gallery)]
    return _views_of(customer_vectors(wanted, per_image=2), wanted, products)


def _views_of(views: np.ndarray, made_from: list[int], products: np.ndarray, per_image: int = 2):
    """A Sample of customer views, ``per_image`` of each row of ``made_from`` in turn (as
    :func:`customer_vectors` returns them), each answering its image's product."""
    from visual_search.whitening import Sample

    return Sample(views, [products[n] for n in made_from for _ in range(per_image)], [int(n) for n in made_from for _ in range(per_image)])


def honest_scores(vectors: np.ndarray, products: np.ndarray, gallery: np.ndarray, queries: np.ndarray, config: tuple, customers=None) -> dict:
    """The calibration a shop would learn from its catalogue alone (visual_search.whitening.calibrate:
    each catalogue image searched among the others, and ``customers``' views, a Sample, if given),
    checked on the queries it never saw."""
    from visual_search.whitening import Sample, calibrate, learn

    _, stored, asked, dims, expansion, weight, *learned = config
    index = {name: n for n, name in enumerate(view_names.VIEWS)}
    g = l2_normalise(vectors[gallery][:, [index[v] for v in stored]].mean(axis=1))
    q = l2_normalise(vectors[queries][:, [index[v] for v in asked]].mean(axis=1))
    policy = ranking.Policy(expansion=expansion, alpha=3.0, prototype=weight)
    method = ("learned" if learned and learned[0] else "pca") if dims else None
    sample = Sample(g, list(products[gallery]), [int(n) for n in np.flatnonzero(gallery)])
    small = len(g) < 300  # as visual_search.whitening decides (WHITENING_MIN_VECTORS)
    whitening = learn(sample, customers if small else None, dims, method) if method else None
    calibration = calibrate(sample, customers, dims, method, small=small, policy=policy)
    calibrated = ranking.Policy(expansion=expansion, alpha=3.0, prototype=weight, calibration=calibration)
    space = ranking.ArraySpace.of(ranking.transform(g, whitening), products[gallery])
    stored = {name: g[products[gallery] == name] for name in np.unique(products[gallery])}
    top, right = [], []
    for query, answer in zip(q, products[queries]):
        # A copy of the result's image by its stored, unwhitened vectors too, as the backend asks.
        def is_copy(result_id, query=query):
            return bool((stored[result_id] @ query).max() >= ranking.COPY_RAW_SIMILARITY)

        hits = ranking.rank(space, query if whitening is None else ranking.whiten(query, *whitening), limit=5, policy=calibrated, is_copy=is_copy)
        top.append(hits[0].probability)
        right.append(hits[0].result_id == answer)
    top, right = np.asarray(top), np.asarray(right)
    # What a perfectly calibrated score with these values would measure on this many queries
    # (right drawn at exactly the stated probabilities): the ECE's own noise.
    rng = np.random.default_rng(0)
    draws = [rng.random(len(top)) < top for _ in range(2000)]
    perfect = np.asarray([ranking.calibration_error(top, drawn) for drawn in draws])
    perfect_debiased = np.asarray([debiased_calibration_error(top, drawn) for drawn in draws])
    CURVES[f"{config[0].strip()}{' + customer views' if customers is not None else ''}"] = (top, right)
    return {
        "calibration": calibration.as_dict(),
        "top1_calibration_error": round(ranking.calibration_error(top, right), 4),
        "perfect_calibration_error_mean": round(float(perfect.mean()), 4),
        "perfect_calibration_error_at_most_0.05": round(float((perfect <= 0.05).mean()), 3),
        "debiased_l2_calibration_error": round(debiased_calibration_error(top, right), 4),
        "perfect_debiased_l2_calibration_error_mean": round(float(perfect_debiased.mean()), 4),
        "perfect_debiased_l2_calibration_error_p90": round(float(np.percentile(perfect_debiased, 90)), 4),
        "mean_score": round(float(top.mean()), 4),
        "mean_score_right": round(float(top[right].mean()), 4) if right.any() else None,  # None, not NaN: JSON has no NaN
        "mean_score_wrong": round(float(top[~right].mean()), 4) if (~right).any() else None,
        "p_at_1": round(float(right.mean()), 4),
        "confident_share_at_0.5": round(float((top >= 0.5).mean()), 4),
        "right_when_confident_at_0.5": round(float(right[top >= 0.5].mean()), 4) if (top >= 0.5).any() else None,
        "right_when_unsure_at_0.5": round(float(right[top < 0.5].mean()), 4) if (top < 0.5).any() else None,
    }


def _three(figure: float | None) -> str:
    """A mean score to three places, or "none" where no first result was right (or wrong)."""
    return "none" if figure is None else f"{figure:.3f}"


def _confidence(rows: list[dict], vectors: np.ndarray, products: np.ndarray, gallery: np.ndarray, queries: np.ndarray) -> dict:
    """The default's first results: cheap confidence features against the calibrated probability
    (:mod:`benchmarks.confidence`), the calibration fitted on the catalogue and customer views only."""
    _, stored, asked, dims, expansion, weight, _learned = next(c for c in CONFIGS if c[0] == DEFAULT)
    index = {name: n for n, name in enumerate(view_names.VIEWS)}
    g = l2_normalise(vectors[gallery][:, [index[v] for v in stored]].mean(axis=1))
    print("  confidence features of the first result (AUROC: right first results above wrong ones; gap: mean probability "
          "right - wrong):")
    figures = confidence.run(
        g, products[gallery], [int(n) for n in np.flatnonzero(gallery)], vectors[queries][:, [index[v] for v in asked]],
        products[queries], _customers(rows, products), dims, ranking.Policy(expansion=expansion, alpha=3.0, prototype=weight),
    )
    confidence.report(figures)
    return figures


def one_image_shops(rows: list[dict], vectors: np.ndarray, products: np.ndarray) -> dict:
    """Shops with one image per product (the catalogue images of 20, 30 and all 81 products, the
    subsets seeded): the default's scores as such a shop's own calibration makes them, checked on
    the val photos of its products. What a customer sees in the most common small shop."""
    split = np.array([r["split"] for r in rows])
    catalogue = np.flatnonzero(split == "catalogue")
    config = next(c for c in CONFIGS if c[0] == DEFAULT)
    rng, results = np.random.default_rng(1), {}
    print("\n  one image per product (the catalogue images only; queries: the val photos of those products):")
    for count in (20, 30, 81):
        chosen = catalogue if count == len(catalogue) else np.sort(rng.choice(catalogue, count, replace=False))
        gallery = np.zeros(len(rows), dtype=bool)
        gallery[chosen] = True
        queries = (split == "val") & np.isin(products, products[chosen])
        made_from = [int(n) for n in chosen]
        customers = _views_of(customer_vectors(made_from, per_image=2), made_from, products)
        figures = honest_scores(vectors, products, gallery, queries, config, customers)
        CURVES.clear()
        results[f"one image per product: {count} products"] = figures
        print(f"    {count:2d} products, {int(queries.sum())} photos: P@1 {figures['p_at_1']:.3f}, first result's stated "
              f"probability {figures['mean_score']:.3f} on average, ECE {figures['top1_calibration_error']:.3f}, "
              f"confident {figures['confident_share_at_0.5']:.2f} (calibration: {figures['calibration'].get('basis')})", flush=True)
    # The same 81 products with the catalogue image and 1, 2, 3 of the demo's shop photos each: what
    # a second (third, fourth) image per product does to the calibration.
    demo, _ = protocols(rows)["demo"]
    wanted = [int(n) for n in np.flatnonzero(demo)]
    views = customer_vectors(wanted, per_image=2)  # the demo's, cached by the protocols above
    position = {n: i for i, n in enumerate(wanted)}
    print("  the catalogue image and shop photos of each of the 81 products (queries: the 296 val photos; in brackets\n"
          "  the train photos outside the demo, on which ranking.PRIOR_IMAGES was chosen):")
    tuning = (split == "train") & ~demo
    for photos in (1, 2, 3):
        chosen = sorted(n for product in np.unique(products[wanted]) for n in (
            [n for n in wanted if products[n] == product and split[n] == "catalogue"]
            + [n for n in wanted if products[n] == product and split[n] == "train"][:photos]))
        gallery = np.zeros(len(rows), dtype=bool)
        gallery[chosen] = True
        picked = [2 * position[n] + k for n in chosen for k in (0, 1)]
        customers = _views_of(views[picked], chosen, products)
        figures = honest_scores(vectors, products, gallery, split == "val", config, customers)
        tuned = honest_scores(vectors, products, gallery, tuning, config, customers)
        CURVES.clear()
        results[f"catalogue image and {photos} shop photos per product"] = figures
        results[f"catalogue image and {photos} shop photos per product, tuning photos"] = tuned
        print(f"    + {photos} shop photo{'s' if photos > 1 else ''} each ({len(chosen)} images): P@1 {figures['p_at_1']:.3f} "
              f"({tuned['p_at_1']:.3f}), stated {figures['mean_score']:.3f} ({tuned['mean_score']:.3f}) on average, "
              f"ECE {figures['top1_calibration_error']:.3f} ({tuned['top1_calibration_error']:.3f}), "
              f"confident {figures['confident_share_at_0.5']:.2f} (calibration: {figures['calibration'].get('basis')}, "
              f"{figures['calibration'].get('fitted_on')} searches, default curve mixed in "
              f"{figures['calibration'].get('prior', 0):.0%})", flush=True)
    return results


def debiased_calibration_error(probabilities: np.ndarray, right: np.ndarray, bins: int = 10) -> float:
    """The calibration error with the sampling noise of few queries taken out: the debiased
    estimator of the binned L2 (root-mean-square) calibration error of Kumar, Liang and Ma
    ("Verified uncertainty calibration", NeurIPS 2019). Each bin's squared gap between stated and
    observed is reduced by the variance its observed rate has from sampling alone. An L2 error is
    at least the L1 one (the ECE) for the same true calibration, so this estimates an upper bound
    of the true ECE; it is itself noisy (see the perfect draws beside it)."""
    probabilities, right = np.asarray(probabilities, dtype=np.float64), np.asarray(right, dtype=np.float64)
    which = np.minimum((probabilities * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        if count < 2:
            continue
        observed = right[members].mean()
        total += members.mean() * ((probabilities[members].mean() - observed) ** 2 - observed * (1 - observed) / (count - 1))
    return float(np.sqrt(max(total, 0.0)))


def reliability_diagram(curves: dict[str, tuple[np.ndarray, np.ndarray]], path) -> None:
    """A PNG of stated probability (x) against how often the first result was right (y), 10 bins,
    one curve per ``{label: (probabilities, right)}``; the diagonal is perfect calibration."""
    from PIL import Image, ImageDraw

    size, margin = 480, 56
    image = Image.new("RGB", (size + margin + 16, size + margin + 16 + 18 * len(curves)), "white")
    draw = ImageDraw.Draw(image)

    def point(x: float, y: float) -> tuple[float, float]:
        return margin + x * size, 16 + (1 - y) * size

    draw.rectangle([point(0, 1), point(1, 0)], outline="#999")
    for tick in np.linspace(0, 1, 6):
        draw.line([point(tick, 0), point(tick, 0.012)], fill="#999")
        draw.text((point(tick, 0)[0] - 8, point(tick, 0)[1] + 4), f"{tick:.1f}", fill="black")
        draw.text((8, point(0, tick)[1] - 6), f"{tick:.1f}", fill="black")
    draw.line([point(0, 0), point(1, 1)], fill="#bbb", width=1)
    draw.text((margin + size / 2 - 90, 16 + size + 20), "probability stated for the first result", fill="black")
    draw.text((margin + 8, 22), "how often the first result was right (diagonal: perfectly calibrated)", fill="black")
    colours = ["#0b6e4f", "#c0392b", "#2c3e50", "#8e44ad"]
    for n, (label, (probabilities, right)) in enumerate(curves.items()):
        bins = np.minimum((probabilities * 10).astype(int), 9)
        points = [point(probabilities[bins == b].mean(), right[bins == b].mean()) for b in range(10) if (bins == b).sum() >= 3]
        if len(points) > 1:
            draw.line(points, fill=colours[n % 4], width=3)
        for x, y in points:
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colours[n % 4])
        draw.text((margin, 16 + size + 40 + 18 * n), f"- {label}", fill=colours[n % 4])
    image.save(path)


# Leave-products-out: photos of products the shop does not sell.
ABSENT_SPLITS, ABSENT_HIDDEN = 5, 20
# The share of the calibration's searches that are leave-product-out ones (the lever measured).
ABSENT_WEIGHTS = (0.0, 0.1, 0.2, 0.3)


def absent_products(rows: list[dict], vectors: np.ndarray, products: np.ndarray) -> dict:
    """Photos of products the shop does not sell. In ``ABSENT_SPLITS`` seeded splits,
    ``ABSENT_HIDDEN`` of the 81 products are taken out of the catalogue entirely (train photos,
    catalogue images, customer views); the default's whitening and calibration are fitted on what
    remains as the product fits them (:func:`honest_scores`'s way, with customer views), and the val
    photos are searched: those of the hidden products (no right answer exists) and those of the
    products present. Each calibration weight ``w`` also fits on leave-product-out searches (a
    customer view searched with all its product's images hidden: "none of these" is right), ``w``
    of the searches; 0 is the product as it is."""
    from unittest import mock

    from visual_search import whitening as product_whitening
    from visual_search.whitening import Sample, calibrate, learn

    split = np.array([r["split"] for r in rows])
    config = next(c for c in CONFIGS if c[0] == DEFAULT)
    _, stored, asked, dims, expansion, weight, learned = config
    index = {name: n for n, name in enumerate(view_names.VIEWS)}
    names = np.unique(products)
    all_customers = _customers(rows, products)
    policy = ranking.Policy(expansion=expansion, alpha=3.0, prototype=weight)
    results: dict = {}
    rng = np.random.default_rng(7)
    splits = [np.sort(rng.choice(names, ABSENT_HIDDEN, replace=False)) for _ in range(ABSENT_SPLITS)]
    print(f"\n  photos of products the shop does not sell ({ABSENT_SPLITS} splits, {ABSENT_HIDDEN} of {len(names)} products "
          "hidden; queries: the val photos;\n  calibration also fitted on leave-product-out searches, w of them):")
    print(f"    {'protocol':8s} {'w':>4s} | present: {'P@1':>5s} {'ECE':>5s} {'perfect':>7s} {'stated':>6s} {'conf':>5s} {'right|conf':>10s} {'right&conf':>10s}"
          f" | absent: {'stated':>6s} {'conf':>5s} | AUROC: {'s1':>5s} {'raw':>5s} {'gap':>5s} {'prob':>5s}")
    for protocol, (full_gallery, _) in protocols(rows).items():
        per_weight: dict[float, list[dict]] = {w: [] for w in ABSENT_WEIGHTS}
        for hidden_products in splits:
            present = ~np.isin(products, hidden_products)
            gallery = full_gallery & present
            keep = [n for n, source in enumerate(all_customers.sources) if products[source] not in set(hidden_products)]
            customers = all_customers.subset(keep)
            g = l2_normalise(vectors[gallery][:, [index[v] for v in stored]].mean(axis=1))
            sample = Sample(g, list(products[gallery]), [int(n) for n in np.flatnonzero(gallery)])
            whitening = learn(sample, None, dims, "learned")
            recorded: list = []
            real_fit = product_whitening.fit_calibration

            def recording(searches, scoring="", real_fit=real_fit, recorded=recorded):
                recorded.append((list(searches), scoring))
                return real_fit(searches, scoring)

            with mock.patch.object(product_whitening, "fit_calibration", recording):
                base = calibrate(sample, customers, dims, "learned", small=False, policy=policy)
            searches, scoring = recorded[0]
            space = ranking.ArraySpace.of(ranking.transform(g, whitening), products[gallery])
            rows_of = {name: np.flatnonzero(products[gallery] == name) for name in np.unique(products[gallery])}
            order = np.random.default_rng(0).permutation(len(customers))
            left_out = []  # leave-product-out searches, as many as the largest weight needs
            wanted_absent = int(round(max(ABSENT_WEIGHTS) / (1 - max(ABSENT_WEIGHTS)) * len(searches)))
            for n in order[:wanted_absent]:
                where = space.without(rows_of[customers.result_ids[n]])
                hits = ranking.rank(where, ranking.transform(customers.vectors[n], whitening), limit=ranking.CANDIDATES, policy=policy)
                left_out.append(([hit.score for hit in hits], -1))
            q_rows = split == "val"
            q = l2_normalise(vectors[q_rows][:, [index[v] for v in asked]].mean(axis=1))
            answers, absent = products[q_rows], ~present[q_rows]
            raw = (q @ g.T).max(axis=1)  # the nearest stored image's cosine, unwhitened
            for w in ABSENT_WEIGHTS:
                extra = left_out[: int(round(w / (1 - w) * len(searches)))]
                fitted = base if not extra else replace(
                    ranking.fit_calibration(searches + extra, scoring), images_per_product=base.images_per_product, prior=base.prior)
                calibrated = replace(policy, calibration=fitted)
                top, right, first, second = [], [], [], []
                for query, answer in zip(q, answers):
                    hits = ranking.rank(space, ranking.whiten(query, *whitening), limit=5, policy=calibrated)
                    top.append(hits[0].probability)
                    right.append(hits[0].result_id == answer)
                    first.append(hits[0].score)
                    second.append(hits[1].score)
                top, right, first, second = map(np.asarray, (top, right, first, second))
                per_weight[w].append(_absent_figures(top, right, first, second, raw, absent, fitted))
        for w, runs in per_weight.items():
            figures = {key: round(float(np.mean([r[key] for r in runs])), 4) for key in runs[0] if key != "calibration"}
            figures["calibrations"] = [r["calibration"] for r in runs]
            figures["splits"], figures["hidden_products"] = ABSENT_SPLITS, ABSENT_HIDDEN
            results[f"{protocol}: photos of products the shop does not sell, w {w}"] = figures
            print(f"    {protocol:8s} {w:4.1f} | present: {figures['present_p_at_1']:5.3f} {figures['present_ece']:5.3f} "
                  f"{figures['present_perfect_ece']:7.3f} {figures['present_mean_score']:6.3f} {figures['present_confident']:5.3f} "
                  f"{figures['present_right_when_confident']:10.3f} {figures['present_right_and_confident']:10.3f} | absent: {figures['absent_mean_score']:6.3f} "
                  f"{figures['absent_confident']:5.3f} | AUROC: {figures['auroc_top_similarity']:5.3f} {figures['auroc_raw_top_similarity']:5.3f} {figures['auroc_gap']:5.3f} "
                  f"{figures['auroc_probability']:5.3f}", flush=True)
    return results


def _absent_figures(top, right, first, second, raw, absent, calibration) -> dict:
    """One split's figures: the present products' photos (calibration) and the absent ones' (how
    often a product the shop does not sell is stated confidently), and how well the top similarity
    (whitened, as ranked; ``raw``: unwhitened), the gap to the second and the probability tell an absent product's photo from a present one's
    (AUROC: the chance that a present photo ranks above an absent one)."""
    present = ~absent
    p, r = top[present], right[present]
    rng = np.random.default_rng(0)
    perfect = np.mean([ranking.calibration_error(p, rng.random(len(p)) < p) for _ in range(500)])
    return {
        "calibration": calibration.as_dict(),
        "present_photos": int(present.sum()),
        "absent_photos": int(absent.sum()),
        "present_p_at_1": float(r.mean()),
        "present_ece": ranking.calibration_error(p, r),
        "present_perfect_ece": float(perfect),
        "present_mean_score": float(p.mean()),
        "present_confident": float((p >= 0.5).mean()),
        "present_right_when_confident": float(r[p >= 0.5].mean()) if (p >= 0.5).any() else 0.0,
        "present_right_and_confident": float(((p >= 0.5) & r).mean()),
        "absent_mean_score": float(top[absent].mean()),
        "absent_confident": float((top[absent] >= 0.5).mean()),
        "auroc_top_similarity": _auroc(first[present], first[absent]),
        "auroc_raw_top_similarity": _auroc(raw[present], raw[absent]),
        "auroc_gap": _auroc((first - second)[present], (first - second)[absent]),
        "auroc_probability": _auroc(p, top[absent]),
    }


def _auroc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """The chance that a random positive scores above a random negative (ties count half)."""
    greater = (positives[:, None] > negatives[None, :]).mean()
    return float(greater + 0.5 * (positives[:, None] == negatives[None, :]).mean())
