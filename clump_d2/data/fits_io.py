"""Read survey images from FITS: one file per band, or a cube, bands chosen and ordered.

Forms accepted by :func:`read_fits_bands`:

* per-band files: ``file_name`` contains ``{band}`` (``J1234_{band}.fits``), or the dataset
  record has ``band_files: {band: path}``;
* a cube: one file whose image HDU is ``(n_planes, H, W)``. The planes' band names come from
  ``cube_bands`` (config ``INPUT.FITS.CUBE_BANDS``), else from header keywords ``BAND<n>`` or
  ``FILTER<n>`` (n = 1..n_planes), else they are ``"0", "1", ...``;
* a single 2-D image (one band).

Non-finite pixels (NaN/inf: masked, saturated or off-chip) are replaced band by band
following ``nan_fill`` (``"median"``: the median of the band's finite pixels, i.e. about the
sky; ``"zero"``; ``"min"``: the band's finite minimum) *before* any stretch, so they never
poison a percentile or an asinh. A band with more than ``max_nonfinite_fraction`` non-finite
pixels (or none finite) is an error naming the file: such an image is not a galaxy picture.
The size of an image HDU is read from its header (``NAXISn``) and checked
(:func:`clump_d2.data.image_io.check_image_size`: ``max_pixels`` per plane, ``INPUT.MAX_PIXELS``,
and the smallest side) before its data are read.
Every failure raises ``ValueError``/``FileNotFoundError`` naming the file.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from astropy.io import fits

# The suffix list and the FITS test live in image_io (the one home of image formats); they
# stay importable from here for the callers that read FITS.
from .image_io import BAND_PLACEHOLDER, FITS_SUFFIXES, is_fits  # noqa: F401
from .image_io import DEFAULT_MAX_PIXELS, check_image_size
from .stretch import stretch_bands

logger = logging.getLogger(__name__)

NAN_FILL_RULES = ("median", "zero", "min")


def _axes(h) -> Tuple[int, ...]:
    """An image HDU's shape as its header declares it (numpy order), without reading data;
    () for a header-only or non-image HDU."""
    if not getattr(h, "is_image", False):
        return ()
    n = int(h.header.get("NAXIS", 0))
    return tuple(int(h.header.get(f"NAXIS{k}", 0)) for k in range(n, 0, -1))


def _image_hdu(hdul: fits.HDUList, path: Path, hdu: int):
    if hdu >= 0:
        if hdu >= len(hdul):
            raise ValueError(f"FITS file {path} has {len(hdul)} HDUs, HDU {hdu} requested")
        if len(_axes(hdul[hdu])) < 2:
            raise ValueError(f"FITS file {path}: HDU {hdu} holds no image data")
        return hdul[hdu]
    for h in hdul:
        if len(_axes(h)) >= 2:
            return h
    raise ValueError(f"FITS file {path} holds no image data (no HDU with a 2-D/3-D array)")


def read_fits_header(path: str | os.PathLike, hdu: int = -1) -> Tuple[fits.Header, tuple]:
    """Header and array shape of the image HDU (``hdu=-1``: the first with image data)."""
    path = Path(path)
    data, header = read_fits_image(path, hdu)
    return header, data.shape


def read_fits_image(path: str | os.PathLike, hdu: int = -1,
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> Tuple[np.ndarray, fits.Header]:
    """(float32 array, header) of one FITS image HDU; errors name the file. Its declared size
    is checked first (:func:`~clump_d2.data.image_io.check_image_size`, ``max_pixels`` per
    plane): the data of a refused HDU are never read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FITS file {path} not found")
    try:
        with fits.open(path, memmap=False) as hdul:
            h = _image_hdu(hdul, path, hdu)
            shape = _axes(h)
            check_image_size(path, shape[-1], shape[-2], max_pixels,
                             planes=int(np.prod(shape[:-2], dtype=np.int64)))
            return np.asarray(h.data, dtype=np.float32), h.header.copy()
    except ValueError as e:
        if str(path) in str(e):
            raise
        raise ValueError(f"cannot read FITS file {path}: {e}") from e
    except Exception as e:  # truncated or not FITS at all: astropy raises OSError/TypeError
        raise ValueError(f"cannot read FITS file {path}: {type(e).__name__}: {e}") from e


