"""ClumpEvaluator on a hand-made dataset with known answers: operating point, per class,
class swaps, clump-free galaxies, sweep, binning, outputs, flattened metric names."""
import csv
import json
import math

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.evaluation.testing import flatten_results_dict
from detectron2.structures import Boxes, BoxMode, Instances

from clump_d2.config import add_clump_config
from clump_d2.evaluation import ClumpEvaluator
from clump_d2.evaluation import metrics as M
from clump_d2.evaluation.matching import MatchCriterion
from eval_cases import clump, random_case, register, sq

HANDMADE = [
    # image 1: a clump and an odd clump
    {"image_id": 1, "height": 100, "width": 100,
     "annotations": [clump(20, 20, 0, flux_frac=0.05), clump(60, 60, 1, flux_frac=0.2)]},
    # image 2: no clumps (a real negative)
    {"image_id": 2, "height": 100, "width": 100, "annotations": []},
    # image 3: one faint clump
    {"image_id": 3, "height": 100, "width": 100,
     "annotations": [clump(30, 30, 0, flux_frac=0.1)]},
]
PREDICTIONS = [
    # the clump found; the odd clump found as a "clump" (class swap)
    {"image_id": 1, "boxes": np.array([sq(20, 20), sq(60, 60)]), "scores": np.array([0.9, 0.6]),
     "classes": np.array([0, 0])},
    # a false positive on the clump-free galaxy
    {"image_id": 2, "boxes": np.array([sq(40, 40)]), "scores": np.array([0.7]),
     "classes": np.array([0])},
    # the faint clump, found only below the operating threshold
    {"image_id": 3, "boxes": np.array([sq(30, 30)]), "scores": np.array([0.3]),
     "classes": np.array([0])},
]


@pytest.fixture(scope="module")
def handmade():
    return register(HANDMADE)


def make_evaluator(name, **kw):
    kw.setdefault("score_thresh", 0.5)
    kw.setdefault("bin_edges", {"flux_frac": [0.0, 0.08, 0.3]})
    return ClumpEvaluator(name, distributed=False, **kw)


def test_operating_point_per_class_and_class_agnostic(handmade):
    report = make_evaluator(handmade).compute(PREDICTIONS, HANDMADE)
    op = report["operating"]
    # class-agnostic: 3 true, 3 detections >= 0.5, 2 matched (the swapped class counts)
    assert (op["all"]["n_true"], op["all"]["n_detections"], op["all"]["n_matched"]) == (3, 3, 2)
    assert op["all"]["completeness"] == pytest.approx(2 / 3)
    assert op["all"]["purity"] == pytest.approx(2 / 3)
    assert op["all"]["F1"] == pytest.approx(2 / 3)
    # "clump": 2 true, 3 detections labelled clump, 1 matched (the swapped one is not)
    assert (op["clump"]["n_true"], op["clump"]["n_detections"], op["clump"]["n_matched"]) == (
        2, 3, 1)
    assert op["clump"]["completeness"] == 0.5 and op["clump"]["purity"] == pytest.approx(1 / 3)
    # "odd_clump": found only as the wrong class, and nothing detected as odd_clump
    assert op["odd_clump"]["completeness"] == 0.0
    assert math.isnan(op["odd_clump"]["purity"]) and math.isnan(op["odd_clump"]["F1"])


def test_sweep_equal_point_and_f1_peak(handmade):
    report = make_evaluator(handmade).compute(PREDICTIONS, HANDMADE)
    t = report["thresholds"]
    c = report["curves"]["all"]
    at = {round(x, 2): i for i, x in enumerate(t)}
    assert (c["n_detections"][at[0.0]], c["n_matched"][at[0.0]]) == (4, 3)
    assert (c["completeness"][at[0.0]], c["purity"][at[0.0]]) == (1.0, 0.75)
    assert (c["n_detections"][at[0.65]], c["n_matched"][at[0.65]]) == (2, 1)
    assert (c["n_detections"][at[0.95]], c["n_matched"][at[0.95]]) == (0, 0)
    assert math.isnan(c["purity"][at[0.95]])
    s = report["curve_summary"]["all"]
    # completeness = purity = 2/3 from the first grid point above 0.3
    assert s["equal_CP_thresh"] == pytest.approx(0.31)
    assert s["equal_CP_value"] == pytest.approx(2 / 3)
    assert s["F1_max"] == pytest.approx(2 * 0.75 / 1.75)
    assert s["F1_max_thresh"] == 0.0


