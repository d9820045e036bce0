"""Real-data evaluation end to end on a tiny subset of the GZH Stripe 82 galaxies."""
import json

import numpy as np
import pytest
from PIL import Image

from clump_d2.convert.gzh_s82 import CROP_OFFSET, CROP_SIZE, prepare_gzh_s82
from clump_d2.studies.realdata import Method, evaluate_methods

N_GALAXIES = 6


@pytest.fixture(scope="module")
def tiny_gzh(realdata, tmp_path_factory):
    from clump_d2.data.datasets import register_clump_dataset

    out = tmp_path_factory.mktemp("gzhtiny")
    paths = prepare_gzh_s82(realdata / "gzh_s82_clumps", out, galaxies=N_GALAXIES)
    for split in ("train", "test", "train_a", "train_b", "test_a", "test_b"):
        register_clump_dataset(f"gzhtiny_{split}", paths[split], out / "images")
    return out, paths


def test_prepare_crop_frame_and_split(tiny_gzh):
    out, paths = tiny_gzh
    full = json.loads(paths["all"].read_text())
    assert len(full["images"]) == N_GALAXIES
    train = json.loads(paths["train"].read_text())
    test = json.loads(paths["test"].read_text())
    assert {i["id"] for i in train["images"]}.isdisjoint({i["id"] for i in test["images"]})
    assert len(train["images"]) + len(test["images"]) == N_GALAXIES
    assert len(train["annotations"]) + len(test["annotations"]) == len(full["annotations"])
    for name, split in (("train", train), ("test", test)):  # halves for cross-fitting
        a, b = (json.loads(paths[f"{name}_{h}"].read_text()) for h in "ab")
        ids = [{i["id"] for i in half["images"]} for half in (a, b)]
        assert ids[0].isdisjoint(ids[1]) and ids[0] and ids[1]
        assert ids[0] | ids[1] == {i["id"] for i in split["images"]}
        assert len(a["annotations"]) + len(b["annotations"]) == len(split["annotations"])
    for im in full["images"]:
        assert im["crop"] == [CROP_OFFSET, CROP_OFFSET, CROP_SIZE, CROP_SIZE]
        assert im["width"] == im["height"] == CROP_SIZE and im["full_width"] == 424
        assert 1.5 < im["psf_fwhm_px"] < 40
    for a in full["annotations"]:
        x, y, w, h = a["bbox"]
        assert 0 <= x and 0 <= y and x + w <= CROP_SIZE + 1e-6 and y + h <= CROP_SIZE + 1e-6
        # the clump position moved with the crop and sits in its box
        assert x <= a["x"] <= x + w and y <= a["y"] <= y + h


def test_evaluation_table_matches_a_direct_count(tiny_gzh, tmp_path, tiny_model_opts,
                                                 initial_weights):
    """Baseline + an (untrained) tiny network through the evaluator; the baseline's numbers
    equal matching find_clumps' boxes on the crops by hand at the same threshold."""
    from clump_d2.baselines import find_clumps
    from clump_d2.evaluation.matching import MatchCounts, count_matches

    out, paths = tiny_gzh
    opts = tiny_model_opts(tmp_path / "model")
    weights = initial_weights("configs/RealData/sim_sdss_r18.yaml", opts, tmp_path / "init.pth")
    methods = [Method("classical_baseline", kind="baseline"),
               Method("tiny_random", config="configs/RealData/sim_sdss_r18.yaml",
                      weights=weights, opts=opts)]
    rows = evaluate_methods(methods, "gzhtiny_train", "gzhtiny_test", tmp_path / "eval",
                            "configs/RealData/sim_sdss_r18.yaml")
    test = json.loads(paths["test"].read_text())
    assert [r["method"] for r in rows] == ["classical_baseline", "tiny_random"]
    for r in rows:
        assert r["n_true"] == len(test["annotations"])
        for k in ("completeness", "purity", "F1"):
            assert np.isnan(r[k]) or 0.0 <= r[k] <= 1.0
    base = rows[0]
    counts = MatchCounts()
    for im in test["images"]:
        rgb = np.asarray(Image.open(out / "images" / im["file_name"]).convert("RGB"))
        crop = rgb[CROP_OFFSET:CROP_OFFSET + CROP_SIZE, CROP_OFFSET:CROP_OFFSET + CROP_SIZE]
        found = find_clumps(crop, im["psf_fwhm_px"])
        truth = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                  a["bbox"][1] + a["bbox"][3]]
                 for a in test["annotations"] if a["image_id"] == im["id"]]
        counts += count_matches(truth, found["boxes"][found["scores"] >= base["thresh"] - 1e-9])
    assert base["n_matched"] == counts.n_matched and base["n_detections"] == counts.n_det
    assert base["n_matched"] >= 1  # the baseline finds some real clumps
    md = (tmp_path / "eval" / "real_eval.md").read_text()
    assert "classical_baseline" in md and "tiny_random" in md
    assert base["n_unmatched"] == base["n_detections"] - base["n_matched"]
    assert 0 <= base["n_unmatched_on_rejected"] <= base["n_unmatched"]
    assert base["n_rejected_candidates"] == sum(len(im["rejected_candidates"])
                                                for im in test["images"])


