"""The calibrated display giant flag in the real-data giant target (``tools/eval_real.py paper
--flag-pct calibrated``): a named flag that is the catalogue's own, as a cut on the B ratio."""
import numpy as np
import pandas as pd
import pytest

import clump_d2  # noqa: F401
from clump_d2.photometry.calibration import CALIBRATED_BAND_LABEL, DisplayGiantCalibration
from clump_d2.photometry.measure import PhotometryOptions
from clump_d2.studies import realdata


def test_calibrated_u_flags_are_the_catalogue_cuts():
    options = PhotometryOptions(display_giant_calibration=(-0.2, 1.1))
    flags = realdata.calibrated_u_flags([3.0, 2.5], options)
    cal = DisplayGiantCalibration(-0.2, 1.1)
    assert flags == pytest.approx({"ucal3": 100 * cal.display_threshold(3.0),
                                   "ucal2p5": 100 * cal.display_threshold(2.5)})
    # a clump at the cut has a predicted u fraction of exactly 3 %
    assert cal.predict(np.array([flags["ucal3"] / 100]))[0] == pytest.approx(0.03)
    assert "u-band fraction >= 2.5 %" in realdata._flag_label("ucal2p5")
    with pytest.raises(ValueError, match="DISPLAY_GIANT_CALIBRATION"):
        realdata.calibrated_u_flags([3.0], PhotometryOptions(display_giant_calibration=()))


def test_giant_band_ratios_read_the_b_ratio_under_a_calibrated_label(monkeypatch):
    """The target's flags cut the display B ratio, also when the photometry's flags are the
    calibrated ones (their band label then names the u-band estimate)."""
    monkeypatch.setattr(realdata, "record_photometry_image", lambda rec, o: None)
    monkeypatch.setattr(realdata, "measure_image", lambda image, xy, fwhm, centre, o:
                        pd.DataFrame({"giant_band": [CALIBRATED_BAND_LABEL] * len(xy),
                                      "flux_ratio_B": [0.01, 0.02][:len(xy)],
                                      "flux_ratio_u_est": [0.5, 0.6][:len(xy)]}))
    record = {"width": 100, "height": 100, "psf_fwhm_px": 4.0, "file_name": "unused.jpg"}
    ratio = realdata.giant_band_ratios(record, np.array([[20.0, 20.0], [60.0, 60.0]]),
                                       np.array([10.0, 10.0]), PhotometryOptions())
    assert ratio.tolist() == [0.01, 0.02]


def test_eval_real_flag_pct_accepts_calibrated(load_tool):
    tool = load_tool("eval_real")
    assert tool.flag_spec("1.2") == 1.2
    assert tool.flag_spec("calibrated") == ("calibrated", 3.0)
    assert tool.flag_spec("calibrated:8") == ("calibrated", 8.0)
    args = tool.build_parser().parse_args(["paper", "--flag-pct", "3", "calibrated"])
    assert args.flag_pct == [3.0, ("calibrated", 3.0)]
