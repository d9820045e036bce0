"""The calibrated SDSS preset: documented statistics, labels, and the default left alone."""

import numpy as np
import pytest

from clump_d2.sim.synthetic import (
    SdssRealism,
    SyntheticParams,
    galaxy_rng,
    render_galaxy,
    sample_psf_fwhm,
)
from clump_d2.sim.statistics import cutout_statistics, radial_profile
from clump_d2.structures import BOX_SIDE_PER_FWHM

N_SIM = 16


@pytest.fixture(scope="module")
def sims():
    params = SyntheticParams.sdss()
    return [render_galaxy(galaxy_rng(11, "test", k), params) for k in range(N_SIM)]


def _median_stats(rgbs):
    stats = [cutout_statistics(c) for c in rgbs]
    return {k: float(np.nanmedian([s[k] for s in stats])) for k in stats[0]}


def test_default_params_ignore_the_realism_fields():
    """The basic renderer (the default) does not read the new fields: changing them leaves
    its output byte-identical."""
    default = SyntheticParams(image_size=96, disc_re=(8.0, 16.0))
    assert default.realism == "basic" and default.sdss_realism is None
    other = SyntheticParams(image_size=96, disc_re=(8.0, 16.0),
                            sdss_realism=SdssRealism(jpeg_quality=10, knot_rate=50.0))
    for k in range(3):
        a = render_galaxy(galaxy_rng(0, "train", k), default)
        b = render_galaxy(galaxy_rng(0, "train", k), other)
        assert a.rgb.tobytes() == b.rgb.tobytes() and a.clumps == b.clumps
    with pytest.raises(ValueError, match="realism"):
        render_galaxy(galaxy_rng(0, "train", 0), SyntheticParams(realism="hst"))


def test_psf_follows_clump_scout_box_sizes():
    """Box side = 2.5 x FWHM: Clump Scout 4.3-48.2 px, median per image 17.5 px."""
    rng = np.random.default_rng(0)
    sides = BOX_SIDE_PER_FWHM * np.array([sample_psf_fwhm(rng, SdssRealism())
                                          for _ in range(4000)])
    assert sides.min() >= 4.3 - 1e-9 and sides.max() <= 48.2 + 1e-9
    assert 16.5 <= np.median(sides) <= 18.5
    assert 0.30 <= np.log(sides).std() <= 0.36  # Clump Scout: 0.332


def test_display_statistics_in_documented_ranges(sims):
    """Medians over simulated cutouts inside the real crops' 10-90 % ranges (README table)."""
    m = _median_stats([g.rgb for g in sims])
    assert 14 <= m["sky_median"] <= 31  # real 10/50/90 %: 14/23/44
    assert 9 <= m["sky_noise"] <= 16  # real: 10.4/13.8/21.3
    assert 0.69 <= m["sky_lag1"] <= 0.97  # real: 0.69/0.88/0.97 (correlated, resampled)
    assert m["sky_channel_corr"] >= 0.85  # real: 0.88/0.96/1.0 (grey noise)
    assert 0.17 <= m["bright_fraction"] <= 0.45  # real: 0.17/0.31/0.68
    assert 170 <= m["peak"] <= 255  # real: 170/217/253
    assert 1.03 <= m["blue_green"] <= 1.32  # real: 1.03/1.16/1.26
    assert 0.93 <= m["red_green"] <= 1.08  # real: 0.94/1.01/1.08
    prof = np.median([radial_profile(g.rgb) for g in sims], axis=0)
    assert prof[0] > 120 and prof[-1] < 40 and np.all(np.diff(prof[:12]) < 5)


def test_labels_follow_the_clump_scout_distributions(sims):
    params = SyntheticParams.sdss()
    more = sims + [render_galaxy(galaxy_rng(12, "test", k), params) for k in range(24)]
    counts = [len(g.clumps) for g in more]
    assert max(counts) <= 9
    assert 0.1 <= np.mean([c == 0 for c in counts]) <= 0.45  # 25 % negatives (+ rejections)
    clumps = [c for g in more for c in g.clumps]
    fracs = np.array([c["flux_frac"] for c in clumps])
    assert fracs.min() >= 0.03 - 1e-12 and fracs.max() <= 0.15 + 1e-12
    odd = np.mean([c["odd"] for c in clumps])
    assert 0.1 <= odd <= 0.45  # 27.6 % in Clump Scout
    for g in more:
        for c in g.clumps:
            # not on the bulge, inside the frame
            assert np.hypot(c["x"] - g.centre[0], c["y"] - g.centre[1]) >= g.psf_fwhm_px - 1e-9
            assert 0 <= c["x"] <= 200 and 0 <= c["y"] <= 200


