"""Clump photometry on simulated FITS galaxies with known fluxes, and bad input."""
import json

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

import clump_d2  # noqa: F401
from clump_d2.data.stretch import DisplayStretch
from clump_d2.photometry import PhotometryOptions, load_photometry_image, measure_clumps
from clump_d2.photometry.apertures import gaussian_psf, zero_point_from_header
from clump_d2.photometry.calibration import (
    DEFAULT_DISPLAY_GIANT_CALIBRATION,
    DisplayGiantCalibration,
)
from clump_d2.photometry.flags import bluest_band, flag_name, giant_flags
from clump_d2.photometry.io import write_table
from clump_d2.photometry.measure import photometry_units
from clump_d2.sim.synthetic import SyntheticParams, make_split

BANDS = ("g", "r", "i")


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """24 simulated 128 px galaxies as per-band FITS, every true clump measured."""
    out = tmp_path_factory.mktemp("simfits")
    params = SyntheticParams(image_size=128, disc_re=(8.0, 18.0), bulge_re=(1.5, 3.0),
                             pixel_scale=(0.3, 0.4))
    js = make_split(out, "val", 24, seed=1, params=params, show_progress=False, fits=True)
    coco = json.loads(js.read_text())
    images = {im["id"]: im for im in coco["images"]}
    rows = []
    for a in coco["annotations"]:
        im = images[a["image_id"]]
        rows.append({"galaxy_id": im["id"], "x": a["x"], "y": a["y"],
                     "psf_fwhm_px": im["psf_fwhm_px"], "file_name": im["fits_file"],
                     "centre_x": im["centre_x"], "centre_y": im["centre_y"],
                     **{f"true_{b}": a[f"flux_{b}"] for b in BANDS},
                     **{f"true_frac_{b}": a[f"flux_frac_{b}"] for b in BANDS}})
    table = pd.DataFrame(rows)
    return measure_clumps(table, PhotometryOptions(bands=BANDS), image_root=out / "images")


def test_sim_fits_records_truth(measured):
    assert len(measured) > 40
    assert (measured["status"] == "ok").all()
    assert (measured["photometry_kind"] == "fits_ab").all()  # BUNIT nanomaggy -> ZP 22.5
    assert (measured["flux_unit"] == "nanomaggy").all()
    mag = 22.5 - 2.5 * np.log10(measured["flux_r"])
    assert np.allclose(measured["mag_r"], mag)
    assert measured["in_host"].mean() > 0.95


def test_flux_recovery_at_snr_20(measured):
    """Median |delta f / f| <= 5 % and median bias within 2 % at S/N >= 20, every band."""
    dist = np.hypot(measured.x - measured.centre_x, measured.y - measured.centre_y)
    off_bulge = dist > measured.psf_fwhm_px  # on the bulge a clump is not a clump (DESIGN)
    for b in BANDS:
        rel = measured[f"flux_{b}"] / measured[f"true_{b}"] - 1
        snr = measured[f"flux_{b}"] / measured[f"flux_err_{b}"]
        sel = (snr >= 20) & off_bulge
        assert sel.sum() >= 30
        assert np.median(np.abs(rel[sel])) <= 0.05, b
        assert abs(np.median(rel[sel])) <= 0.02, b


def test_giant_flags_agree_with_truth(measured):
    band = measured["giant_band"].iloc[0]
    assert band == "g"  # the bluest of g, r, i
    true = measured[f"true_frac_{band}"]
    for pct in (3, 8):
        clear = np.abs(true / (pct / 100) - 1) > 0.2
        agree = measured[flag_name(pct)][clear] == (true[clear] >= pct / 100)
        assert clear.sum() >= 30
        assert agree.mean() >= 0.95, pct


