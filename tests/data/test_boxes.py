"""Clump box helpers of clump_d2.data.boxes."""


def test_clump_position_prefers_the_catalogue_position():
    """A clipped box's centre is off the clump; the converter's x/y is not."""
    from clump_d2.data.boxes import clump_position

    assert clump_position({"bbox": [10.0, 20.0, 4.0, 6.0]}) == (12.0, 23.0)
    clipped = {"bbox": [0.0, 20.0, 3.0, 6.0], "x": 0.5, "y": 23.0}  # box cut at x = 0
    assert clump_position(clipped) == (0.5, 23.0)
