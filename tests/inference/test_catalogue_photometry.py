"""Photometry in the clump catalogue: through ``tools/predict_catalog.py`` on tiny PNG and FITS
inputs (the tiny Faster R-CNN, random weights, threshold 0: boxes anywhere), and with the
oracle stub model (true boxes) where a test needs known clumps: fluxes against the
simulator's truth, a NaN pixel in one aperture, a clump on the edge.
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

from clump_d2.inference.catalogue import COLUMN_NAMES, read_table
from clump_d2.inference.inputs import load_records
from clump_d2.inference.predict import run_catalogue, write_catalogue
from clump_d2.photometry import PhotometryOptions, measure_clumps
from clump_d2.sim.synthetic import SyntheticParams, make_split

REPO = Path(__file__).resolve().parents[2]
PHOT_STATUSES = {"ok", "partial_aperture", "nan_in_aperture", "no_host", "no_psf"}


def _argv(source, output, weights, tiny_model_opts, flags=(), opts=()):
    return ["--config-file", str(REPO / "configs" / "quickstart.yaml"), "--input", str(source),
            "--output", str(output), "--no-progress", *flags, *tiny_model_opts(output.parent),
            "MODEL.WEIGHTS", str(weights), "TEST.CLUMP_EVAL.SCORE_THRESH", "0.0",
            "INFERENCE.CPU_THREADS", "1", *opts]


def _clumps(cat):
    return cat[cat["clump_id"] > 0]


def test_png_catalogue_photometry_on_off_and_drop_outside_host(tiny_synthetic, tiny_weights,
                                                               tiny_model_opts, tmp_path,
                                                               load_tool):
    tool = load_tool("predict_catalog")
    folder = tiny_synthetic / "images" / "val"  # 6 galaxies, 96 px PNG
    on, off, drop = (tmp_path / f"{k}" / "clumps.parquet" for k in ("on", "off", "drop"))
    tool.main(_argv(folder, on, tiny_weights, tiny_model_opts))
    tool.main(_argv(folder, off, tiny_weights, tiny_model_opts, flags=["--no-photometry"]))
    tool.main(_argv(folder, drop, tiny_weights, tiny_model_opts,
                    opts=["PHOTOMETRY.DROP_OUTSIDE_HOST", "True"]))
    cat_on, cat_off, cat_drop = read_table(on), read_table(off), read_table(drop)

    # every input galaxy comes back with a status; detections identical on and off
    for cat in (cat_on, cat_off, cat_drop):
        assert cat["galaxy_id"].nunique() == 6
        assert set(cat["galaxy_status"]) <= {"ok", "no_clumps"}
    pd.testing.assert_frame_equal(cat_on[["galaxy_id", "clump_id", "x", "y", "score"]],
                                  cat_off[["galaxy_id", "clump_id", "x", "y", "score"]])
    clumps = _clumps(cat_on)
    assert len(clumps) >= 6
    assert list(cat_on.columns[:len(COLUMN_NAMES)]) == COLUMN_NAMES
    assert set(clumps["phot_status"]) <= PHOT_STATUSES
    assert (cat_on.loc[cat_on["clump_id"] == 0, "phot_status"] == "").all()  # galaxy rows
    assert (clumps["photometry_kind"] == "display").all()
    assert (clumps["flux_unit"] == "display intensity (relative)").all()
    # PNG: flags on the u-band fraction predicted from the display B ratio (the shipped
    # calibration; tests/inference/test_catalogue_calibrated_flags.py checks the values)
    assert (clumps["giant_band"] == "u (calibrated from display)").all()
    ok = clumps[clumps["phot_status"] == "ok"]
    assert len(ok) > 0 and np.isfinite(ok[["flux_R", "flux_G", "flux_B"]].to_numpy()).all()
    ratio = clumps["flux_ratio_u_est"].fillna(-1.0)
    assert (clumps["is_giant_3pct"] == (ratio >= 0.03)).all()
    assert (clumps["is_giant_8pct"] == (ratio >= 0.08)).all()
    assert (clumps["is_giant_8pct"] <= clumps["is_giant_3pct"]).all()

    # photometry off: the same fixed columns, nothing measured, no band columns
    assert list(cat_off.columns) == COLUMN_NAMES
    assert (cat_off["phot_status"] == "").all() and not cat_off["in_host"].any()

    # the paper's rule: the detections off the host are gone, and counted per galaxy
    off_host = clumps[~clumps["in_host"] & (clumps["phot_status"] != "no_host")]
    assert len(off_host) > 0  # a random model at threshold 0 finds sky too
    kept = _clumps(cat_drop)
    assert len(kept) == len(clumps) - len(off_host)
    assert (kept["in_host"] | (kept["phot_status"] == "no_host")).all()
    per_galaxy = cat_drop.drop_duplicates("galaxy_id").set_index("galaxy_id")
    expected = off_host.groupby("galaxy_id").size()
    for gid, n in per_galaxy["galaxy_n_outside_host"].items():
        assert n == expected.get(gid, 0)
    summary = json.loads((tmp_path / "drop" / "clumps_summary.json").read_text())
    assert summary["clumps_dropped_outside_host"] == len(off_host)
    assert summary["clumps"] == len(kept) and summary["clumps_measured"] == len(kept)
    galaxies = read_table(tmp_path / "on" / "clumps_galaxies.parquet")
    assert galaxies["n_giant_3pct"].sum() == clumps["is_giant_3pct"].sum()


def _sim_fits(root, split, n, bunit="nanomaggy", size=64, seed=3):
    params = SyntheticParams(image_size=size, disc_re=(6.0, 12.0), empty_fraction=0.0)
    if size >= 128:  # as tests/photometry: resolved discs, SDSS-like sampling
        params = SyntheticParams(image_size=size, disc_re=(8.0, 18.0), bulge_re=(1.5, 3.0),
                                 pixel_scale=(0.3, 0.4), empty_fraction=0.0)
    js = make_split(root, split, n, seed=seed, params=params, show_progress=False, fits=True,
                    fits_bunit=bunit)
    return json.loads(js.read_text())


def test_fits_catalogue_units_without_zero_point_and_bad_bands(tiny_weights, tiny_model_opts,
                                                               tmp_path, load_tool):
    """FITS g, r, i per-band files: fluxes in nanomaggies with AB magnitudes; a galaxy
    without BUNIT or zero point (and without WCS): stored units, said in its rows; a galaxy
    missing its i-band file: unreadable, naming the file; a FITS catalogue with TUNITn."""
    root = tmp_path / "sim"
    calibrated = _sim_fits(root, "val", 2)
    uncalibrated = _sim_fits(root, "test", 1, bunit="")
    rows = [{"galaxy_id": f"cal{k}", "image": f"images/{im['fits_file']}",
             "psf_fwhm_px": im["psf_fwhm_px"]} for k, im in enumerate(calibrated["images"])]
    im = uncalibrated["images"][0]
    rows.append({"galaxy_id": "nozp", "image": f"images/{im['fits_file']}",
                 "psf_fwhm_px": im["psf_fwhm_px"]})
    broken = calibrated["images"][1]["fits_file"]
    (root / "images" / broken.format(band="i")).unlink()
    rows.append({"galaxy_id": "noi", "image": f"images/{broken}", "psf_fwhm_px": 2.0})
    rows[1].update(image=rows[0]["image"], psf_fwhm_px=rows[0]["psf_fwhm_px"])  # cal0's twin
    table = root / "galaxies.csv"
    pd.DataFrame(rows).to_csv(table, index=False)

    out = tmp_path / "out" / "clumps.fits"
    load_tool("predict_catalog").main(_argv(table, out, tiny_weights, tiny_model_opts))
    cat = read_table(out)
    assert cat["galaxy_id"].drop_duplicates().tolist() == ["cal0", "cal1", "nozp", "noi"]
    status = cat.drop_duplicates("galaxy_id").set_index("galaxy_id")["galaxy_status"]
    assert status["noi"].startswith("unreadable") and "_i.fits" in status["noi"]
    for gid in ("cal0", "cal1", "nozp"):
        assert status[gid] in ("ok", "no_clumps")
    clumps = _clumps(cat)
    cal, nozp = clumps[clumps["galaxy_id"] == "cal0"], clumps[clumps["galaxy_id"] == "nozp"]
    assert len(cal) > 0 and len(nozp) > 0
    assert (cal["photometry_kind"] == "fits_ab").all() and (cal["flux_unit"] == "nanomaggy").all()
    assert (cal["giant_band"] == "g").all()  # the bluest of g, r, i
    good = cal[cal["flux_r"] > 0]
    np.testing.assert_allclose(good["mag_r"], 22.5 - 2.5 * np.log10(good["flux_r"]), rtol=1e-9)
    assert (nozp["photometry_kind"] == "fits").all()
    assert (nozp["flux_unit"] == "stored units").all()
    assert nozp["mag_r"].isna().all() and (nozp["sky_source"] == "none").all()
    assert nozp["ra"].isna().all() and np.isfinite(nozp["flux_r"]).any()
    # cal1 is cal0's image: the same photometry
    np.testing.assert_allclose(cal["flux_g"].to_numpy(),
                               clumps.loc[clumps["galaxy_id"] == "cal1", "flux_g"].to_numpy())

    with fits.open(out) as hdul:
        h = hdul[1].header
        units = {h[f"TTYPE{i}"]: h.get(f"TUNIT{i}") for i in range(1, h["TFIELDS"] + 1)}
    assert units["mag_r"] == "mag" and units["ra"] == "deg" and units["x"] == "pix"
    assert units["flux_r"] is None  # mixed units (nanomaggy, stored units): per row only
    uniform = tmp_path / "cal.fits"
    write_catalogue(cat[cat["galaxy_id"] == "cal0"], uniform)
    with fits.open(uniform) as hdul:
        h = hdul[1].header
        units = {h[f"TTYPE{i}"]: h.get(f"TUNIT{i}") for i in range(1, h["TFIELDS"] + 1)}
    assert units["flux_r"] == "nanomaggy" and units["host_flux_g"] == "nanomaggy"
    assert units["flux_ratio_r"] is None


def test_oracle_fits_fluxes_nan_pixel_and_edge(inference_cfg, oracle, coco_truth, tmp_path):
    """True boxes on simulated FITS: fluxes near the truth; one NaN pixel in one clump's
    aperture flags that clump only; a box on the image edge is a partial aperture."""
    root = tmp_path / "sim"
    coco = _sim_fits(root, "val", 10, size=128, seed=1)
    js = root / "annotations" / "val.json"
    truth = coco_truth(js)
    true_clumps = {}
    for a in coco["annotations"]:
        true_clumps.setdefault(str(a["image_id"]), []).append(a)
    rows = [{"galaxy_id": str(im["id"]), "image": f"images/{im['fits_file']}",
             "psf_fwhm_px": im["psf_fwhm_px"], "centre_x": im["centre_x"],
             "centre_y": im["centre_y"]} for im in coco["images"]]
    # a NaN pixel at the first clump of the first galaxy with two or more clumps
    target = next(gid for gid, (b, _) in truth.items() if len(b) >= 2)
    box = truth[target][0][0]
    path = root / "images" / next(r["image"] for r in rows
                                  if r["galaxy_id"] == target)[len("images/"):].format(band="r")
    with fits.open(path, mode="update") as hdul:
        hdul[0].data[int((box[1] + box[3]) / 2), int((box[0] + box[2]) / 2)] = np.nan
    # an extra box on the left edge of the last galaxy
    edge_gid = rows[-1]["galaxy_id"]
    b, c = truth[edge_gid]
    truth[edge_gid] = (np.vstack([b, [[0.0, 60.0, 6.0, 68.0]]]), np.append(c, 0))
    table = root / "galaxies.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    cfg = inference_cfg("TEST.CLUMP_EVAL.SCORE_THRESH", "0.0", "INFERENCE.MERGE_FWHM", "0.0",
                        "INFERENCE.NMS_THRESH", "0.0", "INFERENCE.SHARD_SIZE", "4")
    result = run_catalogue(cfg, load_records(table), tmp_path / "clumps.parquet",
                           model=oracle(truth), model_tag="oracle", progress=False)
    assert result.complete
    clumps = _clumps(read_table(tmp_path / "clumps.parquet"))
    n_true = sum(len(b) for b, _ in truth.values())
    assert len(clumps) == n_true

    nan_rows = clumps[clumps["phot_flag_nan"]]
    assert len(nan_rows) == 1 and nan_rows["galaxy_id"].iloc[0] == target
    assert nan_rows["phot_status"].iloc[0] == "nan_in_aperture"
    assert np.isnan(nan_rows["flux_r"].iloc[0])
    others = clumps[(clumps["galaxy_id"] == target) & ~clumps["phot_flag_nan"]]
    assert len(others) >= 1 and np.isfinite(others["flux_r"]).all()

    edge = clumps[(clumps["galaxy_id"] == edge_gid) & (clumps["x"] == 3.0)]
    assert len(edge) == 1 and edge["phot_flag_partial"].iloc[0]
    assert edge["phot_status"].iloc[0] == "partial_aperture"

    # the catalogue's photometry is the standalone measurement's (tools/measure_clumps.py)
    table = clumps[["galaxy_id", "x", "y"]].assign(
        file_name=clumps["galaxy_id"].map({r["galaxy_id"]: r["image"] for r in rows}),
        psf_fwhm_px=clumps["galaxy_id"].map({r["galaxy_id"]: r["psf_fwhm_px"] for r in rows}),
        centre_x=clumps["galaxy_id"].map({r["galaxy_id"]: r["centre_x"] for r in rows}),
        centre_y=clumps["galaxy_id"].map({r["galaxy_id"]: r["centre_y"] for r in rows}))
    alone = measure_clumps(table.reset_index(drop=True), PhotometryOptions.from_config(cfg),
                           image_root=root)
    for col in ("flux_g", "flux_r", "flux_err_i", "flux_ratio_g", "host_flux_r", "mag_i"):
        np.testing.assert_allclose(clumps[col].to_numpy(), alone[col].to_numpy(), rtol=1e-9)
    assert clumps["phot_status"].tolist() == alone["status"].tolist()
    assert clumps["is_giant_3pct"].tolist() == alone["is_giant_3pct"].tolist()

    # fluxes of the clean, bright, off-centre clumps against the simulator's truth
    rel = []
    for _, r in clumps[clumps["phot_status"] == "ok"].iterrows():
        cands = true_clumps.get(r["galaxy_id"], [])
        d = [np.hypot(a["x"] - r["x"], a["y"] - r["y"]) for a in cands]
        if not d or min(d) > 0.01 or r["on_centre"] or r["flux_r"] / r["flux_err_r"] < 20:
            continue  # the edge box, a box clipped by the frame, the bulge, faint clumps
        a = cands[int(np.argmin(d))]
        rel.append(r["flux_r"] / a["flux_r"] - 1)
        # flags follow the measured ratio in the flag band (g)
        assert r["is_giant_3pct"] == (r["flux_ratio_g"] >= 0.03)
    assert len(rel) >= 5
    assert np.median(np.abs(rel)) < 0.1
