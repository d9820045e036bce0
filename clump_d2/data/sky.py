"""The gnomonic (TAN) projection of an image without its own WCS: one home, as an astropy WCS.

Cutouts centred on a catalogued position (SDSS colour JPEGs, Galaxy Zoo PNGs) carry no WCS;
their sky geometry is a gnomonic projection about the RA/Dec of a reference pixel (by
default the image centre), a constant pixel scale and an orientation. :func:`tangent_wcs`
writes that as a FITS ``RA---TAN``/``DEC--TAN`` WCS (CRVAL, CRPIX, CD), so sky -> pixel
(:mod:`clump_d2.convert.catalog`) and pixel -> sky (:mod:`clump_d2.inference.sky`) are
astropy's own, the same as for a FITS image with a header.

Pixel convention. Detectron2 boxes live in *continuous* pixel coordinates: pixel ``(i, j)``
(row ``i``, column ``j`` of the stored array) covers ``[j, j + 1) x [i, i + 1)``, so its
centre is at ``(j + 0.5, i + 0.5)``. A continuous ``(x, y)`` is the astropy 0-based pixel
``(x - 0.5, y - 0.5)`` and the FITS 1-based pixel ``(x + 0.5, y + 0.5)``;
:func:`pixel_to_sky` and :func:`sky_to_pixel` apply that one conversion.

Orientation (the same option names and meanings wherever a user sets them):

- ``north_up``: north points towards the first row of the stored array (the top of a
  PNG/JPEG as displayed; the *bottom* of a FITS image as DS9 displays it);
- ``east_left``: east points towards the first column;
- ``rotation_deg``: the position angle of "up" (degrees from north through east), for
  images not aligned with north.

With the defaults (north up, east left, no rotation) the CD matrix is
``CD1_1 = CD2_2 = -s / 3600`` (deg/px, ``s`` in arcsec/px) and ``CD1_2 = CD2_1 = 0``.

Which sky values are possible is decided once, by :func:`sky_problem` (RA in [0, 360), Dec in
[-90, 90], pixel scale > 0, numbers): the catalogue's inputs and the catalogue converter both
ask it, so a row one of them refuses is never placed on the sky by the other.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import numpy as np
import pandas as pd
from astropy.wcs import WCS


def pixel_offsets_to_standard(dx, dy, pixel_scale: float, north_up: bool = True,
                              east_left: bool = True, rotation_deg: float = 0.0
                              ) -> Tuple[np.ndarray, np.ndarray]:
    """Pixel offsets (x right, y down the array) -> standard coordinates (xi east, eta north),
    arcsec: the linear part of the projection (its CD matrix, module docstring)."""
    dx = np.asarray(dx, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    # Offsets in arcsec along the image's "up" (towards row 0) and its "east side" (the side
    # east lies on when not rotated), so that the rotation below is a proper rotation.
    up = -dy * pixel_scale if north_up else dy * pixel_scale
    side = -dx * pixel_scale if east_left else dx * pixel_scale
    theta = np.radians(rotation_deg)
    xi = up * np.sin(theta) + side * np.cos(theta)
    eta = up * np.cos(theta) - side * np.sin(theta)
    return xi, eta


def orientation_cd(pixel_scale: float, north_up: bool = True, east_left: bool = True,
                   rotation_deg: float = 0.0) -> np.ndarray:
    """The 2x2 FITS CD matrix (deg/px; FITS axes x = column, y = row index) of a pixel scale
    (arcsec/px) and an orientation."""
    xi_x, eta_x = pixel_offsets_to_standard(1.0, 0.0, pixel_scale, north_up, east_left,
                                            rotation_deg)
    xi_y, eta_y = pixel_offsets_to_standard(0.0, 1.0, pixel_scale, north_up, east_left,
                                            rotation_deg)
    return np.array([[xi_x, xi_y], [eta_x, eta_y]], dtype=np.float64) / 3600.0


def tangent_wcs(ra: float, dec: float, pixel_scale: float, width: Optional[float] = None,
                height: Optional[float] = None, *, ref_x: Optional[float] = None,
                ref_y: Optional[float] = None, north_up: bool = True, east_left: bool = True,
                rotation_deg: float = 0.0) -> WCS:
    """A TAN WCS putting (ra, dec) (degrees) at a reference pixel, ``pixel_scale`` arcsec/px.

    Args:
        ra, dec: sky position of the reference pixel, degrees.
        pixel_scale: arcsec per pixel.
        width, height: image size; the reference pixel defaults to its centre
            ``(W / 2, H / 2)`` in continuous coordinates.
        ref_x, ref_y: the reference pixel in continuous coordinates (override the centre).
        north_up, east_left, rotation_deg: orientation (module docstring).
    """
    if ref_x is None or ref_y is None:
        if width is None or height is None:
            raise ValueError("tangent_wcs needs the image size or the reference pixel")
    ref_x = width / 2.0 if ref_x is None else ref_x
    ref_y = height / 2.0 if ref_y is None else ref_y
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [float(ra), float(dec)]
    # FITS pixel p (1-based) covers [p - 1, p) in continuous coordinates.
    w.wcs.crpix = [float(ref_x) + 0.5, float(ref_y) + 0.5]
    w.wcs.cd = orientation_cd(pixel_scale, north_up, east_left, rotation_deg)
    w.wcs.set()
    return w


def pixel_to_sky(wcs: WCS, x, y) -> Tuple[np.ndarray, np.ndarray]:
    """RA (in [0, 360)) and Dec, degrees, of continuous pixel coordinates."""
    x = np.asarray(x, np.float64) - 0.5
    y = np.asarray(y, np.float64) - 0.5
    if x.size == 0:
        return np.zeros(0), np.zeros(0)
    ra, dec = wcs.all_pix2world(x, y, 0)
    return np.asarray(ra, np.float64) % 360.0, np.asarray(dec, np.float64)


def sky_to_pixel(wcs: WCS, ra, dec) -> Tuple[np.ndarray, np.ndarray]:
    """Continuous pixel coordinates (pixel i spans [i, i + 1)) of sky positions (degrees)."""
    x, y = wcs.all_world2pix(np.asarray(ra, float), np.asarray(dec, float), 0)
    return np.asarray(x) + 0.5, np.asarray(y) + 0.5


#: What :func:`sky_problem` checks, by key.
SKY_VALUE_KEYS = ("ra", "dec", "pixel_scale")
_SKY_RANGES = {"ra": "in [0, 360)", "dec": "in [-90, 90]", "pixel_scale": "> 0 (arcsec/px)"}
_SKY_OK = {"ra": lambda v: 0.0 <= v < 360.0, "dec": lambda v: -90.0 <= v <= 90.0,
           "pixel_scale": lambda v: v > 0.0}


def sky_problem(values: Dict[str, Any], names: Optional[Dict[str, str]] = None) -> Optional[str]:
    """Why the sky values of one galaxy (or clump) are impossible, or None if they are usable
    or absent.

    Args:
        values: ``ra``, ``dec``, ``pixel_scale`` (any of them; None or NaN: empty).
        names: the column (or key) each came from, for the message.

    Returns:
        e.g. ``"column 'RA': ra 400.0 is impossible (must be in [0, 360))"``, or None.
    """
    names = names or {}
    given, empty = {}, []
    for key in SKY_VALUE_KEYS:
        if key not in values:
            continue
        raw = _scalar(values[key])
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            empty.append(key)
            continue
        try:
            number = float(raw)
        except (TypeError, ValueError):
            return f"column {names.get(key, key)!r}: {raw!r} is not a number"
        if not math.isfinite(number):
            return f"column {names.get(key, key)!r}: {raw!r} is not a finite number"
        given[key] = number
    for key, number in given.items():
        if not _SKY_OK[key](number):
            return (f"column {names.get(key, key)!r}: {key} {number!r} is impossible (must be "
                    f"{_SKY_RANGES[key]})")
    if given and empty:
        return (f"column {names.get(empty[0], empty[0])!r} is empty while "
                f"{', '.join(repr(names.get(k, k)) for k in given)} "
                f"{'is' if len(given) == 1 else 'are'} given")
    return None


def _scalar(v):
    """numpy/pandas scalars -> Python; missing (None, NaN, pandas NA) -> None."""
    if v is None or v is pd.NA:
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v
