"""The host's half-light radius R50: the scale of clump distances from the galaxy centre.

Injection-recovery places clumps at distances in units of the host's R50 (the radius about the
centre holding half of the host segment's light, :func:`clump_d2.sim.inject.host_properties`),
so a catalogue clump is put on the same scale to look up its detection probability
(:mod:`clump_d2.evaluation.selection`). Here R50 is measured on the photometry's host segment
(:mod:`clump_d2.photometry.segmentation`) of its detection image, sky subtracted, negative
pixels counting zero, as the injection does on its own segment.
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from clump_d2.photometry.images import PhotometryImage
from clump_d2.photometry.segmentation import HostSegment, detection_image


def half_light_radius(image: np.ndarray, mask: np.ndarray, centre: Tuple[float, float]) -> float:
    """Radius (px) about ``centre`` holding half of the light of ``image`` inside ``mask``.

    Args:
        image: (H, W) sky-subtracted image (NaN pixels count zero).
        mask: (H, W) bool, the galaxy's pixels.
        centre: (x, y) in continuous pixel coordinates (pixel ``i`` spans ``[i, i + 1)``).

    Returns:
        R50, interpolated linearly in the cumulative light between pixel radii (pixels are
        taken at their centres, so radii below about a pixel are not resolved); NaN when the
        mask holds no positive light.
    """
    rows, cols = np.nonzero(mask)
    light = np.asarray(image, dtype=np.float64)[rows, cols]
    keep = np.isfinite(light) & (light > 0)  # pixels without light do not move the radius
    rows, cols, light = rows[keep], cols[keep], light[keep]
    if not len(light):
        return math.nan
    r = np.hypot(cols + 0.5 - centre[0], rows + 0.5 - centre[1])
    order = np.argsort(r, kind="stable")
    r, cum = r[order], np.cumsum(light[order])
    # Each pixel's light is taken as reached at its radius: interpolate between them.
    return float(np.interp(0.5 * cum[-1], cum, r))


def host_detection_image(image: PhotometryImage, detection_band: str = "") -> np.ndarray:
    """The (H, W) image the host segment is found on (as
    :func:`clump_d2.photometry.measure.host_segment_of`: display images the mean of the
    linearised channels, FITS the band sum or ``detection_band``)."""
    if image.display:
        return np.asarray(image.bands, dtype=np.float64).mean(axis=0)
    return detection_image(image.bands, image.band_names, detection_band)


def host_r50(image: PhotometryImage, segment: HostSegment, detection_band: str = "") -> float:
    """R50 (px) of the host segment on its detection image, sky subtracted, about the
    segment's centre; NaN without a host segment."""
    if not segment.found:
        return math.nan
    det = host_detection_image(image, detection_band) - segment.sky
    return half_light_radius(det, segment.mask, segment.centre)