def cube_band_names(header: fits.Header, n_planes: int) -> List[str]:
    """Band names of a cube's planes from ``BAND<n>``/``FILTER<n>`` keywords, else indices."""
    names = []
    for n in range(1, n_planes + 1):
        value = header.get(f"BAND{n}", header.get(f"FILTER{n}"))
        names.append(str(value).strip() if value is not None else str(n - 1))
    return names


def read_band_files(file_name: str, bands: Sequence[str],
                    band_files: Optional[Dict[str, str]] = None, hdu: int = -1,
                    max_pixels: int = DEFAULT_MAX_PIXELS
                    ) -> Tuple[List[np.ndarray], List, List[str]]:
    """(2-D planes, headers, paths) of one FITS file per band, in ``bands`` order: the paths
    from ``band_files`` or the ``{band}`` template ``file_name``.

    Raises:
        ValueError: naming the file, for a band without a file or a plane that is not 2-D.
    """
    planes, headers, paths = [], [], []
    for band in bands:
        if band_files:
            if band not in band_files:
                raise ValueError(f"{file_name}: no file for band {band!r} in band_files "
                                 f"(has {sorted(band_files)})")
            path = band_files[band]
        else:
            path = file_name.format(band=band)
        data, header = read_fits_image(path, hdu, max_pixels)
        if data.ndim != 2:
            raise ValueError(f"FITS file {path} (band {band}) is {data.ndim}-D; a per-band "
                             "file must hold one 2-D image")
        planes.append(data)
        headers.append(header)
        paths.append(path)
    return planes, headers, paths


