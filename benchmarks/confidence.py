"""Cheap confidence features of a search's first result, against its calibrated probability (issue 13).

A calibrated score separates right from wrong first results only as well as it ranks them: for a
calibrated probability the gap between the mean score of right and of wrong first results is
Var(p) / (mu (1 - mu)), so only better *discrimination* widens it honestly. Each feature here is
measured three ways, on the photos the calibration never saw:

- alone: its AUROC (the chance that a right first result's value is above a wrong one's), beside
  the probability's own;
- as the product could use it: a term on the first result's log-odds, ``logit p + b f + c``,
  fitted by maximum likelihood on the shop's calibration searches only (those
  :func:`visual_search.whitening.calibrate` makes), then its AUROC, its right / wrong gap (the
  change paired over the same photos, with a bootstrap standard error) and its ECE;
- fitted on the photos themselves (10-fold cross-validated): what the feature could add at best,
  with a calibration no shop can have.

Measured only: the product's calibration is :class:`visual_search.ranking.Calibration`'s two
parameters; docs/performance.md, "Honest scores".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from unittest import mock

import numpy as np

from visual_search import ranking
from visual_search.embeddings.pooling import l2_normalise

# The first stored images a feature counts (images of the first product among them, their mean).
IMAGES = 10


def search_features(space: ranking.ArraySpace, query: np.ndarray, hits: Sequence[ranking.Hit]) -> dict[str, float]:
    """The features of one search: ``space`` as searched (hidden rows never count), the transformed
    ``query`` and its uncalibrated ``hits``, best first (at least three). Each is larger when the
    first result looks surer, except ``hubness``."""
    scores = np.einsum("ij,j->i", space.vectors, query)
    if space.hidden is not None:
        scores = np.where(space.hidden, -np.inf, scores)
    top = np.argsort(-scores, kind="stable")[:IMAGES]
    fused = np.asarray([hit.score for hit in hits])
    vectors = space.result_vectors([hit.result_id for hit in hits])
    best = np.asarray([(vectors[hit.result_id] @ query).max() for hit in hits])
    prototypes = np.asarray([ranking.prototype(vectors[hit.result_id]) @ query for hit in hits])
    hubness = float(scores[top].mean())  # CSLS's r(q): how close the query is to everything
    return {
        "margin over the second": float(fused[0] - fused[1]),
        "margin over the third": float(fused[0] - fused[2]),
        f"its images among the first {IMAGES}": float((space.codes[top] == space.result_codes[hits[0].result_id]).sum()),
        "hubness": hubness,
        "first minus hubness (CSLS)": float(fused[0] - hubness),
        "prototype's margin": float(prototypes[0] - prototypes[1:].max()),
        "best image and prototype agree": float(best.argmax() == 0 and prototypes.argmax() == 0),
    }


def view_agreement(space: ranking.ArraySpace, views: np.ndarray, first: str, policy: ranking.Policy) -> float:
    """How many of the query's ``views`` (each transformed), searched alone, put ``first`` first."""
    return float(sum(ranking.rank(space, view, limit=1, policy=policy)[0].result_id == first for view in views))


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def fit_logit_term(probabilities: np.ndarray, feature: np.ndarray, right: np.ndarray) -> tuple[float, float]:
    """``(b, c)`` of ``logit p' = logit p + b f + c`` by maximum likelihood (Newton's method, a
    tiny ridge keeps a feature that separates perfectly finite)."""
    offset, f, y = logit(probabilities), np.asarray(feature, dtype=np.float64), np.asarray(right, dtype=np.float64)
    design = np.column_stack([f, np.ones_like(f)])
    weights = np.zeros(2)
    for _ in range(100):
        p = _sigmoid(offset + design @ weights)
        gradient = design.T @ (p - y) + 1e-6 * weights
        hessian = (design * (p * (1 - p))[:, None]).T @ design + 1e-6 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(weights[0]), float(weights[1])


def with_term(probabilities: np.ndarray, feature: np.ndarray, term: tuple[float, float]) -> np.ndarray:
    """The probabilities with the fitted term on their log-odds."""
    return _sigmoid(logit(probabilities) + term[0] * np.asarray(feature) + term[1])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|


