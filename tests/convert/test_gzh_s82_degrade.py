"""The GZH S82 galaxies at single-epoch depth: noise, blur, the S/N rule, seeding, calibration,
and the dataset on real galaxies (where ../shared is present)."""
import json
import math

import numpy as np
import pytest

from clump_d2.convert import gzh_s82_degrade as D
from clump_d2.data.psf import FWHM_PER_SIGMA, gaussian_psf
from clump_d2.data.stretch import DisplayStretch

SIZE = 424


def _plan(**kw):
    base = dict(coadd_fwhm_px=4.0, target_fwhm_px=4.0, depth_factor=1.0, noise_corr_px=1.0,
                display_sigma=0.0136, display_sky=(0.015, 0.015, 0.009))
    base.update(kw)
    return D.DegradePlan(**base)


def _point_sources(fwhm, sources, size=SIZE):
    """(size, size) image of unit-integral Gaussian PSFs x flux at (x, y)."""
    edges = np.arange(size + 1, dtype=np.float64)
    img = np.zeros((size, size))
    for x, y, flux in sources:
        img += flux * gaussian_psf(edges, edges, x, y, fwhm)
    return img


def test_added_noise_reaches_the_target_depth_and_display_sigma():
    rng = np.random.default_rng(1)
    sigma0 = 0.05
    sky = 0.2 + sigma0 * rng.normal(size=(SIZE, SIZE))
    linear = np.repeat(sky[..., None], 3, axis=2)  # grey white noise, luminance sigma = 0.05
    d = D.degrade_linear(linear, _plan(depth_factor=3.0), np.random.default_rng(2))
    mask = D.sky_mask((SIZE, SIZE))
    assert d.info["coadd_sigma"] == pytest.approx(sigma0, rel=0.02)
    # the noise a point source sees is 3 x the coadd's
    ratio = D.point_source_noise(D.luminance(d.noisy), 4.0, mask) \
        / D.point_source_noise(D.luminance(d.noise_free), 4.0, mask)
    assert ratio == pytest.approx(3.0, rel=0.03)
    # the result's per-pixel sky sigma is the display target; its sky level the display's
    assert D.robust_sigma(D.luminance(d.noisy)[mask]) == pytest.approx(0.0136, rel=0.03)
    assert np.median(d.noisy[mask], axis=0) == pytest.approx([0.015, 0.015, 0.009], abs=1e-3)
    # already as deep as asked: nothing added, the coadd's noise becomes the display sigma
    same = D.degrade_linear(linear, _plan(depth_factor=1.0), np.random.default_rng(2))
    assert same.info["added_sigma"] == 0.0
    assert np.array_equal(same.noisy, same.noise_free)
    assert D.robust_sigma(D.luminance(same.noisy)[mask]) == pytest.approx(0.0136, rel=0.03)


def test_sky_noise_unit_luminance_and_grey():
    noise = D.sky_noise(np.random.default_rng(0), (200, 200), corr_px=1.5, shared=0.85)
    assert D.luminance(noise).std() == pytest.approx(1.0, rel=1e-9)
    c = np.corrcoef(noise.reshape(-1, 3).T)
    assert 0.8 < c[0, 1] < 0.9  # 85 % of the variance shared by the channels
    lag1 = D.lag1_autocorrelation(D.luminance(noise), np.ones((200, 200), bool))
    assert lag1 == pytest.approx(math.exp(-1 / (4 * 1.5 ** 2)), abs=0.03)


