"""Image formats, known in one place: the file-name suffixes and which reader an image needs.

* FITS (``FITS_SUFFIXES``), a per-band name template containing ``{band}``, or a record with
  ``band_files`` ``{band: path}``: read by :mod:`clump_d2.data.fits_io`;
* everything else (``DISPLAY_SUFFIXES``: PNG, JPEG, TIFF): a display image PIL reads,
  through :func:`read_display_image`.

Bit depth of display images. 8-bit images are read as Detectron2's ``read_image`` reads
them (uint8, 0-255). A 16-bit grey image (PNG/TIFF, Pillow mode ``I;16``, or ``I`` with
values in 0..65535) is *scaled* to the 8-bit range, ``value * 255 / 65535`` as float32, and
repeated over the colour channels: read as 8 bits it would be clipped at 255 (a galaxy
becomes a saturated blob, full of bogus clumps). A 16-bit colour PNG is reduced by Pillow to
the high byte of each sample, within 1 grey level of the same scaling. Floating-point and
other deep images (Pillow mode ``F``, 32-bit integers beyond 65535) are refused, naming the
file: their range is unknown; give them as FITS, with a stretch (``INPUT.FITS``).

The reader of the network is :func:`clump_d2.data.mapper.read_image_file`. This module
imports nothing of ``clump_d2`` so that every reader (FITS, tables, inputs) can ask it.
"""
from __future__ import annotations

import os
from typing import Mapping, Optional

import numpy as np
from detectron2.data import detection_utils as utils
from detectron2.utils.file_io import PathManager
from PIL import Image

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fits.fz")
#: Colour cutouts as surveys and Clump Scout serve them (SDSS JPEGs, Clump Scout PNGs).
COLOUR_SUFFIXES = (".png", ".jpg", ".jpeg")
DISPLAY_SUFFIXES = COLOUR_SUFFIXES + (".tif", ".tiff")
IMAGE_SUFFIXES = DISPLAY_SUFFIXES + FITS_SUFFIXES
BAND_PLACEHOLDER = "{band}"
#: Pillow modes of 16-bit grey images ("I": Pillow versions that widen them to 32 bits).
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
#: The 16-bit maximum, mapped to 255.
SIXTEEN_BIT_MAX = 65535.0


def is_fits(file_name: str | os.PathLike) -> bool:
    """Whether the name ends in a FITS suffix (case-insensitive)."""
    return os.fspath(file_name).lower().endswith(FITS_SUFFIXES)


def reads_as_fits(file_name: str | os.PathLike,
                  band_files: Optional[Mapping[str, str]] = None) -> bool:
    """The reader decision: True for the FITS reader (a record with ``band_files``, a FITS
    name, or a per-band template containing ``{band}``), False for a display image."""
    return bool(band_files) or is_fits(file_name) or BAND_PLACEHOLDER in os.fspath(file_name)


def is_image_file(file_name: str | os.PathLike) -> bool:
    """Whether a file name has an image suffix this package reads."""
    return os.fspath(file_name).lower().endswith(IMAGE_SUFFIXES)


def strip_image_suffix(name: str) -> str:
    """``name`` without its image suffix (the longest match: ``a.fits.gz`` -> ``a``)."""
    lower = name.lower()
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def band_file(file_name: str | os.PathLike, band_files: Optional[Mapping[str, str]] = None,
              band: str = "r") -> str:
    """The file holding ``band`` (its header describes the pixel grid): ``band_files[band]``
    (else the first), or the template filled with ``band``, or ``file_name`` itself."""
    if band_files:
        return os.fspath(band_files.get(band, next(iter(band_files.values()))))
    path = os.fspath(file_name)
    return path.replace(BAND_PLACEHOLDER, band) if BAND_PLACEHOLDER in path else path


def read_display_image(file_name: str | os.PathLike, image_format: str = "RGB") -> np.ndarray:
    """A PNG/JPEG/TIFF as (H, W, C) in ``image_format`` (``RGB``, ``BGR`` or ``L``; EXIF
    orientation applied, as Detectron2's ``read_image``).

    8-bit images: uint8, exactly as ``detectron2.data.detection_utils.read_image``. 16-bit grey
    images: float32 ``value * 255 / 65535`` (module docstring).

    Raises:
        ValueError: naming the file, for a floating-point or wider-than-16-bit image, or a
            16-bit one asked for in a format other than RGB, BGR or L.
    """
    name = os.fspath(file_name)
    with PathManager.open(name, "rb") as f:
        image = Image.open(f)
        image = utils._apply_exif_orientation(image)  # the orientation read_image applies
        if image.mode in SIXTEEN_BIT_MODES:
            return _sixteen_bit_to_8bit_range(image, image_format, name)
        if image.mode in ("F", "I;32", "I;32B", "I;32L") or image.mode.startswith("I;"):
            raise ValueError(f"{name}: a {image.mode!r} image (floating point or more than 16 "
                             "bits): its range is unknown, so it is not read as a display image; "
                             "give it as FITS (read with the INPUT.FITS stretch)")
        return utils.convert_PIL_to_numpy(image, image_format)


def _sixteen_bit_to_8bit_range(image, image_format: str, name: str) -> np.ndarray:
    grey = np.asarray(image)
    if grey.size and (grey.min() < 0 or grey.max() > SIXTEEN_BIT_MAX):
        raise ValueError(f"{name}: a {image.mode!r} image with values in [{grey.min()}, "
                         f"{grey.max()}], outside the 16-bit range 0..65535; give it as FITS")
    scaled = grey.astype(np.float32) * np.float32(255.0 / SIXTEEN_BIT_MAX)
    if image_format == "L":
        return scaled[:, :, None]
    if image_format in ("RGB", "BGR", None):
        return np.repeat(scaled[:, :, None], 3, axis=2)
    raise ValueError(f"{name}: a 16-bit grey image cannot be read in format {image_format!r} "
                     "(RGB, BGR or L)")
