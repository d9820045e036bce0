"""FITS reading (per-band files, cubes), stretches, the NaN rule, and the mapper."""
import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from clump_d2.config import add_clump_config
from clump_d2.data.fits_io import (FitsReadOptions, fill_nonfinite, read_fits_bands,
                                   read_fits_for_network)
from clump_d2.data.mapper import ClumpDatasetMapper
from clump_d2.data.stretch import STRETCHES, stretch_bands
from detectron2.config import get_cfg

BANDS = ("g", "r", "i", "z")


def _galaxy(h=24, w=32, seed=0):
    """Four bands: sky noise + a Gaussian galaxy whose brightness differs per band."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    blob = np.exp(-((xx - 20) ** 2 + (yy - 10) ** 2) / 8.0)
    return np.stack([rng.normal(0, 1, (h, w)) + 50 * (k + 1) * blob for k in range(4)]
                    ).astype(np.float32)


@pytest.fixture
def fits_files(tmp_path):
    cube = _galaxy()
    hdr = fits.Header({f"BAND{k + 1}": b for k, b in enumerate(BANDS)})
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(cube, header=hdr)]).writeto(
        tmp_path / "cube.fits")
    for k, b in enumerate(BANDS):
        fits.PrimaryHDU(cube[k]).writeto(tmp_path / f"gal_{b}.fits")
    return tmp_path, cube


def test_cube_and_per_band_files_give_the_same_bands_in_config_order(fits_files):
    root, cube = fits_files
    from_cube = read_fits_bands(root / "cube.fits", ["i", "g"])
    from_files = read_fits_bands(str(root / "gal_{band}.fits"), ["i", "g"])
    from_dict = read_fits_bands("ignored", ["i", "g"], band_files={
        "g": str(root / "gal_g.fits"), "i": str(root / "gal_i.fits")})
    np.testing.assert_array_equal(from_cube, cube[[2, 0]])
    np.testing.assert_array_equal(from_files, from_cube)
    np.testing.assert_array_equal(from_dict, from_cube)
    named = read_fits_bands(root / "cube.fits", ["c", "a"], cube_bands=["a", "b", "c", "d"])
    np.testing.assert_array_equal(named, cube[[2, 0]])
    assert read_fits_bands(root / "cube.fits", []).shape == (4, 24, 32)  # every plane


@pytest.mark.parametrize("name", STRETCHES)
def test_stretches_map_to_unit_interval_and_keep_order(name):
    bands = _galaxy()[:3]
    out = stretch_bands(bands, name)
    assert out.shape == (24, 32, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    # the galaxy centre is brighter than the sky in every band, under every stretch
    assert (out[10, 20] > np.median(out, axis=(0, 1)) + 0.1).all()
    if name == "lupton":  # colour-preserving: band ratios of the bright core kept
        ratio = out[10, 20, 2] / out[10, 20, 0]
        assert ratio == pytest.approx(bands[2, 10, 20] / bands[0, 10, 20], rel=0.05)
    with pytest.raises(ValueError, match="finite"):
        stretch_bands(np.full((1, 4, 4), np.nan), name)


def test_nan_rule_fills_with_the_band_median_and_refuses_mostly_bad_bands():
    bands = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    bands[0, 0, 0] = np.nan
    bands[1, 1, 1] = np.inf
    filled, n = fill_nonfinite(bands, "median")
    assert n == 2 and np.isfinite(filled).all()
    assert filled[0, 0, 0] == np.median(bands[0][np.isfinite(bands[0])])
    assert fill_nonfinite(bands, "zero")[0][1, 1, 1] == 0.0
    assert fill_nonfinite(bands, "min")[0][0, 0, 0] == 1.0
    bad = bands.copy()
    bad[1, :3] = np.nan
    with pytest.raises(ValueError, match=r"x\.fits: band 1 has 12 of 16 pixels NaN/inf"):
        fill_nonfinite(bad, "median", 0.5, name="x.fits")


def test_bad_fits_files_give_errors_naming_the_file(fits_files, tmp_path):
    root, _ = fits_files
    fits.PrimaryHDU().writeto(tmp_path / "empty.fits")  # header only, no data
    with pytest.raises(ValueError, match=r"empty\.fits holds no image data"):
        read_fits_bands(tmp_path / "empty.fits", ["g"])
    with pytest.raises(ValueError, match=r"cube\.fits lacks band\(s\) \['u'\]"):
        read_fits_bands(root / "cube.fits", ["g", "u"])
    data = (root / "gal_g.fits").read_bytes()
    (tmp_path / "trunc.fits").write_bytes(data[:3000])
    with pytest.raises(ValueError, match=r"trunc\.fits"):
        read_fits_bands(tmp_path / "trunc.fits", ["0"])
    with pytest.raises(FileNotFoundError, match=r"gal_u\.fits not found"):
        read_fits_bands(str(root / "gal_{band}.fits"), ["g", "u"])
    opts = FitsReadOptions(bands=("g", "r"), expected_channels=3)
    with pytest.raises(ValueError, match=r"cube\.fits: 2 band\(s\) read but the model takes 3"):
        read_fits_for_network(root / "cube.fits", opts)


def _cfg(bands, stretch="asinh"):
    cfg = add_clump_config(get_cfg())
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TEST = (0,), 0
    cfg.INPUT.FORMAT = "RGB"
    cfg.INPUT.AUG.ROT90 = False  # keeps H x W so shapes can be compared
    cfg.INPUT.FITS.BANDS = list(bands)
    cfg.INPUT.FITS.STRETCH = stretch
    cfg.MODEL.PIXEL_MEAN = [0.0] * len(bands)
    cfg.MODEL.PIXEL_STD = [1.0] * len(bands)
    return cfg


def test_mapper_reads_fits_with_channels_from_config_and_png_unchanged(fits_files, tmp_path):
    root, _ = fits_files
    cube = _galaxy()
    cube[0, 0, 0] = np.nan
    fits.PrimaryHDU(cube).writeto(tmp_path / "nan_cube.fits")
    record = {"file_name": str(tmp_path / "nan_cube.fits"), "image_id": 1, "height": 24,
              "width": 32, "annotations": [{"bbox": [15, 5, 10, 10], "bbox_mode": 1,
                                            "category_id": 0}]}
    cfg = _cfg(["0", "1", "2", "3"], "lupton")
    out = ClumpDatasetMapper(cfg, is_train=True)(record)
    assert out["image"].shape == (4, 24, 32) and out["image"].dtype.is_floating_point
    assert float(out["image"].max()) <= 255.0 and float(out["image"].min()) >= 0.0
    assert len(out["instances"]) == 1
    per_band = dict(record, file_name=str(root / "gal_{band}.fits"))
    out = ClumpDatasetMapper(_cfg(["r", "z"]), is_train=False)(per_band)
    assert out["image"].shape == (2, 24, 32)
    with pytest.raises(RuntimeError, match=r"cannot read image .*cube\.fits.*takes 3"):
        bad = _cfg(["g", "r"])
        bad.MODEL.PIXEL_MEAN = [0.0, 0.0, 0.0]
        ClumpDatasetMapper(bad, is_train=False)(dict(record, file_name=str(root / "cube.fits")))
    # PNG path as before, plus the crop of consensus-table records
    rgb = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "g.png")
    png = {"file_name": str(tmp_path / "g.png"), "image_id": 2, "height": 20, "width": 20,
           "crop": [10, 5, 20, 20], "annotations": []}
    out = ClumpDatasetMapper(_cfg(["g", "r", "i"]), is_train=False)(png)
    np.testing.assert_array_equal(out["image"].numpy().transpose(1, 2, 0), rgb[5:25, 10:30])
    (tmp_path / "t.png").write_bytes((tmp_path / "g.png").read_bytes()[:60])  # truncated
    with pytest.raises(RuntimeError, match=r"cannot read image .*t\.png"):
        ClumpDatasetMapper(_cfg(["g", "r", "i"]), is_train=False)(
            dict(png, file_name=str(tmp_path / "t.png")))
    with pytest.raises(RuntimeError, match=r"crop \[30, 5, 20, 20\] does not fit"):
        ClumpDatasetMapper(_cfg(["g", "r", "i"]), is_train=False)(dict(png, crop=[30, 5, 20,
                                                                                  20]))