def test_blur_gives_the_target_fwhm_on_a_point_source():
    assert D.blur_sigma_px(4.0, 7.0) == pytest.approx(math.sqrt(33) / FWHM_PER_SIGMA)
    assert D.blur_sigma_px(7.0, 4.0) == 0.0  # never sharpened
    img = _point_sources(4.0, [(212.0, 212.0, 100.0)])
    linear = np.repeat(img[..., None], 3, axis=2)
    d = D.degrade_linear(linear, _plan(target_fwhm_px=7.0), np.random.default_rng(0))
    lum = D.luminance(d.noisy) - 0.013  # noise-free input: only the display sky is added
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    flux = lum.sum()
    var = ((xx - 212.0) ** 2 * lum).sum() / flux - 1 / 12  # pixel integration adds 1/12
    assert FWHM_PER_SIGMA * math.sqrt(var) == pytest.approx(7.0, rel=0.01)


def test_clump_snr_and_the_detectability_rule():
    fwhm, sigma = 5.0, 0.1
    kernel = D.aperture_kernel(fwhm)
    assert kernel.sum() == pytest.approx(0.0, abs=1e-9)  # a flat background does not count
    # expected S/N of a point source of flux F on white noise sigma: F sum(K psf) /
    # (sigma sqrt(sum K^2))
    half = kernel.shape[0] // 2
    edges = np.arange(-half, half + 2, dtype=np.float64)  # the kernel's pixels; centre 0.5
    psf = gaussian_psf(edges, edges, 0.5, 0.5, fwhm)
    per_flux = float((kernel * psf).sum()) / (sigma * math.sqrt((kernel ** 2).sum()))
    fluxes = {"bright": 10.0 / per_flux, "faint": 2.0 / per_flux}
    pos = np.array([[150.5, 212.5], [270.5, 212.5]])
    clean = _point_sources(fwhm, [(x, y, f) for (x, y), f in zip(pos, fluxes.values())])
    # the noise is measured near each clump (4 FWHM): ~9 % scatter per draw, so 8 draws
    runs = [D.clump_snrs(clean, clean + sigma * np.random.default_rng(k).normal(
        size=clean.shape), pos, fwhm) for k in range(8)]
    snr = np.array([r["snr"] for r in runs])
    assert snr.mean(axis=0) == pytest.approx([10.0, 2.0], rel=0.08)
    assert runs[0]["sky_noise"] == pytest.approx([0.0, 0.0], abs=1e-9)  # none in `clean`
    assert ((snr >= D.DEFAULT_SNR_MIN) == [True, False]).all()  # label / ignore region


