"""The clump catalogue: positions in pixels and on the sky, statuses of bad inputs, batching,
shards and resuming, output formats.

Tests about bookkeeping use the *oracle* stub model of conftest.py (it returns the true
boxes); the unreadable-image test runs the real (tiny, randomly initialised) Faster R-CNN.
"""
import json

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from clump_d2.inference.catalogue import COLUMN_NAMES, read_table
from clump_d2.inference.inputs import load_records
from clump_d2.inference.predict import run_catalogue, shard_dir_for, shard_path

FAST = ("TEST.CLUMP_EVAL.SCORE_THRESH", "0.0", "INFERENCE.BATCH_SIZE", "3",
        "INFERENCE.SHARD_SIZE", "4")


def _val(tiny_synthetic):
    json_file = tiny_synthetic / "annotations" / "val.json"
    return json_file, json.loads(json_file.read_text())


def test_positions_in_pixels_and_on_the_sky_centre_scale(tiny_synthetic, inference_cfg, oracle,
                                                          coco_truth, tmp_path):
    """PNG cutouts + a CSV catalogue with RA/Dec of the centre and the pixel scale."""
    json_file, coco = _val(tiny_synthetic)
    truth = coco_truth(json_file)
    rows = []
    for k, im in enumerate(coco["images"]):
        rows.append({"galaxy_id": im["id"], "file_name": f"images/{im['file_name']}",
                     "ra": [150.1, 359.9999, 0.0002, 45.0, 210.0, 12.0][k],
                     "dec": [2.2, -20.0, 0.0, 84.0, -60.0, 33.0][k],
                     "pixel_scale": im["pixel_scale"], "psf_fwhm_px": im["psf_fwhm_px"]})
    table = pd.DataFrame(rows)
    csv = tiny_synthetic / "galaxies.csv"
    table.to_csv(csv, index=False)
    model = oracle(truth)
    cfg = inference_cfg(*FAST)
    result = run_catalogue(cfg, load_records(csv), tmp_path / "clumps.parquet", model=model,
                           model_tag="oracle", progress=False)
    assert result.complete
    cat = read_table(tmp_path / "clumps.parquet")
    assert list(cat.columns[:len(COLUMN_NAMES)]) == COLUMN_NAMES
    assert {"flux_R", "flux_ratio_B", "is_giant_3pct", "is_giant_8pct"} <= set(cat.columns)
    assert max(model.batch_sizes) == 3  # batched through the loader, not one by one

    n_true = sum(len(b) for b, _ in truth.values())
    assert n_true > 0 and (cat["clump_id"] > 0).sum() == n_true
    for row in rows:
        gid = str(row["galaxy_id"])
        boxes, classes = truth[gid]
        g = cat[cat["galaxy_id"] == gid].sort_values("clump_id")
        if len(boxes) == 0:
            assert len(g) == 1 and g["galaxy_status"].iloc[0] == "no_clumps"
            assert g["clump_id"].iloc[0] == 0 and np.isnan(g["ra"].iloc[0])
            continue
        assert (g["galaxy_status"] == "ok").all() and (g["sky_source"] == "centre+scale").all()
        assert g["clump_id"].tolist() == list(range(1, len(boxes) + 1))
        np.testing.assert_allclose(g[["x1", "y1", "x2", "y2"]].to_numpy(), boxes, atol=1e-9)
        np.testing.assert_allclose(g["x"], (boxes[:, 0] + boxes[:, 2]) / 2, atol=1e-9)
        np.testing.assert_allclose(g["y"], (boxes[:, 1] + boxes[:, 3]) / 2, atol=1e-9)
        assert g["class_name"].tolist() == [["clump", "odd_clump"][c] for c in classes]
        # the expected sky position, independently: a FITS TAN WCS, north up, east left,
        # reference pixel the image centre (W/2 continuous = W/2 + 0.5 FITS 1-based)
        s = row["pixel_scale"]
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [row["ra"], row["dec"]]
        w.wcs.crpix = [96 / 2 + 0.5, 96 / 2 + 0.5]
        w.wcs.cd = [[-s / 3600, 0], [0, -s / 3600]]
        ra, dec = w.all_pix2world(g["x"] + 0.5, g["y"] + 0.5, 1)
        d_ra = ((g["ra"] - ra + 180) % 360 - 180) * np.cos(np.radians(dec))
        assert np.abs(d_ra).max() * 3600 < 1e-6 and np.abs(g["dec"] - dec).max() * 3600 < 1e-6

    galaxies = read_table(tmp_path / "clumps_galaxies.parquet")
    assert galaxies["galaxy_id"].tolist() == [str(r["galaxy_id"]) for r in rows]
    assert galaxies["n_clumps"].tolist() == [len(truth[str(r["galaxy_id"])][0]) for r in rows]
    summary = json.loads((tmp_path / "clumps_summary.json").read_text())
    assert summary["galaxies"] == 6 and summary["clumps"] == n_true
    assert summary["ok"] + summary["no_clumps"] == 6 and summary["unreadable"] == 0


