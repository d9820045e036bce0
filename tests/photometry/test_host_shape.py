"""The host's half-light radius: an exponential disc of known R50, noiseless and through the
host segment of a noisy image, agrees with the analytic value and with the injection's R50."""
import math

import numpy as np
import pytest

from clump_d2.photometry.host_shape import half_light_radius, host_r50
from clump_d2.photometry.images import PhotometryImage
from clump_d2.photometry.segmentation import segment_host
from clump_d2.sim.inject import host_properties

#: R50 / scale length of an exponential disc: (1 + x) exp(-x) = 1/2 at x = 1.67835.
R50_PER_H = 1.678347


def _disc(size=201, h=7.0, centre=(100.5, 100.5), peak=1.0):
    yy, xx = np.mgrid[0:size, 0:size] + 0.5  # pixel centres, continuous coordinates
    return peak * np.exp(-np.hypot(xx - centre[0], yy - centre[1]) / h)


def test_half_light_radius_of_a_noiseless_disc():
    h = 7.0
    image = _disc(h=h)
    r = np.hypot(*(np.mgrid[0:201, 0:201] + 0.5 - 100.5))
    mask = r < 14 * h  # holds all but 1e-5 of the light
    assert half_light_radius(image, mask, (100.5, 100.5)) == pytest.approx(R50_PER_H * h,
                                                                           rel=0.02)
    # off-centre galaxy, NaN and negative pixels count nothing
    shifted = _disc(h=h, centre=(90.0, 110.0))
    shifted[5, 5], shifted[6, 6] = np.nan, -50.0
    assert half_light_radius(shifted, np.ones_like(mask), (90.0, 110.0)) == pytest.approx(
        R50_PER_H * h, rel=0.02)
    assert math.isnan(half_light_radius(image, np.zeros_like(mask), (100.5, 100.5)))


def test_host_r50_on_the_segment_of_a_noisy_disc_matches_the_injection_scale():
    h, sky, sigma = 6.0, 20.0, 1.0
    rng = np.random.default_rng(0)
    disc = _disc(h=h, peak=800.0)
    bands = np.stack([disc * c + sky + rng.normal(0, sigma, disc.shape)
                      for c in (1.2, 1.0, 0.8)])  # a redder-than-flat colour
    image = PhotometryImage(bands, ["R", "G", "B"], "display")
    segment = segment_host(bands.mean(axis=0), 3.0)
    r50 = host_r50(image, segment)
    assert r50 == pytest.approx(R50_PER_H * h, rel=0.04)
    # the injection measures R50 on its own segment of the same light: the same scale
    injected = host_properties(np.moveaxis(bands, 0, -1), 3.0)["r50"]
    assert r50 == pytest.approx(injected, rel=0.05)
    nothing = segment_host(rng.normal(0, sigma, disc.shape), 3.0)
    assert not nothing.found and math.isnan(host_r50(image, nothing))
