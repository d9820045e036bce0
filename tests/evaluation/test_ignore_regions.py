"""Ignore regions: iscrowd clumps and TEST.CLUMP_EVAL.IGNORE_* rules. A detection on an
ignored clump is neither true nor false; kept clumps are matched first."""
import json

import numpy as np
import pytest
from detectron2.config import get_cfg

from clump_d2.config import add_clump_config
from clump_d2.evaluation import ClumpEvaluator
from clump_d2.evaluation import metrics as M
from clump_d2.evaluation.clump_evaluation import (
    IgnoreRule,
    galaxy_centre,
    ignore_summary,
    truth_from_dicts,
)
from clump_d2.evaluation.matching import MatchCriterion
from eval_cases import clump, random_case, register, sq

IOU = MatchCriterion("iou", iou_thresh=0.5)


def test_detection_on_ignored_clump_changes_neither_completeness_nor_purity():
    truth = np.array([sq(20, 20), sq(60, 60)])
    ignore = np.array([False, True])
    base = M.sweep_image(truth[:1], [0], [sq(20, 20)], [0.9], [0], [0.5], IOU, 2)
    # + a detection on the ignored clump: identical counts
    with_ign = M.sweep_image(truth, [0, 0], [sq(20, 20), sq(60, 60)], [0.9, 0.8], [0, 0],
                             [0.5], IOU, 2, ignore=ignore)
    assert base[0, 0].tolist() == with_ign[0, 0].tolist() == [1, 1, 1]
    # A second detection on the ignored clump is a duplicate: one-to-one, so it is false.
    dup = M.sweep_image(truth, [0, 0], [sq(20, 20), sq(60, 60), sq(60, 61)], [0.9, 0.8, 0.7],
                        [0, 0, 0], [0.5], IOU, 2, ignore=ignore)
    assert dup[0, 0].tolist() == [1, 2, 1]
    # Without the ignore mask the same detection is a true positive of a counted clump.
    plain = M.sweep_image(truth, [0, 0], [sq(20, 20), sq(60, 60)], [0.9, 0.8], [0, 0], [0.5],
                          IOU, 2)
    assert plain[0, 0].tolist() == [2, 2, 2]


def test_kept_clump_is_matched_first_even_if_the_detection_overlaps_an_ignored_one():
    # The detection overlaps the ignored clump better (IoU 1) than the kept one (IoU 0.67),
    # yet it goes to the kept clump.
    truth = np.array([sq(20, 20), sq(21, 20)])
    ignore = np.array([True, False])
    found, used, on_ign = M.match_masks_ignoring(truth, [sq(20, 20)], [0.9], 0.5, IOU, ignore)
    assert found.tolist() == [False, True] and used.tolist() == [True]
    assert on_ign.tolist() == [False]
    counts = M.sweep_image(truth, [0, 0], [sq(20, 20)], [0.9], [0], [0.5], IOU, 2,
                           ignore=ignore)
    assert counts[0, 0].tolist() == [1, 1, 1]
    # Two detections: one each; the second lands on the ignored clump and leaves n_det.
    counts = M.sweep_image(truth, [0, 0], [sq(20, 20), sq(21, 20)], [0.9, 0.8], [0, 0], [0.5],
                           IOU, 2, ignore=ignore)
    assert counts[0, 0].tolist() == [1, 1, 1]
    found, used, on_ign = M.match_masks_ignoring(truth, [sq(20, 20), sq(21, 20)], [0.9, 0.8],
                                                 0.5, IOU, ignore)
    assert used.sum() == 1 and on_ign.sum() == 1 and found.all()
    kept_found, kept_used = M.match_masks(truth, [sq(20, 20), sq(21, 20)], [0.9, 0.8], 0.5,
                                          IOU, ignore)
    assert kept_found.tolist() == [False, True] and kept_used.sum() == 1


