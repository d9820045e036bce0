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


# --- sizes: bounded before decoding; truncated pixel data is an error -----------------------

def _fits_header_only(path, width, height, planes=0):
    """A FITS file whose header declares an image but holds (almost) none of its data."""
    from astropy.io import fits

    header = fits.Header()
    header["SIMPLE"], header["BITPIX"] = True, 8
    header["NAXIS"] = 3 if planes else 2
    header["NAXIS1"], header["NAXIS2"] = width, height
    if planes:
        header["NAXIS3"] = planes
    Path(path).write_bytes(header.tostring().encode() + b"\0" * 2880)


def test_declared_size_is_refused_before_decoding_naming_the_file(tmp_path):
    """A 115-byte PNG declaring 12000 x 12000 (432 MB decoded, ~46 GB in the detector), a
    FITS header declaring as much, and a 1 x 1 image are refused from their headers."""
    from image_helpers import write_png

    from clump_d2.data.image_io import (
        DEFAULT_MAX_PIXELS,
        MIN_IMAGE_SIDE,
        ImageSizeError,
        read_display_image,
    )

    assert DEFAULT_MAX_PIXELS == 1024 * 1024 and MIN_IMAGE_SIDE == 16
    bomb = write_png(tmp_path / "bomb.png", 12000, 12000, rows=1)
    assert bomb.stat().st_size < 200
    msg = r"bomb\.png: 12000 x 12000 = 144\.0 Mpx > INPUT\.MAX_PIXELS = 1048576 \(1\.0 Mpx\)"
    with pytest.raises(ImageSizeError, match=msg):
        read_display_image(bomb)
    with pytest.raises(ImageSizeError, match=msg):
        read_image_file(bomb)  # the network's reader
    # over Pillow's own limit (~179 Mpx, where it raises before we could look): still ours
    with pytest.raises(ImageSizeError, match=r"huge\.png: .*decompression-bomb limit"):
        read_display_image(write_png(tmp_path / "huge.png", 20000, 20000, rows=1))
    with pytest.raises(ImageSizeError, match=r"dot\.png: 1 x 1 px is smaller than 16 px"):
        read_display_image(write_png(tmp_path / "dot.png", 1, 1))
    with pytest.raises(ImageSizeError, match=r"thin\.png: 300 x 15 px is smaller than 16"):
        read_display_image(write_png(tmp_path / "thin.png", 300, 15))
    # the limit is an argument: 40 x 40 = 1600 px passes 1600, not 1599
    write_png(tmp_path / "small.png", 40, 40)
    assert read_display_image(tmp_path / "small.png", max_pixels=1600).shape == (40, 40, 3)
    with pytest.raises(ImageSizeError, match=r"40 x 40 = 0\.0 Mpx > INPUT\.MAX_PIXELS = 1599"):
        read_display_image(tmp_path / "small.png", max_pixels=1599)

    _fits_header_only(tmp_path / "bomb.fits", 12000, 12000)
    with pytest.raises(ImageSizeError, match=r"bomb\.fits: 12000 x 12000 = 144\.0 Mpx"):
        fits_io.read_fits_image(tmp_path / "bomb.fits")
    _fits_header_only(tmp_path / "cube.fits", 1000, 1000, planes=40)  # 40 Mpx in 40 planes
    with pytest.raises(ImageSizeError, match=r"cube\.fits: 40 planes of 1000 x 1000 px"):
        fits_io.read_fits_image(tmp_path / "cube.fits")
    _fits_header_only(tmp_path / "dot.fits", 1, 1)
    with pytest.raises(ImageSizeError, match=r"dot\.fits: 1 x 1 px is smaller"):
        fits_io.read_fits_image(tmp_path / "dot.fits")


