"""Image formats known in one place: suffixes, the reader decision, the band file."""
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