def test_binned_completeness_with_counts(handmade):
    report = make_evaluator(handmade).compute(PREDICTIONS, HANDMADE)
    bins = report["binned"]["flux_frac"]["bins"]
    assert [(b["n_true"], b["n_matched"]) for b in bins] == [(1, 1), (2, 1)]
    assert [b["completeness"] for b in bins] == [1.0, 0.5]
    assert 0 <= bins[1]["ci_lo"] < 0.5 < bins[1]["ci_hi"] <= 1
    # box_size is derived for every clump (10 px boxes here)
    assert report["binned"]["box_size"]["bins"][0]["n_true"] == 3


def test_no_detections_at_all(handmade):
    empty = [dict(p, boxes=np.zeros((0, 4)), scores=np.zeros(0), classes=np.zeros(0, int))
             for p in PREDICTIONS]
    m = make_evaluator(handmade).compute(empty, HANDMADE)["metrics"]
    assert m["completeness"] == 0.0 and m["n_detections"] == 0
    assert math.isnan(m["purity"]) and math.isnan(m["F1"])
    assert math.isnan(m["equal_CP_thresh"]) and math.isnan(m["F1_max"])


def test_missing_image_counts_its_clumps_as_missed(handmade):
    m = make_evaluator(handmade).compute(PREDICTIONS[1:], HANDMADE)["metrics"]
    assert (m["n_true"], m["n_detections"], m["n_matched"]) == (3, 1, 0)


def test_distance_criterion_from_config(handmade):
    cfg = add_clump_config(get_cfg())
    cfg.TEST.CLUMP_EVAL.MATCH = "distance"
    cfg.TEST.CLUMP_EVAL.DISTANCE_FACTOR = 1.0
    cfg.TEST.CLUMP_EVAL.SCORE_THRESH = 0.0
    ev = ClumpEvaluator(cfg, handmade, distributed=False)
    assert ev.criterion == MatchCriterion("distance", 0.5, 1.0)
    shifted = [dict(p, boxes=p["boxes"] + [4, 0, 4, 0]) for p in PREDICTIONS]  # 4 px off
    m = ev.compute(shifted, HANDMADE)["metrics"]
    assert m["n_matched"] == 3  # 4 px <= 1 x 5 px half side
    ev.criterion = MatchCriterion("iou", 0.5)  # IoU of a 4 px shift of a 10 px box: 0.43
    assert ev.compute(shifted, HANDMADE)["metrics"]["n_matched"] == 0