def test_fits_cutouts_with_wcs_from_a_fits_catalogue(inference_cfg, oracle, tmp_path):
    """FITS g,r,i cubes written with a rotated TAN WCS, listed in a FITS table with 64-bit ids;
    the clump positions on the sky come from the WCS."""
    from clump_d2.sim.synthetic import SyntheticParams, galaxy_rng, render_galaxy
    from clump_d2.structures import clump_box_xywh_in_frame

    params = SyntheticParams(image_size=64, disc_re=(6.0, 12.0), empty_fraction=0.0)
    ids, paths, truth, wcss = [], [], {}, {}
    for k in range(3):
        gal = render_galaxy(galaxy_rng(7, "test", k), params)
        gid = 1237648720693755918 + k  # SDSS objids do not survive a float64
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [180.0 + k, -1.0 + 10 * k]
        w.wcs.crpix = [20.0, 40.0]
        rot, s = np.radians(25.0 + 40 * k), gal.pixel_scale / 3600
        w.wcs.cd = s * np.array([[-np.cos(rot), np.sin(rot)], [np.sin(rot), np.cos(rot)]])
        header = w.to_header()
        for b, name in enumerate("gri", start=1):
            header[f"BAND{b}"] = name
        path = tmp_path / f"gal_{k}.fits"
        fits.PrimaryHDU(gal.bands, header=header).writeto(path)
        boxes = [clump_box_xywh_in_frame(c["x"], c["y"], gal.psf_fwhm_px, 64, 64) for c in gal.clumps]
        boxes = np.array([[x, y, x + bw, y + bh] for x, y, bw, bh in boxes]).reshape(-1, 4)
        truth[str(gid)] = (boxes, np.array([int(c["odd"]) for c in gal.clumps]))
        ids.append(gid)
        paths.append(path.name)
        wcss[str(gid)] = w
    catalogue = tmp_path / "galaxies.fits"
    Table({"objid": np.array(ids, np.int64), "image": paths}).write(catalogue)
    cfg = inference_cfg(*FAST, "INFERENCE.MERGE_FWHM", "0.0", "INFERENCE.NMS_THRESH", "0.0")
    result = run_catalogue(cfg, load_records(catalogue), tmp_path / "clumps.fits",
                           model=oracle(truth), model_tag="oracle", progress=False)
    assert result.complete
    cat = read_table(tmp_path / "clumps.fits")
    assert sorted(set(cat["galaxy_id"])) == sorted(truth)
    n_checked = 0
    for gid, (boxes, _) in truth.items():
        g = cat[cat["galaxy_id"] == gid].sort_values("clump_id")
        assert (g["sky_source"] == "wcs").all() and len(g) == len(boxes) > 0
        x, y = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        np.testing.assert_allclose(g["x"], x, atol=1e-9)
        np.testing.assert_allclose(g["y"], y, atol=1e-9)
        # continuous pixel (x, y) is FITS 1-based (x + 0.5, y + 0.5)
        ra, dec = wcss[gid].all_pix2world(x + 0.5, y + 0.5, 1)
        assert np.abs((g["ra"] - ra) * np.cos(np.radians(dec))).max() * 3600 < 1e-6
        assert np.abs(g["dec"] - dec).max() * 3600 < 1e-6
        n_checked += len(boxes)
    assert n_checked >= 3


