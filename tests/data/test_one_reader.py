"""Every reader of display images goes through the one reader (data.image_io), so a 16-bit
PNG is scaled, never clipped at 255, wherever it is read: network input, pictures, injection,
photometry, the catalogue converter's geometry."""
import numpy as np
from PIL import Image

from clump_d2.data.image_io import read_display_image
from clump_d2.data.stretch import DisplayStretch
from clump_d2.inference.visualize import display_image
from clump_d2.photometry.images import load_photometry_image
from clump_d2.sim.inject import load_linear


def test_16bit_png_reads_the_same_everywhere(tmp_path):
    yy, xx = np.mgrid[:40, :56]
    grey16 = np.round(65535 * np.exp(-((xx - 28) ** 2 + (yy - 20) ** 2) / 98.0)).astype(
        np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(grey16).save(path)
    expected = grey16 * (255 / 65535)

    net = read_display_image(path)
    np.testing.assert_allclose(net[..., 1], expected, rtol=1e-6)
    shown = display_image({"file_name": str(path)})
    assert shown.dtype == np.uint8 and np.abs(shown[..., 1] - expected).max() <= 0.5

    linear, kind = load_linear(str(path))
    assert kind == "display" and linear.shape == (40, 56, 3)
    redisplayed = DisplayStretch(10.0).display(linear)  # back to the bytes it came from
    assert np.abs(redisplayed[..., 1].astype(float) - expected).max() <= 1.0

    phot = load_photometry_image(path)
    assert phot.kind == "display" and phot.bands.shape == (3, 40, 56)
    np.testing.assert_allclose(phot.bands, DisplayStretch(10.0).linearise(net).transpose(2, 0, 1))
