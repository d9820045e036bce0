"""Galaxy records from the three kinds of input, and one FITS file per band end to end (with
the oracle stub model of conftest.py: the test is about reading and bookkeeping)."""
import json

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from clump_d2.inference.catalogue import read_table
from clump_d2.inference.inputs import CatalogueColumns, load_records
from clump_d2.inference.predict import run_catalogue


def test_folder_coco_and_catalogue_records(tiny_synthetic, tmp_path):
    folder = load_records(tiny_synthetic / "images")
    assert len(folder) == 18 and folder[0]["galaxy_id"] == "train/sim_train_000000"
    assert [r["galaxy_id"] for r in folder] == sorted(r["galaxy_id"] for r in folder)

    json_file = tiny_synthetic / "annotations" / "val.json"
    coco = json.loads(json_file.read_text())
    records = load_records(json_file)
    assert [r["image_id"] for r in records] == [im["id"] for im in coco["images"]]
    first = coco["images"][0]
    assert records[0]["file_name"] == str(tiny_synthetic / "images" / first["file_name"])
    assert records[0]["pixel_scale"] == first["pixel_scale"]
    assert records[0]["height"] == 96 and "psf_fwhm_px" in records[0]

    table = pd.DataFrame({"ObjID": [3, 1], "Image": ["a.png", "/abs/b.png"],
                          "RA": [10.0, np.nan], "DEC": [1.0, 2.0], "scale": [0.5, 0.6]})
    table.to_parquet(tmp_path / "cat.parquet")
    records = load_records(tmp_path / "cat.parquet", columns=CatalogueColumns(
        id="ObjID", image="Image", pixel_scale="scale", pixel_scale_factor=2.0))
    assert [r["galaxy_id"] for r in records] == ["3", "1"]
    assert records[0]["file_name"] == str(tmp_path / "a.png")
    assert records[1]["file_name"] == "/abs/b.png"
    assert records[0]["ra"] == 10.0 and "ra" not in records[1]  # NaN = not given
    assert records[0]["pixel_scale"] == 1.0  # 0.5 x factor 2

    with pytest.raises(ValueError, match="no column 'nope'"):
        load_records(tmp_path / "cat.parquet", columns=CatalogueColumns(id="nope"))
    pd.DataFrame({"id": [1, 1], "file_name": ["a", "b"]}).to_csv(tmp_path / "dup.csv")
    with pytest.raises(ValueError, match="repeats"):
        load_records(tmp_path / "dup.csv")


def test_one_fits_file_per_band(inference_cfg, oracle, tmp_path):
    from clump_d2.sim.synthetic import SyntheticParams, galaxy_rng, render_galaxy
    from clump_d2.structures import clump_box_xywh_in_frame

    gal = render_galaxy(galaxy_rng(3, "test", 0), SyntheticParams(image_size=64,
                                                                  disc_re=(6.0, 12.0),
                                                                  empty_fraction=0.0))
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [12.5, -45.0]
    w.wcs.crpix = [32.5, 32.5]
    w.wcs.cd = [[-0.2 / 3600, 0], [0, 0.2 / 3600]]
    row = {"id": "g1"}
    for b, band in enumerate("gri"):
        path = tmp_path / f"g1_{band}.fits"
        fits.PrimaryHDU(gal.bands[b], header=w.to_header()).writeto(path)
        row[f"file_{band}"] = path.name
    row_bad = {"id": "g2", "file_g": "g1_g.fits", "file_r": "missing_r.fits",
               "file_i": "g1_i.fits"}
    pd.DataFrame([row, row_bad]).to_csv(tmp_path / "cat.csv", index=False)
    records = load_records(tmp_path / "cat.csv", columns=CatalogueColumns(
        band_files={"g": "file_g", "r": "file_r", "i": "file_i"}))
    assert records[0]["band_files"]["r"] == str(tmp_path / "g1_r.fits")
    boxes = np.array([[x, y, x + bw, y + bh] for x, y, bw, bh in
                      (clump_box_xywh_in_frame(c["x"], c["y"], gal.psf_fwhm_px, 64, 64) for c in gal.clumps)])
    cfg = inference_cfg("TEST.CLUMP_EVAL.SCORE_THRESH", "0.0", "INFERENCE.MERGE_FWHM", "0.0",
                        "INFERENCE.NMS_THRESH", "0.0")
    run_catalogue(cfg, records, tmp_path / "clumps.parquet",
                  model=oracle({"g1": (boxes, np.zeros(len(boxes), np.int64))}),
                  model_tag="oracle", progress=False)
    cat = read_table(tmp_path / "clumps.parquet")
    g1 = cat[cat["galaxy_id"] == "g1"]
    assert len(g1) == len(boxes) and (g1["sky_source"] == "wcs").all()
    ra, dec = w.all_pix2world(g1["x"] + 0.5, g1["y"] + 0.5, 1)
    assert np.abs(g1["dec"] - dec).max() < 1e-12 and np.abs(g1["ra"] - ra).max() < 1e-12
    g2 = cat[cat["galaxy_id"] == "g2"]
    assert len(g2) == 1 and g2["galaxy_status"].iloc[0].startswith("unreadable: ")
    assert "missing_r.fits" in g2["galaxy_status"].iloc[0]
