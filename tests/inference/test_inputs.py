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
                      (clump_box_xywh_in_frame(c["x"], c["y"], gal.psf_fwhm_px, 64, 64)
                       for c in gal.clumps)])
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


def test_impossible_sky_values_are_a_per_galaxy_status(tiny_synthetic, inference_cfg, oracle,
                                                         tmp_path):
    """Dec outside [-90, 90], RA outside [0, 360), pixel scale <= 0, text or an empty scale
    beside a given RA/Dec: the galaxy is listed and searched, with status ``bad_sky: <file,
    row, column>`` and no RA/Dec; good rows keep theirs."""
    images = sorted((tiny_synthetic / "images" / "val").glob("*.png"))
    bad = {  # galaxy id -> (ra, dec, pixel scale, what the status must name)
        "dec95": (10.0, 95.0, 0.4, "row 2 (galaxy dec95), column 'dec': dec 95.0 is impossible"),
        "ra_neg": (-5.0, 1.0, 0.4, "row 3 (galaxy ra_neg), column 'ra': ra -5.0"),
        "ra360": (360.0, 1.0, 0.4, "row 4 (galaxy ra360), column 'ra': ra 360.0"),
        "scale0": (10.0, 1.0, 0.0, "row 5 (galaxy scale0), column 'pixel_scale': pixel_scale "
                                   "0.0 is impossible (must be > 0"),
        "scale_nan": (10.0, 1.0, np.nan, "row 6 (galaxy scale_nan), column 'pixel_scale' is "
                                         "empty while 'ra', 'dec' are given"),
    }
    rows = [{"id": "good", "file_name": str(images[0]), "ra": 10.0, "dec": 1.0,
             "pixel_scale": 0.4}]
    rows += [{"id": gid, "file_name": str(images[k + 1]), "ra": ra, "dec": dec,
              "pixel_scale": scale} for k, (gid, (ra, dec, scale, _)) in enumerate(bad.items())]
    table = tmp_path / "cat.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    records = load_records(table)
    assert "sky_problem" not in records[0] and records[0]["dec"] == 1.0
    for record, (gid, (*_, reason)) in zip(records[1:], bad.items()):
        assert record["sky_problem"].startswith(f"catalogue {table} {reason}"), record
        assert not {"ra", "dec", "pixel_scale"} & set(record)

    box = np.array([[40.0, 40.0, 50.0, 50.0]])
    truth = {r["galaxy_id"]: (box, np.zeros(1, np.int64)) for r in records}
    cfg = inference_cfg("TEST.CLUMP_EVAL.SCORE_THRESH", "0.0", "PHOTOMETRY.ENABLED", "False")
    result = run_catalogue(cfg, records, tmp_path / "clumps.csv", model=oracle(truth),
                           model_tag="oracle", progress=False)
    cat = read_table(tmp_path / "clumps.csv").set_index("galaxy_id")
    assert cat.loc["good", "galaxy_status"] == "ok" and cat.loc["good", "sky_source"] != "none"
    assert np.isfinite(cat.loc["good", "dec"])
    for gid, (*_, reason) in bad.items():
        row = cat.loc[gid]
        assert row["galaxy_status"].startswith(f"bad_sky: catalogue {table} {reason}")
        assert row["galaxy_n_clumps"] == 1 and row["x"] == 45.0  # still searched and listed
        assert np.isnan(row["ra"]) and np.isnan(row["dec"]) and row["sky_source"] == "none"
    assert result.summary["bad_sky"] == 5 and result.summary["ok"] == 1

    # text in a sky column is a bad_sky too; in another numeric column, an error naming it
    pd.DataFrame({"id": ["t"], "file_name": [str(images[0])], "ra": ["12h30m"], "dec": [1.0],
                  "pixel_scale": [0.4]}).to_csv(tmp_path / "text.csv", index=False)
    (text,) = load_records(tmp_path / "text.csv")
    assert text["sky_problem"].endswith("row 1 (galaxy t), column 'ra': '12h30m' is not a number")
    pd.DataFrame({"id": ["t"], "file_name": [str(images[0])], "psf_fwhm_px": ["wide"]}).to_csv(
        tmp_path / "psf.csv", index=False)
    with pytest.raises(ValueError, match=r"psf\.csv row 1 \(galaxy t\), column 'psf_fwhm_px': "
                                         r"'wide' is not a number"):
        load_records(tmp_path / "psf.csv")