def test_unreadable_images_are_reported_and_the_rest_complete(tiny_synthetic, inference_cfg,
                                                              tiny_weights, tmp_path):
    """Real tiny Faster R-CNN (random weights): plumbing, not accuracy."""
    folder = tmp_path / "images"
    folder.mkdir()
    good = sorted((tiny_synthetic / "images" / "val").glob("*.png"))[:4]
    for p in good:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "corrupt.png").write_bytes(b"this is not a PNG")
    (folder / "truncated.png").write_bytes(good[0].read_bytes()[:200])
    (folder / "empty.fits").write_bytes(b"")
    cfg = inference_cfg(*FAST, "MODEL.WEIGHTS", str(tiny_weights))
    result = run_catalogue(cfg, load_records(folder), tmp_path / "clumps.parquet",
                           progress=False)
    assert result.complete
    galaxies = read_table(tmp_path / "clumps_galaxies.parquet")
    status = dict(zip(galaxies["galaxy_id"], galaxies["galaxy_status"]))
    assert len(status) == 7
    for bad in ("corrupt", "truncated", "empty"):
        assert status[bad].startswith("unreadable: ") and bad in status[bad]
    for p in good:
        assert status[p.stem] in ("ok", "no_clumps")
    assert galaxies.loc[galaxies["galaxy_id"] == "corrupt", "image_width"].isna().all()
    assert (galaxies.loc[galaxies["galaxy_id"] == good[0].stem, "image_width"] == 96).all()
    assert result.summary["unreadable"] == 3 and result.summary["galaxies"] == 7


def test_a_model_failure_fails_only_that_galaxy(tiny_synthetic, inference_cfg, oracle,
                                                coco_truth, tmp_path):
    json_file, coco = _val(tiny_synthetic)
    truth = coco_truth(json_file)
    culprit = str(coco["images"][1]["id"])
    model = oracle(truth, fail_on=[culprit])
    cfg = inference_cfg(*FAST)
    run_catalogue(cfg, load_records(json_file), tmp_path / "c.parquet", model=model,
                  model_tag="oracle-failing", progress=False)
    galaxies = read_table(tmp_path / "c_galaxies.parquet")
    status = dict(zip(galaxies["galaxy_id"], galaxies["galaxy_status"]))
    assert status[culprit] == "failed: RuntimeError: oracle told to fail"
    assert all(s in ("ok", "no_clumps") for g, s in status.items() if g != culprit)
    assert len(status) == 6


def test_a_failure_after_the_model_fails_only_that_galaxy_naming_its_file(
        tiny_synthetic, inference_cfg, oracle, coco_truth, tmp_path, monkeypatch):
    """Whatever breaks while one galaxy's rows are made (here its sky transform) gives that
    galaxy ``failed: <file>: ...``; the other galaxies and the run go on."""
    from clump_d2.inference import predict

    json_file, coco = _val(tiny_synthetic)
    culprit = str(coco["images"][2]["id"])
    real = predict.build_sky_transform

    def breaks_on_culprit(record, *args, **kwargs):
        if record["galaxy_id"] == culprit:
            raise ValueError("no sky for this one")
        return real(record, *args, **kwargs)

    monkeypatch.setattr(predict, "build_sky_transform", breaks_on_culprit)
    result = run_catalogue(inference_cfg(*FAST), load_records(json_file),
                           tmp_path / "c.parquet", model=oracle(coco_truth(json_file)),
                           model_tag="oracle", progress=False)
    assert result.complete
    galaxies = read_table(tmp_path / "c_galaxies.parquet")
    status = dict(zip(galaxies["galaxy_id"], galaxies["galaxy_status"]))
    file_name = tiny_synthetic / "images" / coco["images"][2]["file_name"]
    assert status[culprit] == f"failed: {file_name}: ValueError: no sky for this one"
    assert all(s in ("ok", "no_clumps") for g, s in status.items() if g != culprit)
    assert len(status) == 6 and result.summary["failed"] == 1


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_to_the_same_catalogue(tiny_synthetic, inference_cfg, oracle,
                                                       coco_truth, tmp_path):
    json_file, _ = _val(tiny_synthetic)
    truth = coco_truth(json_file)
    records = load_records(json_file)
    cfg = inference_cfg(*FAST, "INFERENCE.SHARD_SIZE", "2")  # 6 galaxies -> 3 shards
    reference = tmp_path / "ref" / "clumps.parquet"
    run_catalogue(cfg, records, reference, model=oracle(truth), model_tag="o", progress=False)

    out = tmp_path / "run" / "clumps.parquet"

    def stop_after_shard_1(k):
        if k == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_catalogue(cfg, records, out, model=oracle(truth), model_tag="o",
                      on_shard_done=stop_after_shard_1, progress=False)
    shards = shard_dir_for(out)
    assert shard_path(shards, 0).exists() and shard_path(shards, 1).exists()
    assert not shard_path(shards, 2).exists() and not out.exists()
    # a write killed half-way leaves only a temporary file, which is not a shard
    (shards / ".shard_000002.parquet.tmp999").write_bytes(b"half a parquet")

    model = oracle(truth)
    result = run_catalogue(cfg, records, out, model=model, model_tag="o", progress=False)
    assert result.complete
    assert model.seen == [r["galaxy_id"] for r in records[4:]]  # only the missing shard ran
    assert result.summary["shards_done_earlier"] == 2 and result.summary["shards_run"] == 1
    pd.testing.assert_frame_equal(read_table(out), read_table(reference))

    # a finished run re-run does nothing but merge again
    model = oracle(truth)
    run_catalogue(cfg, records, out, model=model, model_tag="o", progress=False)
    assert model.seen == []

    # resuming with another config is refused; --overwrite starts again
    other = inference_cfg(*FAST, "INFERENCE.SHARD_SIZE", "2", "INFERENCE.NMS_THRESH", "0.3")
    with pytest.raises(RuntimeError, match="another run"):
        run_catalogue(other, records, out, model=oracle(truth), model_tag="o", progress=False)
    model = oracle(truth)
    run_catalogue(other, records, out, model=model, model_tag="o", overwrite=True,
                  progress=False)
    assert len(model.seen) == 6


