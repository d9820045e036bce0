"""Operating-point matching masks of clump_d2.evaluation.metrics."""


def test_match_masks_marks_the_matched_detections_only_above_threshold():
    from clump_d2.evaluation.matching import MatchCriterion
    from clump_d2.evaluation.metrics import match_masks, matched_true_mask

    truth = [[0, 0, 10, 10], [50, 50, 60, 60]]
    dets = [[60, 60, 70, 70], [0, 0, 10, 10], [50, 50, 60, 60]]
    scores = [0.9, 0.8, 0.3]
    found, used = match_masks(truth, dets, scores, 0.5, MatchCriterion("iou"))
    assert found.tolist() == [True, False] and used.tolist() == [False, True, False]
    assert matched_true_mask(truth, dets, scores, 0.5, MatchCriterion("iou")).tolist() == [True, False]
    found, used = match_masks(truth, dets, scores, 0.2, MatchCriterion("iou"))
    assert found.tolist() == [True, True] and used.tolist() == [False, True, True]