def test_cross_fitted_threshold_of_a_fixed_method_is_its_own(tiny_gzh, tmp_path):
    """The baseline does not learn, so its counts on the two halves of the tuning split add up
    to its counts on the whole split: the cross-fitted threshold equals the plain one."""
    halves = [("", "gzhtiny_train_a"), ("", "gzhtiny_train_b")]
    rows = evaluate_methods(
        [Method("plain", kind="baseline"),
         Method("crossfit", kind="baseline", threshold_from=halves)],
        "gzhtiny_train", "gzhtiny_test", tmp_path, "configs/RealData/sim_sdss_r18.yaml")
    plain, crossfit = rows
    assert crossfit["thresh"] == plain["thresh"]
    assert crossfit["tune_F1"] == pytest.approx(plain["tune_F1"])
    assert crossfit["tuned_on"] == "gzhtiny_train_a, gzhtiny_train_b"
    assert (crossfit["n_matched"], crossfit["n_detections"]) == (plain["n_matched"],
                                                                 plain["n_detections"])


def test_tuned_threshold_pools_counts_before_taking_f1():
    from clump_d2.studies.realdata import tuned_threshold

    def report(n_true, n_det, n_matched):
        return {"thresholds": [0.3, 0.5, 0.7],
                "curves": {"all": {"n_true": n_true, "n_detections": n_det,
                                   "n_matched": n_matched}}}

    # alone, run 1 peaks at 0.3 (F1 0.8, 0.667, 0.333) and run 2 at 0.7 (0.333, 0.6, 0.667);
    # pooled, 0.5 wins: F1 = 2 x 11 / (20 + 15) = 0.629 vs 0.52 and 0.519
    r1 = report([10, 10, 10], [10, 5, 2], [8, 5, 2])
    r2 = report([10, 10, 10], [20, 10, 5], [5, 6, 5])
    assert tuned_threshold([r1])[0] == 0.3
    assert tuned_threshold([r2])[0] == 0.7
    t, f1 = tuned_threshold([r1, r2])
    assert t == 0.5 and f1 == pytest.approx(22 / 35)
    with pytest.raises(ValueError, match="grids differ"):
        tuned_threshold([r1, {**r2, "thresholds": [0.2, 0.5, 0.7]}])


def test_false_detections_per_image_of_pooled_reports():
    from clump_d2.studies.realdata import false_per_image

    # 4 images; false detections 11, 2, 0 -> 2.75, 0.5, 0 per image
    r = {"thresholds": [0.3, 0.5, 0.7], "n_images": 4,
         "curves": {"all": {"n_true": [10, 10, 10], "n_detections": [20, 10, 5],
                            "n_matched": [9, 8, 5]}}}
    assert false_per_image([r], 0.3) == pytest.approx(2.75)
    assert false_per_image([r], 0.5) == pytest.approx(0.5)
    assert false_per_image([r], 0.7) == 0.0
    assert false_per_image([r, r], 0.5) == pytest.approx(0.5)  # pooled over 8 images


def test_rows_carry_false_detections_per_image(tiny_gzh, tmp_path):
    """Each row's test false detections per image are its unmatched detections (outside
    ignore regions) over the test images; the table shows tuning and test rates."""
    rows = evaluate_methods([Method("classical_baseline", kind="baseline")], "gzhtiny_train",
                            "gzhtiny_test", tmp_path, "configs/RealData/sim_sdss_r18.yaml")
    n_test = len(json.loads(open(tiny_gzh[1]["test"]).read())["images"])
    r = rows[0]
    assert r["test_false_per_image"] == pytest.approx(r["n_unmatched"] / n_test)
    assert r["tune_false_per_image"] >= 0
    md = (tmp_path / "real_eval.md").read_text()
    assert f"{r['tune_false_per_image']:.3f}; {r['test_false_per_image']:.3f}" in md


def test_rejected_candidates_land_where_the_catalogue_clumps_say(tiny_gzh, realdata):
    """The stamp -> JPEG map of place_rejected_candidates, fed the catalogue's own clumps as
    if they were rejects, puts each on its RA/Dec position (the converter's); and the real
    rejects inside the crops are carried, in crop coordinates."""
    from astropy.table import Table

    from clump_d2.convert.catalog import convert_catalog
    from clump_d2.convert.gzh_s82 import gzh_paths, place_rejected_candidates

    gzh = realdata / "gzh_s82_clumps"
    paths = gzh_paths(gzh)
    coco = convert_catalog(paths["clumps"], paths["galaxies"], paths["images"])[0].to_dict()
    clumps = Table.read(gzh / "final_clump_catalog.fits")
    gid = {im["id"]: str(im["galaxy_id"]) for im in coco["images"]}
    on_jpeg = {(gid[a["image_id"]], int(a["clump_id"])) for a in coco["annotations"]}
    as_rejects = [{"survey_id": r["gzh_id"], "X": r["clump_x"], "Y": r["clump_y"]}
                  for r in clumps if (str(r["gzh_id"]), int(r["clump_id"])) in on_jpeg]
    placed = place_rejected_candidates(coco, clumps, as_rejects)
    assert placed == len(coco["annotations"]) >= 130
    truth = {str(im["galaxy_id"]): sorted((a["x"], a["y"]) for a in coco["annotations"]
                                          if a["image_id"] == im["id"]) for im in coco["images"]}
    for im in coco["images"]:
        got = sorted(map(tuple, im["rejected_candidates"]))
        assert np.allclose(got, truth[str(im["galaxy_id"])], atol=1e-3)
    out, split_paths = tiny_gzh
    full = json.loads(split_paths["all"].read_text())
    for im in full["images"]:
        for x, y in im["rejected_candidates"]:
            assert 0 <= x < CROP_SIZE and 0 <= y < CROP_SIZE