def test_labelled_clumps_are_bluer_knots_than_their_disc(sims):
    """A normal clump is a local peak in r and bluer (g/r) than the disc 2 FWHM away."""
    n = 0
    for g in sims:
        gb, rb, _ = g.bands
        for c in g.clumps:
            if c["odd"] or c["flux_frac"] < 0.06:
                continue
            x, y = int(c["x"]), int(c["y"])
            d = int(2 * g.psf_fwhm_px)
            if not (d <= x < 200 - d and d <= y < 200 - d):
                continue
            ring = np.array([rb[y + dy, x + dx] for dy, dx in ((d, 0), (-d, 0), (0, d), (0, -d))])
            assert rb[y, x] > np.median(ring)
            n += 1
    assert n >= 3


def test_simulation_matches_the_real_crops(realdata):
    """Each statistic's simulated median lies within the real crops' 10-90 % range."""
    from clump_d2.studies.realism import real_crops, simulated_crops

    real = real_crops(realdata / "gzh_s82_clumps" / "jpegs")
    assert len(real) == 24
    stats_real = [cutout_statistics(c) for c in real]
    sim = _median_stats(simulated_crops(12, seed=3))
    for key in ("sky_noise", "sky_lag1", "sky_channel_corr", "bright_fraction", "peak",
                "blue_green", "red_green"):
        lo, hi = np.nanpercentile([s[key] for s in stats_real], [10, 90])
        assert lo - 1e-9 <= sim[key] <= hi + 1e-9, (key, lo, sim[key], hi)


def test_catalogue_preset_labels_follow_the_mehta_catalogue():
    """sdss_catalogue(): flux fractions log-normal around 0.33 % (catalogue 25/50/75 %:
    0.14/0.33/0.86 %) plus 15 % bright (3-15 %) clumps, within 0.03-15 %; ~5.7 clumps per
    clumpy galaxy; one class; clumps out to ~3 R_e and near the centre; the images' sky and
    display as the sdss preset's."""
    params = SyntheticParams.sdss_catalogue()
    assert params.realism == "sdss" and params.odd_fraction == 0.0
    gals = [render_galaxy(galaxy_rng(5, "test", k), params) for k in range(40)]
    clumps = [c for g in gals for c in g.clumps]
    fracs = np.array([c["flux_frac"] for c in clumps])
    assert fracs.min() >= 0.0003 - 1e-12 and fracs.max() <= 0.15 + 1e-12
    assert 0.0025 <= np.median(fracs) <= 0.0065
    q25, q75 = np.percentile(fracs, [25, 75])
    assert 0.0007 <= q25 <= 0.0025 and 0.0060 <= q75 <= 0.0300
    assert 0.08 <= np.mean(fracs >= 0.03) <= 0.30  # 15 % bright + the log-normal's tail
    assert not any(c["odd"] for c in clumps)
    clumpy = [len(g.clumps) for g in gals if g.clumps]
    assert 3.0 <= np.mean(clumpy) <= 8.0 and max(clumpy) <= 20
    # sdss() draws no clump within 2 bulge R_e or beyond 1.6 R_e; this preset does
    near = [np.hypot(c["x"] - g.centre[0], c["y"] - g.centre[1]) / g.psf_fwhm_px
            for g in gals for c in g.clumps]
    assert min(near) >= 1.0 - 1e-9 and np.percentile(near, 10) < 3.0
    assert max(c["distance_px"] for c in clumps) > 1.6 * 32
    m = _median_stats([g.rgb for g in gals[:16]])
    assert 9 <= m["sky_noise"] <= 16 and 0.69 <= m["sky_lag1"] <= 0.97


