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


def sky_statistics(image: np.ndarray, fwhm_px: float, nsigma: float = 1.5,
                   npixels: int = 10) -> Tuple[float, float, np.ndarray]:
    """(sky level, sky rms, source mask) of a 2-D image (NaN pixels ignored)."""
    from astropy.stats import sigma_clipped_stats
    from photutils.segmentation import detect_sources

    finite = np.isfinite(image)
    mean, median, std = sigma_clipped_stats(image, mask=~finite, sigma=3.0, maxiters=10)
    smooth = _smooth(np.where(finite, image - median, 0.0), fwhm_px)
    segm = detect_sources(smooth, nsigma * max(std, 1e-12), npixels)
    sources = segm.data > 0 if segm is not None else np.zeros(image.shape, bool)
    # Grow the mask by ~1 FWHM: the faint outskirts below the threshold are not sky either.
    from scipy.ndimage import binary_dilation

    grown = binary_dilation(sources, iterations=max(1, int(round(fwhm_px))))
    sky_pixels = finite & ~grown
    if sky_pixels.sum() < 50:  # the galaxy fills the cutout: fall back to the clipped stats
        return float(median), float(std), finite
    _, sky, rms = sigma_clipped_stats(image[sky_pixels], sigma=3.0, maxiters=10)
    return float(sky), float(max(rms, 1e-12)), sky_pixels


def _smooth(image: np.ndarray, fwhm_px: float) -> np.ndarray:
    from astropy.convolution import convolve
    from photutils.segmentation import make_2dgaussian_kernel

    fwhm = max(float(fwhm_px), 1.0)
    size = int(2 * np.ceil(1.5 * fwhm) + 1)
    return convolve(image, make_2dgaussian_kernel(fwhm, size=size), normalize_kernel=True)


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
    sky, rms, sky_pixels = sky_statistics(image, fwhm_px, nsigma, npixels)
    finite = np.isfinite(image)
    smooth = _smooth(np.where(finite, image - sky, 0.0), fwhm_px)
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
