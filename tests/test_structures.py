"""Clump box helpers of clump_d2.structures."""
import numpy as np

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
