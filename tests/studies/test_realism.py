"""compare_real_sim's real cut-outs are read by the one display reader: a decompression bomb is
refused before decoding, naming the file, and an ordinary image gives its central crop."""
import numpy as np
import pytest
from image_helpers import write_png

from clump_d2.data.image_io import ImageSizeError
from clump_d2.studies.realism import real_crops


def test_real_crops_bound_pixels_and_cut_the_centre(tmp_path):
    good = tmp_path / "good"
    write_png(good / "a.png", 64, 48, value=77)
    crops = real_crops(good, crop_size=32)
    assert len(crops) == 1 and crops[0].shape == (32, 32, 3) and crops[0].dtype == np.uint8
    assert (crops[0] == 77).all()
    bomb = tmp_path / "bomb"
    write_png(bomb / "b.png", 12000, 12000, rows=1)
    with pytest.raises(ImageSizeError, match="b.png"):
        real_crops(bomb, crop_size=32)