def _two_clump_image(tmp_path, header=None, nan_at=None, size=96):
    """A disc at (32, 32) with two 3000-unit clumps, sky noise 1, as one FITS; its table."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    rng = np.random.default_rng(0)
    host = 400.0 * np.exp(-np.hypot(xx - 32, yy - 32) / 8.0)
    edges = np.arange(size + 1, dtype=float)
    clumps = [(24.0, 30.0), (40.0, 36.0)]
    img = host + rng.normal(0, 1.0, (size, size))
    for x, y in clumps:
        img = img + 3000.0 * gaussian_psf(edges, edges, x, y, 4.0)
    if nan_at is not None:
        img[int(nan_at[1]), int(nan_at[0])] = np.nan
    path = tmp_path / "gal.fits"
    fits.PrimaryHDU(img.astype(np.float32), header).writeto(path, overwrite=True)
    table = pd.DataFrame({"galaxy_id": ["a", "a"], "x": [c[0] for c in clumps],
                          "y": [c[1] for c in clumps], "psf_fwhm_px": [4.0, 4.0],
                          "file_name": [str(path)] * 2, "centre_x": 32.0, "centre_y": 32.0})
    return table


def test_fits_without_zero_point_keeps_stored_units(tmp_path):
    table = _two_clump_image(tmp_path)
    out = measure_clumps(table, PhotometryOptions(bands=("r",)))
    assert (out["status"] == "ok").all()
    assert (out["photometry_kind"] == "fits").all()
    assert (out["flux_unit"] == "stored units").all()
    assert out["mag_r"].isna().all()
    assert np.allclose(out["flux_r"], 3000.0, rtol=0.05)


def test_nan_pixel_flags_that_clump_only(tmp_path):
    table = _two_clump_image(tmp_path, nan_at=(24.2, 30.5))
    out = measure_clumps(table, PhotometryOptions(bands=("r",)))
    assert np.isnan(out["flux_r"].iloc[0]) and out["phot_flag_nan"].iloc[0]
    assert out["status"].iloc[0] == "nan_in_aperture"
    assert not out["phot_flag_nan"].iloc[1] and out["status"].iloc[1] == "ok"
    assert out["flux_r"].iloc[1] == pytest.approx(3000.0, rel=0.05)


def test_edge_clump_gets_partial_flag(tmp_path):
    table = _two_clump_image(tmp_path)
    table.loc[1, ["x", "y"]] = [1.5, 30.0]
    out = measure_clumps(table, PhotometryOptions(bands=("r",)))
    assert out["phot_flag_partial"].tolist() == [False, True]
    assert out["status"].tolist() == ["ok", "partial_aperture"]


def test_band_list_not_matching_names_the_file(tmp_path):
    table = _two_clump_image(tmp_path)
    path = table["file_name"].iloc[0]
    with pytest.raises(ValueError, match="gal.fits"):
        load_photometry_image(path, ("g", "r", "i"))
    out = measure_clumps(table, PhotometryOptions(bands=("g", "r", "i")))
    assert out["status"].str.startswith("error:").all()
    assert out["status"].str.contains("gal.fits").all()
    assert not out["is_giant_3pct"].any()
    with pytest.raises(ValueError, match="gal.fits"):
        measure_clumps(table, PhotometryOptions(bands=("g", "r", "i")), on_error="raise")


def test_zero_points_from_headers():
    h = fits.Header()
    assert zero_point_from_header(h) == (None, "stored units")
    h["BUNIT"] = "nanomaggy"
    assert zero_point_from_header(h) == (22.5, "nanomaggy")
    h = fits.Header({"BUNIT": "ADU", "MAGZP": 27.0})
    assert zero_point_from_header(h) == (27.0, "ADU")
    h = fits.Header({"FLUXMAG0": 10 ** (0.4 * 27.0)})
    assert zero_point_from_header(h)[0] == pytest.approx(27.0)


def test_flags_and_bands():
    assert bluest_band(["g", "r", "i", "z", "u"]) == "u"
    assert bluest_band(["i", "g"]) == "g"
    flags = giant_flags(np.array([0.01, 0.03, 0.05, 0.09, np.nan]), (3.0, 8.0))
    assert flags["is_giant_3pct"].tolist() == [False, True, True, True, False]
    assert flags["is_giant_8pct"].tolist() == [False, False, False, True, False]
    assert flag_name(2.5) == "is_giant_2p5pct"


def test_display_photometry_of_png(tmp_path):
    """An RGB display image: relative fluxes after undoing the stretch, flags in B."""
    size = 64
    edges = np.arange(size + 1, dtype=float)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    host = 0.02 * np.exp(-np.hypot(xx - 32, yy - 32) / 8.0)
    clump = 1.0 * gaussian_psf(edges, edges, 24.0, 30.0, 4.0)
    linear = np.stack([host, host, host], axis=2) + clump[:, :, None] * np.array([0.8, 1.0, 1.3])
    disp = DisplayStretch(10.0)
    from PIL import Image

    Image.fromarray(disp.display(linear)).save(tmp_path / "g.png")
    table = pd.DataFrame({"galaxy_id": ["a"], "x": [24.0], "y": [30.0], "psf_fwhm_px": [4.0],
                          "file_name": ["g.png"]})
    out = measure_clumps(table, image_root=tmp_path)
    assert out["photometry_kind"].iloc[0] == "display"
    # flags on the u-band fraction predicted from B (the shipped calibration) ...
    assert out["giant_band"].iloc[0] == "u (calibrated from display)"
    cal = DisplayGiantCalibration(*DEFAULT_DISPLAY_GIANT_CALIBRATION)
    assert out["flux_ratio_u_est"].iloc[0] == pytest.approx(
        cal.predict(out["flux_ratio_B"].to_numpy())[0])
    # ... or, without a calibration, on the raw B ratio
    raw = measure_clumps(table, PhotometryOptions(display_giant_calibration=()),
                         image_root=tmp_path)
    assert raw["giant_band"].iloc[0] == "B (display)" and "flux_ratio_u_est" not in raw
    assert out["flux_G"].iloc[0] == pytest.approx(1.0, rel=0.1)
    assert out["flux_B"].iloc[0] / out["flux_R"].iloc[0] == pytest.approx(1.3 / 0.8, rel=0.1)
    with pytest.raises(ValueError, match="g.png"):
        load_photometry_image(tmp_path / "g.png", display_channels=("u", "g"))


def test_fits_table_carries_units(tmp_path):
    table = _two_clump_image(tmp_path, header=fits.Header({"BUNIT": "nanomaggy"}))
    out = measure_clumps(table, PhotometryOptions(bands=("r",)))
    path = write_table(out, tmp_path / "clumps.fits",
                       photometry_units(out.columns, out["flux_unit"].iloc[0]))
    header = fits.getheader(path, 1)
    units = {header[f"TTYPE{i}"]: header.get(f"TUNIT{i}") for i in range(1, header["TFIELDS"] + 1)}
    assert units["flux_r"] == "nanomaggy" and units["mag_r"] == "mag"
    assert units["flux_ratio_r"] is None


def test_measure_clumps_tool_writes_every_row(tmp_path, load_tool):
    """The CLI: relative image paths from the table's folder, a bad row kept with a status,
    config overrides (flag thresholds) applied, FITS units in the header."""
    table = _two_clump_image(tmp_path, header=fits.Header({"BUNIT": "nanomaggy"}))
    table["file_name"] = "gal.fits"
    table.loc[2] = ["b", 10.0, 10.0, 4.0, "missing.fits", 32.0, 32.0]
    table.to_csv(tmp_path / "clumps.csv", index=False)
    tool = load_tool("measure_clumps")
    rc = tool.main(["measure", "--input", str(tmp_path / "clumps.csv"), "--output",
                    str(tmp_path / "out.fits"), "--bands", "r",
                    "PHOTOMETRY.GIANT_THRESHOLDS_PCT", "(1.0, 50.0)"])
    assert rc == 0
    from astropy.table import Table

    out = Table.read(tmp_path / "out.fits").to_pandas()
    assert len(out) == 3
    status = [s.decode() if isinstance(s, bytes) else s for s in out["status"]]
    assert status[:2] == ["ok", "ok"] and status[2].startswith("error:")
    assert "missing.fits" in status[2]
    assert list(out["is_giant_1pct"]) == [True, True, False]
    assert not out["is_giant_50pct"].any()
    assert out["mag_r"].iloc[0] == pytest.approx(22.5 - 2.5 * np.log10(3000.0), abs=0.06)


def test_host_segment_excludes_a_separate_star(tmp_path):
    """A source off the galaxy is not in its host segment; the paper's rule marks it."""
    table = _two_clump_image(tmp_path)
    path = table["file_name"].iloc[0]
    data = fits.getdata(path).astype(np.float64)
    edges = np.arange(97, dtype=float)
    data += 2000.0 * gaussian_psf(edges, edges, 80.0, 80.0, 4.0)  # a star in the corner
    fits.PrimaryHDU(data.astype(np.float32)).writeto(path, overwrite=True)
    table.loc[2] = ["a", 80.0, 80.0, 4.0, path, 32.0, 32.0]
    out = measure_clumps(table, PhotometryOptions(bands=("r",), drop_outside_host=True))
    assert out["in_host"].tolist() == [True, True, False]
    assert out["status"].tolist() == ["ok", "ok", "outside_host"]
    # Host flux: the exponential disc (2 pi 8^2 x 400, less what the image edge 4 scale
    # lengths from the centre and the threshold cut off: ~8 %) plus the two clumps; not the
    # star (+2000).
    host = out["host_flux_r"].iloc[0]
    total = 2 * np.pi * 64 * 400 + 6000
    assert 0.88 * total < host < 0.97 * total
    assert out["flux_ratio_r"].iloc[0] == pytest.approx(out["flux_r"].iloc[0] / host)


