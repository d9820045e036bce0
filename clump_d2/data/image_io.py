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

Sizes. Every reader asks :func:`check_image_size` with the size a file *declares* (the PNG/JPEG
header, the FITS ``NAXISn``) before a pixel is decoded: more than ``max_pixels`` pixels
(``INPUT.MAX_PIXELS``, default :data:`DEFAULT_MAX_PIXELS`), or a side under
:data:`MIN_IMAGE_SIDE`, raises :class:`ImageSizeError` naming the file. A 115-byte PNG can
declare 12000 x 12000 px: decoded, it is 432 MB, and the detector at native resolution needs
about 250-600 bytes per pixel (measured: ResNet-18 FPN 230-290, EfficientNet-lite0 FPN 350,
ResNet-50 FPN 610), i.e. 46 GB. A PNG whose compressed pixel data ends before its last row
(Pillow fills the missing rows with black) is refused naming the file and the rows it holds.

The reader of the network is :func:`clump_d2.data.mapper.read_image_file`. This module
imports nothing of ``clump_d2`` so that every reader (FITS, tables, inputs) can ask it.
"""
from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional

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
#: Most pixels (width x height) an image may have: the default of ``INPUT.MAX_PIXELS`` and the
#: bound of the tools that take no config (converters, ``make_real_hosts.py``). 1024 x 1024 is
#: 5.8 times a 424 px SDSS cut-out (Clump Scout's are 400 px). At native resolution the
#: detector takes up to ~600 bytes per pixel and a batch is padded to its largest image, so the
#: worst case, ``INFERENCE.BATCH_SIZE`` 8 x 1 Mpx x 600 B, is ~5 GB: it fits a 2-core 24 GB
#: machine beside the data loader. Larger cut-outs: raise the key and lower the batch size.
DEFAULT_MAX_PIXELS = 1024 * 1024
#: Smallest side (px) of an image that can be a galaxy cut-out with clumps: the median Clump
#: Scout clump box is 16.6 px and the detector's anchors start at 8 px, so a smaller image
#: cannot hold a galaxy with a clump beside its bulge (a 1 x 1 image "had" clumps).
MIN_IMAGE_SIDE = 16
#: Most planes of a FITS cube, in units of ``max_pixels`` (surveys have 4-5 bands): the cube
#: is read whole, so its planes count towards memory too.
MAX_FITS_PLANES = 16


class ImageSizeError(ValueError):
    """An image whose declared size the readers refuse (too many pixels, or too small to be a
    galaxy cut-out); raised before any pixel is decoded, naming the file."""


def check_image_size(name: str | os.PathLike, width: int, height: int,
                     max_pixels: int = DEFAULT_MAX_PIXELS, planes: int = 1) -> None:
    """Refuse a ``width`` x ``height`` image (``planes`` of them, for a FITS cube) with more
    than ``max_pixels`` pixels per plane (or more than ``MAX_FITS_PLANES * max_pixels`` in
    all), or a side under :data:`MIN_IMAGE_SIDE`.

    Raises:
        ImageSizeError: naming the file, its size and the limit (and the key that sets it).
    """
    width, height, planes = int(width), int(height), max(1, int(planes))
    if width * height > max_pixels:
        raise ImageSizeError(
            f"{os.fspath(name)}: {width} x {height} = {width * height / 1e6:.1f} Mpx > "
            f"INPUT.MAX_PIXELS = {max_pixels} ({max_pixels / 1e6:.1f} Mpx); not decoded (the "
            "detector would run out of memory on it; for genuinely larger cut-outs raise "
            "INPUT.MAX_PIXELS, or make_real_hosts.py --max-pixels, and lower "
            "INFERENCE.BATCH_SIZE)")
    if width * height * planes > MAX_FITS_PLANES * max_pixels:
        raise ImageSizeError(
            f"{os.fspath(name)}: {planes} planes of {width} x {height} px = "
            f"{width * height * planes / 1e6:.1f} Mpx > {MAX_FITS_PLANES} x INPUT.MAX_PIXELS "
            f"({MAX_FITS_PLANES * max_pixels / 1e6:.1f} Mpx); not read")
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ImageSizeError(
            f"{os.fspath(name)}: {width} x {height} px is smaller than {MIN_IMAGE_SIDE} px on a "
            "side: not a galaxy cut-out (the smallest clump box is about that size)")


def unique_image_ids(paths: Iterable[Path], root: Path) -> Dict[str, Path]:
    """``{id: path}`` of image files under ``root``, the id being the path relative to
    ``root`` without its image suffix (``spiral/588017``), in the order given.

    Raises:
        ValueError: naming both files when two give one id (``x.png`` and ``x.jpg``: which
            one is the galaxy?).
    """
    root = Path(root)
    out: Dict[str, Path] = {}
    for p in paths:
        image_id = strip_image_suffix(Path(p).relative_to(root).as_posix())
        if image_id in out:
            raise ValueError(f"input folder {root}: {out[image_id]} and {p} both give galaxy id "
                             f"{image_id!r} (the path without its suffix); keep one image per "
                             "galaxy")
        out[image_id] = Path(p)
    return out


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


def read_display_image(file_name: str | os.PathLike, image_format: str = "RGB",
                       max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A PNG/JPEG/TIFF as (H, W, C) in ``image_format`` (``RGB``, ``BGR`` or ``L``; EXIF
    orientation applied, as Detectron2's ``read_image``).

    8-bit images: uint8, exactly as ``detectron2.data.detection_utils.read_image``. 16-bit grey
    images: float32 ``value * 255 / 65535`` (module docstring).

    Raises:
        ImageSizeError: naming the file, when the size its header declares is over
            ``max_pixels`` or under :data:`MIN_IMAGE_SIDE` (checked before decoding).
        ValueError: naming the file, for a floating-point or wider-than-16-bit image, a
            16-bit one asked for in a format other than RGB, BGR or L, or a PNG whose pixel
            data stops before its last row.
    """
    name = os.fspath(file_name)
    with PathManager.open(name, "rb") as f:
        try:
            with warnings.catch_warnings():
                # Pillow warns above ~89 Mpx; our own bound (below) is the one that applies.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(f)
        except Image.DecompressionBombError as e:  # Pillow's own limit, ~179 Mpx: refused too
            raise ImageSizeError(f"{name}: the size its header declares is over Pillow's "
                                 f"decompression-bomb limit ({e}), far over INPUT.MAX_PIXELS = "
                                 f"{max_pixels}; not decoded") from e
        # Header only so far: refuse a depth or a size before a pixel is decoded.
        if image.mode not in SIXTEEN_BIT_MODES and (
                image.mode in ("F", "I;32", "I;32B", "I;32L") or image.mode.startswith("I;")):
            raise ValueError(f"{name}: a {image.mode!r} image (floating point or more than 16 "
                             "bits): its range is unknown, so it is not read as a display image; "
                             "give it as FITS (read with the INPUT.FITS stretch)")
        check_image_size(name, *image.size, max_pixels=max_pixels)
        if image.format == "PNG":
            problem = png_pixel_data_problem(f)
            if problem:
                raise ValueError(f"{name}: {problem}")
        image = utils._apply_exif_orientation(image)  # the orientation read_image applies
        if image.mode in SIXTEEN_BIT_MODES:
            return _sixteen_bit_to_8bit_range(image, image_format, name)
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


