"""The detectability census: labelled clumps' S/N as the theory of a matched filter says,
unlabelled knots counted as unlisted, noise bounded by the negative peaks, and the summary's
arithmetic."""
import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from clump_d2.studies.detectability import (ImageCensus, dataset_census, image_census,
                                               summarise_census, write_census)
from clump_d2.sim.inject import gaussian_psf_stamp

SIZE, FWHM, NOISE = 160, 5.0, 1.0
LABELLED = [(60.5, 70.5), (105.2, 88.7), (80.0, 118.0)]
UNLABELLED = [(95.5, 55.5), (52.0, 100.0)]


def _galaxy(rng, clumps, flux=400.0, disc_flux=4e4, scale=14.0):
    """A smooth exponential disc (``disc_flux`` noise units), point clumps of ``flux``, white
    noise."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    r = np.hypot(xx - SIZE / 2, (yy - SIZE / 2) / 0.7)
    disc = np.exp(-r / scale)
    img = disc * disc_flux / disc.sum()
    for x, y in clumps:
        img = img + flux * gaussian_psf_stamp((SIZE, SIZE), x, y, FWHM)
    return img + rng.normal(0, NOISE, img.shape)


def _expected_snr(flux):
    """Peak of a Gaussian point source (sigma s) filtered by the PSF, minus what the unsharp
    mask (sigma 2 FWHM) takes, over the rms of PSF-filtered white noise."""
    s = FWHM / 2.3548
    smooth = 2.0 * FWHM
    peak = flux / (2 * math.pi) * (1 / (2 * s**2) - 1 / (2 * s**2 + smooth**2))
    return peak / (NOISE / (2 * math.sqrt(math.pi) * s))


def test_labelled_clump_snr_is_the_matched_filter_snr():
    c = image_census(_galaxy(np.random.default_rng(0), LABELLED), FWHM, LABELLED)
    expected = _expected_snr(400.0)
    assert c.clump_snr.shape == (3,)
    # +-15 %: the noise is measured with a MAD on ~1e4 correlated pixels, and the map's
    # maximum within 1.5 px sits on the peak plus noise.
    assert np.all(np.abs(c.clump_snr / expected - 1) < 0.15), (c.clump_snr, expected)


def test_unlabelled_knots_are_unlisted_and_labelled_ones_are_not():
    rng = np.random.default_rng(1)
    c = image_census(_galaxy(rng, LABELLED + UNLABELLED), FWHM, LABELLED)
    bright = c.unlisted_snr[c.unlisted_snr >= 0.5 * _expected_snr(400.0)]
    assert len(bright) == len(UNLABELLED)
    # with every knot labelled, none is unlisted at that S/N
    c2 = image_census(_galaxy(rng, LABELLED + UNLABELLED), FWHM, LABELLED + UNLABELLED)
    assert int((c2.unlisted_snr >= 0.5 * _expected_snr(400.0)).sum()) == 0


def test_noise_peak_estimates_of_a_smooth_disc():
    """On a disc without knots every positive peak is noise. On a faint, flat disc (the
    unsharp mask leaves nothing of it) the sky-density estimate and the segment's negative
    peaks both match their count within the Poisson scatter. On a bright, cuspy one the
    unsharp mask's residual pushes the noise down: fewer positive peaks, more negative ones,
    so the negative peaks stay an upper bound."""
    faint = [image_census(_galaxy(np.random.default_rng(10 + seed), [], disc_flux=8e3,
                                  scale=30.0), FWHM, []) for seed in range(6)]
    row = summarise_census(faint, thresholds=(1.5,))["thresholds"][0]
    pos = row["unlisted_peaks_above"]
    assert pos >= 30
    assert abs(row["noise_peaks_expected"] - pos) <= 3 * math.sqrt(pos), row
    assert abs(row["noise_peaks_at_most"] - pos) <= 3 * math.sqrt(pos), row
    assert row["unlisted_real_knots_at_least"] <= 3 * math.sqrt(pos)
    bright = [image_census(_galaxy(np.random.default_rng(20 + seed), []), FWHM, [])
              for seed in range(3)]
    row = summarise_census(bright, thresholds=(1.5,))["thresholds"][0]
    assert row["noise_peaks_at_most"] > 2 * row["unlisted_peaks_above"]
    assert row["unlisted_real_knots_at_least"] == 0


def test_summary_arithmetic():
    a = ImageCensus("a.png", np.array([1.0, 3.5, 6.0, np.nan]), np.array([0.001, 0.002, 0.02, 0.1]),
                    np.array([2.5, 3.1, 8.0]), np.array([2.2, 3.3]), 1000, np.array([3.0]), 2000,
                    np.array([-1.0, 0.5, 0.7, np.nan]), np.array([0.3, -0.2, -0.4]))
    b = ImageCensus("b.png", np.array([12.0]), np.array([0.05]), np.array([]), np.array([]), 500,
                    np.array([4.0, 6.0]), 1000, np.array([-0.1]), np.array([]))
    s = summarise_census([a, b], thresholds=(3.0, 5.0))
    assert s["clumps"] == 4 and s["clumps_outside_image"] == 1 and s["segment_area_px"] == 1500
    t3, t5 = s["thresholds"]
    assert (t3["clumps_above"], t3["unlisted_peaks_above"], t3["noise_peaks_at_most"]) == (3, 2, 1)
    assert t3["completeness"] == pytest.approx(0.75)
    # 3 sky minima >= 3 on 3000 sky px -> 1.5 expected on 1500 segment px; 1 at >= 5
    assert t3["noise_peaks_expected"] == pytest.approx(1.5)
    assert t5["noise_peaks_expected"] == pytest.approx(0.5)
    assert t3["unlisted_real_knots_at_least"] == 1
    assert t3["purity_all_peaks"] == pytest.approx(3 / 5)
    assert (t5["clumps_above"], t5["unlisted_peaks_above"], t5["noise_peaks_at_most"]) == (2, 1, 0)
    # colour at S/N >= 4: clumps 6.0 (0.7) and 12.0 (-0.1) -> 1 of 2 blue; unlisted 8.0 (-0.4)
    assert s["colour"]["labelled_clumps_bluer_than_grey"] == pytest.approx(0.5)
    assert s["colour"]["unlisted_peaks_bluer_than_grey"] == 0.0
    low = s["flux_bins"][0]  # 0-0.3 %: S/N 1.0 and 3.5
    assert low["clumps"] == 2 and low["median_snr"] == pytest.approx(2.25)
    assert low["fraction_snr_ge_3"] == pytest.approx(0.5)


def test_dataset_census_reads_the_crop_and_writes_its_files(tmp_path):
    """Records as the data loader gets them (a PNG with a crop, XYWH boxes): the census sees
    the crop, the files hold one row per clump and the tables."""
    rng = np.random.default_rng(3)
    img = _galaxy(rng, LABELLED + UNLABELLED)
    grey = np.clip(20 + 2 * img, 0, 255).astype(np.uint8)
    full = np.zeros((SIZE + 40, SIZE + 40, 3), np.uint8)
    full[20:20 + SIZE, 30:30 + SIZE] = grey[:, :, None]
    Image.fromarray(full).save(tmp_path / "g.png")
    h = 1.25 * FWHM
    rec = {"file_name": str(tmp_path / "g.png"), "crop": [30, 20, SIZE, SIZE],
           "psf_fwhm_px": FWHM,
           "annotations": [{"bbox": [x - h, y - h, 2 * h, 2 * h], "flux_fraction": 0.01}
                           for x, y in LABELLED]}
    census = dataset_census([rec])
    direct = image_census(grey, FWHM, LABELLED)
    assert np.allclose(census[0].clump_snr, direct.clump_snr)
    assert census[0].clump_snr.min() > 10
    summary = summarise_census(census)
    paths = write_census(census, summary, tmp_path / "out")
    rows = list(csv.DictReader(open(paths["csv"])))
    assert len(rows) == 3 and rows[0]["file_name"] == "g.png"
    assert float(rows[0]["snr"]) == pytest.approx(census[0].clump_snr[0], abs=1e-3)
    assert json.loads(paths["json"].read_text())["clumps"] == 3
    md = paths["md"].read_text()
    assert "| S/N >= |" in md and "| 0.01-0.03 | 3 |" in md
    assert paths["png"].stat().st_size > 10_000


def test_colours_of_blue_clumps_and_red_knots():
    """RGB: labelled clumps bluer than grey, unlabelled knots redder; the census measures the
    colour (B - R) / G = (1.5 - 0.5) / 1 = +1 and -1 at the S/N maxima."""
    rng = np.random.default_rng(5)
    grey = _galaxy(rng, [])
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    for (x, y), weights in [(xy, (0.5, 1.0, 1.5)) for xy in LABELLED] + \
                           [(xy, (1.5, 1.0, 0.5)) for xy in UNLABELLED]:
        rgb += 400.0 * gaussian_psf_stamp((SIZE, SIZE), x, y, FWHM)[:, :, None] * \
            np.array(weights)[None, None, :]
    c = image_census(rgb, FWHM, LABELLED)
    # +-0.25: the reference (G) contrast carries the noise, B - R does not (grey noise)
    assert c.clump_colour == pytest.approx([1.0] * 3, abs=0.25)
    bright = c.unlisted_snr >= 0.5 * _expected_snr(400.0)
    assert bright.sum() == 2 and c.unlisted_colour[bright] == pytest.approx([-1.0] * 2, abs=0.25)
    s = summarise_census([c])["colour"]
    assert s["labelled_clumps_bluer_than_grey"] == 1.0
    assert s["unlisted_peaks_bluer_than_grey"] <= 0.5  # the red knots, and noise of either sign
    assert np.isnan(image_census(grey, FWHM, LABELLED).clump_colour).all()  # one channel
