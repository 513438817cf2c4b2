"""The re-ranking levers the quality benchmark measures (benchmarks/reranking.py) do what they say,
on vectors whose answer is known: otherwise their measured differences would mean nothing."""

import numpy as np
import pytest

from benchmarks import reranking
from visual_search.embeddings.pooling import l2_normalise


@pytest.fixture
def clusters():
    """Five products, eight images each, tight around their centre; two queries per product."""
    rng = np.random.default_rng(3)
    centres = l2_normalise(rng.normal(size=(5, 64)))
    gallery = l2_normalise(np.repeat(centres, 8, axis=0) + 0.02 * rng.normal(size=(40, 64)))
    queries = l2_normalise(np.repeat(centres, 2, axis=0) + 0.04 * rng.normal(size=(10, 64)))
    return queries, gallery, np.repeat(np.arange(5), 8), np.repeat(np.arange(5), 2)


def test_augmented_vectors_are_unit_and_closer_to_their_product(clusters):
    _, gallery, codes, _ = clusters
    augmented = reranking.augmented_database(gallery, k=4)
    assert np.allclose(np.linalg.norm(augmented, axis=1), 1.0, atol=1e-5)
    same = codes[:, None] == codes[None, :]
    np.fill_diagonal(same, False)
    before, after = (gallery @ gallery.T)[same].mean(), (augmented @ augmented.T)[same].mean()
    assert after > before


@pytest.mark.parametrize("similarities", [
    lambda q, g: q @ g.T,
    lambda q, g: reranking.k_reciprocal(q, g, k1=6, k2=2, mix=0.3),
    lambda q, g: reranking.diffusion(q, g, k=6, seeds=4),
])
def test_every_lever_finds_each_query_s_product(clusters, similarities):
    queries, gallery, codes, truth = clusters
    scores = reranking.product_scores(similarities(queries, gallery), codes)
    assert scores.shape == (10, 5)
    assert (scores.argmax(axis=1) == truth).all()


def test_votes_average_a_product_s_best_images():
    similarities = np.array([[0.9, 0.1, 0.5, 0.4]])
    codes = np.array([0, 0, 1, 1])
    assert reranking.product_scores(similarities, codes).tolist() == [[0.9, 0.5]]
    assert np.allclose(reranking.product_scores(similarities, codes, votes=2), [[0.5, 0.45]])


def test_run_pairs_each_lever_with_the_default(clusters, capsys):
    queries, gallery, codes, truth = clusters
    results = reranking.run(queries, gallery, codes, truth, dims=16)
    assert results["the default (best image + prototype 0.5)"]["p_at_1"] == 1.0
    for name, _, _, _, _ in reranking.LEVERS:
        assert results[name]["difference"]["photos"] == 10
    assert "P@1 change" in capsys.readouterr().out


def test_the_debiased_calibration_error_takes_out_the_noise_of_few_queries():
    from benchmarks.levers import debiased_calibration_error
    from visual_search.ranking import calibration_error

    rng = np.random.default_rng(0)
    stated = rng.uniform(0.05, 0.95, 300)
    honest = [rng.random(300) < stated for _ in range(200)]
    # A perfect calibration measures a plain ECE well above zero on 300 queries; the debiased
    # estimate is much closer to the truth (zero).
    assert np.mean([calibration_error(stated, drawn) for drawn in honest]) > 0.05
    assert np.mean([debiased_calibration_error(stated, drawn) for drawn in honest]) < 0.03
    # A score 0.2 too high is still seen as such.
    overconfident = [rng.random(300) < stated - 0.2 for _ in range(50)]
    assert np.mean([debiased_calibration_error(stated, drawn) for drawn in overconfident]) > 0.15


def test_auroc_is_the_chance_that_a_positive_ranks_above_a_negative():
    """What the absent-products figures rest on: 1 when every present photo's feature is above every
    absent one's, 0.5 for a coin toss (ties count half)."""
    from benchmarks.levers import _auroc

    assert _auroc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert _auroc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 0.0
    assert _auroc(np.array([1.0, 3.0]), np.array([2.0, 2.0])) == 0.5
    assert _auroc(np.array([2.0]), np.array([2.0])) == 0.5


def test_honest_scores_of_a_one_image_shop_take_only_true_copies_for_copies():
    """A customer's photo close to a product's only image (0.9, not a copy of it) is no copy: the
    quality suite's scores ask the stored vectors as the backend does (ranking.COPY_RAW_SIMILARITY),
    or its one-image shops would state such photos 0.97 and confident where the product does not."""
    from benchmarks.levers import honest_scores
    from visual_search.whitening import Sample

    rng = np.random.default_rng(5)
    images = l2_normalise(rng.normal(size=(30, 64)))
    near = l2_normalise(images + 0.45 * rng.normal(size=images.shape) / np.sqrt(64))  # cosine about 0.9
    vectors = np.repeat(np.vstack([images, near])[:, None, :], 4, axis=1)
    products = np.array([f"p{n}" for n in range(30)] * 2)
    gallery, queries = np.arange(60) < 30, np.arange(60) >= 30
    assert 0.8 < float(np.mean(np.einsum("nd,nd->n", images, near))) < 0.97
    customers = Sample(np.repeat(images, 2, axis=0), [p for p in products[:30] for _ in range(2)], [n for n in range(30) for _ in range(2)])
    config = ("one image each", ("full",), ("full",), None, 0, 0.0)
    figures = honest_scores(vectors, products, gallery, queries, config, customers)
    assert figures["calibration"]["basis"] == "chance"
    assert figures["confident_share_at_0.5"] == 0.0
