"""Injection primitives: clumps land where asked with the flux asked, in display and linear
images (clump_d2.sim.inject)."""
import numpy as np
import pytest

from clump_d2.data.stretch import DisplayStretch
from clump_d2.sim.inject import gaussian_psf_stamp, inject

from injection_helpers import FWHM, SIZE, aperture, centroid, smooth_galaxy


def test_psf_stamp_unit_flux_and_centred():
    s = gaussian_psf_stamp((50, 50), 20.3, 27.8, 4.0)
    assert s.sum() == pytest.approx(1.0, abs=1e-6)
    assert centroid(s, 20.3, 27.8, 12) == pytest.approx((20.3, 27.8), abs=1e-3)


def test_injected_flux_and_position_by_aperture_photometry():
    lin = smooth_galaxy(np.random.default_rng(0))
    positions = [(35.2, 50.7), (80.6, 70.1)]
    fluxes = [[30.0, 25.0, 20.0], [12.0, 10.0, 8.0]]
    out = inject(lin, positions, fluxes, FWHM)
    diff = out - lin
    for (x, y), f in zip(positions, fluxes):
        # aperture of 2 FWHM holds > 99.9 % of a Gaussian's light
        got = aperture(diff, x, y, 2 * FWHM)
        assert np.allclose(got, f, rtol=1e-3)
        assert centroid(diff[:, :, 1], x, y, 2 * FWHM) == pytest.approx((x, y), abs=0.02)
        # on the noisy image, background-subtracted photometry recovers it within 5 %
        assert np.allclose(aperture(out, x, y, 2 * FWHM) - aperture(lin, x, y, 2 * FWHM), f,
                           rtol=1e-3)


def test_display_round_trip_keeps_the_requested_flux():
    """8-bit display -> linear -> inject -> display -> linear: the clump's flux and position
    come back within the 8-bit quantisation."""
    disp = DisplayStretch(q=10.0)
    rgb = disp.display(smooth_galaxy(np.random.default_rng(1)))
    assert 0 < rgb.mean() < 200
    rng = np.random.default_rng(5)
    lin = disp.linearise(rgb, rng)  # dithered within each 8-bit bin
    assert np.array_equal(disp.display(lin), rgb)
    f = np.array([1.5, 1.3, 1.1])
    back = disp.linearise(disp.display(inject(lin, [(40.3, 55.6)], [f], FWHM)), rng)
    got = aperture(back - lin, 40.3, 55.6, 2 * FWHM)
    assert got.sum() == pytest.approx(f.sum(), rel=0.05)  # dither noise: ~3 % here
    assert np.allclose(got, f, rtol=0.12)
    assert centroid((back - lin).mean(axis=2), 40.3, 55.6, 2 * FWHM) == pytest.approx(
        (40.3, 55.6), abs=0.3)