def test_sweep_with_ignore_below_threshold_and_per_class():
    truth = np.array([sq(20, 20), sq(60, 60)])
    ignore = np.array([False, True])
    # threshold 0.5 keeps only the 0.9 detection (on the ignored clump); 0.1 keeps both.
    counts = M.sweep_image(truth, [0, 1], [sq(60, 60), sq(20, 20)], [0.9, 0.3], [1, 0],
                           [0.1, 0.5], IOU, 2, ignore=ignore)
    assert counts[0, 0].tolist() == [1, 1, 1]  # all: the 0.3 one matches the kept clump
    assert counts[1, 0].tolist() == [1, 0, 0]  # only the detection on the ignored clump
    assert counts[0, 1].tolist() == [1, 1, 1]  # class 0: kept clump and its detection
    assert counts[0, 2].tolist() == [0, 0, 0]  # class 1: the ignored clump and its detection


def test_ignore_rule_reasons():
    rule = IgnoreRule({"flux_frac_u": 0.03}, centre_fwhm=1.0)
    rec = {"image_id": 1, "width": 100, "height": 100, "psf_fwhm_px": 4.0,
           "annotations": [
               clump(80, 80, 0, flux_frac_u=0.05),  # kept
               clump(20, 20, 0, flux_frac_u=0.01),  # faint
               clump(52, 50, 0, flux_frac_u=0.2),  # 2 px from the centre < 1 x 4 px
               clump(55, 50, 0, flux_frac_u=0.2, psf_fwhm_px=6.0),  # 5 px < 6 px: own FWHM
               clump(56, 50, 0, flux_frac_u=0.2),  # 6 px > 4 px: kept
               clump(70, 30, 0),  # no flux_frac_u: kept (ignore_missing False)
               {**clump(30, 70, 0, flux_frac_u=0.5), "iscrowd": 1},  # crowd
               clump(50, 49, 0, flux_frac_u=0.001),  # faint and central
           ]}
    t = truth_from_dicts([rec], rule)[1]
    assert t["ignore_reason"] == ["", "below:flux_frac_u", "centre", "centre", "", "",
                                  "iscrowd", "below:flux_frac_u+centre"]
    assert t["ignore"].tolist() == [False, True, True, True, False, False, True, True]
    summary = ignore_summary({1: t})
    assert summary == {"n_ignored": 5, "n_kept": 3,
                       "by_reason": {"below:flux_frac_u": 2, "centre": 3, "iscrowd": 1}}
    strict = IgnoreRule({"flux_frac_u": 0.03}, ignore_missing=True)
    assert truth_from_dicts([rec], strict)[1]["ignore_reason"][5] == "missing:flux_frac_u"
    # No FWHM anywhere: box side / 2.5 (10 px box -> 4 px); centre_x/centre_y win.
    rec2 = {"image_id": 2, "width": 100, "height": 100, "centre_x": 30.0, "centre_y": 30.0,
            "annotations": [clump(33, 30, 0), clump(35, 30, 0), clump(50, 50, 0)]}
    assert galaxy_centre(rec2) == (30.0, 30.0)
    assert truth_from_dicts([rec2], IgnoreRule(centre_fwhm=1.0))[2]["ignore_reason"] == [
        "centre", "", ""]


def test_ignore_rule_config_keys():
    # (The "attribute:limit" parser itself: tests/test_structures.py.)
    cfg = get_cfg()
    add_clump_config(cfg)
    assert IgnoreRule.from_config(cfg) == IgnoreRule()
    cfg.merge_from_list(["TEST.CLUMP_EVAL.IGNORE_BELOW", "['flux_frac_u:0.03']",
                         "TEST.CLUMP_EVAL.IGNORE_CENTRE_FWHM", "1.0",
                         "TEST.CLUMP_EVAL.IGNORE_MISSING", "True"])
    rule = IgnoreRule.from_config(cfg)
    assert rule == IgnoreRule({"flux_frac_u": 0.03}, True, 1.0)
    assert "flux_frac_u < 0.03 or missing" in rule.describe()