def _synthetic_rgb(seed, noise, fwhm=4.0, n_stars=60, size=SIZE, flux=(-2.0, 1.0),
                   jpeg=False, clumps=()):
    """An 8-bit cut-out: a disc at the centre, point sources log-uniform in flux (ln range
    ``flux``), sky noise of ``noise`` (same units; correlated over 1 px, as a resampled
    image) on a sky of 0.08, displayed with the display model (and a JPEG round trip)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    disc = 0.6 * np.exp(-np.hypot(xx - size / 2, yy - size / 2) / 15.0)
    stars = [(*rng.uniform(10, size - 10, 2), f) for f in np.exp(rng.uniform(*flux, n_stars))]
    stars = [s for s in stars if math.hypot(s[0] - size / 2, s[1] - size / 2) > 110]
    img = disc + _point_sources(fwhm, stars + list(clumps), size) + 0.08
    field = D.sky_noise(np.random.default_rng(seed + 100), (size, size), corr_px=1.0)
    lin = np.repeat(img[..., None], 3, axis=2) + noise * field
    rgb = DisplayStretch(10.0).display(lin)
    return D.decode(D.jpeg_bytes(rgb)) if jpeg else rgb


FAINT = 0.3  # S/N ~4 in the coadd, ~2.3 at depth factor 2 (the bright one: 30, 13)


def test_degrade_galaxy_seeded_and_labelled():
    # two clumps on the disc, 20 and 40 px from the centre: a bright and a faint one
    rgb = _synthetic_rgb(0, noise=0.004, clumps=[(232.0, 212.0, 2.0), (252.0, 212.0, FAINT)])
    galaxy = D.CoaddGalaxy("123", rgb, fwhm_px=4.0, pixel_scale=0.2)
    cal = D.Calibration(depth_factor=2.0, seeing_arcsec=1.0, seeing_ratio=1.0,
                        display_sigma=0.0136, display_sky=(0.015, 0.015, 0.009),
                        density_target=0.005)
    image = {"id": 7, "file_name": "objID123.jpg", "width": 200, "height": 200,
             "crop": [112, 112, 200, 200], "galaxy_id": "123", "psf_fwhm_px": 4.0}
    anns = [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0,
             "x": 100.0 + dx, "y": 100.0, "clump_id": i} for i, dx in enumerate((20.0, 40.0))]
    # (the crop starts at 112: crop (120, 100) is full-frame (232, 212))
    a = D.degrade_galaxy(galaxy, image, anns, cal, 0, seed=5, snr_min=5.0)
    b = D.degrade_galaxy(galaxy, image, anns, cal, 0, seed=5, snr_min=5.0)
    c = D.degrade_galaxy(galaxy, image, anns, cal, 1, seed=5, snr_min=5.0)
    assert a[0] == b[0] and a[1] == b[1] and a[2] == b[2]  # same seed: identical bytes
    assert a[0] != c[0]  # another realisation: other noise
    diff = D.decode(a[0]).astype(int) - D.decode(c[0]).astype(int)
    assert np.abs(diff).mean() > 0.5
    rec = a[1]
    assert rec["id"] == 700 and rec["file_name"] == "objID123_1e0.jpg"
    assert rec["psf_fwhm_px"] == pytest.approx(5.0)  # 1.0" / 0.2"/px, sharper coadd blurred
    assert rec["degrade"]["blur_sigma_px"] == pytest.approx(3.0 / FWHM_PER_SIGMA)
    for ann in a[2]:
        assert ann["bbox"][2] == pytest.approx(2.5 * 5.0)  # box of the degraded PSF
        assert ann["iscrowd"] == int(ann["snr_1e"] < 5.0)
        assert (ann.get("ignore_reason") == D.IGNORE_REASON) == bool(ann["iscrowd"])
        assert ann["snr_coadd"] > ann["snr_1e"]  # shallower
    assert [ann["iscrowd"] for ann in a[2]] == [0, 1]  # the faint clump is ignored


def test_calibration_recovers_a_known_depth_factor():
    """Coadds with noise 0.01 and single-epoch images of the same sky with 2.5 x the noise:
    the source-density calibration finds a depth factor near 2.5, and the displayed sky sigma
    of the degraded images lands on the single-epoch one."""
    sky = dict(n_stars=400, size=300, flux=(-2.0, 2.0), jpeg=True)
    # pixel scale 0.198": the added noise is correlated over 0.5 x 0.396 / 0.198 = 1 px too
    galaxies = [D.CoaddGalaxy(str(s), _synthetic_rgb(s, 0.01, **sky), 4.0, 0.198)
                for s in range(2)]
    single = [D.image_statistics(_synthetic_rgb(s, 0.025, **sky), 4.0,
                                 np.random.default_rng(s)) for s in range(10, 14)]
    for s in single:
        s["fwhm_measured"] = 1.0
    cal = D.calibrate(galaxies, single, seed=0, steps=4, depth_range=(1.0, 8.0),
                      progress=False)
    # 2.5 x the noise before the JPEG round trip, 2.2 x after it (measured): about 2-2.5
    assert 1.8 < cal.depth_factor < 3.0
    assert cal.seeing_ratio == pytest.approx(1.0)
    assert cal.seeing_arcsec == pytest.approx(4.0 * 0.198)
    assert cal.degraded["sky_sigma"]["p50"] == pytest.approx(cal.single_epoch["sky_sigma"]["p50"],
                                                             rel=0.08)
    # fixing the depth skips the search
    fixed = D.calibrate(galaxies[:1], single, depth_factor=2.0, progress=False)
    assert fixed.depth_factor == 2.0 and fixed.search == []


def test_degrade_verb_needs_a_calibration(load_tool):
    tool = load_tool("eval_real")
    with pytest.raises(SystemExit):  # neither --single-epoch nor --calibration
        tool.main(["degrade", "--gzh", "x", "--out", "y"])
    args = tool.build_parser().parse_args(["degrade", "--gzh", "g", "--calibration", "c.json",
                                           "--galaxies", "1", "2", "--realisations", "2"])
    assert args.galaxies == ["1", "2"] and args.realisations == 2 and args.seed == 0


def test_degraded_dataset_on_real_galaxies(realdata, tmp_path, load_tool):
    from clump_d2.convert.gzh_s82 import catalogue_coco, fold_splits
    from clump_d2.data.datasets.builtin import load_clump_json, register_all_clump_datasets

    gzh = realdata / "gzh_s82_clumps"
    coco, _ = catalogue_coco(gzh)
    folds = fold_splits(coco)
    fold_of = {str(im["galaxy_id"]): name for name in ("train", "test")
               for im in folds[name][0]["images"]}
    with_clumps = {str(im["galaxy_id"]) for im in coco["images"]
                   if any(a["image_id"] == im["id"] for a in coco["annotations"])}
    chosen = [next(g for g, f in sorted(fold_of.items()) if f == name and g in with_clumps)
              for name in ("train", "test")]
    cal = D.Calibration(depth_factor=1.7, seeing_arcsec=1.32, seeing_ratio=1.02,
                        display_sigma=0.0136, display_sky=(0.0146, 0.0157, 0.0086),
                        density_target=0.0052)
    out = tmp_path / "s82deg"  # not the real dataset's name
    cal_file = cal.to_json(tmp_path / "cal.json")
    # through the tool's verb, with a calibration file (the 1,400-image measurement is slow)
    assert load_tool("eval_real").main([
        "degrade", "--gzh", str(gzh), "--calibration", str(cal_file), "--out", str(out),
        "--realisations", "2", "--seed", "0", "--galaxies", *chosen]) == 0
    paths = {p.stem: p for p in (out / "annotations").glob("*.json")
             if not p.name.endswith(".report.json")}
    assert set(paths) == {"all", "train", "test", "train_a", "train_b", "test_a", "test_b"}
    assert (out / "calibration.png").stat().st_size > 10000
    assert D.Calibration.from_json(out / "calibration.json").depth_factor == 1.7
    full = json.loads(paths["all"].read_text())
    assert len(full["images"]) == 4
    for name in ("train", "test"):
        split = json.loads(paths[name].read_text())
        assert {im["galaxy_id"] for im in split["images"]} == \
            {g for g in chosen if fold_of[g] == name}
        assert sorted(im["realisation"] for im in split["images"]) == [0, 1]
    n_coadd = sum(1 for a in coco["annotations"] for im in coco["images"]
                  if a["image_id"] == im["id"] and str(im["galaxy_id"]) in chosen)
    assert len(full["annotations"]) == 2 * n_coadd
    for ann in full["annotations"]:
        assert ann["iscrowd"] == int(ann["snr_1e"] < D.DEFAULT_SNR_MIN)
        assert math.isfinite(ann["snr_coadd"])
    for im in full["images"]:
        assert (out / "images" / im["file_name"]).stat().st_size > 5000
        assert im["psf_fwhm_px"] >= im["coadd_psf_fwhm_px"]
    summary = json.loads((out / "degrade_summary.json").read_text())
    assert summary["all"]["labels"] + summary["all"]["ignored"] == len(full["annotations"])
    names = register_all_clump_datasets(tmp_path, synthetic=False)
    assert "s82deg_test" in names and "s82deg_train_a" in names
    dicts = load_clump_json(paths["test"], out / "images")
    assert all(d["annotations"] and "snr_1e" in d["annotations"][0] for d in dicts)