def test_batched_background_fit_equals_least_squares():
    """The fit solved once for all bands (normal equations) gives what per-band SVD least
    squares gives, with a NaN pixel and a neighbour in the stamp."""
    from clump_d2.photometry.apertures import _fit_background_bands, _fit_background_lstsq

    rng = np.random.default_rng(1)
    edges = np.arange(65.0)
    bands = np.stack([rng.normal(0, 1, (64, 64)) + a * gaussian_psf(edges, edges, 30.3, 31.2, 4.0)
                      + 0.02 * np.arange(64)[None] for a in (30.0, 60.0, 5.0)])
    bands[1, 31, 30] = np.nan  # band 1 has its own usable pixels
    finite = np.isfinite(bands)
    weights = np.zeros((64, 64))
    weights[27:35, 26:34] = 1.0
    others, others_fwhm = np.array([[30.3, 31.2], [36.0, 28.0]]), np.array([4.0, 4.0])
    fast = _fit_background_bands(bands, finite, weights, 30.3, 31.2, 4.0, 8.0, others,
                                 others_fwhm)
    for c in range(3):
        ref = _fit_background_lstsq(bands[c], finite[c], weights, 30.3, 31.2, 4.0, 8.0, others,
                                    others_fwhm)
        np.testing.assert_allclose(fast[c], ref, rtol=1e-7, atol=1e-9)