def test_false_positive_census_counts_unmatched_detections_on_rejects():
    from detectron2.structures import BoxMode

    from clump_d2.evaluation.matching import MatchCriterion
    from clump_d2.studies.realdata import false_positive_census

    record = {"image_id": 1, "psf_fwhm_px": 4.0, "rejected_candidates": [[80.0, 80.0]],
              "annotations": [{"bbox": [10, 10, 10, 10], "bbox_mode": BoxMode.XYWH_ABS,
                               "category_id": 0}]}
    boxes = np.array([[10.5, 10, 20.5, 20],  # the clump
                      [76.0, 77, 86, 87],  # centre (81, 82): 2.2 px from the reject, <= 5
                      [40.0, 40, 50, 50],  # nowhere near
                      [75.0, 75, 85, 85]])  # on the reject but below the threshold
    pred = {"image_id": 1, "boxes": boxes, "scores": np.array([0.9, 0.8, 0.7, 0.2]),
            "classes": np.zeros(4, int)}
    census = false_positive_census([pred], [record], 0.5, MatchCriterion("iou"))
    assert census == {"n_unmatched": 2, "n_unmatched_on_rejected": 1,
                      "n_rejected_candidates": 1}
    census = false_positive_census([pred], [dict(record, rejected_candidates=[])], 0.1,
                                   MatchCriterion("iou"))
    assert census == {"n_unmatched": 3, "n_unmatched_on_rejected": 0,
                      "n_rejected_candidates": 0}


def test_psf_sized_boxes_resizes_around_the_centre():
    import torch
    from detectron2.structures import Boxes, Instances

    from clump_d2.studies.realdata import PsfSizedBoxes

    def one():
        inst = Instances((100, 100))
        inst.pred_boxes = Boxes(torch.tensor([[40.0, 50.0, 60.0, 60.0], [0.0, 0.0, 6.0, 4.0]]))
        inst.scores = torch.tensor([0.9, 0.8])
        return inst

    def fake(batched):
        return [{"instances": one()} for _ in batched]

    out = PsfSizedBoxes(fake)([{"psf_fwhm_px": 4.0}, {}])
    b = out[0]["instances"].pred_boxes.tensor
    assert torch.allclose(b[0], torch.tensor([45.0, 50.0, 55.0, 60.0]))  # side 2.5 x 4
    assert torch.allclose(b[1], torch.tensor([0.0, 0.0, 8.0, 7.0]))  # clipped at the edge
    kept = out[1]["instances"].pred_boxes.tensor  # no PSF: boxes unchanged
    assert torch.allclose(kept[0], torch.tensor([40.0, 50.0, 60.0, 60.0]))
    # inference_on_dataset (evaluate_on_dataset) switches it to eval mode and back
    from detectron2.evaluation.evaluator import inference_context

    net = torch.nn.Linear(1, 1)
    wrapped = PsfSizedBoxes(net)
    assert wrapped.training
    with inference_context(wrapped):
        assert not net.training
    assert net.training


def test_simulate_presets_write_their_label_populations(tmp_path):
    """eval_real simulate --preset: 'catalogue' labels clumps far below Clump Scout's ~3 %
    limit, 'clumpscout' does not; an unknown preset is refused by name."""
    from clump_d2.sim.synthetic import simulate_sdss

    fracs = {}
    for preset in ("clumpscout", "catalogue"):
        paths = simulate_sdss(tmp_path / preset, num_train=12, num_val=0, seed=1,
                              image_size=96, preset=preset)
        assert set(paths) == {"train"}
        coco = json.loads(paths["train"].read_text())
        assert len(coco["images"]) == 12
        fracs[preset] = [a["flux_frac"] for a in coco["annotations"]]
    assert min(fracs["clumpscout"]) >= 0.03 - 1e-9
    assert fracs["catalogue"] and np.median(fracs["catalogue"]) < 0.01
    with pytest.raises(ValueError, match="hst.*clumpscout"):
        simulate_sdss(tmp_path / "x", num_train=1, num_val=0, preset="hst")


def test_pool_folds_sums_counts_over_folds(tmp_path):
    """eval_real pool: per-fold rows kept, pooled completeness/purity from summed counts (not
    the mean of the folds' ratios), flux bins pooled by matched counts."""
    from clump_d2.studies.realdata import pool_folds, write_table

    def row(method, matched, true, det, fp_rej, c_bin, n_bin):
        return {"method": method, "thresh": 0.5, "completeness": matched / true,
                "purity": matched / det, "F1": 0.0, "n_true": true, "n_detections": det,
                "n_matched": matched, "n_unmatched": det - matched,
                "n_unmatched_on_rejected": fp_rej, "C_flux_0-1": c_bin, "n_flux_0-1": n_bin,
                "test_F1_max": 0.0, "test_F1_max_thresh": 0.5, "test_equal_CP_value": 0.0}

    write_table([row("net", 6, 10, 8, 1, 0.6, 10), row("base", 2, 10, 4, 0, 0.2, 10)],
                tmp_path / "a")
    write_table([row("net", 1, 30, 2, 1, 1 / 30, 30)], tmp_path / "b")
    pooled = pool_folds({"a": tmp_path / "a", "b": tmp_path / "b"}, tmp_path / "out")
    net = next(r for r in pooled if r["method"] == "net")
    assert (net["n_matched"], net["n_true"], net["n_detections"]) == (7, 40, 10)
    assert net["completeness"] == pytest.approx(7 / 40) and net["purity"] == pytest.approx(0.7)
    assert net["n_unmatched_on_rejected"] == 2 and net["C_flux_0-1"] == pytest.approx(7 / 40)
    base = next(r for r in pooled if r["method"] == "base")  # only in fold a
    assert (base["n_matched"], base["n_true"]) == (2, 10)
    md = (tmp_path / "out" / "real_eval_folds.md").read_text()
    assert md.count("**pooled**") == 2 and "| net | b |" in md and "0.17" in md


