"""The u-band calibration of display giant flags: fit, inversion, flags, cross-validation, and
(where ``../shared`` is present) the cross-validation on real GZH S82 galaxies."""
import numpy as np
import pytest

import clump_d2  # noqa: F401
from clump_d2.config import add_clump_config
from clump_d2.photometry.calibration import (
    DEFAULT_DISPLAY_GIANT_CALIBRATION,
    DisplayGiantCalibration,
    calibrated_giant_flags,
    cross_validated_estimates,
    fit_display_calibration,
    flag_counts,
    scatter_dex,
)
from clump_d2.photometry.measure import PhotometryOptions


def _synthetic(rng, n, a, b, c, noise=0.03):
    """Clumps of known u fraction whose display ratios follow the calibration line."""
    log_u = rng.uniform(-3.5, -1.0, n)
    colour = rng.normal(0.0, 0.15, n)  # log10(B ratio / R ratio)
    log_b = (a + b * log_u + c * colour) + rng.normal(0.0, noise, n)
    return 10 ** log_u, 10 ** log_b, 10 ** (log_b - colour)


def test_fit_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    u, b, r = _synthetic(rng, 300, -0.3, 1.2, 0.5)
    cal = fit_display_calibration(u, b, r, colour=True)
    assert cal.coefficients == pytest.approx((-0.3, 1.2, 0.5), abs=0.03)
    assert cal.n_fit == 300 and cal.n_clipped == 0
    only_b = fit_display_calibration(*_synthetic(rng, 300, 0.1, 1.3, 0.0)[:2])
    assert only_b.coefficients == pytest.approx((0.1, 1.3, 0.0), abs=0.03)
    # the inverse is exact on the noiseless line, and NaN where no logarithm exists
    exact = DisplayGiantCalibration(0.1, 1.3)
    true_u = np.array([0.001, 0.03, 0.2])
    assert exact.predict(10 ** (0.1 + 1.3 * np.log10(true_u))) == pytest.approx(true_u)
    assert np.isnan(exact.predict(np.array([0.0, -0.01, np.nan]))).all()


def test_fit_clipping_and_bad_points():
    rng = np.random.default_rng(1)
    u, b, _ = _synthetic(rng, 200, -0.2, 1.25, 0.0, noise=0.05)
    b[:10] /= 100.0  # ten display failures, 2 dex low
    b[10:15] = -0.01  # negative ratios: left out of the fit
    plain = fit_display_calibration(u, b)
    clipped = fit_display_calibration(u, b, clip_sigma=3.0)
    assert plain.n_fit == clipped.n_fit == 195 and clipped.n_clipped >= 10
    assert clipped.coefficients[:2] == pytest.approx((-0.2, 1.25), abs=0.05)
    assert abs(plain.intercept + 0.2) > 0.1  # the failures pull the unclipped line
    with pytest.raises(ValueError, match="too few"):
        fit_display_calibration(u[:3], b[:3])
    with pytest.raises(ValueError, match="slope"):
        fit_display_calibration(u, 1.0 / b)  # display ratios falling with u


def test_flags_at_thresholds():
    cal = DisplayGiantCalibration(-0.071, 1.254)
    cut3, cut8 = cal.display_threshold(3.0), cal.display_threshold(8.0)
    assert cal.predict(np.array([cut3]))[0] == pytest.approx(0.03)
    ratio_b = np.array([cut3 * 0.999, cut3 * 1.001, cut8 * 0.999, cut8 * 1.001, np.nan, -1.0])
    flags = calibrated_giant_flags(cal.predict(ratio_b), (3.0, 8.0))
    assert flags["is_giant_3pct"].tolist() == [False, True, True, True, False, False]
    assert flags["is_giant_8pct"].tolist() == [False, False, False, True, False, False]
    # a colour term moves the flag with colour; it is then no cut on the B ratio
    coloured = DisplayGiantCalibration(-0.071, 1.254, 0.5)
    same_b = np.full(2, cut3 * 1.001)
    est = coloured.predict(same_b, same_b / np.array([0.5, 2.0]))  # red, blue relative to host
    assert calibrated_giant_flags(est, (3.0,))["is_giant_3pct"].tolist() == [True, False]
    with pytest.raises(ValueError, match="colour"):
        coloured.display_threshold(3.0)
    with pytest.raises(ValueError, match="R ratio"):
        coloured.predict(same_b)