def test_photometry_image_is_cut_like_the_network_input():
    """A record's crop: the photometry image is the same window the mapper gives the model."""
    from clump_d2.photometry.images import PhotometryImage

    bands = np.arange(2 * 6 * 8, dtype=float).reshape(2, 6, 8)
    image = PhotometryImage(bands, ["g", "r"], "fits", [22.5, 22.5], ["nanomaggy"] * 2, "x.fits")
    cut = image.cropped([2, 1, 4, 3])
    assert cut.bands.shape == (2, 3, 4) and np.array_equal(cut.bands, bands[:, 1:4, 2:6])
    assert cut.band_names == ["g", "r"] and cut.zero_points == [22.5, 22.5]
    assert image.cropped(None) is image
    with pytest.raises(ValueError, match="x.fits"):
        image.cropped([6, 0, 4, 4])


def test_text_in_a_position_column_names_file_row_and_column(tmp_path, load_tool):
    """Text in the x column gave "could not convert string to float", naming nothing."""
    table = _two_clump_image(tmp_path)
    table["file_name"] = "gal.fits"
    table["x"] = table["x"].astype(object)
    table.loc[1, "x"] = "12,5"
    table.to_csv(tmp_path / "clumps.csv", index=False)
    tool = load_tool("measure_clumps")
    with pytest.raises(ValueError) as e:
        tool.main(["measure", "--input", str(tmp_path / "clumps.csv"), "--output",
                   str(tmp_path / "out.csv")])
    assert str(e.value).startswith(f"{tmp_path / 'clumps.csv'}: row 2, column 'x': '12,5' is "
                                   "not a number")
    assert not (tmp_path / "out.csv").exists()
