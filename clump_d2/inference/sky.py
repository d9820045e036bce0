"""Pixel positions of detections -> sky coordinates (RA/Dec, degrees).

Pixel convention. Detectron2 boxes live in *continuous* pixel coordinates: pixel ``(i, j)``
(row ``i``, column ``j`` of the stored array) covers ``[j, j + 1) x [i, i + 1)``, so its centre
is at ``(j + 0.5, i + 0.5)``. FITS/astropy put the centre of the first pixel at 0 (0-based,
``origin=0``) or 1 (FITS 1-based). Hence a detection centre ``(x, y)`` is the astropy 0-based
pixel ``(x - 0.5, y - 0.5)``; both routes below use that one conversion.

Two routes:

* **WCS** (FITS images with a celestial WCS): ``astropy.wcs.WCS.all_pix2world`` at
  ``(x - 0.5, y - 0.5)``, ``origin=0`` (distortion terms included).
* **Centre + pixel scale** (cutouts centred on a catalogued position, e.g. SDSS colour JPEGs):
  a gnomonic (tangent-plane, as ``RA---TAN``/``DEC--TAN``) projection about the RA/Dec of the
  reference pixel (by default the centre of the image, ``(W / 2, H / 2)`` in continuous
  coordinates), with a constant pixel scale in arcsec/px and an orientation:

  - ``north_up``: north points towards the first row of the stored array (the top of a
    PNG/JPEG as displayed; the *bottom* of a FITS image as DS9 displays it);
  - ``east_left``: east points towards the first column;
  - ``rotation_deg``: the position angle of "up" (degrees from north through east), for
    images not aligned with north.

  With the defaults (north up, east left, no rotation) the standard coordinates are
  ``xi = -(x - x0) * s`` and ``eta = -(y - y0) * s``, which is exactly the FITS WCS with
  ``CD1_1 = CD2_2 = -s / 3600`` (deg/px), ``CD1_2 = CD2_1 = 0`` and ``CRPIX = (x0 + 0.5,
  y0 + 0.5)`` (1-based); the tests check this equivalence to 1e-9 arcsec precision.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

ARCSEC_PER_RAD = 180.0 / np.pi * 3600.0


def tangent_plane_to_sky(xi_arcsec, eta_arcsec, ra0_deg: float, dec0_deg: float
                         ) -> Tuple[np.ndarray, np.ndarray]:
    """Inverse gnomonic projection: standard coordinates (arcsec) about (ra0, dec0) -> RA/Dec.

    ``xi`` points east and ``eta`` north at the tangent point. RA is returned in [0, 360).
    """
    xi = np.asarray(xi_arcsec, dtype=np.float64) / ARCSEC_PER_RAD
    eta = np.asarray(eta_arcsec, dtype=np.float64) / ARCSEC_PER_RAD
    ra0, dec0 = np.radians(ra0_deg), np.radians(dec0_deg)
    denom = np.cos(dec0) - eta * np.sin(dec0)
    ra = ra0 + np.arctan2(xi, denom)
    dec = np.arctan2(np.sin(dec0) + eta * np.cos(dec0), np.hypot(xi, denom))
    return np.degrees(ra) % 360.0, np.degrees(dec)


def pixel_offsets_to_standard(dx, dy, pixel_scale: float, north_up: bool = True,
                              east_left: bool = True, rotation_deg: float = 0.0
                              ) -> Tuple[np.ndarray, np.ndarray]:
    """Pixel offsets from the reference pixel (x right, y down the array) -> (xi, eta) arcsec.

    See the module docstring for the orientation convention.
    """
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


@dataclass(frozen=True)
class CentreScaleSky:
    """Tangent-plane sky coordinates from the RA/Dec of a reference pixel and a pixel scale.

    Attributes:
        ra: RA of the reference pixel, degrees.
        dec: Dec of the reference pixel, degrees.
        pixel_scale: arcsec per pixel.
        ref_x: reference pixel, continuous coordinates (the image centre is ``W / 2``).
        ref_y: as ``ref_x``, along the rows.
        north_up, east_left, rotation_deg: orientation (module docstring).
    """

    ra: float
    dec: float
    pixel_scale: float
    ref_x: float
    ref_y: float
    north_up: bool = True
    east_left: bool = True
    rotation_deg: float = 0.0

    source = "centre+scale"

    def __call__(self, x, y) -> Tuple[np.ndarray, np.ndarray]:
        xi, eta = pixel_offsets_to_standard(
            np.asarray(x, np.float64) - self.ref_x, np.asarray(y, np.float64) - self.ref_y,
            self.pixel_scale, self.north_up, self.east_left, self.rotation_deg)
        return tangent_plane_to_sky(xi, eta, self.ra, self.dec)


class WcsSky:
    """Sky coordinates from a FITS celestial WCS (``astropy.wcs.WCS``).

    ``offset`` (x0, y0) is added to the pixel coordinates first: the corner of the crop the
    model saw in the full image the WCS describes.
    """

    source = "wcs"

    def __init__(self, wcs, offset: Tuple[float, float] = (0.0, 0.0)):
        self.wcs = wcs.celestial
        self.offset = (float(offset[0]), float(offset[1]))

    @classmethod
    def from_header(cls, header, offset: Tuple[float, float] = (0.0, 0.0)
                    ) -> Optional["WcsSky"]:
        """A ``WcsSky`` for a FITS header (object or its string form), or None if the header
        has no celestial WCS."""
        import warnings

        from astropy.io import fits
        from astropy.wcs import WCS, FITSFixedWarning

        if isinstance(header, str):
            header = fits.Header.fromstring(header)
        with warnings.catch_warnings():
            # Survey headers often carry non-standard keywords astropy fixes up itself.
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header)
        if not wcs.has_celestial:
            return None
        return cls(wcs, offset)

    def __call__(self, x, y) -> Tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, np.float64) + self.offset[0] - 0.5
        y = np.asarray(y, np.float64) + self.offset[1] - 0.5
        if x.size == 0:
            return np.zeros(0), np.zeros(0)
        ra, dec = self.wcs.all_pix2world(x, y, 0)
        return np.asarray(ra, np.float64) % 360.0, np.asarray(dec, np.float64)


def _finite(value) -> bool:
    try:
        return value is not None and np.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def build_sky_transform(record: dict, width: int, height: int, wcs_header: Optional[str] = None,
                        north_up: bool = True, east_left: bool = True,
                        rotation_deg: float = 0.0):
    """The pixel -> sky transform of one galaxy, or None when its input gives no sky position.

    A WCS from the image header wins; otherwise ``ra``, ``dec`` and ``pixel_scale`` (arcsec/px)
    of the record give the tangent-plane route, the reference pixel being ``ref_x``/``ref_y``
    if the record has them, else the centre of the image the model saw (for a record with a
    ``crop`` [x0, y0, w, h], the WCS gets the crop's offset; the centre route assumes the
    crop is centred on the catalogued position, as Clump Scout's central crops are).
    """
    if wcs_header:
        crop = record.get("crop")
        offset = (float(crop[0]), float(crop[1])) if crop else (0.0, 0.0)
        sky = WcsSky.from_header(wcs_header, offset)
        if sky is not None:
            return sky
    if all(_finite(record.get(k)) for k in ("ra", "dec", "pixel_scale")):
        ref_x = float(record["ref_x"]) if _finite(record.get("ref_x")) else width / 2.0
        ref_y = float(record["ref_y"]) if _finite(record.get("ref_y")) else height / 2.0
        return CentreScaleSky(float(record["ra"]), float(record["dec"]),
                              float(record["pixel_scale"]), ref_x, ref_y, bool(north_up),
                              bool(east_left), float(rotation_deg))
    return None