def auroc(scores: np.ndarray, right: np.ndarray) -> float:
    """The chance that a right first result scores above a wrong one (ties count half)."""
    scores, right = np.asarray(scores), np.asarray(right, dtype=bool)
    positives, negatives = scores[right], scores[~right]
    return float((positives[:, None] > negatives[None, :]).mean() + 0.5 * (positives[:, None] == negatives[None, :]).mean())


def gap(probabilities: np.ndarray, right: np.ndarray) -> float:
    """Mean probability of right first results less that of wrong ones."""
    right = np.asarray(right, dtype=bool)
    return float(probabilities[right].mean() - probabilities[~right].mean())


def gap_change(new: np.ndarray, base: np.ndarray, right: np.ndarray, draws: int = 2000) -> tuple[float, float]:
    """The change of :func:`gap` from ``base`` to ``new`` on these photos, and its standard error by a
    paired bootstrap over the photos (both scored on each draw's same photos)."""
    rng, right = np.random.default_rng(0), np.asarray(right, dtype=bool)
    changes = []
    for _ in range(draws):
        rows = rng.integers(0, len(right), len(right))
        if right[rows].all() or not right[rows].any():
            continue
        changes.append(gap(new[rows], right[rows]) - gap(base[rows], right[rows]))
    return gap(new, right) - gap(base, right), float(np.std(changes))


def cross_validated(probabilities: np.ndarray, feature: np.ndarray, right: np.ndarray, folds: int = 10) -> np.ndarray:
    """Each photo's probability with the term fitted on the other folds' photos (a cheat's bound)."""
    fold = np.arange(len(right)) % folds
    out = np.zeros(len(right))
    for k in range(folds):
        term = fit_logit_term(probabilities[fold != k], feature[fold != k], right[fold != k])
        out[fold == k] = with_term(probabilities[fold == k], feature[fold == k], term)
    return out


def recorded_calibration(calibrate: Callable[[], ranking.Calibration]) -> tuple[ranking.Calibration, list]:
    """``calibrate()``'s calibration and its searches as it made them: ``(space, transformed query,
    hits, index of the right product or -1)``, by watching :func:`visual_search.whitening.calibrate`'s
    calls to ``rank`` and ``fit_calibration``."""
    from visual_search import whitening as product_whitening  # Django's models: imported once it is set up

    searches, answers = [], []
    real_rank, real_fit = product_whitening.rank, product_whitening.fit_calibration

    def watched_rank(space, query, **options):
        hits = real_rank(space, query, **options)
        searches.append((space, query, hits))
        return hits

    def watched_fit(known, scoring=""):
        answers.extend(right for _, right in known)
        return real_fit(known, scoring)

    with mock.patch.object(product_whitening, "rank", watched_rank), mock.patch.object(product_whitening, "fit_calibration", watched_fit):
        calibration = calibrate()
    # calibrate() keeps the searches that found something, in order; each found its CANDIDATES.
    kept = [search for search in searches if search[2]]
    return calibration, [(*search, right) for search, right in zip(kept, answers)]


