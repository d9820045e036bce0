"""Clump box helpers of clump_d2.structures."""
import numpy as np
import pytest

from clump_d2.structures import clump_box_xywh_in_frame


def test_clump_position_prefers_the_catalogue_position():
    """A clipped box's centre is off the clump; the converter's x/y is not."""
    from clump_d2.structures import clump_position

    assert clump_position({"bbox": [10.0, 20.0, 4.0, 6.0]}) == (12.0, 23.0)
    clipped = {"bbox": [0.0, 20.0, 3.0, 6.0], "x": 0.5, "y": 23.0}  # box cut at x = 0
    assert clump_position(clipped) == (0.5, 23.0)


def test_clump_box_clipped_to_image():
    box = clump_box_xywh_in_frame(1.0, 50.0, 8.0, 100, 100)
    assert box[0] == 0.0 and np.isclose(box[2], 11.0)
    assert np.isclose(box[3], 20.0)


def test_attribute_limits_parse_and_compare():
    from clump_d2.structures import below_limits, parse_attribute_limits

    limits = parse_attribute_limits(["flux_frac_u:0.03", " flux_frac : 5e-3"])
    assert limits == {"flux_frac_u": 0.03, "flux_frac": 0.005}
    assert parse_attribute_limits([" a : 1e-2"]) == {"a": 0.01}
    for bad in (["flux_frac_u"], ["x:y"], ["flux_frac_u:x"], [":1"], [":0.1"], ["a:inf"],
                ["a:nan"]):
        with pytest.raises(ValueError, match="attribute:limit"):
            parse_attribute_limits(bad)
    assert below_limits({"flux_frac_u": 0.029, "flux_frac": 0.001}, limits) == [
        "flux_frac_u", "flux_frac"]
    assert below_limits({"flux_frac_u": 0.03}, limits) == []  # at the limit: kept
    assert below_limits({"flux_frac_u": float("nan"), "flux_frac": True}, limits) == []
    assert below_limits({}, limits) == []