def test_process_evaluate_writes_outputs_and_flat_scalars(handmade, tmp_path):
    ev = make_evaluator(handmade, output_dir=str(tmp_path), curve_points=11)
    ev.reset()
    for p in PREDICTIONS:
        inst = Instances((100, 100), pred_boxes=Boxes(torch.tensor(p["boxes"]).float()),
                         scores=torch.tensor(p["scores"]).float(),
                         pred_classes=torch.tensor(p["classes"]))
        ev.process([{"image_id": p["image_id"]}], [{"instances": inst}])
    results = ev.evaluate()
    flat = flatten_results_dict(results)
    assert flat["clumps/completeness"] == pytest.approx(2 / 3)
    assert flat["clumps/purity"] == pytest.approx(2 / 3)
    assert flat["clumps/F1"] == pytest.approx(2 / 3)
    assert flat["clumps/completeness-clump"] == 0.5
    assert math.isnan(flat["clumps/purity-odd_clump"])
    # EventStorage takes scalars: counts are int, everything else float
    assert {k for k, v in flat.items() if isinstance(v, int)} == {
        "clumps/n_true", "clumps/n_detections", "clumps/n_matched", "clumps/n_ignored",
        "clumps/n_detections_on_ignored"}
    assert all(isinstance(v, (int, float)) for v in flat.values())

    saved = json.loads((tmp_path / "clump_metrics.json").read_text())  # strict JSON
    assert saved["completeness"] == pytest.approx(2 / 3) and saved["n_true"] == 3
    assert saved["operating"]["odd_clump"]["purity"] is None  # undefined, not 1
    assert saved["match"]["criterion"] == "iou"
    rows = list(csv.DictReader(open(tmp_path / "clump_curve.csv")))
    assert len(rows) == 11 and rows[0]["score_thresh"] == "0.0000"
    assert float(rows[0]["completeness"]) == 1.0 and float(rows[0]["purity"]) == 0.75
    assert rows[-1]["purity"] == "nan" and int(rows[-1]["n_detections"]) == 0
    assert "purity_odd_clump" in rows[0]
    for png in ("completeness_purity_vs_threshold.png", "purity_vs_completeness.png",
                "completeness_vs_flux_frac.png", "completeness_vs_box_size.png"):
        data = (tmp_path / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


@pytest.mark.parametrize("seed", range(5))
def test_sweep_is_monotone_and_matches_direct_counts(seed, handmade):
    rng = np.random.default_rng(seed)
    dicts, preds = random_case(rng)
    ev = make_evaluator(handmade, bin_edges={}, curve_points=21)
    report = ev.compute(preds, dicts)
    for c in report["curves"].values():
        assert np.all(np.diff(c["n_detections"]) <= 0)
        assert np.all(np.diff(c["n_matched"]) <= 0)  # max matching shrinks with the set
        comp = c["completeness"][~np.isnan(c["completeness"])]
        assert np.all(np.diff(comp) <= 1e-12)
        assert np.all(c["n_matched"] <= np.minimum(c["n_true"], c["n_detections"]))
    # every curve point equals an independent per-image count at that threshold
    crit = MatchCriterion()
    from clump_d2.evaluation.matching import count_matches
    for i in (0, 7, 14):
        t = report["thresholds"][i]
        total = 0
        for d, p in zip(dicts, preds):
            keep = p["scores"] >= t
            true = [BoxMode.convert(a["bbox"], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
                    for a in d["annotations"]]
            total += count_matches(true, p["boxes"][keep], criterion=crit).n_matched
        assert report["curves"]["all"]["n_matched"][i] == total
    # permuting detections within images and the images themselves changes nothing
    perm_preds = []
    for p in reversed(preds):
        order = rng.permutation(len(p["scores"]))
        perm_preds.append({k: (v[order] if k != "image_id" else v) for k, v in p.items()})
    again = ev.compute(perm_preds, dicts)
    assert again["metrics"] == pytest.approx(report["metrics"], nan_ok=True)
    assert again["binned"] == report["binned"]


def test_equal_point_interpolates_and_handles_no_crossing():
    t = np.array([0.0, 0.5, 1.0])
    thr, val = M.equal_point(t, [1.0, 0.6, 0.2], [0.4, 0.8, 1.0])
    # d = 0.6 at 0, -0.2 at 0.5: crossing at 0.375, value 1 - 0.4 * 0.75 = 0.7
    assert thr == pytest.approx(0.375) and val == pytest.approx(0.7)
    assert all(math.isnan(x) for x in M.equal_point(t, [1, 1, 1], [0.1, 0.2, np.nan]))
    # purer than complete until nothing matches: C = P = 0 at the top is no crossing
    t4 = np.array([0.0, 0.3, 0.6, 0.9])
    assert all(math.isnan(x) for x in M.equal_point(t4, [0.5, 0.4, 0.0, 0.0],
                                                    [0.6, 0.8, 0.0, np.nan]))
    # ... but a real crossing before it still counts
    thr, val = M.equal_point(t4, [0.8, 0.4, 0.0, 0.0], [0.6, 0.8, 0.0, np.nan])
    assert thr == pytest.approx(0.1) and val == pytest.approx(0.8 - 0.4 / 3)


def test_quantile_edges_and_empty_bins():
    edges = M.quantile_edges([1, 2, 3, 4, 5, 6, 7, 8], 4)
    np.testing.assert_allclose(edges, [1, 2.75, 4.5, 6.25, 8])
    rows = M.bin_completeness([1, 8, np.nan], [True, False, True], [0, 5, 10, 20])
    assert [(r["n_true"], r["n_matched"]) for r in rows] == [(1, 1), (1, 0), (0, 0)]
    assert math.isnan(rows[2]["completeness"])