def test_coco_images_with_impossible_sky_values(tmp_path):
    coco = {"images": [{"id": 7, "file_name": "a.png", "ra": 1.0, "dec": -91.0,
                        "pixel_scale": 0.4},
                       {"id": 8, "file_name": "b.png", "ra": 1.0, "dec": 2.0, "pixel_scale": 0.4}],
            "annotations": [], "categories": []}
    (tmp_path / "c.json").write_text(json.dumps(coco))
    bad, good = load_records(tmp_path / "c.json")
    assert bad["sky_problem"] == (f"{tmp_path / 'c.json'} images[0] (id 7), column 'dec': dec "
                                  "-91.0 is impossible (must be in [-90, 90])")
    assert "dec" not in bad and good["dec"] == 2.0 and "sky_problem" not in good


def test_duplicate_galaxy_ids_in_a_folder_name_both_files(tmp_path):
    from PIL import Image

    (tmp_path / "sub").mkdir()
    for name in ("x.png", "x.jpg", "y.png", "sub/x.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name)
    with pytest.raises(ValueError) as e:
        load_records(tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "x.jpg") in msg and str(tmp_path / "x.png") in msg
    assert "galaxy id 'x'" in msg
    (tmp_path / "x.jpg").unlink()
    assert [r["galaxy_id"] for r in load_records(tmp_path)] == ["sub/x", "x", "y"]


def test_galaxy_ids_round_trip_exactly_and_a_blank_id_names_its_row(tiny_synthetic,
                                                                     inference_cfg, oracle,
                                                                     tmp_path):
    """19-digit SDSS ids and zero-padded ids reach the catalogue (CSV, Parquet) as written;
    an id column with a blank cell is an error naming file, row and column (read as numbers
    it turned float: 1237648720693755918 -> '1.2376487206937559e+18', the blank -> 'None')."""
    images = sorted((tiny_synthetic / "images" / "val").glob("*.png"))
    ids = ["1237648720693755918", "1237648720693755919", "0012345"]
    table = tmp_path / "cat.csv"
    table.write_text("objid,file_name\n" + "".join(f"{i},{images[k]}\n"
                                                   for k, i in enumerate(ids)))
    records = load_records(table)
    assert [r["galaxy_id"] for r in records] == ids
    cfg = inference_cfg("PHOTOMETRY.ENABLED", "False")
    for out in (tmp_path / "clumps.csv", tmp_path / "clumps.parquet"):
        run_catalogue(cfg, records, out, model=oracle({}), model_tag="o", progress=False)
        assert read_table(out)["galaxy_id"].tolist() == ids

    table.write_text("objid,file_name\n" f"{ids[0]},{images[0]}\n" f",{images[1]}\n")
    with pytest.raises(ValueError, match=r"cat\.csv row 2, column 'objid': the galaxy id is "
                                         r"empty"):
        load_records(table)
    # Parquet keeps an integer column with nulls exact too (pandas alone makes it float64)
    pd.DataFrame({"objid": pd.array([int(ids[0]), int(ids[1])], dtype="Int64"),
                  "file_name": [str(images[0]), str(images[1])]}).to_parquet(
        tmp_path / "cat.parquet")
    assert [r["galaxy_id"] for r in load_records(tmp_path / "cat.parquet")] == ids[:2]


def test_truncated_coco_input_names_file_line_column(tmp_path):
    coco = tmp_path / "in.json"
    coco.write_text('{"images": [{"id": 1, "file_name": "a.png"},\n {"id": 2, "file_na')
    with pytest.raises(ValueError) as e:
        load_records(coco)
    assert str(e.value).startswith(f"{coco}: not valid JSON at line 2 column ")
    assert "ends early" in str(e.value)
