"""Image formats, known in one place: the file-name suffixes and which reader an image needs.

* FITS (``FITS_SUFFIXES``), a per-band name template containing ``{band}``, or a record with
  ``band_files`` ``{band: path}``: read by :mod:`clump_d2.data.fits_io`;
* everything else (``DISPLAY_SUFFIXES``: PNG, JPEG, TIFF): a display image PIL reads.

The reader itself is :func:`clump_d2.data.mapper.read_image_file`. This module imports
nothing of ``clump_d2`` so that every reader (FITS, tables, inputs) can ask it.
"""
from __future__ import annotations

import os
from typing import Mapping, Optional

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fits.fz")
#: Colour cutouts as surveys and Clump Scout serve them (SDSS JPEGs, Clump Scout PNGs).
COLOUR_SUFFIXES = (".png", ".jpg", ".jpeg")
DISPLAY_SUFFIXES = COLOUR_SUFFIXES + (".tif", ".tiff")
IMAGE_SUFFIXES = DISPLAY_SUFFIXES + FITS_SUFFIXES
BAND_PLACEHOLDER = "{band}"


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