# --- PNG pixel data: Pillow fills rows missing from a short zlib stream with black ------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Samples per pixel of each PNG colour type (grey, RGB, palette, grey + alpha, RGBA).
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Adam7 passes: (first column, first row, column step, row step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))


def png_pixel_bytes(width: int, height: int, bit_depth: int, colour_type: int,
                    interlaced: bool) -> int:
    """Length of a PNG's decompressed pixel data (filter byte + packed samples per row, per
    Adam7 pass when interlaced), from its IHDR."""
    bits = _PNG_SAMPLES[colour_type] * bit_depth

    def size(w: int, h: int) -> int:
        return h * (1 + (w * bits + 7) // 8) if w and h else 0

    if not interlaced:
        return size(width, height)
    return sum(size((width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy)
               for x0, y0, dx, dy in _ADAM7)


def png_pixel_data_problem(f) -> Optional[str]:
    """Why the PNG open in ``f`` (binary, seekable) holds less pixel data than its header
    declares, or None. Streams through the IDAT chunks with bounded memory (the size was
    checked first); a stream that is cut or corrupt is left to Pillow, which raises on it."""
    f.seek(0)
    if f.read(8) != _PNG_SIGNATURE:
        return None
    inflate, expected, got = zlib.decompressobj(), None, 0
    while True:
        head = f.read(8)
        if len(head) < 8:
            break
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", f.read(13))
            if colour not in _PNG_SAMPLES:
                return None  # Pillow names what is wrong with it
            expected = png_pixel_bytes(width, height, depth, colour, bool(interlace))
            f.seek(length - 13 + 4, os.SEEK_CUR)
        elif kind == b"IDAT" and expected is not None:
            data = f.read(length)
            f.seek(4, os.SEEK_CUR)
            try:
                while data and got <= expected and not inflate.eof:
                    got += len(inflate.decompress(data, 1 << 20))
                    data = inflate.unconsumed_tail
            except zlib.error:
                return None
        elif kind == b"IEND":
            break
        else:
            f.seek(length + 4, os.SEEK_CUR)
    if expected is None or not inflate.eof or got >= expected:
        return None  # no IHDR, or a stream cut short: Pillow raises on those
    if interlace:
        return (f"truncated PNG: its pixel data holds {got} of the {expected} bytes its "
                f"{width} x {height} header declares (the missing part would read as black)")
    row = expected // height
    return (f"truncated PNG: its pixel data ends after row {got // row} of {height} (the "
            "missing rows would read as black)")
