"""tools/visualize.py logic: the drawn instances (box patches of Detectron2's VisImage), the
panel and contact-sheet sizes, the worst-galaxy selection, the three prediction sources, and
FITS display. Predictions are written by hand (a catalogue / COCO results with known boxes),
except in the model test (tiny random Faster R-CNN: plumbing only)."""
import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

REPO = Path(__file__).resolve().parents[2]

from clump_d2.inference.catalogue import galaxy_rows, rows_to_frame, write_table
from clump_d2.inference.postprocess import Detections
from clump_d2.inference.visualize import (
    GAP,
    GIANT_MATCHED_COLOUR,
    GIANT_UNMATCHED_COLOUR,
    MATCHED_COLOUR,
    TITLE_HEIGHT,
    UNMATCHED_COLOUR,
    count_boxes,
    display_image,
    predictions_from_catalogue,
    visualize_dataset,
)


def _records():
    from detectron2.data import DatasetCatalog

    return DatasetCatalog.get("tinysim_val")


def _truth(record):
    from detectron2.structures import BoxMode

    return np.array([BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                     for a in record["annotations"]]).reshape(-1, 4)


def _catalogue(tmp_path, records, drop_first_of=None, extra_fp_on=None):
    """Perfect predictions (the true boxes), minus the first clump of one galaxy, plus two
    false positives on another."""
    rows = []
    for r in records:
        boxes = _truth(r)
        classes = [a["category_id"] for a in r["annotations"]]
        if r["image_id"] == drop_first_of:
            boxes, classes = boxes[1:], classes[1:]
        if r["image_id"] == extra_fp_on:
            boxes = np.vstack([boxes, [[1, 1, 9, 9], [80, 80, 90, 90]]])
            classes = list(classes) + [0, 1]
        det = Detections(boxes, 0.9 - 0.01 * np.arange(len(boxes)), classes)
        record = {"galaxy_id": str(r["image_id"]), "file_name": r["file_name"], "width": 96,
                  "height": 96}
        rows += galaxy_rows(record, "ok" if len(det) else "no_clumps", det,
                            ["clump", "odd_clump"])
    path = tmp_path / "clumps.parquet"
    write_table(rows_to_frame(rows), path)
    return path


def _clumpy(records, k=0):
    return [r for r in records if len(r["annotations"]) >= 2][k]


def test_panels_draw_every_box_and_have_the_right_size(tiny_synthetic, inference_cfg, tmp_path):
    records = _records()
    missed_on = _clumpy(records, 0)["image_id"]
    fp_on = _clumpy(records, 1)["image_id"]
    cat = _catalogue(tmp_path, records, drop_first_of=missed_on, extra_fp_on=fp_on)
    cfg = inference_cfg()
    out = visualize_dataset(cfg, "tinysim_val", tmp_path / "vis", predictions=str(cat),
                            select="worst-missed", num=3, scale=2.0)
    panels = out["panels"]
    assert len(panels) == 3 and panels[0].galaxy_id == str(missed_on)
    p = panels[0]
    n_true = len(_truth(_clumpy(records, 0)))
    assert (p.n_true, p.n_det, p.n_matched, p.n_missed) == (n_true, n_true - 1, n_true - 1, 1)
    # the Visualizer drew one rectangle per instance on each side
    assert count_boxes(p.truth_vis) == n_true and count_boxes(p.pred_vis) == n_true - 1
    assert all(label.startswith(("clump ", "odd_clump ")) and label.endswith("%")
               for label in p.labels["predictions"])
    assert set(p.labels["truth"]) <= {"clump", "odd_clump"}
    png = Image.open(out["files"][0])
    assert png.size == (2 * 96 * 2 + GAP, TITLE_HEIGHT + 96 * 2) and png.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(png), p.image)
    # the contact sheet: 3 panels on a 2 x 2 grid with 6 px padding
    sheet = Image.open(out["contact_sheet"])
    assert sheet.size == (2 * png.size[0] + 3 * 6, 2 * png.size[1] + 3 * 6)

    worst_fp = visualize_dataset(cfg, "tinysim_val", tmp_path / "vis_fp", predictions=str(cat),
                                 select="worst-fp", num=1)["panels"][0]
    assert worst_fp.galaxy_id == str(fp_on) and worst_fp.n_false == 2
    assert count_boxes(worst_fp.pred_vis) == worst_fp.n_true + 2


