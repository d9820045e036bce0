"""The PSF FWHM of an image that does not say it, estimated from its compact sources.

Galaxy Zoo 2 cut-outs (``gz2_sdss_1400``) carry no seeing or pixel scale: the seeing (~1.4"
FWHM in SDSS) is 3-10 px depending on the cut-out's scale. Stars and other unresolved
sources in the field are images of the PSF, so the narrowest well-measured sources give it:

1. luminance of the image (mean of the channels), sky level and noise from the median and MAD;
2. local maxima above ``min_snr`` x noise, away from the image edge, not saturated (8-bit
   images clip bright stars flat), and not inside the central galaxy's bright core;
3. each source's FWHM from a circular Gaussian fitted to a stamp around it (least squares on
   the background-subtracted pixels, with a constant);
4. the PSF is the median FWHM of the narrowest ``narrow_fraction`` of the well-fitted sources
   (extended sources — galaxies, the host's knots on its disc — are only ever wider).

If no source qualifies, the estimate is NaN with ``n_sources = 0``: callers then use a default
or marginalise over SDSS's seeing range (e.g. :data:`SDSS_SEEING_FWHM_PX_RANGE`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import least_squares
from scipy.special import erf

#: FWHM / sigma of a Gaussian.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: Range of the seeing in Galaxy Zoo 2 SDSS cut-outs, in their pixels (see gz2_sdss_1400).
SDSS_SEEING_FWHM_PX_RANGE = (3.0, 10.0)


def gaussian_psf(x_edges: np.ndarray, y_edges: np.ndarray, x: float, y: float,
                 fwhm: float) -> np.ndarray:
    """Unit-flux circular Gaussian PSF at continuous (x, y), integrated over the pixels whose
    edges are ``x_edges`` (W + 1) and ``y_edges`` (H + 1) (error functions): (H, W). Pixel i
    spans [i, i + 1); the sum is 1 when the PSF is well inside the edges."""
    s = fwhm / FWHM_PER_SIGMA * math.sqrt(2.0)
    px = np.diff(0.5 * erf((np.asarray(x_edges, np.float64) - x) / s))
    py = np.diff(0.5 * erf((np.asarray(y_edges, np.float64) - y) / s))
    return py[:, None] * px[None, :]


@dataclass
class PsfEstimate:
    """The PSF estimate of one image.

    Attributes:
        fwhm_px: the PSF FWHM in pixels (NaN when no source qualified).
        n_sources: sources whose FWHM entered the estimate.
        n_candidates: well-fitted compact-source candidates (before taking the narrowest).
        scatter_px: the MAD-based scatter of the FWHMs that entered (NaN with < 2 sources).
    """

    fwhm_px: float
    n_sources: int
    n_candidates: int
    scatter_px: float

    @property
    def ok(self) -> bool:
        return self.n_sources > 0 and math.isfinite(self.fwhm_px)


def _gaussian_fwhm(stamp: np.ndarray) -> Optional[Tuple[float, float]]:
    """(FWHM, relative residual) of a circular Gaussian + constant fitted to ``stamp``,
    centred near the stamp centre; None if the fit fails or is implausible."""
    h, w = stamp.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    peak = float(stamp.max() - np.median(stamp))
    if peak <= 0:
        return None

    def model(p):
        amp, x0, y0, sigma, const = p
        return amp * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2)) + const

    p0 = [peak, (w - 1) / 2, (h - 1) / 2, 1.5, float(np.median(stamp))]
    bounds = ([0, 0, 0, 0.3, -np.inf], [np.inf, w - 1, h - 1, max(h, w), np.inf])
    try:
        fit = least_squares(lambda p: (model(p) - stamp).ravel(), p0, bounds=bounds)
    except (ValueError, np.linalg.LinAlgError):
        return None
    amp, x0, y0, sigma, _ = fit.x
    if not fit.success or abs(x0 - (w - 1) / 2) > 2 or abs(y0 - (h - 1) / 2) > 2:
        return None
    resid = float(np.sqrt(np.mean(fit.fun**2)) / max(amp, 1e-9))
    return float(sigma * FWHM_PER_SIGMA), resid


def estimate_psf_fwhm(image: np.ndarray, *, min_snr: float = 15.0, stamp_half: int = 6,
                      saturation: Optional[float] = 250.0, core_fraction: float = 0.1,
                      narrow_fraction: float = 0.5, max_residual: float = 0.15,
                      max_sources: int = 40) -> PsfEstimate:
    """Estimate the PSF FWHM (px) of ``image`` from its compact sources.

    Args:
        image: (H, W) or (H, W, C) array (8-bit display image or fluxes).
        min_snr: peak height above the sky, in sky-noise units, of a candidate source.
        stamp_half: half side of the fitted stamp (px); sources wider than it are not stars.
        saturation: candidates whose peak pixel in any channel reaches this are skipped
            (None: no saturation cut, e.g. for fluxes).
        core_fraction: candidates inside the region brighter than this fraction of the
            image's brightest level above the sky *and* connected to the image centre (the
            central galaxy) are skipped.
        narrow_fraction: the estimate is the median of this fraction of the narrowest fits.
        max_residual: fits whose RMS residual exceeds this fraction of their amplitude are
            not Gaussian enough (blends, extended sources).
        max_sources: at most this many candidates (brightest first) are fitted.
    """
    arr = np.asarray(image, dtype=np.float64)
    lum = arr.mean(axis=2) if arr.ndim == 3 else arr
    brightest = arr.max(axis=2) if arr.ndim == 3 else arr
    h, w = lum.shape
    sky = float(np.median(lum))
    noise = float(1.4826 * np.median(np.abs(lum - sky))) or float(np.std(lum)) or 1.0
    above = lum - sky
    # The central galaxy: the bright connected region around the image centre.
    core = np.zeros_like(lum, dtype=bool)
    if core_fraction > 0 and above.max() > 0:
        labels, _ = ndi.label(above > core_fraction * above.max())
        centre_label = labels[h // 2, w // 2]
        if centre_label:
            core = labels == centre_label
    smooth = ndi.gaussian_filter(above, 1.0)
    is_max = smooth == ndi.maximum_filter(smooth, size=2 * stamp_half + 1)
    cand = is_max & (above > min_snr * noise) & ~core
    cand[:stamp_half, :] = cand[-stamp_half:, :] = False
    cand[:, :stamp_half] = cand[:, -stamp_half:] = False
    ys, xs = np.nonzero(cand)
    order = np.argsort(-above[ys, xs])[:max_sources]
    fwhms = []
    for y, x in zip(ys[order], xs[order]):
        sl = (slice(y - stamp_half, y + stamp_half + 1), slice(x - stamp_half, x + stamp_half + 1))
        if saturation is not None and brightest[sl].max() >= saturation:
            continue
        fit = _gaussian_fwhm(lum[sl])
        if fit is None:
            continue
        fwhm, resid = fit
        if resid <= max_residual and fwhm < stamp_half * 1.5:
            fwhms.append(fwhm)
    if not fwhms:
        return PsfEstimate(float("nan"), 0, 0, float("nan"))
    fwhms = np.sort(np.asarray(fwhms))
    narrow = fwhms[:max(1, int(math.ceil(narrow_fraction * len(fwhms))))]
    scatter = float(1.4826 * np.median(np.abs(narrow - np.median(narrow)))) \
        if len(narrow) > 1 else float("nan")
    return PsfEstimate(float(np.median(narrow)), len(narrow), len(fwhms), scatter)
