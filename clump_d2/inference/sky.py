"""Pixel positions of detections -> sky coordinates (RA/Dec, degrees).

Both routes end in astropy's ``WCS.all_pix2world`` through
:func:`clump_d2.data.sky.pixel_to_sky` (which also owns the half-pixel convention:
continuous ``(x, y)`` is the astropy 0-based pixel ``(x - 0.5, y - 0.5)``):

* **WCS** (FITS images with a celestial WCS): the header's own WCS (distortion terms
  included), shifted by the corner of the crop the model saw. A WCS that cannot give sky
  positions (wcslib refuses it, its pixel-scale matrix is singular, or its reference pixel
  has no sky position: :func:`wcs_problem`) gives none: the catalogue's mapper lists the
  galaxy as ``bad_sky`` naming the file, searched as usual, without RA/Dec.
* **Centre + pixel scale** (cutouts centred on a catalogued position, e.g. SDSS colour JPEGs):
  the gnomonic TAN WCS of :func:`clump_d2.data.sky.tangent_wcs` about the RA/Dec of the
  reference pixel (by default the centre of the image, ``(W / 2, H / 2)`` in continuous
  coordinates), with a constant pixel scale in arcsec/px and the orientation options
  ``north_up`` / ``east_left`` / ``rotation_deg`` (meanings in :mod:`clump_d2.data.sky`, the
  same as for :mod:`clump_d2.convert.catalog`).
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from clump_d2.data.sky import pixel_offsets_to_standard, pixel_to_sky, tangent_wcs

__all__ = ["CentreScaleSky", "WcsSky", "build_sky_transform", "pixel_offsets_to_standard",
           "wcs_problem"]


@dataclass(frozen=True)
class CentreScaleSky:
    """Tangent-plane sky coordinates from the RA/Dec of a reference pixel and a pixel scale.

    Attributes:
        ra: RA of the reference pixel, degrees.
        dec: Dec of the reference pixel, degrees.
        pixel_scale: arcsec per pixel.
        ref_x: reference pixel, continuous coordinates (the image centre is ``W / 2``).
        ref_y: as ``ref_x``, along the rows.
        north_up, east_left, rotation_deg: orientation (:mod:`clump_d2.data.sky`).
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

    @functools.cached_property
    def wcs(self) -> WCS:
        """The TAN WCS of this projection (built once per galaxy)."""
        return tangent_wcs(self.ra, self.dec, self.pixel_scale, ref_x=self.ref_x,
                           ref_y=self.ref_y, north_up=self.north_up, east_left=self.east_left,
                           rotation_deg=self.rotation_deg)

    def __call__(self, x, y) -> Tuple[np.ndarray, np.ndarray]:
        return pixel_to_sky(self.wcs, x, y)


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
        return pixel_to_sky(self.wcs, np.asarray(x, np.float64) + self.offset[0],
                            np.asarray(y, np.float64) + self.offset[1])


def wcs_problem(header) -> Optional[str]:
    """Why a FITS header's celestial WCS cannot turn pixels into sky positions, or None (also
    None without a celestial WCS: the record's centre + pixel scale, if any, apply).

    Refused: a WCS wcslib cannot set up (unknown projection, ill-conditioned parameters, a
    zero ``CDELT``), one whose pixel-scale matrix is singular (every pixel on one line of the
    sky), and one without a finite sky position at its own reference pixel.
    """
    try:
        sky = WcsSky.from_header(header)
        if sky is None:
            return None
        det = float(np.linalg.det(sky.wcs.pixel_scale_matrix))
        if not np.isfinite(det) or det == 0.0:
            return (f"singular WCS: its pixel-scale matrix {sky.wcs.pixel_scale_matrix.tolist()} "
                    "has determinant 0")
        x, y = (float(v) - 0.5 for v in sky.wcs.wcs.crpix)  # 1-based FITS -> continuous
        ra, dec = sky([x], [y])
        if not (np.isfinite(ra).all() and np.isfinite(dec).all()):
            return "the WCS gives no sky position at its own reference pixel"
    except Exception as e:  # noqa: BLE001  (wcslib and header parsing raise many types)
        lines = [line.strip() for line in str(e).splitlines()
                 if line.strip() and not line.startswith("ERROR ")]
        return f"invalid WCS ({type(e).__name__}: {' '.join(lines) or e})"
    return None


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
