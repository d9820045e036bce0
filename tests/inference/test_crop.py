"""INFERENCE.CENTRE_CROP: the catalogue searches the central part of each image, read from the
header; boxes, sky positions and the recorded crop corner agree with the whole image."""
import json

import numpy as np
import pandas as pd
from PIL import Image

from clump_d2.inference.catalogue import read_table
from clump_d2.inference.crop import centre_crop, declared_size, with_centre_crops
from clump_d2.inference.inputs import load_records
from clump_d2.inference.predict import run_catalogue


def test_centre_crop_geometry():
    assert centre_crop(424, 424, 200) == [112, 112, 200, 200]
    assert centre_crop(425, 301, 200) == [112, 50, 200, 200]  # odd margin: extra px right
    assert centre_crop(200, 424, 200) is None  # not larger on both sides: whole image
    assert centre_crop(424, 424, 0) is None


def test_with_centre_crops_reads_headers_and_keeps_own_crops(tmp_path):
    Image.new("RGB", (120, 90)).save(tmp_path / "a.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    records = [{"galaxy_id": "a", "file_name": str(tmp_path / "a.png")},
               {"galaxy_id": "own", "file_name": str(tmp_path / "a.png"), "crop": [0, 0, 50, 50]},
               {"galaxy_id": "broken", "file_name": str(tmp_path / "broken.png")}]
    assert declared_size(records[0]) == (120, 90)
    out = with_centre_crops(records, 64)
    assert out[0]["crop"] == [28, 13, 64, 64]
    assert out[1]["crop"] == [0, 0, 50, 50]
    assert "crop" not in out[2]  # left for the mapper to report as unreadable
    assert "crop" not in records[0]  # the input records are not changed
    assert with_centre_crops(records, 0) == records


def test_catalogue_searches_the_centre_and_reports_the_corner(tiny_synthetic, inference_cfg,
                                                              oracle, coco_truth, tmp_path):
    json_file = tiny_synthetic / "annotations" / "val.json"
    coco = json.loads(json_file.read_text())
    truth = {}
    for gid, (b, c) in coco_truth(json_file).items():  # the clumps inside the central 64 px
        b = np.asarray(b, float).reshape(-1, 4)
        inside = (b[:, :2] >= 16).all(1) & (b[:, 2:] <= 80).all(1)
        truth[gid] = (b[inside], np.asarray(c)[inside])
    # the oracle answers in the frame it is given: shift the true boxes into the crop
    shifted = {gid: (b - 16, c) for gid, (b, c) in truth.items()}
    rows = [{"galaxy_id": im["id"], "file_name": f"images/{im['file_name']}",
             "ra": 150.0, "dec": 2.0, "pixel_scale": 0.4} for im in coco["images"]]
    csv = tiny_synthetic / "galaxies_crop.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    model = oracle(shifted)
    cfg = inference_cfg("TEST.CLUMP_EVAL.SCORE_THRESH", "0.0", "INFERENCE.CENTRE_CROP", "64",
                        "PHOTOMETRY.ENABLED", "False", "INFERENCE.MERGE_FWHM", "0.0",
                        "INFERENCE.NMS_THRESH", "1.0")
    full = run_catalogue(inference_cfg("TEST.CLUMP_EVAL.SCORE_THRESH", "0.0",
                                       "PHOTOMETRY.ENABLED", "False", "INFERENCE.MERGE_FWHM",
                                       "0.0", "INFERENCE.NMS_THRESH", "1.0"),
                         load_records(csv), tmp_path / "full.parquet", model=oracle(truth),
                         model_tag="oracle-full", progress=False)
    result = run_catalogue(cfg, load_records(csv), tmp_path / "crop.parquet", model=model,
                           model_tag="oracle", progress=False)
    assert full.complete and result.complete
    assert all(r["crop"] == [16, 16, 64, 64] for r in result.records)
    cat, ref = read_table(tmp_path / "crop.parquet"), read_table(tmp_path / "full.parquet")
    assert (cat["crop_x0"] == 16).all() and (cat["crop_y0"] == 16).all()
    assert (ref["crop_x0"] == 0).all()
    # the model saw 64 x 64 images (the oracle asserts the input matches height / width)
    assert set(model.seen) == {str(im["id"]) for im in coco["images"]}
    clumps, ref_clumps = cat[cat["clump_id"] > 0], ref[ref["clump_id"] > 0]
    assert len(clumps) == len(ref_clumps) > 0
    # the same clumps: in the whole image at x + crop_x0, and at the same place on the sky
    np.testing.assert_allclose(np.sort(clumps["x"] + clumps["crop_x0"]),
                               np.sort(ref_clumps["x"]), atol=1e-9)
    np.testing.assert_allclose(np.sort(clumps["ra"]), np.sort(ref_clumps["ra"]), atol=1e-10)
    np.testing.assert_allclose(np.sort(clumps["dec"]), np.sort(ref_clumps["dec"]), atol=1e-10)
