"""PSF FWHM estimated from an image's compact sources."""
import numpy as np

from clump_d2.data.psf import FWHM_PER_SIGMA, estimate_psf_fwhm


def _image(fwhm, rng, n_stars=5, size=160, noise=2.0, galaxy=True, knot_fwhm=None):
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    img = np.full((size, size), 20.0)
    if galaxy:  # an extended central galaxy, much wider than the PSF
        img += 180 * np.exp(-np.hypot(xx - size / 2, yy - size / 2) / 12.0)
    s = fwhm / FWHM_PER_SIGMA
    for _ in range(n_stars):
        x, y = rng.uniform(15, size - 15, 2)
        if np.hypot(x - size / 2, y - size / 2) < 40:
            x += 50
        img += rng.uniform(60, 150) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s**2))
    if knot_fwhm:  # wider, extended blobs that are not stars
        for _ in range(4):
            x, y = rng.uniform(20, size - 20, 2)
            sk = knot_fwhm / FWHM_PER_SIGMA
            img += 80 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sk**2))
    img += rng.normal(0, noise, img.shape)
    return np.clip(np.repeat(img[:, :, None], 3, axis=2), 0, 255)


def test_recovers_the_seeing_within_ten_percent():
    rng = np.random.default_rng(0)
    for fwhm in (3.0, 5.0, 7.0):
        est = estimate_psf_fwhm(_image(fwhm, rng))
        assert est.ok and est.n_sources >= 2
        assert abs(est.fwhm_px - fwhm) / fwhm < 0.1, (fwhm, est)


def test_extended_knots_do_not_widen_it():
    rng = np.random.default_rng(1)
    est = estimate_psf_fwhm(_image(4.0, rng, n_stars=4, knot_fwhm=9.0))
    assert abs(est.fwhm_px - 4.0) / 4.0 < 0.12, est


def test_saturated_and_missing_sources():
    rng = np.random.default_rng(2)
    img = _image(4.0, rng, n_stars=0, galaxy=True)
    est = estimate_psf_fwhm(img)
    assert not est.ok and est.n_sources == 0 and np.isnan(est.fwhm_px)
    flat_topped = np.clip(_image(4.0, rng, n_stars=5) * 3.0, 0, 255)  # every star clipped
    assert estimate_psf_fwhm(flat_topped).n_sources == 0