def test_detectability_census_on_real_galaxies(tiny_gzh):
    """Every catalogue clump gets an S/N in the crops, and brighter clumps (by the
    catalogue's own photometry) stand out more in the JPEGs."""
    from detectron2.data import DatasetCatalog

    from clump_d2.studies.detectability import dataset_census, summarise_census

    records = DatasetCatalog.get("gzhtiny_train") + DatasetCatalog.get("gzhtiny_test")
    census = dataset_census(records)
    summary = summarise_census(census)
    n = sum(len(r["annotations"]) for r in records)
    assert summary["clumps"] == n and summary["clumps_outside_image"] == 0
    snr = np.concatenate([c.clump_snr for c in census])
    ff = np.concatenate([c.clump_flux_fraction for c in census])
    assert np.median(snr[ff >= 0.005]) > np.median(snr[ff < 0.005]) + 1.0
    assert summary["thresholds"][0]["completeness"] >= summary["thresholds"][-1]["completeness"]


def test_false_positive_census_leaves_detections_on_ignored_clumps_out():
    from detectron2.structures import BoxMode

    from clump_d2.evaluation.clump_evaluation import IgnoreRule
    from clump_d2.evaluation.matching import MatchCriterion
    from clump_d2.studies.realdata import false_positive_census

    record = {"image_id": 1, "psf_fwhm_px": 4.0, "width": 100, "height": 100,
              "annotations": [{"bbox": [10, 10, 10, 10], "bbox_mode": BoxMode.XYWH_ABS,
                               "category_id": 0, "flux_frac_u": 0.01}]}
    pred = {"image_id": 1, "boxes": np.array([[10.0, 10, 20, 20], [40, 40, 50, 50]]),
            "scores": np.array([0.9, 0.8]), "classes": np.zeros(2, int)}
    iou = MatchCriterion("iou")
    assert false_positive_census([pred], [record], 0.5, iou)["n_unmatched"] == 1
    faint = IgnoreRule({"flux_frac_u": 0.03})  # the clump is an ignore region: not false
    assert false_positive_census([pred], [record], 0.5, iou, faint)["n_unmatched"] == 1
    assert false_positive_census([dict(pred, boxes=pred["boxes"][::-1].copy())], [record],
                                 0.5, iou, faint)["n_unmatched"] == 1


def test_giant_target_counts(monkeypatch):
    """Target: off-centre clumps >= the limit detected *and* flagged; flagged detections on a
    catalogued clump of any depth. Photometry replaced by fixed ratios to pin the counting."""
    import pandas as pd
    from detectron2.structures import BoxMode

    from clump_d2.evaluation.clump_evaluation import IgnoreRule
    from clump_d2.evaluation.matching import MatchCriterion
    from clump_d2.studies import realdata

    def ann(x, y, frac):
        return {"bbox": [x - 5, y - 5, 10, 10], "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": 0, "flux_frac_u": frac}

    record = {"image_id": 1, "width": 100, "height": 100, "psf_fwhm_px": 4.0,
              "file_name": "unused.jpg",
              "annotations": [ann(20, 20, 0.05),  # target, found, flagged
                              ann(80, 20, 0.05),  # target, found, not flagged
                              ann(20, 80, 0.05),  # target, missed
                              ann(80, 80, 0.005),  # faint: found and flagged, not a target
                              ann(50, 51, 0.2)]}  # central: not a target
    boxes = np.array([[15.0, 15, 25, 25], [75, 15, 85, 25], [75, 75, 85, 85],
                      [45, 46, 55, 56], [40, 80, 50, 90], [60, 60, 70, 70]])
    scores = np.array([0.9, 0.9, 0.9, 0.9, 0.9, 0.1])  # the last below the threshold
    ratio_b = np.array([0.04, 0.01, 0.04, 0.05, 0.04])  # photometry of the 5 kept ones
    monkeypatch.setattr(realdata, "record_photometry_image", lambda rec, o: None)
    monkeypatch.setattr(realdata, "measure_image", lambda image, xy, fwhm, centre, o:
                        pd.DataFrame({"giant_band": ["B (display)"] * len(xy),
                                      "flux_ratio_B": ratio_b[:len(xy)]}))
    rule = IgnoreRule({"flux_frac_u": 0.03}, centre_fwhm=1.0)
    pred = {"image_id": 1, "boxes": boxes, "scores": scores, "classes": np.zeros(6, int)}
    out = realdata.giant_target([pred], [record], 0.5, MatchCriterion("iou"), rule,
                                realdata.GiantTarget(flag_pcts=(3.0, 1.0)))
    assert out["n_target_clumps"] == 3 and out["n_target_found"] == 2
    # 3 %: flagged = dets 0, 2, 3, 4; on a catalogue clump: 0, 2, 3 (4 is on nothing)
    assert (out["n_target_found_flagged_3"], out["n_target_flagged_3"],
            out["n_target_flagged_on_catalogue_3"]) == (1, 4, 3)
    # 1 %: every kept detection flagged
    assert (out["n_target_found_flagged_1"], out["n_target_flagged_1"],
            out["n_target_flagged_on_catalogue_1"]) == (2, 5, 4)
    frac = realdata.target_fractions(out)
    assert frac["target_C_3"] == pytest.approx(1 / 3) and frac["target_P_3"] == pytest.approx(0.75)


