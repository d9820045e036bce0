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


def test_wilson_interval_holds_the_fraction_and_plots_without_negative_bars(tmp_path):
    """Every k/n lies in its interval, also at k = n where rounding used to put the upper end
    1e-16 below 1 (seen: n = 6, 10, 17, ...) and the binned-completeness plot then failed."""
    import math

    from clump_d2.evaluation.metrics import bin_completeness, wilson_interval
    from clump_d2.evaluation.plots import plot_binned_completeness

    for n in range(1, 120):
        for k in range(n + 1):
            lo, hi = wilson_interval(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0, (k, n)
    lo, hi = wilson_interval(5, 10)  # p = 0.5, z = 1: centre 0.5, half 0.1508
    assert math.isclose(lo, 0.5 - 0.15076, abs_tol=1e-4) and math.isclose(hi, 0.5 + 0.15076,
                                                                            abs_tol=1e-4)
    bins = bin_completeness([0.1] * 6 + [0.5] * 3, [True] * 6 + [False] * 3, [0, 0.3, 1])
    path = plot_binned_completeness(str(tmp_path / "c.png"), "flux_fraction", bins, 0.5)
    assert (tmp_path / "c.png").stat().st_size > 0 and path.endswith("c.png")
