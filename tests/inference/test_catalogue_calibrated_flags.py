"""Giant flags in the catalogue: on PNG input the u-band fraction predicted by
``PHOTOMETRY.DISPLAY_GIANT_CALIBRATION`` (column ``flux_ratio_u_est``) sets them; on FITS input
the true photometry does, whatever the key says. The oracle stub model (true boxes) gives
known clumps; only catalogue bookkeeping is tested, not the detector."""
import json

import numpy as np
import pandas as pd

from clump_d2.inference.catalogue import read_table
from clump_d2.inference.inputs import load_records
from clump_d2.inference.predict import run_catalogue
from clump_d2.photometry.calibration import CALIBRATED_BAND_LABEL, DisplayGiantCalibration
from clump_d2.sim.synthetic import SyntheticParams, make_split

#: A made-up calibration (not the shipped one), so the test sees the key being read.
CALIBRATION = (-0.2, 1.1, 0.0)


def _run(cfg_factory, oracle, truth, table, out, *opts):
    cfg = cfg_factory("TEST.CLUMP_EVAL.SCORE_THRESH", "0.0", "INFERENCE.MERGE_FWHM", "0.0",
                      "INFERENCE.NMS_THRESH", "0.0", *opts)
    result = run_catalogue(cfg, load_records(table), out, model=oracle(truth),
                           model_tag="oracle", progress=False)
    assert result.complete
    cat = read_table(out)
    return cat[cat["clump_id"] > 0].reset_index(drop=True)



def _galaxy_table(split_json, image_key):
    """The catalogue's input table for a simulated split: one row per image, its PSF."""
    coco = json.loads(split_json.read_text())
    rows = [{"galaxy_id": str(im["id"]), "image": f"images/{im[image_key]}",
             "psf_fwhm_px": im["psf_fwhm_px"]} for im in coco["images"]]
    table = split_json.parent.parent / "galaxies.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    return table


def test_png_flags_calibrated_fits_flags_unchanged(inference_cfg, oracle, coco_truth, tmp_path):
    params = SyntheticParams(image_size=96, disc_re=(8.0, 14.0), empty_fraction=0.0)
    thresholds = ["PHOTOMETRY.GIANT_THRESHOLDS_PCT", "(3.0, 8.0, 30.0)"]
    key = ["PHOTOMETRY.DISPLAY_GIANT_CALIBRATION", str(CALIBRATION), *thresholds]
    none = ["PHOTOMETRY.DISPLAY_GIANT_CALIBRATION", "()", *thresholds]

    # PNG: flags on the predicted u-band fraction
    png = make_split(tmp_path / "png", "val", 4, seed=2, params=params, show_progress=False)
    table = _galaxy_table(png, "file_name")
    truth = coco_truth(png)
    cal_run = _run(inference_cfg, oracle, truth, table, tmp_path / "png_cal.parquet", *key)
    raw_run = _run(inference_cfg, oracle, truth, table, tmp_path / "png_raw.parquet", *none)
    assert len(cal_run) == sum(len(b) for b, _ in truth.values()) >= 4
    assert (cal_run["giant_band"] == CALIBRATED_BAND_LABEL).all()
    ratio_b = cal_run["flux_ratio_B"].to_numpy()
    expected = DisplayGiantCalibration(*CALIBRATION).predict(ratio_b)
    np.testing.assert_allclose(cal_run["flux_ratio_u_est"], expected, rtol=1e-12)
    u_est = np.nan_to_num(expected, nan=-1.0)
    assert (cal_run["is_giant_3pct"] == (u_est >= 0.03)).all()
    assert (cal_run["is_giant_8pct"] == (u_est >= 0.08)).all()
    # without the key: the raw B ratio, as before, and no estimate
    assert (raw_run["giant_band"] == "B (display)").all()
    assert raw_run["flux_ratio_u_est"].isna().all()
    np.testing.assert_allclose(raw_run["flux_ratio_B"], ratio_b, rtol=1e-12)
    assert (raw_run["is_giant_3pct"] == (np.nan_to_num(ratio_b, nan=-1) >= 0.03)).all()
    # the calibration changes which clumps are giants (B read as low: more are flagged; the
    # simulated clumps are 3-60 % of the host in B, so a high threshold shows it)
    assert (cal_run["is_giant_30pct"] == (u_est >= 0.30)).all()
    assert cal_run["is_giant_30pct"].sum() > raw_run["is_giant_30pct"].sum() > 0

    # FITS: true photometry, flags in the bluest band, the same with or without the key
    fits_js = make_split(tmp_path / "fits", "val", 2, seed=3, show_progress=False, fits=True,
                         fits_bunit="nanomaggy",
                         params=SyntheticParams(image_size=64, disc_re=(6.0, 12.0),
                                                empty_fraction=0.0))
    table = _galaxy_table(fits_js, "fits_file")
    truth = coco_truth(fits_js)
    with_key = _run(inference_cfg, oracle, truth, table, tmp_path / "fits_cal.parquet", *key)
    without = _run(inference_cfg, oracle, truth, table, tmp_path / "fits_raw.parquet", *none)
    assert len(with_key) > 0 and (with_key["giant_band"] == "g").all()
    assert with_key["flux_ratio_u_est"].isna().all()
    assert (with_key["is_giant_3pct"] == (with_key["flux_ratio_g"].fillna(-1) >= 0.03)).all()
    for col in ("is_giant_3pct", "is_giant_8pct", "is_giant_30pct", "giant_band"):
        assert with_key[col].tolist() == without[col].tolist()