def test_table_rows_with_different_keys(tmp_path):
    """A method whose giant catalogue found no threshold has fewer keys than the others: the
    CSV carries the union, blank where a row has none."""
    import csv

    from clump_d2.studies.realdata import write_table

    base = {"method": "a", "thresh": 0.5, "completeness": 0.5, "purity": 0.5, "F1": 0.5,
            "n_matched": 1, "n_true": 2, "n_detections": 2, "n_unmatched": 1,
            "n_unmatched_on_rejected": 0, "tune_false_per_image": 0.1,
            "test_false_per_image": 0.2, "test_F1_max": 0.5, "test_F1_max_thresh": 0.5,
            "test_equal_CP_value": 0.5, "giant_thresh": float("nan")}
    rows = [base, {**base, "method": "b", "giant_thresh": 0.3, "n_target_flagged_xfit_sel": 4}]
    paths = write_table(rows, tmp_path)
    read = list(csv.DictReader(open(paths["csv"])))
    assert [r["method"] for r in read] == ["a", "b"]
    assert read[0]["n_target_flagged_xfit_sel"] == "" and read[1]["n_target_flagged_xfit_sel"] == "4"


def test_giant_catalogue_score_threshold(monkeypatch):
    """The giant catalogue's own score threshold: flagged detections (and those on a
    catalogued clump) counted at each grid threshold; the lowest threshold at which enough of
    the flagged ones lie on a catalogued clump, counts summed over tuning runs."""
    import pandas as pd
    from detectron2.structures import BoxMode

    from clump_d2.evaluation.clump_evaluation import IgnoreRule
    from clump_d2.evaluation.matching import MatchCriterion
    from clump_d2.studies import realdata

    def ann(x, y, frac):
        return {"bbox": [x - 5, y - 5, 10, 10], "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": 0, "flux_frac_u": frac}

    record = {"image_id": 1, "width": 100, "height": 100, "psf_fwhm_px": 4.0,
              "file_name": "unused.jpg",
              "annotations": [ann(20, 20, 0.05), ann(80, 20, 0.05), ann(80, 80, 0.005)]}
    # (x, y, score, display ratio): on a clump flagged; on a clump flagged; on nothing
    # flagged; on the faint clump not flagged (3 % flag)
    dets = [(20, 20, 0.9, 0.04), (80, 20, 0.3, 0.04), (45, 85, 0.4, 0.05), (80, 80, 0.6, 0.01)]
    ratio_at = {(float(x), float(y)): r for x, y, _, r in dets}
    monkeypatch.setattr(realdata, "record_photometry_image", lambda rec, o: None)
    monkeypatch.setattr(realdata, "measure_image", lambda image, xy, fwhm, centre, o:
                        pd.DataFrame({"giant_band": ["B (display)"] * len(xy),
                                      "flux_ratio_B": [ratio_at[(float(x), float(y))]
                                                       for x, y in xy]}))
    pred = {"image_id": 1, "scores": np.array([d[2] for d in dets]),
            "boxes": np.array([[x - 5.0, y - 5, x + 5, y + 5] for x, y, _, _ in dets]),
            "classes": np.zeros(4, int)}
    target = realdata.GiantTarget(flag_pcts=(3.0,))
    counts = realdata.flagged_counts_by_threshold(
        [pred], [record], (0.2, 0.5, 0.8), MatchCriterion("iou"),
        IgnoreRule({"flux_frac_u": 0.03}), target, "3")
    assert counts == {0.2: (3, 2), 0.5: (1, 1), 0.8: (1, 1)}
    assert realdata.giant_score_threshold([counts], 0.8) == 0.5
    assert realdata.giant_score_threshold([counts], 0.6) == 0.2
    other = {0.2: (1, 1), 0.5: (0, 0), 0.8: (0, 0)}  # a second tuning run: 3 of 4 at 0.2
    assert realdata.giant_score_threshold([counts, other], 0.75) == 0.2
    assert realdata.giant_score_threshold([counts, other], 0.8) == 0.5
    assert realdata.giant_score_threshold([{0.5: (2, 1)}], 0.8) is None
    # the reported counts at the chosen threshold are giant_target's
    at = realdata.giant_target([pred], [record], 0.5, MatchCriterion("iou"),
                               IgnoreRule({"flux_frac_u": 0.03}), target)
    assert (at["n_target_flagged_3"], at["n_target_flagged_on_catalogue_3"]) == counts[0.5]
    # With the target clumps detected-and-flagged too, at every (score, flag) pair; the two
    # 5 % clumps are the targets (the faint one is not).
    full = realdata.target_counts_by_threshold(
        [pred], [record], (0.2, 0.5, 0.8), (3.0, 1.0, 4.5), MatchCriterion("iou"),
        IgnoreRule({"flux_frac_u": 0.03}))
    assert full[(0.2, 3.0)] == (2, 3, 2) and full[(0.5, 3.0)] == (1, 1, 1)
    assert full[(0.2, 1.0)] == (2, 4, 3) and full[(0.8, 1.0)] == (1, 1, 1)
    assert full[(0.2, 4.5)] == (0, 1, 0)  # only the detection on nothing reads >= 4.5 %
    for t in (0.2, 0.5, 0.8):
        at = realdata.giant_target([pred], [record], t, MatchCriterion("iou"),
                                   IgnoreRule({"flux_frac_u": 0.03}),
                                   realdata.GiantTarget(flag_pcts=(3.0, 1.0)))
        for pc, k in ((3.0, "3"), (1.0, "1")):
            assert full[(t, pc)] == (at[f"n_target_found_flagged_{k}"], at[f"n_target_flagged_{k}"],
                                     at[f"n_target_flagged_on_catalogue_{k}"])
    # The ceiling: most targets found and flagged at purity >= the bound, ties to purity.
    assert realdata.giant_ceiling(full, 0.6) == ((0.2, 1.0), (2, 4, 3))  # 0.75 > 2 / 3
    assert realdata.giant_ceiling(full, 0.8) == ((0.5, 1.0), (1, 2, 2))  # ties: lowest
    assert realdata.giant_ceiling({(0.5, 1.0): (1, 2, 1)}, 0.8) is None