def test_config_key_bounds_the_network_reader(tmp_path):
    """INPUT.MAX_PIXELS reaches the mapper (PNG and FITS) and photometry."""
    from astropy.io import fits

    from clump_d2.data.fits_io import FitsReadOptions
    from clump_d2.data.mapper import ClumpDatasetMapper
    from clump_d2.engine import build_config
    from clump_d2.photometry import PhotometryOptions
    from clump_d2.photometry.images import load_photometry_image
    from image_helpers import write_png

    write_png(tmp_path / "g.png", 40, 30)
    cube = np.random.default_rng(0).normal(0, 1, (3, 30, 40)).astype(np.float32)
    header = fits.Header({"BAND1": "g", "BAND2": "r", "BAND3": "i"})
    fits.PrimaryHDU(cube, header=header).writeto(tmp_path / "g.fits")
    quickstart = str(REPO / "configs" / "quickstart.yaml")
    assert build_config(quickstart).INPUT.MAX_PIXELS == 1024 * 1024
    for limit, ok in ((1200, True), (1199, False)):
        cfg = build_config(quickstart, ["MODEL.DEVICE", "cpu", "INPUT.MAX_PIXELS", str(limit)])
        assert FitsReadOptions.from_config(cfg).max_pixels == limit
        assert PhotometryOptions.from_config(cfg).max_pixels == limit
        mapper = ClumpDatasetMapper(cfg, is_train=False)
        for name in ("g.png", "g.fits"):
            record = {"file_name": str(tmp_path / name), "image_id": 1, "height": 30,
                      "width": 40}
            if ok:
                assert tuple(mapper(record)["image"].shape) == (3, 30, 40)
                image = load_photometry_image(tmp_path / name, ("g", "r", "i"),
                                              max_pixels=limit)
                assert image.bands.shape == (3, 30, 40)
            else:
                with pytest.raises(RuntimeError, match=rf"{name}: 40 x 30 = 0\.0 Mpx > "
                                                       r"INPUT\.MAX_PIXELS = 1199"):
                    mapper(record)
                with pytest.raises(ValueError, match=r"INPUT\.MAX_PIXELS = 1199"):
                    load_photometry_image(tmp_path / name, ("g", "r", "i"), max_pixels=limit)


def test_truncated_png_pixel_data_is_an_error_not_black_rows(tmp_path):
    """A PNG whose (valid) zlib stream ends after 20 of its 40 rows reads in Pillow with 20
    black rows; the reader refuses it, naming the file and the rows it holds."""
    from image_helpers import write_png

    from clump_d2.data.image_io import read_display_image

    half = write_png(tmp_path / "half.png", 40, 40, rows=20, value=200)
    black = np.asarray(Image.open(half).convert("RGB"))
    assert (black[:20] == 200).all() and (black[20:] == 0).all()  # what Pillow alone gives
    with pytest.raises(ValueError, match=r"half\.png: truncated PNG: its pixel data ends after "
                                         r"row 20 of 40"):
        read_display_image(half)
    with pytest.raises(ValueError, match=r"inter\.png: truncated PNG: its pixel data holds "
                                         r"2420 of the 4875 bytes"):
        read_display_image(write_png(tmp_path / "inter.png", 40, 40, rows=20, interlaced=True))
    # complete PNGs of every layout Pillow writes still read exactly as Pillow reads them
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (33, 47, 3), dtype=np.uint8)
    for name, image in (("rgb", Image.fromarray(rgb)), ("grey", Image.fromarray(rgb[..., 0])),
                        ("rgba", Image.fromarray(np.dstack([rgb, rgb[..., :1]]))),
                        ("palette", Image.fromarray(rgb).convert("P")),
                        ("bits", Image.fromarray(rgb[..., 0] > 127))):
        image.save(tmp_path / f"{name}.png")
        np.testing.assert_array_equal(read_display_image(tmp_path / f"{name}.png"),
                                      np.asarray(Image.open(tmp_path / f"{name}.png")
                                                 .convert("RGB")))
    full = write_png(tmp_path / "full.png", 40, 40, value=200)
    assert (read_display_image(full) == 200).all()