def test_config_key_and_options():
    assert DisplayGiantCalibration.from_sequence(()) is None
    with pytest.raises(ValueError, match="a, b"):
        DisplayGiantCalibration.from_sequence((1.0,))
    with pytest.raises(ValueError, match="slope"):
        DisplayGiantCalibration.from_sequence((0.0, -1.0))
    from detectron2.config import get_cfg

    cfg = add_clump_config(get_cfg())
    assert tuple(cfg.PHOTOMETRY.DISPLAY_GIANT_CALIBRATION) == DEFAULT_DISPLAY_GIANT_CALIBRATION
    assert PhotometryOptions().display_giant_calibration == DEFAULT_DISPLAY_GIANT_CALIBRATION
    cfg.merge_from_list(["PHOTOMETRY.DISPLAY_GIANT_CALIBRATION", "()"])
    assert PhotometryOptions.from_config(cfg).display_giant_calibration == ()


def test_cross_validation_holds_each_group_out():
    """Two galaxies on different lines: each is predicted by the other's line only."""
    log_u = np.log10(np.array([0.001, 0.01, 0.05, 0.002, 0.02, 0.1]))
    groups = np.array(["a", "a", "a", "b", "b", "b"])
    line = {"a": (0.0, 1.0), "b": (-0.5, 1.0)}
    log_b = np.array([line[g][0] + line[g][1] * lu for g, lu in zip(groups, log_u)])
    # four clumps per galaxy are needed for a fit of two coefficients: duplicate them
    u = 10 ** np.tile(log_u, 2)
    b = 10 ** np.tile(log_b, 2)
    g = np.tile(groups, 2)
    est = cross_validated_estimates(u, b, g)
    in_a = g == "a"
    # a's clumps read through b's line: log u_est = (log B_a + 0.5) = log u + 0.5
    assert np.log10(est[in_a]) == pytest.approx(np.log10(u[in_a]) + 0.5)
    assert np.log10(est[~in_a]) == pytest.approx(np.log10(u[~in_a]) - 0.5)
    counts = flag_counts(u, est >= 0.03, 3.0)
    # truly >= 3 %: 0.05 and 0.1 (x2); flagged: a's >= 0.0095 (0.01, 0.05) and b's >= 0.095
    assert (counts["n_true"], counts["n_flagged"], counts["n_both"]) == (4, 6, 4)
    assert counts["purity"] == pytest.approx(4 / 6) and counts["completeness"] == 1.0
    s = scatter_dex(est, u)
    # half the clumps +0.5 dex, half -0.5 dex
    assert s["n"] == 12 and s["median"] == pytest.approx(0.0) and s["std"] == pytest.approx(0.5)
    assert s["robust"] == pytest.approx(1.4826 * 0.5)


def test_real_gzh_cross_validation(realdata):
    """The first 6 GZH S82 galaxies, measured as the catalogue measures: the display B ratio
    rises with the catalogue's u-band fraction, the shipped calibration predicts it without
    gross bias, and the cross-validated flags are counted as the table counts them."""
    from clump_d2.studies.giant_calibration import calibrate, measure_catalogue_clumps

    gzh = realdata / "gzh_s82_clumps"
    if not gzh.is_dir():
        pytest.skip(f"{gzh} not present")
    df = measure_catalogue_clumps(gzh, galaxies=6)
    assert df["galaxy_id"].nunique() >= 4 and len(df) >= 20
    assert (df["giant_band"] == "u (calibrated from display)").all()
    u, b = df["flux_frac_u"].to_numpy(), df["flux_ratio_B"].to_numpy()
    shipped = DisplayGiantCalibration(*DEFAULT_DISPLAY_GIANT_CALIBRATION)
    np.testing.assert_allclose(df["flux_ratio_u_est"], shipped.predict(b), rtol=1e-12)
    good = b > 0
    assert np.corrcoef(np.log10(u[good]), np.log10(b[good]))[0, 1] > 0.5
    s = scatter_dex(df["flux_ratio_u_est"].to_numpy(), u)
    assert abs(s["median"]) < 0.2 and s["robust"] < 0.4
    res = calibrate(df)
    assert res["calibration"].slope > 0
    rows = [r for r in res["rows"] if r["estimate"] == "leave one galaxy out"
            and r["clumps"] == "all" and r["pct"] == 3.0]
    assert len(rows) == 1 and rows[0]["n_true"] == int((u >= 0.03).sum())
    est = cross_validated_estimates(u, b, df["galaxy_id"],
                                    fit_mask=df["distance_fwhm"].to_numpy() >= 1.0)
    assert rows[0]["n_flagged"] == int((est >= 0.03).sum())