def test_calibrated_flag_is_the_largest_threshold_keeping_the_recall(monkeypatch):
    """The cross-fitted flag: measured at the catalogue positions of the kept clumps only
    (faint and central ones are not counted), the largest ratio flagging >= recall of them;
    an unmeasurable clump counts as unflagged; a named flag is counted like a fixed one."""
    import pandas as pd
    from detectron2.structures import BoxMode

    from clump_d2.evaluation.clump_evaluation import IgnoreRule
    from clump_d2.evaluation.matching import MatchCriterion
    from clump_d2.studies import realdata

    def ann(x, y, frac):
        return {"bbox": [x - 5, y - 5, 10, 10], "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": 0, "flux_frac_u": frac}

    record = {"image_id": 1, "width": 100, "height": 100, "psf_fwhm_px": 4.0,
              "file_name": "unused.jpg",
              "annotations": [ann(20, 20, 0.05), ann(80, 20, 0.04), ann(20, 80, 0.10),
                              ann(80, 80, 0.005),  # faint: not counted
                              ann(50, 51, 0.2)]}  # central: not counted
    by_x = {20.0: 0.02, 80.0: 0.01}  # ratio by clump x; (20, 80) is NaN below
    seen = []

    def fake_measure(image, xy, fwhm, centre, o):
        seen.append(np.asarray(xy).copy())
        r = [np.nan if (x, y) == (20, 80) else by_x.get(float(x), 0.3) for x, y in xy]
        return pd.DataFrame({"giant_band": ["B (display)"] * len(xy), "flux_ratio_B": r})

    monkeypatch.setattr(realdata, "record_photometry_image", lambda rec, o: None)
    monkeypatch.setattr(realdata, "measure_image", fake_measure)
    rule = IgnoreRule({"flux_frac_u": 0.03}, centre_fwhm=1.0)
    # kept ratios: 0.02, 0.01, NaN -> recall 1/3: 2 %; 2/3: 1 %; 1: nothing positive -> 0
    assert realdata.calibrated_flag_pct([record], rule, 0.3) == pytest.approx(2.0)
    assert realdata.calibrated_flag_pct([record], rule, 0.6) == pytest.approx(1.0)
    assert realdata.calibrated_flag_pct([record], rule, 1.0) == 0.0
    assert len(seen[0]) == 5  # every clump measured together (each masks the others)
    with pytest.raises(ValueError, match="no catalogue clump"):
        realdata.calibrated_flag_pct([record], IgnoreRule({"flux_frac_u": 0.5}), 0.9)
    with pytest.raises(ValueError, match="recall"):
        realdata.calibrated_flag_pct([record], rule, 0.0)

    target = realdata.GiantTarget(flag_pcts=(3.0,), named_flags={realdata.CALIBRATED_FLAG: 1.5})
    assert target.flags() == [("3", 3.0), ("xfit", 1.5)]
    boxes = np.array([[15.0, 15, 25, 25], [75, 15, 85, 25]])  # on the two measured clumps
    pred = {"image_id": 1, "boxes": boxes, "scores": np.array([0.9, 0.9]),
            "classes": np.zeros(2, int)}
    out = realdata.giant_target([pred], [record], 0.5, MatchCriterion("iou"), rule, target)
    # ratios 0.02 and 0.01: the 1.5 % flag takes the first, the 3 % flag neither
    assert out["n_target_found_flagged_xfit"] == 1 and out["n_target_flagged_xfit"] == 1
    assert out["n_target_found_flagged_3"] == 0 and out["n_target_clumps"] == 3


