"""Image formats known in one place: suffixes, the reader decision, the band file; bit depth
of display images (16-bit PNGs scaled to the 8-bit range, never clipped)."""
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clump_d2.data import fits_io
from clump_d2.data.image_io import (
    FITS_SUFFIXES,
    IMAGE_SUFFIXES,
    band_file,
    is_fits,
    is_image_file,
    reads_as_fits,
    strip_image_suffix,
)
from clump_d2.data.mapper import read_image_file

REPO = Path(__file__).resolve().parents[2]


def test_reader_decision_and_suffixes():
    assert fits_io.FITS_SUFFIXES is FITS_SUFFIXES  # one list, re-exported for FITS readers
    for name in ("a.fits", "A.FIT", "b.fts", "c.fits.gz", "d.fit.gz", "e.fits.fz"):
        assert is_fits(name) and reads_as_fits(name) and is_image_file(name)
    for name in ("a.png", "b.JPG", "c.jpeg", "d.tif", "e.tiff"):
        assert not reads_as_fits(name) and is_image_file(name)
    assert reads_as_fits("J1_{band}.fits") and reads_as_fits("J1_{band}")
    assert reads_as_fits("x.png", band_files={"g": "g.fits"})
    assert not is_image_file("t.csv") and len(IMAGE_SUFFIXES) == 11
    assert strip_image_suffix("dir/a.fits.gz") == "dir/a"
    assert strip_image_suffix("a.PNG") == "a" and strip_image_suffix("a.csv") == "a.csv"


def test_band_file():
    assert band_file("x_{band}.fits", None, "r") == "x_r.fits"
    assert band_file("x.fits", {"g": "g.fits", "r": "r.fits"}, "r") == "r.fits"
    assert band_file("x.fits", {"g": "g.fits", "i": "i.fits"}, "r") == "g.fits"  # first
    assert band_file("x.png") == "x.png"


# --- bit depth: 16-bit PNGs are scaled to the 8-bit range, never clipped ----------------------

def _png16_rgb(arr: np.ndarray, path) -> None:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n"
                           + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _galaxy16(size=48) -> np.ndarray:
    """A smooth 16-bit galaxy using the whole range (a centre at 65535)."""
    yy, xx = np.mgrid[:size, :size]
    r2 = (xx - size / 2) ** 2 + (yy - size / 2) ** 2
    return np.round(65535 * np.exp(-r2 / (2 * 8.0 ** 2))).astype(np.uint16)


def test_16bit_grey_png_reads_as_its_8bit_version_through_the_mapper(tmp_path):
    from clump_d2.data.mapper import ClumpDatasetMapper
    from clump_d2.engine import build_config

    grey16 = _galaxy16()
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")  # really 16 bits on disk
    grey8 = np.round(grey16 * (255 / 65535)).astype(np.uint8)
    Image.fromarray(np.repeat(grey8[:, :, None], 3, 2)).save(tmp_path / "g8.png")

    cfg = build_config(str(REPO / "configs" / "quickstart.yaml"), ["MODEL.DEVICE", "cpu"])
    mapper = ClumpDatasetMapper(cfg, is_train=False)
    out = {}
    for name in ("g16", "g8"):
        record = {"file_name": str(tmp_path / f"{name}.png"), "image_id": name,
                  "height": 48, "width": 48}
        out[name] = mapper(record)["image"].float()
    assert out["g16"].shape == out["g8"].shape == (3, 48, 48)
    assert float((out["g16"] - out["g8"]).abs().max()) <= 1.0  # within 1 grey level
    assert float(out["g16"].max()) == pytest.approx(255.0)  # the centre: not clipped...
    assert float(out["g16"].median()) < 128  # ...and the image not a saturated blob

    scaled = read_image_file(tmp_path / "g16.png")
    assert scaled.dtype == np.float32 and scaled.shape == (48, 48, 3)
    np.testing.assert_allclose(scaled[..., 0], grey16 * (255 / 65535), rtol=1e-6)
    assert read_image_file(tmp_path / "g16.png", image_format="L").shape == (48, 48, 1)
    with pytest.raises(ValueError, match=r"g16\.png: a 16-bit grey image cannot be read in "
                                         r"format 'YUV-BT.601'"):
        read_image_file(tmp_path / "g16.png", image_format="YUV-BT.601")


def test_8bit_unchanged_16bit_colour_within_one_level_float_refused(tmp_path):
    from detectron2.data.detection_utils import read_image

    rgb8 = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb8).save(tmp_path / "c8.png")
    for fmt in ("RGB", "BGR"):
        got = read_image_file(tmp_path / "c8.png", image_format=fmt)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, read_image(str(tmp_path / "c8.png"), format=fmt))

    g = _galaxy16(32).astype(np.int64)
    rgb16 = np.stack([g, g // 2, 65535 - g], -1).astype(np.uint16)
    _png16_rgb(rgb16, tmp_path / "c16.png")
    got = read_image_file(tmp_path / "c16.png").astype(np.float64)
    assert np.abs(got - rgb16 * (255 / 65535)).max() <= 1.0

    Image.fromarray(np.full((8, 8), 3.5, np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ValueError, match=r"f\.tif: a 'F' image .* give it as FITS"):
        read_image_file(tmp_path / "f.tif")
