"""The host galaxy's segment: the connected region above the sky that holds the galaxy centre.

On the *detection image* (FITS: the sum of the bands or one chosen band; PNG/JPEG: the
luminance of the display-linearised image), with photutils as SExtractor does it:

1. a first pass of ``detect_sources`` on the PSF-smoothed image masks every source; the sky
   level and rms are the sigma-clipped mean and standard deviation of the remaining pixels
   (a global background: a cutout holds one galaxy, and a mesh background of a few boxes
   would absorb its disc);
2. ``detect_sources`` on the PSF-smoothed, sky-subtracted image at ``nsigma`` x the sky rms,
   at least ``npixels`` connected pixels; optionally ``deblend_sources`` (``contrast``: the
   flux fraction a separate source needs; high by default, so that a giant clump, up to a
   third of its galaxy's light, is not cut out of its own host);
3. the host is the segment under the galaxy centre, else the nearest segment within two PSF
   FWHM of it; no such segment: no host (the rows get ``in_host`` False and a NaN host flux).

Positions are Detectron2's continuous pixel coordinates (pixel ``i`` spans ``[i, i + 1)``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class HostSegment:
    """The host segment of one image.

    Attributes:
        mask: (H, W) bool, the host's pixels (all False when no host was found).
        sources: (H, W) bool, every detected source's pixels (the host included).
        sky_pixels: (H, W) bool, the pixels the sky statistics came from (finite, away from
            every source); per-band sky levels and noise are measured on them.
        centre: (x, y) the galaxy centre used, continuous pixels.
        sky: sky level of the detection image.
        sky_rms: sky rms per pixel of the detection image.
        found: whether a host segment was found.
    """

    mask: np.ndarray
    sources: np.ndarray
    sky_pixels: np.ndarray
    centre: Tuple[float, float]
    sky: float
    sky_rms: float
    found: bool

    def contains(self, x: Sequence[float], y: Sequence[float]) -> np.ndarray:
        """Whether each continuous position (x, y) lies on a host pixel."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        h, w = self.mask.shape
        out = np.zeros(x.shape, dtype=bool)
        ok = np.isfinite(x) & np.isfinite(y)
        col = np.floor(np.where(ok, x, -1)).astype(int)
        row = np.floor(np.where(ok, y, -1)).astype(int)
        inside = ok & (col >= 0) & (col < w) & (row >= 0) & (row < h)
        out[inside] = self.mask[row[inside], col[inside]]
        return out


def detection_image(bands: np.ndarray, band_names: Sequence[str],
                    detection_band: str = "") -> np.ndarray:
    """The (H, W) image the host is segmented on: one named band, or the sum of all bands.

    Raises:
        ValueError: ``detection_band`` is not among ``band_names``.
    """
    bands = np.asarray(bands, dtype=np.float64)
    if detection_band:
        if detection_band not in band_names:
            raise ValueError(f"detection band {detection_band!r} is not among the image's "
                             f"bands {list(band_names)}")
        return bands[list(band_names).index(detection_band)]
    return bands.sum(axis=0)