def test_max_shards_then_resume(tiny_synthetic, inference_cfg, oracle, coco_truth, tmp_path):
    json_file, _ = _val(tiny_synthetic)
    truth = coco_truth(json_file)
    records = load_records(json_file)
    cfg = inference_cfg(*FAST, "INFERENCE.SHARD_SIZE", "2")
    out = tmp_path / "clumps.csv"
    first = run_catalogue(cfg, records, out, model=oracle(truth), model_tag="o", max_shards=2,
                          progress=False)
    assert not first.complete and not out.exists()
    second = run_catalogue(cfg, records, out, model=oracle(truth), model_tag="o",
                           progress=False)
    assert second.complete and second.summary["shards_run"] == 1
    csv = read_table(out)
    parquet = pd.read_parquet(sorted(shard_dir_for(out).glob("shard_*.parquet"))[0])
    assert csv["galaxy_id"].tolist()[:len(parquet)] == parquet["galaxy_id"].tolist()
    np.testing.assert_allclose(csv["x"].to_numpy()[:len(parquet)], parquet["x"].to_numpy())


def test_resume_after_the_input_table_changed_is_refused(tiny_synthetic, inference_cfg, oracle,
                                                         tmp_path):
    """The same file name with one galaxy's RA moved by 1 degree: resuming would mix rows of
    the old table (done shards) with rows of the new one. Refused, naming the input file and
    the changed column; --overwrite runs everything again from the new table."""
    images = sorted((tiny_synthetic / "images" / "val").glob("*.png"))[:4]
    table = tmp_path / "cat.csv"

    def write(ra_last):
        pd.DataFrame({"id": ["a", "b", "c", "d"], "file_name": [str(p) for p in images],
                      "ra": [10.0, 11.0, 12.0, ra_last], "dec": [1.0] * 4,
                      "pixel_scale": [0.4] * 4}).to_csv(table, index=False)

    write(13.0)
    cfg = inference_cfg(*FAST, "INFERENCE.SHARD_SIZE", "2", "PHOTOMETRY.ENABLED", "False")
    out = tmp_path / "clumps.csv"
    first = run_catalogue(cfg, load_records(table), out, model=oracle({}), model_tag="o",
                          source=table, max_shards=1, progress=False)
    assert not first.complete
    write(14.0)  # galaxy d (shard 1, not yet run) moved by 1 degree
    with pytest.raises(RuntimeError, match="another run") as e:
        run_catalogue(cfg, load_records(table), out, model=oracle({}), model_tag="o",
                      source=table, progress=False)
    assert f"input file {table} (content)" in str(e.value)
    assert "galaxy values (ra)" in str(e.value)
    # without the file (records given by a program), the records alone are compared
    with pytest.raises(RuntimeError, match=r"galaxy values \(ra\)"):
        run_catalogue(cfg, load_records(table), out, model=oracle({}), model_tag="o",
                      progress=False)
    box = (np.array([[40.0, 40.0, 50.0, 50.0]]), np.zeros(1, np.int64))
    model = oracle({g: box for g in "abcd"})
    done = run_catalogue(cfg, load_records(table), out, model=model, model_tag="o",
                         source=table, overwrite=True, progress=False)
    assert done.complete and model.seen == ["a", "b", "c", "d"]
    ra = read_table(out).set_index("galaxy_id")["ra"]
    assert ra["d"] == pytest.approx(14.0, abs=0.01) and ra["c"] == pytest.approx(12.0, abs=0.01)