def run(
    gallery: np.ndarray, labels: Sequence[str], sources: Sequence[int], query_views: np.ndarray, answers: Sequence[str],
    customers, dims: int, policy: ranking.Policy,
) -> dict:
    """The features on one catalogue: ``gallery`` vectors (as stored: views averaged) of products
    ``labels`` made from images ``sources``; queries ``(photos, views, d)`` whose products are
    ``answers``; ``customers``: a :class:`visual_search.whitening.Sample` of customer views. The
    whitening and calibration are the product's, fitted on the catalogue and customer views only."""
    from visual_search import whitening as product_whitening

    sample = product_whitening.Sample(gallery, list(labels), list(sources))
    small = len(gallery) < 300  # as visual_search.whitening decides (WHITENING_MIN_VECTORS)
    whitening = product_whitening.learn(sample, customers if small else None, dims, "learned")
    calibration, searches = recorded_calibration(
        lambda: product_whitening.calibrate(sample, customers, dims, "learned", small=small, policy=policy))
    space = ranking.ArraySpace.of(ranking.transform(gallery, whitening), list(labels))
    calibrated = replace(policy, calibration=calibration)
    features, first, right = [], [], []
    for views, answer in zip(query_views, answers):
        query = ranking.whiten(l2_normalise(views.mean(axis=0)), *whitening)
        hits = ranking.rank(space, query, limit=ranking.CANDIDATES, policy=calibrated)
        found = search_features(space, query, hits)
        found["views that agree"] = view_agreement(space, ranking.whiten(views, *whitening), hits[0].result_id, policy)
        features.append(found)
        first.append(hits[0].probability)
        right.append(hits[0].result_id == answer)
    first, right = np.asarray(first), np.asarray(right)
    own = np.asarray([calibration.probabilities([hit.score for hit in hits])[0] for _, _, hits, _ in searches])
    own_right = np.asarray([r == 0 for *_, r in searches])
    own_features = [search_features(space_, query, hits) for space_, query, hits, _ in searches]
    results = {"probability": {"auroc": round(auroc(first, right), 4), "gap": round(gap(first, right), 4),
                               "ece": round(ranking.calibration_error(first, right), 4), "p_at_1": round(float(right.mean()), 4),
                               "calibration_searches": len(searches), "auroc_on_calibration_searches": round(auroc(own, own_right), 4)}}
    for name in features[0]:
        values = np.asarray([f[name] for f in features])
        figures = {"auroc": round(auroc(values, right), 4)}
        if name in own_features[0]:  # the view agreement needs each view of a calibration search: not stored
            own_values = np.asarray([f[name] for f in own_features])
            term = fit_logit_term(own, own_values, own_right)
            scored = with_term(first, values, term)
            change, error = gap_change(scored, first, right)
            figures.update({"auroc_on_calibration_searches": round(auroc(own_values, own_right), 4),
                            "term": [round(term[0], 4), round(term[1], 4)], "fitted_auroc": round(auroc(scored, right), 4),
                            "fitted_gap": round(gap(scored, right), 4), "gap_change": round(change, 4),
                            "gap_change_standard_error": round(error, 4),
                            "fitted_ece": round(ranking.calibration_error(scored, right), 4)})
        cheat = cross_validated(first, values, right)
        figures.update({"cheat_auroc": round(auroc(cheat, right), 4), "cheat_gap": round(gap(cheat, right), 4),
                        "cheat_ece": round(ranking.calibration_error(cheat, right), 4)})
        results[name] = figures
    cheat = cross_validated(first, np.zeros(len(first)), right)  # the same fit with nothing to add
    results["probability"].update({"cheat_auroc": round(auroc(cheat, right), 4), "cheat_gap": round(gap(cheat, right), 4),
                                   "cheat_ece": round(ranking.calibration_error(cheat, right), 4)})
    return results


def report(results: dict) -> None:
    """Print one catalogue's :func:`run` figures, one line per feature."""
    base = results["probability"]
    print(f"    {'feature':36s} {'AUROC':>6s} | + term fitted on the shop's searches: {'AUROC':>6s} {'gap':>6s} {'change':>15s} {'ECE':>6s}"
          f" | fitted on the photos: {'AUROC':>6s} {'gap':>6s} {'ECE':>6s}")
    print(f"    {'the probability (now)':36s} {base['auroc']:6.3f} | {'':38s}{base['auroc']:6.3f} {base['gap']:6.3f} {'':15s} {base['ece']:6.3f}"
          f" | {'':21s} {base['cheat_auroc']:6.3f} {base['cheat_gap']:6.3f} {base['cheat_ece']:6.3f}")
    for name, f in results.items():
        if name == "probability":
            continue
        fitted = (f"{f['fitted_auroc']:6.3f} {f['fitted_gap']:6.3f} {f['gap_change']:+7.3f} ± {f['gap_change_standard_error']:5.3f} {f['fitted_ece']:6.3f}"
                  if "fitted_auroc" in f else f"{'(not in the calibration searches)':45s}")
        print(f"    {name:36s} {f['auroc']:6.3f} | {'':38s}{fitted} | {'':21s} {f['cheat_auroc']:6.3f} {f['cheat_gap']:6.3f} {f['cheat_ece']:6.3f}", flush=True)