DICTS = [
    {"image_id": 1, "height": 100, "width": 100,
     "annotations": [clump(20, 20, 0, flux_frac=0.05), clump(70, 70, 0, flux_frac=0.01),
                     {**clump(20, 70, 0), "iscrowd": 1}]},
    {"image_id": 2, "height": 100, "width": 100, "annotations": [clump(30, 30, 1, flux_frac=0.2)]},
]
PREDS = [
    {"image_id": 1, "boxes": np.array([sq(20, 20), sq(70, 70), sq(20, 70), sq(90, 10)]),
     "scores": np.array([0.9, 0.8, 0.7, 0.6]), "classes": np.array([0, 0, 0, 0])},
    {"image_id": 2, "boxes": np.zeros((0, 4)), "scores": np.zeros(0),
     "classes": np.zeros(0, int)},
]


def test_evaluator_ignores_crowd_and_faint_clumps_everywhere(tmp_path):
    name = register(DICTS)
    ev = ClumpEvaluator(name, distributed=False, score_thresh=0.5, plot=False,
                        bin_edges={"flux_frac": [0.0, 0.1, 0.3]},
                        ignore_rule=IgnoreRule({"flux_frac": 0.03}))
    report = ev.compute(PREDS, DICTS)
    op = report["operating"]["all"]
    # kept: (20,20) and image 2's clump; detections: 4 - 2 on ignored = 2; matched 1
    assert (op["n_true"], op["n_detections"], op["n_matched"]) == (2, 2, 1)
    assert op["completeness"] == pytest.approx(0.5) and op["purity"] == pytest.approx(0.5)
    assert report["ignore"]["n_ignored"] == 2 and report["ignore"]["n_detections_on_ignored"] == 2
    assert report["ignore"]["by_reason"] == {"below:flux_frac": 1, "iscrowd": 1}
    assert report["metrics"]["n_ignored"] == 2
    # the sweep at 0.5 equals the operating point
    i = int(np.argmin(np.abs(ev.thresholds - 0.5)))
    assert report["curves"]["all"]["n_detections"][i] == 2
    # binned: kept clumps only (flux 0.05 found, 0.2 missed)
    bins = report["binned"]["flux_frac"]["bins"]
    assert [(b["n_true"], b["n_matched"]) for b in bins] == [(1, 1), (1, 0)]
    # per image, the same numbers
    counts = ev.image_counts(PREDS, DICTS)
    assert counts[1] == {"n_true": 1, "n_detections": 2, "n_matched": 1}
    assert counts[2] == {"n_true": 1, "n_detections": 0, "n_matched": 0}
    ev.write(report, str(tmp_path))
    written = json.loads((tmp_path / "clump_metrics.json").read_text())
    assert written["ignore"]["n_ignored"] == 2 and written["n_detections_on_ignored"] == 2
    # Without the rule, iscrowd is still ignored (it was dropped before: detections on it
    # counted as false); the faint clump counts.
    plain = ClumpEvaluator(name, distributed=False, score_thresh=0.5, plot=False)
    op = plain.compute(PREDS, DICTS)["operating"]["all"]
    assert (op["n_true"], op["n_detections"], op["n_matched"]) == (3, 3, 2)


@pytest.mark.parametrize("seed", range(4))
def test_ignore_all_equals_dropping_and_none_equals_plain(seed):
    """Random cases: an empty mask equals no mask; ignoring a clump never lowers purity's
    numerator below the plain matching of the other clumps with the detections left."""
    dicts, preds = random_case(np.random.default_rng(seed))
    for d, p in zip(dicts, preds):
        t = truth_from_dicts([d])[d["image_id"]]
        n = len(t["boxes"])
        a = M.sweep_image(t["boxes"], t["classes"], p["boxes"], p["scores"], p["classes"],
                          [0.0, 0.5], IOU, 2)
        b = M.sweep_image(t["boxes"], t["classes"], p["boxes"], p["scores"], p["classes"],
                          [0.0, 0.5], IOU, 2, ignore=np.zeros(n, bool))
        assert (a == b).all()
        # all ignored: nothing true, matched 0, detections on clumps leave n_det
        c = M.sweep_image(t["boxes"], t["classes"], p["boxes"], p["scores"], p["classes"],
                          [0.0, 0.5], IOU, 2, ignore=np.ones(n, bool))
        assert (c[..., M.N_TRUE] == 0).all() and (c[..., M.N_MATCHED] == 0).all()
        assert (c[..., M.N_DET] == a[..., M.N_DET] - a[..., M.N_MATCHED]).all()