def read_fits_bands(file_name: str | os.PathLike, bands: Sequence[str],
                    band_files: Optional[Dict[str, str]] = None,
                    cube_bands: Sequence[str] = (), hdu: int = -1,
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The requested bands, in the requested order, as a (C, H, W) float32 array.

    Args:
        file_name: a FITS cube / 2-D image, or a per-band template containing ``{band}``.
        bands: band names in channel order (e.g. ``["g", "r", "i"]``); empty: every plane.
        band_files: explicit per-band paths (overrides ``file_name``).
        cube_bands: names of a cube's planes in order (overrides header keywords).
        hdu: HDU index, or -1 for the first HDU with image data.
        max_pixels: most pixels per plane (``INPUT.MAX_PIXELS``), checked before reading.

    Raises:
        ValueError: naming the file, for missing bands, wrong dimensionality, bands of
            different shapes, a file without image data, or a size out of bounds
            (:class:`~clump_d2.data.image_io.ImageSizeError`).
    """
    file_name = os.fspath(file_name)
    if band_files or BAND_PLACEHOLDER in file_name:
        if not bands:
            raise ValueError(f"{file_name}: per-band FITS files need the band list "
                             "(INPUT.FITS.BANDS)")
        planes, _, paths = read_band_files(file_name, bands, band_files, hdu, max_pixels)
        shapes = {p.shape for p in planes}
        if len(shapes) > 1:
            raise ValueError("band images differ in shape: "
                             + ", ".join(f"{p}: {a.shape}" for p, a in zip(paths, planes)))
        return np.stack(planes)
    data, header = read_fits_image(file_name, hdu, max_pixels)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ValueError(f"FITS file {file_name}: image is {data.ndim}-D; expected a 2-D image "
                         "or a (bands, H, W) cube")
    names = list(cube_bands) if cube_bands else cube_band_names(header, data.shape[0])
    if len(names) != data.shape[0]:
        raise ValueError(f"FITS file {file_name} has {data.shape[0]} planes but "
                         f"{len(names)} cube band names {names} were given")
    if not bands:
        return data
    missing = [b for b in bands if b not in names]
    if missing:
        raise ValueError(f"FITS file {file_name} lacks band(s) {missing}: its planes are "
                         f"{names} (wrong band count or names; see INPUT.FITS.CUBE_BANDS)")
    return data[[names.index(b) for b in bands]]


def fill_nonfinite(bands: np.ndarray, rule: str = "median", max_fraction: float = 0.5,
                   name: str = "image") -> Tuple[np.ndarray, int]:
    """Replace NaN/inf pixels of each band of (C, H, W) ``bands`` (see module docstring).

    Returns:
        (filled copy, number of pixels replaced).
    """
    if rule not in NAN_FILL_RULES:
        raise ValueError(f"unknown NaN fill rule {rule!r}; choose one of {NAN_FILL_RULES}")
    out = np.array(bands, dtype=np.float32, copy=True)
    replaced = 0
    for c in range(out.shape[0]):
        band = out[c]
        bad = ~np.isfinite(band)
        n_bad = int(bad.sum())
        if not n_bad:
            continue
        if n_bad == band.size or n_bad / band.size > max_fraction:
            raise ValueError(f"{name}: band {c} has {n_bad} of {band.size} pixels NaN/inf "
                             f"(more than INPUT.FITS.MAX_NONFINITE_FRACTION={max_fraction})")
        good = band[~bad]
        value = {"median": np.median(good), "zero": 0.0, "min": good.min()}[rule]
        band[bad] = value
        replaced += n_bad
    return out, replaced


@dataclass
class FitsReadOptions:
    """How FITS images become network input (the ``INPUT.FITS`` config keys)."""

    bands: Tuple[str, ...] = ("g", "r", "i")
    cube_bands: Tuple[str, ...] = ()
    hdu: int = -1
    stretch: str = "asinh"
    percentiles: Tuple[float, float] = (0.5, 99.5)
    asinh_a: float = 0.1
    lupton_q: float = 8.0
    lupton_stretch: float = 0.0
    nan_fill: str = "median"
    max_nonfinite_fraction: float = 0.5
    output_scale: float = 255.0
    expected_channels: Optional[int] = None  # len(MODEL.PIXEL_MEAN): checked on every image
    # INPUT.MAX_PIXELS: carried here because these options reach every reader of the network
    # (mapper, injection), which apply it to PNG/JPEG as well.
    max_pixels: int = DEFAULT_MAX_PIXELS

    @classmethod
    def from_config(cls, cfg) -> "FitsReadOptions":
        f = cfg.INPUT.FITS
        return cls(bands=tuple(f.BANDS), cube_bands=tuple(f.CUBE_BANDS), hdu=f.HDU,
                   stretch=f.STRETCH, percentiles=tuple(f.PERCENTILES), asinh_a=f.ASINH_A,
                   lupton_q=f.LUPTON_Q, lupton_stretch=f.LUPTON_STRETCH, nan_fill=f.NAN_FILL,
                   max_nonfinite_fraction=f.MAX_NONFINITE_FRACTION,
                   output_scale=f.OUTPUT_SCALE, expected_channels=len(cfg.MODEL.PIXEL_MEAN),
                   max_pixels=int(cfg.INPUT.MAX_PIXELS))


def read_fits_for_network(file_name: str | os.PathLike, options: FitsReadOptions,
                          band_files: Optional[Dict[str, str]] = None) -> np.ndarray:
    """Read, fill NaN/inf, stretch: an (H, W, C) float32 image in [0, output_scale].

    Raises:
        ValueError: naming the file, e.g. when the band count differs from the model's
            channel count (``len(MODEL.PIXEL_MEAN)``).
    """
    bands = read_fits_bands(file_name, options.bands, band_files=band_files,
                            cube_bands=options.cube_bands, hdu=options.hdu,
                            max_pixels=options.max_pixels)
    if options.expected_channels is not None and bands.shape[0] != options.expected_channels:
        raise ValueError(f"{file_name}: {bands.shape[0]} band(s) read but the model takes "
                         f"{options.expected_channels} channels (len(MODEL.PIXEL_MEAN)); set "
                         "INPUT.FITS.BANDS to match")
    bands, n_filled = fill_nonfinite(bands, options.nan_fill, options.max_nonfinite_fraction,
                                     name=os.fspath(file_name))
    if n_filled:
        logger.debug("%s: %d NaN/inf pixels filled (%s)", file_name, n_filled, options.nan_fill)
    image = stretch_bands(bands, options.stretch, options.percentiles, options.asinh_a,
                          options.lupton_q, options.lupton_stretch)
    return image * np.float32(options.output_scale)