def test_paper_definition_table_on_real_galaxies(tiny_gzh, tmp_path):
    """Baseline at the paper's definition on the tiny subset, both folds: n_true of each fold
    is the direct count of its off-centre clumps with u-band fraction >= the limit, the
    others are ignored; the pooled row sums the folds; the table is written."""
    from detectron2.data import DatasetCatalog

    from clump_d2.evaluation.clump_evaluation import IgnoreRule
    from clump_d2.studies.realdata import (
        GIANT_SCORE_GRID,
        GiantTarget,
        calibrated_flag_pct,
        evaluate_paper_definition,
    )

    out, paths = tiny_gzh
    rows = evaluate_paper_definition([Method("classical_baseline", kind="baseline")],
                                     "gzhtiny", tmp_path / "paper",
                                     "configs/RealData/sim_catalogue_r18.yaml", limits=(0.01,),
                                     target=GiantTarget(flag_pcts=(3.0,),
                                                        calibrate_recall=0.9,
                                                        select_purity=0.5,
                                                        ceiling_purity=0.5))
    data = json.loads((tmp_path / "paper" / "paper_eval.json").read_text())
    expected_true, expected_all = 0, 0
    for split in ("train", "test"):
        coco = json.loads(paths[split].read_text())
        ims = {im["id"]: im for im in coco["images"]}
        n = 0
        for a in coco["annotations"]:
            x, y, w, h = a["bbox"]
            im = ims[a["image_id"]]
            off = np.hypot(x + w / 2 - im["centre_x"], y + h / 2 - im["centre_y"]) \
                > a["psf_fwhm_px"]
            n += bool(off and a["flux_frac_u"] >= 0.01)
        fold = next(f for f in data["folds"] if f["test"] == f"gzhtiny_{split}")
        assert fold["n_true"] == n and fold["n_target_clumps"] == n
        assert fold["n_ignored"] == len(coco["annotations"]) - n
        expected_true += n
        expected_all += len(coco["annotations"])
    assert len(rows) == 1 and rows[0]["flux_limit"] == 0.01
    assert rows[0]["n_true"] == expected_true > 0
    assert rows[0]["n_ignored"] == expected_all - expected_true
    md = (tmp_path / "paper" / "paper_eval.md").read_text()
    assert "| 0.01 | classical_baseline |" in md and "train→test" in md
    # The cross-fitted flag of each fold is the one chosen on its tuning split.
    for tune, test in (("train", "test"), ("test", "train")):
        fold = next(f for f in data["folds"] if f["test"] == f"gzhtiny_{test}")
        rule = IgnoreRule({"flux_frac_u": 0.01}, centre_fwhm=1.0)
        assert fold["flag_pct_xfit"] == pytest.approx(calibrated_flag_pct(
            DatasetCatalog.get(f"gzhtiny_{tune}"), rule, 0.9))
        assert 0 <= fold["flag_pct_xfit"] < 100
        assert fold["n_target_flagged_xfit"] >= fold["n_target_found_flagged_xfit"]
    assert "flag chosen on the other fold" in md and "flag >= " in md
    # The giant catalogue: a score threshold per fold from the grid (or none qualified), and
    # at it no more flagged-and-found than flagged, nor than target clumps.
    assert "giant catalogue: its score threshold" in md and "score >= " in md
    assert "Giant target counted on the detector's raw output" in md
    # The joint giant catalogue: its pair is the tuning split's ceiling (recounted here on
    # the tuning split's own predictions, as the baseline scores itself), and its counts are
    # giant_target's on the test split at that pair.
    assert "giant catalogue: score and flag chosen together on the other fold" in md
    from clump_d2.evaluation.matching import MatchCriterion as _MC
    from clump_d2.studies import realdata as _R
    for tune, test in (("train", "test"), ("test", "train")):
        fold = next(f for f in data["folds"] if f["test"] == f"gzhtiny_{test}")
        t, pct = fold["score_thresh_joint"], fold["flag_pct_joint"]
        if t is None:
            assert fold["n_target_flagged_joint"] == 0
            continue
        rule = IgnoreRule({"flux_frac_u": 0.01}, centre_fwhm=1.0)
        at = _R.giant_target(_baseline_predictions(f"gzhtiny_{test}"),
                             DatasetCatalog.get(f"gzhtiny_{test}"), t, _MC("iou"), rule,
                             GiantTarget(flag_pcts=(pct,)))
        k = _R._pct_key(pct)
        assert fold["n_target_found_flagged_joint"] == at[f"n_target_found_flagged_{k}"]
        assert fold["n_target_flagged_joint"] == at[f"n_target_flagged_{k}"]
    # The ceiling, chosen on each test fold itself: the best pair of the test fold's own
    # counts at every (score, flag) pair searched (the 3 % flag and the fold's
    # cross-fitted one among them), recounted here from the baseline's predictions.
    assert "ceiling: the best score and flag chosen on the test fold itself" in md
    n_defined = 0
    for test in ("train", "test"):
        fold = next(f for f in data["folds"] if f["test"] == f"gzhtiny_{test}")
        target = GiantTarget(flag_pcts=(3.0,), named_flags={"xfit": fold["flag_pct_xfit"]})
        counts = _R.target_counts_by_threshold(
            _baseline_predictions(f"gzhtiny_{test}"), DatasetCatalog.get(f"gzhtiny_{test}"),
            GIANT_SCORE_GRID, _R._pair_search_pcts(target), _MC("iou"),
            IgnoreRule({"flux_frac_u": 0.01}, centre_fwhm=1.0))
        assert 3.0 in _R._pair_search_pcts(target)
        best = _R.giant_ceiling(counts, 0.5)
        got = tuple(fold[f"n_target_{k}_ceiling"] for k in
                    ("found_flagged", "flagged", "flagged_on_catalogue"))
        if best is None:
            assert fold["score_thresh_ceiling"] is None and got == (0, 0, 0)
            continue
        n_defined += 1
        assert (fold["score_thresh_ceiling"], fold["flag_pct_ceiling"]) == pytest.approx(best[0])
        assert got == best[1] and got[2] >= 0.5 * got[1]
        # no pair of these counts at the purity bound finds more
        assert all(c[0] <= got[0] for c in counts.values() if c[1] and c[2] >= 0.5 * c[1])
    assert n_defined >= 1
    for fold in data["folds"]:
        t = fold["giant_thresh"]
        if t is None:  # NaN in JSON: no threshold qualified on the tuning split
            continue
        assert t in GIANT_SCORE_GRID
        assert fold["n_target_found_flagged_xfit_sel"] <= min(
            fold["n_target_flagged_xfit_sel"], fold["n_target_clumps"])
        assert fold["n_target_flagged_on_catalogue_xfit_sel"] <= fold["n_target_flagged_xfit_sel"]


