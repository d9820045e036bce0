"""Post-processing of one galaxy's detections: score cut, class-agnostic NMS, PSF merging,
bulge flag; deterministic and independent of the input order."""
import numpy as np
import pytest

from clump_d2.inference.postprocess import (
    Detections,
    PostProcessConfig,
    class_agnostic_nms,
    estimate_fwhm,
    flag_centre,
    merge_close,
    postprocess,
    postprocess_uncut,
)


def sq(cx, cy, side=10.0):
    return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]


def test_class_agnostic_nms_keeps_the_better_class():
    # the same clump found as clump (0.6) and as odd_clump (0.9), plus a separate clump
    det = Detections([sq(20, 20), sq(21, 20), sq(60, 60)], [0.6, 0.9, 0.7], [0, 1, 0])
    out = class_agnostic_nms(det, 0.5)
    assert len(out) == 2
    assert out.scores.tolist() == [0.9, 0.7] and out.classes.tolist() == [1, 0]
    assert len(class_agnostic_nms(det, 0.0)) == 3  # 0 disables


def test_merge_closer_than_fwhm_counts_absorbed():
    # FWHM 4 px: centres 3 px apart merge, 5 px apart stay; chains are absorbed by the best
    det = Detections([sq(10, 10), sq(13, 10), sq(15.5, 10), sq(40, 40)],
                     [0.5, 0.9, 0.6, 0.8], [0, 0, 1, 0])
    out = merge_close(det, 1.0, psf_fwhm_px=4.0)
    # 0.9 @13 absorbs 0.5 @10 (3 px) and 0.6 @15.5 (2.5 px)
    assert out.scores.tolist() == [0.9, 0.8]
    assert out.n_merged.tolist() == [2, 0]
    assert out.boxes[0].tolist() == sq(13, 10)
    assert len(merge_close(det, 0.0, 4.0)) == 4


def test_fwhm_estimated_from_box_side():
    det = Detections([sq(10, 10, side=25.0), [0, 0, 5, 12.5]], [0.9, 0.8], [0, 0])
    assert estimate_fwhm(det).tolist() == [10.0, 5.0]  # side / 2.5 (longer side if clipped)
    assert estimate_fwhm(det, 3.0).tolist() == [3.0, 3.0]


def test_bulge_flag_and_drop():
    det = Detections([sq(50, 50, 10), sq(53, 51, 10), sq(70, 50, 10)], [0.9, 0.8, 0.7],
                     [0, 0, 0])
    flagged = flag_centre(det, (50.0, 50.0), 1.0)  # FWHM from boxes: 4 px
    assert flagged.on_centre.tolist() == [True, True, False]  # 0 px, 3.2 px, 20 px
    opts = PostProcessConfig(score_thresh=0.0, nms_thresh=0.0, merge_fwhm=0.0, bulge_fwhm=1.0,
                             drop_bulge=True)
    out = postprocess(det, opts, centre_xy=(50.0, 50.0))
    assert out.scores.tolist() == [0.7]


def test_postprocess_is_order_independent_and_thresholded():
    rng = np.random.default_rng(3)
    centres = rng.uniform(10, 90, size=(30, 2))
    boxes = np.array([sq(x, y, rng.uniform(8, 20)) for x, y in centres])
    scores = np.round(rng.uniform(0, 1, 30), 2)  # rounded: ties in score happen
    classes = rng.integers(0, 2, 30)
    opts = PostProcessConfig(score_thresh=0.3, nms_thresh=0.5, merge_fwhm=1.0, bulge_fwhm=1.0)
    ref = postprocess(Detections(boxes, scores, classes), opts, centre_xy=(50, 50))
    assert (ref.scores >= 0.3).all() and np.all(np.diff(ref.scores) <= 0)
    for seed in range(5):
        p = np.random.default_rng(seed).permutation(30)
        out = postprocess(Detections(boxes[p], scores[p], classes[p]), opts, centre_xy=(50, 50))
        np.testing.assert_array_equal(out.boxes, ref.boxes)
        np.testing.assert_array_equal(out.n_merged, ref.n_merged)
        np.testing.assert_array_equal(out.on_centre, ref.on_centre)
    # after merging no two kept detections are closer than a FWHM (box side / 2.5)
    c = ref.centres
    d = np.hypot(*(c[:, None] - c[None]).transpose(2, 0, 1))
    lim = np.maximum.outer(estimate_fwhm(ref), estimate_fwhm(ref))
    assert (d[np.triu_indices(len(ref), 1)] >= lim[np.triu_indices(len(ref), 1)]).all()


def test_uncut_then_thresholded_equals_postprocess_at_that_threshold():
    """postprocess_uncut (one pass for many thresholds): cutting its output at any score gives
    exactly the detections postprocess keeps at that score (NMS and merging are greedy by
    score)."""
    rng = np.random.default_rng(7)
    centres = rng.uniform(10, 90, size=(40, 2))
    boxes = np.array([sq(x, y, rng.uniform(8, 20)) for x, y in centres])
    scores = np.round(rng.uniform(0, 1, 40), 2)
    det = Detections(boxes, scores, rng.integers(0, 2, 40))
    opts = PostProcessConfig(score_thresh=0.7, nms_thresh=0.5, merge_fwhm=1.0, bulge_fwhm=1.0,
                             drop_bulge=True)
    uncut = postprocess_uncut(det, opts, centre_xy=(50, 50), psf_fwhm_px=5.0)
    assert uncut.scores.min() < 0.7 and len(uncut) < 40  # no score cut, but merged / dropped
    for t in (0.05, 0.3, 0.5, 0.7, 0.9):
        ref = postprocess(det, PostProcessConfig(**{**opts.__dict__, "score_thresh": t}),
                          centre_xy=(50, 50), psf_fwhm_px=5.0)
        keep = uncut.scores >= t
        np.testing.assert_array_equal(uncut.boxes[keep], ref.boxes)
        np.testing.assert_array_equal(uncut.scores[keep], ref.scores)
        # n_merged also counts absorbed detections below the threshold
        assert (uncut.n_merged[keep] >= ref.n_merged).all()


def test_from_cfg_keeps_detections_at_the_operating_point(inference_cfg):
    """The catalogue's score cut is the evaluation's operating point (one key); the old
    INFERENCE.SCORE_THRESH names it in its error."""
    assert PostProcessConfig.from_cfg(inference_cfg()).score_thresh == pytest.approx(0.75)
    cfg = inference_cfg("TEST.CLUMP_EVAL.SCORE_THRESH", "0.42", "INFERENCE.NMS_THRESH", "0.3")
    opts = PostProcessConfig.from_cfg(cfg)
    assert opts.score_thresh == pytest.approx(0.42) and opts.nms_thresh == pytest.approx(0.3)
    with pytest.raises(KeyError, match="INFERENCE.SCORE_THRESH was renamed to "
                                       "TEST.CLUMP_EVAL.SCORE_THRESH"):
        inference_cfg("INFERENCE.SCORE_THRESH", "0.1")
