"""visual_search.ranking: the one place where whitening, query expansion and collapsing live."""

from __future__ import annotations

import numpy as np
import pytest

from visual_search import ranking
from visual_search.embeddings.pooling import l2_normalise


class MatrixSpace:
    """The smallest exact VectorSpace: a matrix of unit vectors and the result of each."""

    def __init__(self, vectors, result_ids):
        self.vectors, self.result_ids, self.calls = l2_normalise(vectors), list(result_ids), []

    def transform(self, vector):
        return l2_normalise(vector)

    def allow(self, restrict_to, exclude):
        return [(restrict_to is None or r in restrict_to) and r not in exclude for r in self.result_ids]

    def nearest(self, query, k, allowed, *, exact=False, with_vectors=False):
        self.calls.append((k, exact))
        rows = [n for n in np.argsort(-(self.vectors @ query), kind="stable") if allowed[n]][:k]
        return ranking.Neighbours(
            [self.result_ids[n] for n in rows], (self.vectors @ query)[rows], self.vectors[rows] if with_vectors else None
        )

    def result_vectors(self, result_ids):
        ids = np.asarray(self.result_ids)
        return {r: self.vectors[ids == r] for r in result_ids if (ids == r).any()}


@pytest.fixture
def gallery():
    rng = np.random.default_rng(3)
    return l2_normalise(rng.normal(size=(60, 16)).astype(np.float32))


def test_a_result_with_many_images_does_not_crowd_out_the_others(gallery):
    # 40 images of "a" all very close to the query, then one image each of b..u.
    query = gallery[0]
    vectors = np.vstack([query + 0.01 * gallery[1 : 41], gallery[41:]])
    ids = ["a"] * 40 + [chr(ord("b") + n) for n in range(19)]
    space = MatrixSpace(vectors, ids)
    hits = ranking.rank(space, query, limit=3, policy=ranking.Policy())
    assert [h.result_id for h in hits][0] == "a" and len({h.result_id for h in hits}) == 3
    assert space.calls == [(24, False), (192, True)]  # 3 x 8 vectors held only "a": then every vector


def test_restriction_and_exclusion(gallery):
    ids = [f"p{n // 3}" for n in range(60)]
    space = MatrixSpace(gallery, ids)
    hits = ranking.rank(space, gallery[0], limit=5, restrict_to={"p0", "p4", "p7"}, exclude={"p0"}, policy=ranking.Policy())
    assert {h.result_id for h in hits} == {"p4", "p7"}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize("prototype", [0.0, 0.5])
def test_a_result_s_chance_does_not_grow_when_the_right_product_is_hidden(gallery, prototype):
    """A score is the chance that the result is the product in the photo: hiding that product (a
    customer may not see it, or filtered it out) must not hand its share to a wrong one. Normalised
    over the visible results only, the second product of its own photo read 0.50 and "confident"."""
    ids = [f"p{n // 3}" for n in range(60)]
    space = MatrixSpace(gallery, ids)
    calibration = ranking.Calibration(temperature=0.05, none=0.6)
    policy = ranking.Policy(prototype=prototype, calibration=calibration)
    everyone = ranking.rank(space, gallery[0], limit=12, policy=policy)
    assert everyone[0].result_id == "p0"
    visible = {f"p{n}" for n in range(1, 20)}
    shown = ranking.rank(space, gallery[0], limit=12, restrict_to=visible, policy=policy)
    assert [h.result_id for h in shown] == [h.result_id for h in everyone[1:]] + [shown[-1].result_id]
    for hidden_first, restricted in zip(everyone[1:], shown):
        assert restricted.probability == pytest.approx(hidden_first.probability)
    # The last one was beyond the unrestricted search's candidates: weighed against them too.
    assert 0 < shown[-1].probability <= shown[-2].probability
    # A restriction that keeps the right product changes nobody's chance.
    kept = ranking.rank(space, gallery[0], limit=12, restrict_to={"p0", "p1", "p2", "p3", "p4", "p5"}, policy=policy)
    # A restriction that hides none of the candidates (a visibility rule that hides a few products
    # elsewhere) is the unrestricted ranking: one index pass, not two.
    space.calls.clear()
    ranking.rank(space, gallery[0], limit=12, policy=policy)
    one_pass = len(space.calls)
    space.calls.clear()
    assert ranking.rank(space, gallery[0], limit=12, restrict_to=set(ids), policy=policy) == everyone
    assert len(space.calls) == one_pass
    chances = {h.result_id: h.probability for h in everyone}
    assert kept[0].result_id == "p0"
    for hit in kept:
        assert hit.probability == pytest.approx(chances.get(hit.result_id, hit.probability))


def test_one_query_ranks_as_the_held_out_measurement_does(gallery):
    """rank() (a search) and score_matrix() (training evaluation, benchmarks) are the same ranking."""
    policy = ranking.Policy(expansion=3, alpha=3.0)
    ids = [str(n) for n in range(len(gallery))]
    queries = l2_normalise(gallery[:5] + 0.3 * np.random.default_rng(4).normal(size=(5, 16)).astype(np.float32))
    scores = ranking.score_matrix(queries, gallery, whitening_dims=None, policy=policy)
    for query, row in zip(queries, scores):
        hits = ranking.rank(MatrixSpace(gallery, ids), query, limit=10, policy=policy)
        assert [h.result_id for h in hits] == [str(n) for n in np.argsort(-row, kind="stable")[:10]]
        assert [h.score for h in hits] == pytest.approx(np.sort(row)[::-1][:10], abs=1e-5)