def test_coco_results_and_chosen_ids(tiny_synthetic, inference_cfg, tmp_path):
    records = _records()
    r = _clumpy(records, 0)
    boxes = _truth(r)
    results = [{"image_id": r["image_id"], "category_id": 1, "score": s,
                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
               for b, s in zip(boxes, np.linspace(0.9, 0.2, len(boxes)))]
    path = tmp_path / "coco_instances_results.json"
    path.write_text(json.dumps(results))
    cfg = inference_cfg("TEST.CLUMP_EVAL.SCORE_THRESH", "0.5")
    out = visualize_dataset(cfg, "tinysim_val", tmp_path / "vis", predictions=str(path),
                            select="ids", ids=[r["image_id"]], scale=1.0)
    p = out["panels"][0]
    n_kept = int((np.linspace(0.9, 0.2, len(boxes)) >= 0.5).sum())
    assert count_boxes(p.pred_vis) == n_kept == p.n_matched
    assert Image.open(out["files"][0]).size == (2 * 96 + GAP, TITLE_HEIGHT + 96)
    with pytest.raises(ValueError, match="not in the dataset"):
        visualize_dataset(cfg, "tinysim_val", tmp_path / "v2", predictions=str(path),
                          select="ids", ids=[123])


def test_tool_with_a_model_random_sample(tiny_synthetic, tiny_weights, tiny_model_opts,
                                         tmp_path, load_tool):
    """tools/visualize.py's body with the tiny random model (plumbing, not accuracy)."""
    visualize_main = load_tool("visualize").main

    argv = ["--config-file", str(REPO / "configs" / "quickstart.yaml"),
            "--dataset", "tinysim_val", "--select", "random", "--num", "2", "--seed", "1",
            "--output-dir", str(tmp_path / "vis"), "--scale", "1.5",
            *tiny_model_opts(tmp_path), "MODEL.WEIGHTS", str(tiny_weights),
            "TEST.CLUMP_EVAL.SCORE_THRESH", "0.3"]
    out = visualize_main(argv)
    assert len(out["panels"]) == 2 and len(out["files"]) == 2
    for p, f in zip(out["panels"], out["files"]):
        assert count_boxes(p.pred_vis) == p.n_det and count_boxes(p.truth_vis) == p.n_true
        assert Image.open(f).size == (2 * 144 + GAP, TITLE_HEIGHT + 144)
    again = visualize_main(argv)  # the same seed draws the same galaxies
    assert [p.galaxy_id for p in again["panels"]] == [p.galaxy_id for p in out["panels"]]


def test_model_pictures_count_what_the_evaluator_counts(tiny_synthetic, tiny_weights,
                                                        inference_cfg, tmp_path):
    """With a model, each panel's true / detected / matched counts are the evaluator's for
    that galaxy (same raw detections at the operating point, same matching), and the boxes
    drawn are the detections counted."""
    from detectron2.data import DatasetCatalog

    from clump_d2.engine import build_model_for_inference, evaluate_on_dataset
    from clump_d2.evaluation import ClumpEvaluator

    # A generous distance rule, so that the random tiny model matches some clumps.
    cfg = inference_cfg("MODEL.WEIGHTS", str(tiny_weights),
                        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
                        "TEST.CLUMP_EVAL.SCORE_THRESH", "0.3", "TEST.CLUMP_EVAL.MATCH", "distance",
                        "TEST.CLUMP_EVAL.DISTANCE_FACTOR", "4.0", "TEST.IMS_PER_BATCH", "4")
    model = build_model_for_inference(cfg)
    evaluator = ClumpEvaluator(cfg, "tinysim_val", distributed=False)
    results = evaluate_on_dataset(cfg, model, "tinysim_val", evaluators=[evaluator])
    expected = evaluator.image_counts(evaluator.predictions, DatasetCatalog.get("tinysim_val"))
    totals = results["clumps"]
    assert sum(c["n_matched"] for c in expected.values()) == totals["n_matched"]
    assert sum(c["n_detections"] for c in expected.values()) == totals["n_detections"]
    assert 0 < totals["n_matched"] < totals["n_detections"]  # not a trivial case

    out = visualize_dataset(cfg, "tinysim_val", tmp_path / "vis", select="worst-missed",
                            num=len(expected), scale=1.0, model=model)
    got = {p.galaxy_id: {"n_true": p.n_true, "n_detections": p.n_det, "n_matched": p.n_matched}
           for p in out["panels"]}
    assert got == {str(k): v for k, v in expected.items()}
    for p in out["panels"]:
        assert count_boxes(p.pred_vis) == p.n_det and count_boxes(p.truth_vis) == p.n_true
        assert all(float(label.split()[-1].rstrip("%")) >= 30 for label in p.labels["predictions"])
    missed = [p.n_missed for p in out["panels"]]
    assert missed == sorted(missed, reverse=True)  # worst-missed first


def test_fits_is_shown_through_a_display_stretch(tmp_path):
    rng = np.random.default_rng(0)
    cube = rng.normal(0, 1, (3, 40, 50)).astype(np.float32)
    cube[:, 20, 25] += 500.0  # a bright point
    cube[0, 0, 0] = np.nan  # masked pixel
    header = fits.Header()
    for b, name in enumerate("gri", start=1):
        header[f"BAND{b}"] = name
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(cube, header=header).writeto(path)
    image = display_image({"file_name": str(path)})
    assert image.dtype == np.uint8 and image.shape == (40, 50, 3)
    assert image[20, 25].min() > np.median(image)  # the bright point is bright
    # reddest band shown as red: brighten i only -> more red than blue there
    cube[2, 5, 5] += 800.0
    fits.PrimaryHDU(cube, header=header).writeto(path, overwrite=True)
    image = display_image({"file_name": str(path)})
    assert int(image[5, 5, 0]) > int(image[5, 5, 2])


def test_catalogue_giants_are_drawn_in_their_own_colours(tiny_synthetic, inference_cfg,
                                                         tmp_path):
    """A catalogue with giant flags: on the galaxy with two false positives, its first true
    clump and one false positive are flagged giant (3 %), the clump also at 8 %; the panel
    draws them blue / orange, labelled giant, the rest green / red."""
    import pandas as pd

    records = _records()
    fp_on = _clumpy(records, 1)
    rows = []
    for r in records:
        boxes = _truth(r)
        classes = [a["category_id"] for a in r["annotations"]]
        n_true = len(boxes)
        giant3 = np.zeros(n_true, bool)
        giant8 = np.zeros(n_true, bool)
        if r["image_id"] == fp_on["image_id"]:
            boxes = np.vstack([boxes, [[1, 1, 9, 9], [80, 80, 90, 90]]])
            classes = list(classes) + [0, 1]
            giant3 = np.array([True] + [False] * (n_true - 1) + [True, False])
            giant8 = expected8 = np.array([True] + [False] * (n_true + 1))
        det = Detections(boxes, 0.9 - 0.01 * np.arange(len(boxes)), classes)
        phot = pd.DataFrame({"status": ["ok"] * len(det), "is_giant_3pct": giant3,
                             "is_giant_8pct": giant8})
        record = {"galaxy_id": str(r["image_id"]), "file_name": r["file_name"], "width": 96,
                  "height": 96}
        rows += galaxy_rows(record, "ok" if len(det) else "no_clumps", det,
                            ["clump", "odd_clump"], photometry=phot if len(det) else None)
    cat = tmp_path / "clumps.parquet"
    write_table(rows_to_frame(rows), cat)
    panel = visualize_dataset(inference_cfg(), "tinysim_val", tmp_path / "vis",
                              predictions=str(cat), select="worst-fp", num=1)["panels"][0]
    assert panel.galaxy_id == str(fp_on["image_id"]) and panel.n_false == 2
    vis, n_true = panel.pred_vis, panel.n_true
    assert count_boxes(vis, GIANT_MATCHED_COLOUR) == 1
    assert count_boxes(vis, GIANT_UNMATCHED_COLOUR) == 1
    assert count_boxes(vis, MATCHED_COLOUR) == n_true - 1
    assert count_boxes(vis, UNMATCHED_COLOUR) == 1
    assert count_boxes(vis) == n_true + 2
    assert sum(label.endswith(" giant") for label in panel.labels["predictions"]) == 2
    assert count_boxes(panel.truth_vis, MATCHED_COLOUR) == n_true  # truth is never "giant"
    # the 8 % flag on request: only the true clump
    found = predictions_from_catalogue(cat, records, ["clump", "odd_clump"],
                                       giant_flag="is_giant_8pct")
    assert found[str(fp_on["image_id"])].giant.tolist() == expected8.tolist()


def test_ignore_regions_and_detections_on_them_are_neither(tiny_synthetic, tmp_path):
    """As the evaluator: an iscrowd clump (and, by rule, a faint one) is an ignore region;
    a detection on it is drawn grey and counts as neither found nor false."""
    import copy

    from clump_d2.evaluation.clump_evaluation import IgnoreRule
    from clump_d2.evaluation.matching import MatchCriterion
    from clump_d2.inference.visualize import (
        IGNORED_COLOUR,
        GalaxyPredictions,
        draw_galaxy,
        match_counts,
    )

    record = copy.deepcopy(_clumpy(_records()))
    n = len(record["annotations"])
    record["annotations"][0]["iscrowd"] = 1  # a host knot
    boxes = _truth(record)
    # every clump detected, plus nothing else
    pred = GalaxyPredictions(boxes, np.full(n, 0.9), np.zeros(n, np.int64))
    panel = draw_galaxy(record, pred, ["clump", "odd_clump"], MatchCriterion())
    assert (panel.n_true, panel.n_matched, panel.n_false) == (n - 1, n - 1, 0)
    assert count_boxes(panel.truth_vis, IGNORED_COLOUR) == 1
    assert count_boxes(panel.pred_vis, IGNORED_COLOUR) == 1
    assert count_boxes(panel.pred_vis, MATCHED_COLOUR) == n - 1
    gid = str(record["image_id"])
    assert match_counts([record], {gid: pred}, MatchCriterion())[gid] == (0, 0)
    # the rule ignores every clump below an impossible flux fraction: nothing kept, none false
    rule = IgnoreRule({"flux_frac": 10.0})
    assert match_counts([record], {gid: pred}, MatchCriterion(), rule)[gid] == (0, 0)
    # without the detection on the knot: still no false one, no miss
    pred2 = GalaxyPredictions(boxes[1:], np.full(n - 1, 0.9), np.zeros(n - 1, np.int64))
    assert match_counts([record], {gid: pred2}, MatchCriterion())[gid] == (0, 0)


def test_display_refuses_an_image_over_the_pixel_limit(tmp_path):
    from clump_d2.data.image_io import ImageSizeError

    path = tmp_path / "big.png"
    Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(path)
    assert display_image({"file_name": str(path)}, max_pixels=1200).shape == (30, 40, 3)
    with pytest.raises(ImageSizeError, match="big.png"):
        display_image({"file_name": str(path)}, max_pixels=1199)
    cube_path = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.zeros((3, 30, 40), np.float32)).writeto(cube_path)
    with pytest.raises(ImageSizeError, match="cube.fits"):
        display_image({"file_name": str(cube_path)}, max_pixels=1199)
