"""Images for photometry: FITS bands in their flux units (with zero points), or 8-bit colour
images linearised by undoing their display stretch.

* FITS (a per-band template with ``{band}``, ``band_files``, a cube, or a 2-D image): the
  requested bands, NaN/inf pixels *kept* (photometry flags them per clump), each band's zero
  point and unit from its header (:func:`~clump_d2.photometry.apertures.zero_point_from_header`).
* PNG/JPEG: RGB linearised with :class:`~clump_d2.data.stretch.DisplayStretch` (Lupton, Q);
  channels named ``R``, ``G``, ``B``; fluxes are relative ("display photometry").

A band list that does not match the image raises ``ValueError`` naming the file.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from clump_d2.data.fits_io import cube_band_names, read_band_files, read_fits_image
from clump_d2.data.image_io import (BAND_PLACEHOLDER, DEFAULT_MAX_PIXELS, is_fits,
                                    read_display_image)
from clump_d2.data.stretch import DisplayStretch
from clump_d2.photometry.apertures import zero_point_from_header
from clump_d2.photometry.flags import DISPLAY_CHANNELS

logger = logging.getLogger(__name__)

DISPLAY_UNIT = "display intensity (relative)"


@dataclass
class PhotometryImage:
    """Linear bands of one image and what their units are.

    Attributes:
        bands: (C, H, W) float64, NaN kept.
        band_names: one name per plane.
        kind: ``"fits"`` or ``"display"``.
        zero_points: AB zero point per band (None: unknown).
        units: flux unit per band.
        source: the file (or template) read, for messages.
    """

    bands: np.ndarray
    band_names: List[str]
    kind: str
    zero_points: List[Optional[float]] = field(default_factory=list)
    units: List[str] = field(default_factory=list)
    source: str = ""

    @property
    def display(self) -> bool:
        return self.kind == "display"

    def cropped(self, crop: Optional[Sequence[float]]) -> "PhotometryImage":
        """The image cut to ``crop = [x0, y0, w, h]`` (a record's ``crop``, as the mapper cuts
        it for the network, so that detections' coordinates refer to the same pixels)."""
        if not crop:
            return self
        x0, y0, w, h = (int(round(float(v))) for v in crop)
        _, height, width = self.bands.shape
        if x0 < 0 or y0 < 0 or x0 + w > width or y0 + h > height:
            raise ValueError(f"{self.source}: crop [{x0}, {y0}, {w}, {h}] does not fit in the "
                             f"{width}x{height} image")
        return PhotometryImage(self.bands[:, y0:y0 + h, x0:x0 + w], list(self.band_names),
                               self.kind, list(self.zero_points), list(self.units), self.source)


def load_photometry_image(file_name: str | os.PathLike, bands: Sequence[str] = (),
                          band_files: Optional[Dict[str, str]] = None,
                          cube_bands: Sequence[str] = (), hdu: int = -1,
                          display_q: float = 10.0,
                          display_channels: Sequence[str] = (),
                          max_pixels: int = DEFAULT_MAX_PIXELS) -> PhotometryImage:
    """Read one image for photometry (see module docstring).

    Args:
        file_name: image path, or a FITS template containing ``{band}``.
        bands: FITS bands in order (empty: every plane of a cube); not used for PNG/JPEG.
        band_files: ``{band: path}`` of per-band FITS files (overrides ``file_name``).
        cube_bands: names of a cube's planes (overrides header ``BAND<n>``/``FILTER<n>``).
        hdu: FITS HDU (-1: the first with image data).
        display_q: Lupton softening undone for PNG/JPEG.
        display_channels: PNG/JPEG channels to keep, a subset of ``R``, ``G``, ``B`` (empty:
            all three).
        max_pixels: most pixels per plane (``INPUT.MAX_PIXELS``), checked before decoding.

    Raises:
        ValueError / FileNotFoundError: naming the file.
    """
    name = os.fspath(file_name)
    bands = list(bands or ())
    if band_files or BAND_PLACEHOLDER in name:
        if not bands:
            bands = list(band_files) if band_files else []
        if not bands:
            raise ValueError(f"{name}: per-band FITS files need the band list")
        planes, headers, paths = read_band_files(name, bands, band_files, hdu, max_pixels)
        for band, path, data in zip(bands, paths, planes):
            if data.shape != planes[0].shape:
                raise ValueError(f"FITS file {path} (band {band}) is {data.shape}, the other "
                                 f"bands {planes[0].shape}")
        zps, units = map(list, zip(*(zero_point_from_header(h) for h in headers)))
        return PhotometryImage(np.stack(planes).astype(np.float64), bands, "fits", zps, units,
                               name)
    if is_fits(name):
        data, header = read_fits_image(name, hdu, max_pixels)
        if data.ndim == 2:
            data = data[None]
            names = list(cube_bands) or (list(bands) if len(bands) == 1 else
                                         cube_band_names(header, 1))
        elif data.ndim == 3:
            names = list(cube_bands) or cube_band_names(header, data.shape[0])
        else:
            raise ValueError(f"FITS file {name}: image is {data.ndim}-D; expected a 2-D image "
                             "or a (bands, H, W) cube")
        if len(names) != data.shape[0]:
            raise ValueError(f"FITS file {name} has {data.shape[0]} planes but {len(names)} "
                             f"band names {names} were given")
        if bands:
            missing = [b for b in bands if b not in names]
            if missing:
                raise ValueError(f"FITS file {name} does not match the band list {bands}: it "
                                 f"lacks {missing} (its planes: {names})")
            data = data[[names.index(b) for b in bands]]
            names = bands
        zp, unit = zero_point_from_header(header)
        return PhotometryImage(data.astype(np.float64), list(names), "fits",
                               [zp] * len(names), [unit] * len(names), name)
    if not os.path.isfile(name):
        raise FileNotFoundError(f"image {name} not found")
    try:
        # The network's reader: a 16-bit PNG scaled to 0..255 (float), not clipped at 255.
        rgb = read_display_image(name, "RGB", max_pixels)
    except Exception as e:  # PIL raises several types for unreadable files
        raise ValueError(f"cannot read image {name}: {type(e).__name__}: {e}") from e
    channels = list(display_channels or ())
    wrong = [b for b in channels if b not in DISPLAY_CHANNELS]
    if wrong:
        raise ValueError(f"image {name} is an 8-bit colour image (channels R, G, B); the "
                         f"channel list {channels} does not match it ({wrong} are not channels)")
    linear = DisplayStretch(display_q).linearise(rgb).transpose(2, 0, 1)
    names = channels or list(DISPLAY_CHANNELS)
    linear = linear[[DISPLAY_CHANNELS.index(b) for b in names]]
    return PhotometryImage(np.ascontiguousarray(linear), names, "display", [None] * len(names),
                           [DISPLAY_UNIT] * len(names), name)