def test_sdss_preset_unchanged_by_the_catalogue_fields():
    """The new SdssRealism fields default to the sdss() behaviour: explicit defaults give
    byte-identical galaxies, and a catalogue-only field changes them."""
    base = SyntheticParams.sdss(image_size=96, disc_re=(8.0, 16.0))
    explicit = SyntheticParams.sdss(image_size=96, disc_re=(8.0, 16.0), sdss_realism=SdssRealism(
        clump_radius_re=(0.3, 1.6), clump_min_sep_fwhm=1.2, centre_exclusion_bulge_re=2.0,
        clump_frac_lognormal=None))
    other = SyntheticParams.sdss(image_size=96, disc_re=(8.0, 16.0), sdss_realism=SdssRealism(
        clump_frac_lognormal=(0.05, 0.1)))
    differs = 0
    for k in range(4):
        a, b, c = (render_galaxy(galaxy_rng(2, "train", k), p) for p in (base, explicit, other))
        assert a.rgb.tobytes() == b.rgb.tobytes() and a.clumps == b.clumps
        differs += a.clumps != c.clumps
    assert differs >= 1


def test_single_epoch_preset_is_the_sdss_galaxies_shallower():
    """sdss_single_epoch(): the labels of sdss(), a shallower display (darker sky, fewer grey
    levels of sky noise, sky noise correlated over more pixels) calibrated on GZ2 cut-outs."""
    se, co = SyntheticParams.sdss_single_epoch(), SyntheticParams.sdss()
    assert se.realism == "sdss" and se.clump_frac == co.clump_frac
    assert se.odd_fraction == co.odd_fraction and se.max_clumps == co.max_clumps
    assert se.sdss_realism.lupton_stretch > 2 * co.sdss_realism.lupton_stretch
    assert SyntheticParams.sdss_single_epoch(image_size=96).image_size == 96
    gals = [render_galaxy(galaxy_rng(11, "test", k), se) for k in range(12)]
    m_se = _median_stats([g.rgb for g in gals])
    m_co = _median_stats([render_galaxy(galaxy_rng(11, "test", k), co).rgb for k in range(12)])
    # GZ2 crops (gz2_sdss_1400, 200 random): sky median grey ~4.7, noise ~4.4, lag-1 ~0.91
    assert 2.0 <= m_se["sky_median"] <= 8.0 < m_co["sky_median"]
    assert 3.0 <= m_se["sky_noise"] <= 6.5 < m_co["sky_noise"]
    assert m_se["sky_lag1"] > m_co["sky_lag1"]
    assert 0.75 <= m_se["blue_green"] <= 1.0 and 1.05 <= m_se["red_green"] <= 1.3
    assert sum(len(g.clumps) for g in gals) >= 8  # the Clump Scout population is drawn


def test_simulate_sdss_single_epoch_preset(tmp_path):
    import json

    from clump_d2.sim.synthetic import simulate_sdss

    paths = simulate_sdss(tmp_path, num_train=3, num_val=0, image_size=96,
                          preset="single_epoch")
    assert set(paths) == {"train"}
    d = json.loads(paths["train"].read_text())
    assert len(d["images"]) == 3
    with pytest.raises(ValueError, match="single_epoch"):
        simulate_sdss(tmp_path, num_train=1, num_val=0, preset="nope")


def test_single_epoch_matches_the_gz2_crops(realdata):
    """Each calibrated statistic's simulated median lies within the real GZ2 crops' 10-90 %."""
    from clump_d2.studies.realism import real_crops, simulated_crops

    real = real_crops(realdata / "gz2_sdss_1400" / "jpegs" / "*" / "*.jpg", limit=60, seed=0)
    assert len(real) == 60
    stats_real = [cutout_statistics(c) for c in real]
    sim = _median_stats(simulated_crops(12, seed=3,
                                        params=SyntheticParams.sdss_single_epoch()))
    for key in ("sky_median", "sky_noise", "sky_lag1", "bright_fraction", "peak",
                "blue_green", "red_green"):
        lo, hi = np.nanpercentile([s[key] for s in stats_real], [10, 90])
        assert lo - 1e-9 <= sim[key] <= hi + 1e-9, (key, lo, sim[key], hi)