def test_query_expansion_needs_more_vectors_than_it_averages(gallery):
    space = MatrixSpace(gallery[:3], ["a", "b", "c"])
    hits = ranking.rank(space, gallery[0], limit=3, policy=ranking.Policy(expansion=3))
    assert hits[0] == ranking.Hit("a", pytest.approx(1.0))  # not expanded: the exact match scores 1


def test_expand_weights_matches_by_score_to_the_alpha():
    query = np.array([[1.0, 0.0]])
    top = np.array([[[0.0, 1.0], [0.0, -1.0]]])
    # Equal scores cancel out; unequal ones pull the query towards the better match.
    assert ranking.expand(query, np.array([[0.5, 0.5]]), top, 3.0) == pytest.approx(np.array([[1.0, 0.0]]))
    expanded = ranking.expand(query, np.array([[1.0, 0.5]]), top, 1.0)[0]
    assert expanded[1] > 0 and np.linalg.norm(expanded) == pytest.approx(1.0)


def test_whitening_transform_and_plain_cosine(gallery):
    whitening = ranking.fit_whitening(gallery, 8)
    assert ranking.transform(gallery, whitening).shape == (60, 8)
    assert np.linalg.norm(ranking.transform(gallery * 3, None), axis=1) == pytest.approx(np.ones(60))


def test_prototypes_rank_as_the_held_out_measurement_does(gallery):
    """With the prototype fused in, a search (a shortlist re-scored) agrees with result_scores (all scored)."""
    policy = ranking.Policy(expansion=2, alpha=3.0, prototype=0.5)
    codes = np.arange(len(gallery)) // 3  # 20 results of 3 images each
    queries = l2_normalise(gallery[::7] + 0.5 * np.random.default_rng(5).normal(size=(9, 16)).astype(np.float32))
    scores = ranking.result_scores(queries, gallery, codes, whitening_dims=None, policy=policy)
    for query, row in zip(queries, scores):
        hits = ranking.rank(MatrixSpace(gallery, [str(c) for c in codes]), query, limit=5, policy=policy)
        assert [h.result_id for h in hits] == [str(n) for n in np.argsort(-row, kind="stable")[:5]]
        assert [h.score for h in hits] == pytest.approx(np.sort(row)[::-1][:5], abs=1e-5)


def test_a_prototype_outvotes_one_lucky_image(gallery):
    # "b" has the one image closest to the query; "a" three images a little further, each off in
    # its own direction, whose mean is closer than any of them.
    query = gallery[0]
    vectors = np.vstack([query + 0.6 * gallery[1], query + 0.6 * gallery[2], query + 0.6 * gallery[3], query + 0.4 * gallery[4], gallery[5]])
    space = MatrixSpace(vectors, ["a", "a", "a", "b", "c"])
    assert ranking.rank(space, query, limit=1, policy=ranking.Policy())[0].result_id == "b"
    assert ranking.rank(space, query, limit=1, policy=ranking.Policy(prototype=1.0))[0].result_id == "a"


def test_only_the_chance_calibration_asks_whether_the_photo_is_a_copy(gallery):
    """Asking is a database query (the stored, unwhitened vectors): a shop calibrated on its own
    searches never takes a photo for a copy, so its searches of near-identical images ask nothing."""
    ids = [f"p{n // 3}" for n in range(60)]
    asked = []

    def is_copy(result_id):
        asked.append(result_id)
        return False

    for calibration, expected in ((ranking.Calibration(temperature=0.05, none=0.6), []), (ranking.CHANCE_CALIBRATION, ["p0"])):
        asked.clear()
        hits = ranking.rank(MatrixSpace(gallery, ids), gallery[0], limit=5, policy=ranking.Policy(calibration=calibration), is_copy=is_copy)
        assert hits[0].result_id == "p0" and hits[0].score >= ranking.COPY_SIMILARITY and asked == expected


class NoBlas(np.ndarray):
    """A matrix whose product through ``@`` (OpenBLAS, on every core) fails the test."""

    def __matmul__(self, other):
        raise AssertionError("the exact scan went through BLAS")


def test_the_exact_scan_does_not_use_blas(gallery):
    """OpenBLAS's threads keep spinning after a product and slow the next photo's VGG16 pass by
    half (docs/performance.md, "The scan without BLAS threads"): the scan is NumPy's own loop,
    with the same scores."""
    ids = [str(n // 3) for n in range(len(gallery))]
    plain = ranking.ArraySpace.of(gallery, ids)
    guarded = ranking.ArraySpace(gallery.view(NoBlas), plain.codes, plain.result_ids)
    found = guarded.nearest(gallery[4], 5, None)
    expected = np.sort(np.asarray(gallery) @ gallery[4])[::-1][:5]
    assert found.scores == pytest.approx(expected, abs=1e-6)
    assert found.result_ids[0] == "1"