def _baseline_predictions(dataset):
    """The classical baseline's predictions on a registered dataset, as the paper step makes
    them (same config as test_paper_definition_table_on_real_galaxies)."""
    from clump_d2.studies import realdata as R

    m = Method("classical_baseline", kind="baseline")
    cfg = R._cfg_for(m, "configs/RealData/sim_catalogue_r18.yaml")
    return R._run(m, cfg, dataset, None)["predictions"]


def test_fold_method_fills_the_fold_into_weights_and_threshold_sources():
    from clump_d2.studies.realdata import fold_method, paper_opts

    m = Method("ft", weights="out/ft_on_{tune}/model_final.pth", opts=["A", "1"],
               threshold_from=[("out/xfit/{tune}_a.pth", "gzh_s82c_{tune}_b")])
    f = fold_method(m, "test", "train", paper_opts(0.03))
    assert f.weights == "out/ft_on_test/model_final.pth"
    assert f.threshold_from == [("out/xfit/test_a.pth", "gzh_s82c_test_b")]
    assert f.opts == ["A", "1", "TEST.CLUMP_EVAL.IGNORE_BELOW", "['flux_frac_u:0.03']",
                      "TEST.CLUMP_EVAL.IGNORE_CENTRE_FWHM", "1.0"]
    assert m.weights.endswith("{tune}/model_final.pth")  # the template is left alone


def test_catalogue_predictions_post_process_as_the_catalogue():
    """The giant target's catalogue view: duplicates within a PSF FWHM merged into the
    higher-scored one, the detection on the galaxy centre dropped with DROP_BULGE (the
    record's centre and FWHM, not the image centre), no score cut, other images untouched
    in number."""
    from clump_d2.inference.postprocess import PostProcessConfig
    from clump_d2.studies.realdata import catalogue_predictions

    def box(cx, cy, side=10.0):
        return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]

    records = [{"image_id": 1, "width": 100, "height": 100, "centre_x": 30.0,
                "centre_y": 40.0, "psf_fwhm_px": 4.0},
               {"image_id": 2, "width": 100, "height": 100, "psf_fwhm_px": 4.0}]
    preds = [{"image_id": 1, "boxes": np.array([box(31, 41), box(70, 70), box(72, 71),
                                                box(10, 80)]),
              "scores": np.array([0.9, 0.5, 0.7, 0.06]), "classes": np.zeros(4, int)},
             {"image_id": 2, "boxes": np.array([box(31, 41), box(50, 50)]),
              "scores": np.array([0.4, 0.3])}]
    out = catalogue_predictions(preds, records, PostProcessConfig(
        score_thresh=0.5, nms_thresh=0.5, merge_fwhm=1.0, bulge_fwhm=1.0, drop_bulge=True))
    # Image 1: centre (31, 41) dropped; (70, 70) merged into (72, 71) (0.7 > 0.5); the 0.06
    # detection kept (no score cut).
    assert out[0]["image_id"] == 1
    np.testing.assert_allclose(out[0]["scores"], [0.7, 0.06])
    np.testing.assert_allclose(out[0]["boxes"], [box(72, 71), box(10, 80)])
    # Image 2 has no centre_x: the image centre (50, 50) is the bulge.
    np.testing.assert_allclose(out[1]["scores"], [0.4])
    # Without NMS, merging and the bulge rule nothing is dropped; NMS alone removes the
    # duplicate (IoU 0.56 > 0.5).
    kept = catalogue_predictions(preds, records, PostProcessConfig(
        nms_thresh=0.0, merge_fwhm=0.0, bulge_fwhm=1.0, drop_bulge=False))
    assert [len(p["scores"]) for p in kept] == [4, 2]
    nms = catalogue_predictions(preds, records, PostProcessConfig(
        nms_thresh=0.5, merge_fwhm=0.0, bulge_fwhm=1.0, drop_bulge=False))
    np.testing.assert_allclose(nms[0]["scores"], [0.9, 0.7, 0.06])
