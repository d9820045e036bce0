"""Matching of detections to true clumps: hand-made cases with known answers, ties, and
invariants (hypothesis)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clump_d2.evaluation.matching import (
    MatchCriterion,
    box_centre_distance,
    box_iou_xyxy,
    count_matches,
    f1_score,
    match_boxes,
)


def sq(x, y, half=5.0):
    """Square XYXY box of half side ``half`` centred on (x, y)."""
    return [x - half, y - half, x + half, y + half]


IOU = MatchCriterion("iou", iou_thresh=0.5)
DIST = MatchCriterion("distance", distance_factor=1.0)


def test_iou_and_distance_matrices():
    a = np.array([sq(10, 10)])
    b = np.array([sq(10, 10), sq(15, 10), sq(50, 50)])
    # shift by half a side: overlap 5x10 = 50, union 150
    np.testing.assert_allclose(box_iou_xyxy(a, b), [[1.0, 50 / 150, 0.0]])
    np.testing.assert_allclose(box_centre_distance(a, b), [[0.0, 5.0, np.hypot(40, 40)]])


def test_perfect_detections():
    true = [sq(10, 10), sq(40, 40), sq(70, 20)]
    c = count_matches(true, true, criterion=IOU)
    assert (c.n_true, c.n_det, c.n_matched) == (3, 3, 3)
    assert c.completeness == c.purity == c.f1 == 1.0


def test_duplicate_detection_is_one_tp_one_fp():
    true = [sq(10, 10)]
    dets = [sq(10, 10), sq(11, 10)]
    c = count_matches(true, dets, det_scores=[0.9, 0.8], criterion=IOU)
    assert (c.n_matched, c.n_det) == (1, 2)
    assert c.completeness == 1.0 and c.purity == 0.5
    assert c.f1 == pytest.approx(2 / 3)


def test_detection_between_two_clumps_matches_at_most_one():
    # Two clumps 10 px apart; one detection half-way: IoU 1/3 with each -> not a match by IoU,
    # but within 1 x half side (5 px) by distance, so it may claim exactly one of them.
    true = [sq(10, 10), sq(20, 10)]
    det = [sq(15, 10)]
    c = count_matches(true, det, criterion=IOU)
    assert (c.n_true, c.n_det, c.n_matched) == (2, 1, 0)
    c = count_matches(true, det, criterion=DIST)
    assert (c.n_matched, c.completeness, c.purity) == (1, 0.5, 1.0)


def test_no_detections_completeness_zero_purity_undefined():
    c = count_matches([sq(10, 10), sq(30, 30)], np.zeros((0, 4)), criterion=IOU)
    assert c.completeness == 0.0
    assert np.isnan(c.purity) and np.isnan(c.f1)


def test_clump_free_galaxy_detections_are_false_positives():
    c = count_matches(np.zeros((0, 4)), [sq(10, 10), sq(30, 30)], criterion=IOU)
    assert (c.n_true, c.n_det, c.n_matched) == (0, 2, 0)
    assert np.isnan(c.completeness) and c.purity == 0.0


def test_iou_threshold_is_inclusive():
    # overlap 2 x 10, union 4 x 10: IoU exactly 0.5 (exact in binary floating point)
    true, det = [[0, 0, 3, 10]], [[1, 0, 4, 10]]
    assert box_iou_xyxy(true, det)[0, 0] == 0.5
    assert count_matches(true, det, criterion=MatchCriterion("iou", 0.5)).n_matched == 1
    assert count_matches(true, det, criterion=MatchCriterion("iou", 0.5001)).n_matched == 0


def test_distance_criterion_uses_true_half_side_and_factor():
    true = [sq(10, 10, half=4.0)]
    det = [sq(16, 10, half=1.0)]  # 6 px away; half side of the true box 4 px
    assert count_matches(true, det, criterion=MatchCriterion("distance",
                                                             distance_factor=1.0)).n_matched == 0
    assert count_matches(true, det, criterion=MatchCriterion("distance",
                                                             distance_factor=1.5)).n_matched == 1


def test_maximum_cardinality_beats_greedy():
    # Greedy by IoU would give det 0 to clump 0 (its best) and leave clump 1 unmatched;
    # the optimal assignment finds two pairs.
    true = [sq(10, 10), sq(14, 10)]
    dets = [sq(11, 10), sq(8, 10)]
    crit = MatchCriterion("iou", iou_thresh=0.4)
    iou = box_iou_xyxy(true, dets)
    assert iou[0, 0] > iou[0, 1] >= 0.4 and iou[1, 0] >= 0.4 > iou[1, 1]
    assert match_boxes(true, dets, criterion=crit) == [(0, 1), (1, 0)]


def test_many_pairs_beat_high_quality():
    # Three clumps, three detections: matching all three needs lower-IoU pairs; the number of
    # pairs must win over the total IoU (the old 1 + IoU weights could lose a pair here).
    rng = np.random.default_rng(3)
    for _ in range(50):
        true = rng.uniform(0, 40, size=(6, 2))
        dets = true + rng.normal(0, 3, size=true.shape)
        tb = np.array([sq(x, y) for x, y in true])
        db = np.array([sq(x, y) for x, y in dets])
        crit = MatchCriterion("iou", iou_thresh=0.3)
        pairs = match_boxes(tb, db, criterion=crit)
        assert len(pairs) == _max_matching_bruteforce(crit.quality(tb, db)[0])


def _max_matching_bruteforce(adm):
    """Size of a maximum bipartite matching by augmenting paths (reference)."""
    match_of_det = {}

    def augment(t, seen):
        for d in np.flatnonzero(adm[t]):
            if d in seen:
                continue
            seen.add(d)
            if d not in match_of_det or augment(match_of_det[d], seen):
                match_of_det[d] = t
                return True
        return False

    return sum(augment(t, set()) for t in range(adm.shape[0]))


def test_tie_prefers_higher_quality_then_higher_score():
    true = [sq(10, 10)]
    # same IoU with the clump (mirror images), different scores: the higher score wins
    dets = [sq(11, 10), sq(9, 10)]
    assert match_boxes(true, dets, det_scores=[0.3, 0.7], criterion=IOU) == [(0, 1)]
    assert match_boxes(true, dets, det_scores=[0.7, 0.3], criterion=IOU) == [(0, 0)]
    # a better IoU beats a better score
    dets = [sq(10, 10), sq(12, 10)]
    assert match_boxes(true, dets, det_scores=[0.1, 0.99], criterion=IOU) == [(0, 0)]


def test_tie_between_two_clumps_is_independent_of_input_order():
    true = np.array([sq(10, 10), sq(20, 10)])
    det = np.array([sq(15, 10)])
    (t, d), = match_boxes(true, det, criterion=DIST)
    (t2, _), = match_boxes(true[::-1], det, criterion=DIST)
    # the same clump (by position) is called found whichever order the clumps come in
    np.testing.assert_array_equal(true[t], true[::-1][t2])


def test_f1_edge_cases():
    assert f1_score(0.0, 0.0) == 0.0
    assert np.isnan(f1_score(0.5, float("nan")))
    assert f1_score(1.0, 0.5) == pytest.approx(2 / 3)


def test_unknown_criterion_is_an_error():
    with pytest.raises(ValueError, match="unknown match criterion"):
        MatchCriterion("centroid")


# --- invariants ------------------------------------------------------------------------------

coord = st.floats(0, 60, allow_nan=False, width=32)
half = st.floats(2, 12, allow_nan=False, width=32)
box = st.builds(lambda x, y, h: sq(x, y, h), coord, coord, half)
boxes = st.lists(box, max_size=7)
criteria = st.sampled_from([IOU, MatchCriterion("iou", 0.3), DIST,
                            MatchCriterion("distance", distance_factor=2.0)])


@settings(max_examples=150, deadline=None)
@given(boxes, boxes, criteria, st.randoms(use_true_random=False))
def test_invariants(true, dets, crit, rnd):
    scores = [rnd.random() for _ in dets]
    c = count_matches(true, dets, det_scores=scores, criterion=crit)
    assert c.n_matched <= min(c.n_true, c.n_det)
    for v in (c.completeness, c.purity, c.f1):
        assert np.isnan(v) or 0.0 <= v <= 1.0
    pairs = match_boxes(true, dets, det_scores=scores, criterion=crit)
    assert len({t for t, _ in pairs}) == len({d for _, d in pairs}) == len(pairs)
    adm, _ = crit.quality(true, dets) if true and dets else (None, None)
    assert all(adm[t, d] for t, d in pairs)
    # permuting the detections changes neither the counts nor which clumps are found
    perm = list(range(len(dets)))
    rnd.shuffle(perm)
    pairs_p = match_boxes(true, [dets[i] for i in perm], det_scores=[scores[i] for i in perm],
                          criterion=crit)
    assert len(pairs_p) == len(pairs)
    assert {t for t, _ in pairs_p} == {t for t, _ in pairs}
    assert {perm[d] for _, d in pairs_p} == {d for _, d in pairs}
