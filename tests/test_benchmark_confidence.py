"""The confidence features the quality benchmark measures (benchmarks/confidence.py) compute what they
say, and the term fitted on them is a maximum-likelihood fit: otherwise "not adopted" would mean nothing."""

import numpy as np
import pytest

from benchmarks import confidence
from visual_search import ranking
from visual_search.embeddings.pooling import l2_normalise


@pytest.fixture
def catalogue():
    """30 products, ten images each around their centre; two noisy photos per product (four views each),
    some of them nearer another product."""
    rng = np.random.default_rng(5)
    centres = l2_normalise(rng.normal(size=(30, 64)))
    gallery = l2_normalise(np.repeat(centres, 10, axis=0) + 0.15 * rng.normal(size=(300, 64)))
    views = l2_normalise(np.repeat(centres, 2, axis=0)[:, None, :] + 0.5 * rng.normal(size=(60, 4, 64)))
    labels = [f"p{n:02d}" for n in np.repeat(np.arange(30), 10)]
    return gallery, labels, views, [f"p{n:02d}" for n in np.repeat(np.arange(30), 2)]


def test_the_term_fitted_is_the_one_that_made_the_answers():
    rng = np.random.default_rng(0)
    base, feature = rng.uniform(0.05, 0.95, 20000), rng.normal(size=20000)
    right = rng.random(20000) < confidence.with_term(base, feature, (1.5, -0.3))
    b, c = confidence.fit_logit_term(base, feature, right)
    assert b == pytest.approx(1.5, abs=0.1) and c == pytest.approx(-0.3, abs=0.1)
    assert np.allclose(confidence.with_term(base, feature, (0.0, 0.0)), base)


def test_gap_and_its_paired_change():
    right = np.array([True, True, False, False])
    base = np.array([0.8, 0.6, 0.4, 0.2])
    assert confidence.gap(base, right) == pytest.approx(0.4)
    assert confidence.gap_change(base, base, right) == (0.0, 0.0)
    change, error = confidence.gap_change(np.array([0.9, 0.7, 0.3, 0.1]), base, right)
    assert change == pytest.approx(0.2) and error >= 0.0
    assert confidence.auroc(base, right) == 1.0 and confidence.auroc(-base, right) == 0.0


def test_a_clear_search_s_features(catalogue):
    gallery, labels, _, _ = catalogue
    space = ranking.ArraySpace.of(gallery, labels)
    query = l2_normalise(gallery[:10].mean(axis=0))  # product p00's centre
    hits = ranking.rank(space, query, limit=ranking.CANDIDATES, policy=ranking.Policy(prototype=0.5))
    features = confidence.search_features(space, query, hits)
    assert hits[0].result_id == "p00"
    assert features[f"its images among the first {confidence.IMAGES}"] == 10.0
    assert features["margin over the second"] > 0 and features["margin over the third"] >= features["margin over the second"]
    assert features["best image and prototype agree"] == 1.0
    # A hidden row no longer counts.
    hidden = confidence.search_features(space.without(0), query, hits)
    assert hidden[f"its images among the first {confidence.IMAGES}"] == 9.0


def test_the_calibration_searches_are_recorded_as_calibrate_made_them(catalogue):
    from visual_search.whitening import Sample, calibrate

    gallery, labels, _, _ = catalogue
    sample = Sample(gallery, labels)
    calibration, searches = confidence.recorded_calibration(lambda: calibrate(sample, None, 16, "learned", small=False))
    assert calibration.basis == "searches"
    assert len(searches) == calibration.fitted_on >= 20
    space, query, hits, right = searches[0]
    assert isinstance(space, ranking.ArraySpace) and len(hits) == ranking.CANDIDATES and right >= -1


def test_run_measures_every_feature_against_the_probability(catalogue):
    gallery, labels, views, answers = catalogue
    results = confidence.run(gallery, labels, list(range(len(labels))), views, answers, None, 16, ranking.Policy(prototype=0.5))
    assert 0.5 < results["probability"]["p_at_1"] < 1.0
    assert results["probability"]["calibration_searches"] >= 20
    assert "fitted_ece" in results["margin over the second"]
    assert "fitted_ece" not in results["views that agree"] and 0.0 <= results["views that agree"]["auroc"] <= 1.0