def clipped_stats(values: np.ndarray, sigma: float = 3.0, maxiters: int = 5
                  ) -> Tuple[float, float]:
    """(median, standard deviation) of the finite ``values`` after iterative ``sigma``
    clipping about the median (as astropy's ``sigma_clipped_stats``, a few times faster)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    if v.size > 8192:  # a regular subsample estimates sky statistics as well, and faster
        v = v[:: v.size // 4096]
    for _ in range(maxiters):
        med, std = float(np.median(v)), float(v.std())
        keep = np.abs(v - med) <= sigma * std
        if std == 0 or keep.all() or keep.sum() < 3:
            break
        v = v[keep]
    return float(np.median(v)), float(v.std())


def sky_statistics(image: np.ndarray, fwhm_px: float, nsigma: float = 1.5,
                   npixels: int = 10) -> Tuple[float, float, np.ndarray, np.ndarray]:
    """(sky level, sky rms, sky-pixel mask, PSF-smoothed image minus the sky) of a 2-D image
    (NaN pixels ignored)."""
    from photutils.segmentation import detect_sources
    from scipy.ndimage import binary_dilation

    finite = np.isfinite(image)
    median, std = clipped_stats(image[finite])
    smooth = _smooth(np.where(finite, image - median, 0.0), fwhm_px)
    segm = detect_sources(smooth, nsigma * max(std, 1e-12), npixels)
    sources = segm.data > 0 if segm is not None else np.zeros(image.shape, bool)
    # Grow the mask by ~1 FWHM: the faint outskirts below the threshold are not sky either.
    grown = binary_dilation(sources, iterations=max(1, int(round(fwhm_px))))
    sky_pixels = finite & ~grown
    if sky_pixels.sum() < 50:  # the galaxy fills the cutout: fall back to the clipped stats
        return median, max(std, 1e-12), finite, smooth
    sky, rms = clipped_stats(image[sky_pixels])
    # The smoothing kernel is normalised, so shifting the level shifts the smoothed image.
    return sky, max(rms, 1e-12), sky_pixels, smooth - (sky - median)


def _smooth(image: np.ndarray, fwhm_px: float) -> np.ndarray:
    """Gaussian smoothing by the PSF (the matched filter of point sources), as SExtractor."""
    from scipy.ndimage import gaussian_filter

    sigma = max(float(fwhm_px), 1.0) / 2.3548
    return gaussian_filter(image, sigma, mode="nearest", truncate=3.0)


def segment_host(image: np.ndarray, fwhm_px: float,
                 centre: Optional[Tuple[float, float]] = None, nsigma: float = 1.5,
                 npixels: int = 10, deblend: bool = False,
                 deblend_contrast: float = 0.3) -> HostSegment:
    """The host segment of a 2-D detection image (see module docstring).

    Args:
        image: (H, W) detection image (NaN allowed: treated as sky).
        fwhm_px: PSF FWHM in pixels (smoothing kernel; search radius for the host).
        centre: galaxy centre (x, y), continuous pixels; None: the image centre.
        nsigma: detection threshold, x the sky rms.
        npixels: fewest connected pixels of a segment.
        deblend: separate touching sources with photutils' ``deblend_sources``.
        deblend_contrast: flux fraction a deblended child must hold.
    """
    from photutils.segmentation import deblend_sources, detect_sources

    image = np.asarray(image, dtype=np.float64)
    h, w = image.shape
    if centre is None:
        centre = (w / 2.0, h / 2.0)
    sky, rms, sky_pixels, smooth = sky_statistics(image, fwhm_px, nsigma, npixels)
    segm = detect_sources(smooth, nsigma * rms, npixels)
    empty = np.zeros(image.shape, bool)
    if segm is None:
        logger.debug("no source above %.1f sigma: no host segment", nsigma)
        return HostSegment(empty, empty, sky_pixels, (float(centre[0]), float(centre[1])), sky,
                           rms, False)
    if deblend:
        try:
            segm = deblend_sources(smooth, segm, npixels, contrast=deblend_contrast,
                                   progress_bar=False)
        except ValueError as e:  # photutils refuses some tiny segments; keep them whole
            logger.debug("deblending skipped: %s", e)
    labels = segm.data
    label = _label_at(labels, centre, 2.0 * fwhm_px)
    mask = labels == label if label else empty
    return HostSegment(mask, labels > 0, sky_pixels, (float(centre[0]), float(centre[1])), sky,
                       rms, bool(label))


def _label_at(labels: np.ndarray, centre: Tuple[float, float], radius: float) -> int:
    """The segment label under ``centre``, else of the nearest labelled pixel within
    ``radius``; 0 if none."""
    h, w = labels.shape
    col, row = int(np.floor(centre[0])), int(np.floor(centre[1]))
    if 0 <= row < h and 0 <= col < w and labels[row, col]:
        return int(labels[row, col])
    rows, cols = np.nonzero(labels)
    if not len(rows):
        return 0
    d = np.hypot(cols + 0.5 - centre[0], rows + 0.5 - centre[1])
    k = int(np.argmin(d))
    return int(labels[rows[k], cols[k]]) if d[k] <= radius else 0
