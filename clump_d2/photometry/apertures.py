"""Forced aperture photometry of clumps in every band, host fluxes, zero points.

Per clump and band (positions fixed, e.g. a detection's box centre):

* **aperture**: a circle of radius ``aperture_fwhm`` x PSF FWHM (photutils, exact pixel
  overlap), divided by the fraction of a Gaussian PSF's flux inside it (``1 - 2^-(2 r /
  FWHM)^2``: 0.9375 at 1 FWHM), so the flux is the clump's total flux (a PSF-matched aperture;
  exact for Gaussian PSFs, a few per cent off for real PSF wings);
* **local background** (``background="fit"``, the default): the host's light under the clump
  is a quadratic surface in x, y fitted by least squares to the pixels within
  ``annulus_fwhm[1]`` x FWHM of the clump *jointly* with a Gaussian PSF at the clump and at
  every other clump within reach (so neither the clump's own light nor its neighbours'
  becomes "host"); the surface and the neighbours' PSFs, integrated over the aperture, are
  subtracted from the aperture sum. A flat annulus mean fails on discs whose light changes
  on the scale of a few PSF FWHM (it biased clump fluxes on the simulated discs by tens of
  per cent); ``background="annulus"``: the 3-sigma-clipped mean of the annulus
  ``annulus_fwhm`` x FWHM, other clumps (within ``mask_fwhm`` x their FWHM) masked;
* **error**: from the sky noise of the band (rms of the sky pixels): ``A rms^2`` plus the
  background's variance (the least-squares covariance integrated over the aperture, or
  ``A^2 rms^2 / N_annulus``), divided by the same aperture correction. Pixel noise
  correlation (resampled images) and the clump's own photon noise are not included;
* **PSF-fit flux** (``flux_psf``, with ``background="fit"``): the clump's Gaussian-PSF
  amplitude in the same joint fit; exact for Gaussian PSFs, biased by a PSF of another shape
  (the aperture flux is the more robust one);
* **flags**: ``nan``: a NaN/inf pixel inside the aperture (that clump's flux is NaN, nothing
  else changes); ``partial``: the aperture crosses the image edge (flux from the part inside).

The host flux per band is the sky-subtracted sum over the host segment (NaN pixels skipped),
its error ``sqrt(N) rms``. Positions are Detectron2's continuous pixel coordinates (pixel
``i`` spans ``[i, i + 1)``); photutils puts pixel centres on integers, hence the -0.5.

Zero points (:func:`zero_point_from_header`): ``BUNIT`` nanomaggies -> 22.5 (SDSS), uJy ->
23.9, nJy -> 31.4, Jy -> 8.90; else the header keys ``MAGZP``, ``MAGZERO``, ``ZEROPT``,
``ZP``, ``PHOTZP``, ``ZPAB``, or ``FLUXMAG0`` (HSC: ``2.5 log10 FLUXMAG0``). Without one,
fluxes stay in the stored units and magnitudes are NaN.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from clump_d2.data.psf import gaussian_psf
from clump_d2.photometry.segmentation import clipped_stats

logger = logging.getLogger(__name__)

#: AB zero points of flux units found in ``BUNIT`` (lower case, spaces removed).
UNIT_ZERO_POINTS = {
    "nanomaggy": 22.5, "nanomaggies": 22.5, "nmgy": 22.5,
    "ujy": 23.9, "microjy": 23.9, "microjansky": 23.9, "µjy": 23.9,
    "njy": 31.4, "nanojy": 31.4, "nanojansky": 31.4,
    "jy": 8.9, "jansky": 8.9,
}
#: Header keys holding an AB magnitude zero point, in order of preference.
ZERO_POINT_KEYS = ("MAGZP", "MAGZERO", "ZEROPT", "ZP", "PHOTZP", "ZPAB", "MAGZPT")


@dataclass
class ApertureOptions:
    """Geometry of the forced photometry, in units of the PSF FWHM (see module docstring)."""

    aperture_fwhm: float = 1.0
    annulus_fwhm: Tuple[float, float] = (1.5, 2.0)
    mask_fwhm: float = 1.0
    background: str = "fit"  # "fit" (quadratic surface + PSFs) or "annulus" (clipped mean)


def zero_point_from_header(header) -> Tuple[Optional[float], str]:
    """(AB zero point or None, flux unit) of a FITS header (see module docstring).

    The unit is ``BUNIT`` as written, or ``"stored units"`` when the header has none.
    """
    if header is None:
        return None, "stored units"
    bunit = str(header.get("BUNIT", "") or "").strip()
    key = bunit.lower().replace(" ", "")
    if key in UNIT_ZERO_POINTS:
        return UNIT_ZERO_POINTS[key], bunit
    for k in ZERO_POINT_KEYS:
        value = header.get(k)
        if value is not None:
            try:
                zp = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(zp):
                return zp, bunit or "counts"
    fluxmag0 = header.get("FLUXMAG0")
    if fluxmag0 is not None:
        try:
            if float(fluxmag0) > 0:
                return 2.5 * math.log10(float(fluxmag0)), bunit or "counts"
        except (TypeError, ValueError):
            pass
    return None, bunit or "stored units"


def ab_magnitude(flux: np.ndarray, err: np.ndarray, zero_point: Optional[float]
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """AB magnitude and error (NaN where the flux is not positive or no zero point)."""
    flux = np.asarray(flux, dtype=np.float64)
    err = np.asarray(err, dtype=np.float64)
    if zero_point is None:
        nan = np.full(flux.shape, np.nan)
        return nan, nan.copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        positive = flux > 0
        mag = np.where(positive, zero_point - 2.5 * np.log10(np.where(positive, flux, 1.0)),
                       np.nan)
        mag_err = np.where(positive, 2.5 / np.log(10) * err / np.where(positive, flux, 1.0),
                           np.nan)
    return mag, mag_err


def gaussian_encircled_fraction(radius_px: float, fwhm_px: float) -> float:
    """Fraction of a Gaussian PSF's flux within ``radius_px`` of its centre."""
    sigma = fwhm_px / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    return 1.0 - math.exp(-(radius_px**2) / (2.0 * sigma**2))


@dataclass
class ClumpPhotometry:
    """Forced photometry of N clumps in C bands (arrays (C, N) unless said otherwise)."""

    flux: np.ndarray
    flux_err: np.ndarray
    flux_psf: np.ndarray  # amplitude of the clump's Gaussian PSF in the joint fit (NaN: annulus)
    background: np.ndarray  # local background per pixel (host + sky)
    nan_flag: np.ndarray  # (N,) a NaN/inf pixel in the aperture
    partial_flag: np.ndarray  # (N,) the aperture crosses the image edge
    radius_px: np.ndarray  # (N,) aperture radius
    aperture_correction: np.ndarray  # (N,) Gaussian encircled fraction divided out


def forced_photometry(bands: np.ndarray, xy: np.ndarray, fwhm_px: np.ndarray,
                      sky_rms: Sequence[float], options: Optional[ApertureOptions] = None,
                      mask_xy: Optional[np.ndarray] = None,
                      mask_fwhm_px: Optional[np.ndarray] = None) -> ClumpPhotometry:
    """Aperture photometry of every clump in every band (see module docstring).

    Args:
        bands: (C, H, W) linear fluxes, NaN allowed.
        xy: (N, 2) continuous pixel positions.
        fwhm_px: (N,) PSF FWHM of each clump, pixels.
        sky_rms: (C,) sky noise per pixel of each band.
        options: aperture geometry.
        mask_xy / mask_fwhm_px: positions (and FWHM) of other sources masked in the annuli
            (default: the clumps themselves); a clump never masks itself.
    """
    from photutils.aperture import CircularAnnulus, CircularAperture

    o = options or ApertureOptions()
    if o.background not in ("fit", "annulus"):
        raise ValueError(f"unknown photometry background {o.background!r}: 'fit' or 'annulus'")
    bands = np.asarray(bands, dtype=np.float64)
    if bands.ndim != 3:
        raise ValueError(f"expected (C, H, W) bands, got shape {bands.shape}")
    n_bands, h, w = bands.shape
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    n = len(xy)
    fwhm_px = np.broadcast_to(np.asarray(fwhm_px, dtype=np.float64), (n,))
    mask_xy = xy if mask_xy is None else np.asarray(mask_xy, dtype=np.float64).reshape(-1, 2)
    mask_fwhm_px = (fwhm_px if mask_fwhm_px is None
                    else np.broadcast_to(np.asarray(mask_fwhm_px, np.float64), (len(mask_xy),)))
    finite = np.isfinite(bands)
    any_bad = ~finite.all(axis=0)
    filled = np.where(finite, bands, 0.0)
    yy, xx = np.mgrid[0:h, 0:w] + 0.5

    flux = np.full((n_bands, n), np.nan)
    err = np.full((n_bands, n), np.nan)
    bkg = np.full((n_bands, n), np.nan)
    psf_flux = np.full((n_bands, n), np.nan)
    nan_flag = np.zeros(n, bool)
    partial = np.zeros(n, bool)
    radius = o.aperture_fwhm * fwhm_px
    apcorr = np.array([gaussian_encircled_fraction(r, f) for r, f in zip(radius, fwhm_px)])
    for k in range(n):
        x, y, r = xy[k, 0], xy[k, 1], radius[k]
        if not (np.isfinite(x) and np.isfinite(y) and r > 0):
            continue
        partial[k] = x - r < 0 or y - r < 0 or x + r > w or y + r > h
        pos = (x - 0.5, y - 0.5)
        aperture = CircularAperture(pos, r=r)
        ap_mask = aperture.to_mask(method="exact")
        weights = ap_mask.to_image((h, w))
        if weights is None:  # entirely off the image
            partial[k] = True
            continue
        nan_flag[k] = bool((weights[any_bad] > 0).any())
        area = float(weights.sum())
        r_in, r_out = o.annulus_fwhm[0] * fwhm_px[k], o.annulus_fwhm[1] * fwhm_px[k]
        annulus = CircularAnnulus(pos, r_in=r_in, r_out=r_out).to_mask(method="center")
        ann = annulus.to_image((h, w))
        ann = ann > 0 if ann is not None else np.zeros((h, w), bool)
        for j in range(len(mask_xy)):  # other clumps' light is not background
            mx, my = mask_xy[j]
            if abs(mx - x) < 1e-6 and abs(my - y) < 1e-6:
                continue
            rad = o.mask_fwhm * mask_fwhm_px[j]
            if abs(mx - x) > r_out + rad or abs(my - y) > r_out + rad:
                continue
            ann &= np.hypot(xx - mx, yy - my) > rad
        if o.background == "fit":  # one design matrix for all bands
            fits = _fit_background_bands(bands, finite, weights, x, y, fwhm_px[k], r_out,
                                         mask_xy, mask_fwhm_px)
        for c in range(n_bands):
            total = float((weights * filled[c]).sum())
            if o.background == "fit":
                model, model_var, level, amplitude = fits[c]
                psf_flux[c, k] = np.nan if nan_flag[k] else amplitude
                net = total - model
                var = area * sky_rms[c] ** 2 + model_var * sky_rms[c] ** 2
            else:
                values = bands[c][ann & finite[c]]
                level, n_ann = _clipped_mean(values)
                net = total - level * area
                var = area * sky_rms[c] ** 2 + (area**2 * sky_rms[c] ** 2 / n_ann if n_ann
                                                else 0.0)
            bkg[c, k] = level
            flux[c, k] = np.nan if nan_flag[k] else net / apcorr[k]
            err[c, k] = np.nan if nan_flag[k] else math.sqrt(var) / apcorr[k]
    return ClumpPhotometry(flux, err, psf_flux, bkg, nan_flag, partial, radius, apcorr)


def _fit_background_bands(bands: np.ndarray, finite: np.ndarray, weights: np.ndarray,
                          x: float, y: float, fwhm: float, radius: float, others: np.ndarray,
                          others_fwhm: np.ndarray) -> List[Tuple[float, float, float, float]]:
    """:func:`_fit_background` of every band of (C, H, W) ``bands``; the stamp geometry and
    PSFs are built once, and bands with the same usable pixels share one factorisation (the
    fit is linear: its normal matrix depends on the pixels used, not on their values)."""
    h, w = bands.shape[1:]
    x0, x1 = max(int(np.floor(x - radius)), 0), min(int(np.ceil(x + radius)), w)
    y0, y1 = max(int(np.floor(y - radius)), 0), min(int(np.ceil(y + radius)), h)
    geometry = _stamp_columns(x, y, fwhm, radius, others, others_fwhm, x0, x1, y0, y1)
    out: List[Optional[Tuple[float, float, float, float]]] = [None] * len(bands)
    groups: Dict[bytes, List[int]] = {}
    for c in range(len(bands)):
        groups.setdefault(finite[c, y0:y1, x0:x1].tobytes(), []).append(c)
    for members in groups.values():
        values = np.stack([bands[c, y0:y1, x0:x1] for c in members], axis=-1)
        for c, result in zip(members, _solve_stamp(values, finite[members[0], y0:y1, x0:x1],
                                                   weights[y0:y1, x0:x1], geometry)):
            out[c] = result
    return out


def _stamp_columns(x, y, fwhm, radius, others, others_fwhm, x0, x1, y0, y1):
    """(in-radius mask, surface columns, PSF columns) of the fit stamp [y0:y1, x0:x1]."""
    yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
    inside = np.hypot(xx - x, yy - y) <= radius
    xe = np.arange(x0, x1 + 1, dtype=np.float64)
    ye = np.arange(y0, y1 + 1, dtype=np.float64)
    u, v = (xx - x) / radius, (yy - y) / radius
    surface = [np.ones_like(u), u, v, u * u, u * v, v * v]
    psfs = [gaussian_psf(xe, ye, x, y, fwhm)]
    for (mx, my), mf in zip(others, others_fwhm):
        if abs(mx - x) < 1e-6 and abs(my - y) < 1e-6:
            continue
        if np.hypot(mx - x, my - y) <= radius + 1.5 * mf:  # its light reaches the stamp
            psfs.append(gaussian_psf(xe, ye, mx, my, mf))
    return inside, surface, psfs


def _solve_stamp(values: np.ndarray, finite: np.ndarray, wts: np.ndarray, geometry
                 ) -> List[Tuple[float, float, float, float]]:
    """The fit of :func:`_fit_background` for ``values`` (h, w, B) sharing ``finite``."""
    inside, surface, psfs = geometry
    use = inside & finite
    columns = surface + psfs
    if use.sum() <= len(columns) + 3:  # too few pixels (edge/NaN): flat level only
        columns, psfs = surface[:1] + psfs[:1], psfs[:1]
    design = np.stack([c[use] for c in columns], axis=1)
    target = values[use]  # (n_pix, B)
    normal = design.T @ design
    try:
        cov = np.linalg.inv(normal)
        coef = cov @ (design.T @ target)
    except np.linalg.LinAlgError:  # degenerate stamp: the minimum-norm solution
        cov = None
        coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    n_surface = len(columns) - len(psfs)
    integral = np.array([float((wts * c).sum()) for c in columns])
    g = integral.copy()
    g[n_surface] = 0.0  # what is not the clump: the surface and the neighbours' PSFs
    model_var = float(max(g @ cov @ g, 0.0)) if cov is not None else 0.0
    model = g @ coef
    return [(float(model[b]), model_var, float(coef[0, b]), float(coef[n_surface, b]))
            for b in range(values.shape[-1])]


def _fit_background(band: np.ndarray, finite: np.ndarray, weights: np.ndarray, x: float,
                    y: float, fwhm: float, radius: float, others: np.ndarray,
                    others_fwhm: np.ndarray) -> Tuple[float, float, float, float]:
    """Joint least-squares fit, within ``radius`` of (x, y), of a quadratic surface + a Gaussian
    PSF at the clump and at each other source within reach.

    Returns:
        (surface + neighbours integrated over the aperture ``weights``, its variance in units
        of the pixel variance, the surface's value at the clump per pixel, the clump's PSF
        amplitude: its PSF-fit flux).
    """
    return _fit_background_bands(band[None], finite[None], weights, x, y, fwhm, radius,
                                 others, others_fwhm)[0]


def _fit_background_lstsq(band: np.ndarray, finite: np.ndarray, weights: np.ndarray,
                          x: float, y: float, fwhm: float, radius: float, others: np.ndarray,
                          others_fwhm: np.ndarray) -> Tuple[float, float, float, float]:
    """The reference implementation of :func:`_fit_background` (SVD least squares, one band);
    tests compare the fast path with it."""
    h, w = band.shape
    x0, x1 = max(int(np.floor(x - radius)), 0), min(int(np.ceil(x + radius)), w)
    y0, y1 = max(int(np.floor(y - radius)), 0), min(int(np.ceil(y + radius)), h)
    # The same stamp geometry as the fast path; only the solver differs.
    inside, surface, psfs = _stamp_columns(x, y, fwhm, radius, others, others_fwhm,
                                           x0, x1, y0, y1)
    use = inside & finite[y0:y1, x0:x1]
    columns = surface + psfs
    if use.sum() <= len(columns) + 3:  # too few pixels (edge/NaN): flat level only
        columns, psfs = surface[:1] + psfs[:1], psfs[:1]
    design = np.stack([c[use] for c in columns], axis=1)
    coef, *_ = np.linalg.lstsq(design, band[y0:y1, x0:x1][use], rcond=None)
    wts = weights[y0:y1, x0:x1]
    # What is not the clump: the surface and the neighbours' PSFs (column 1 of psfs is ours).
    n_surface = len(columns) - len(psfs)
    integral = np.array([float((wts * c).sum()) for c in columns])
    keep = np.ones(len(columns), bool)
    keep[n_surface] = False  # the clump's own PSF
    g = np.where(keep, integral, 0.0)
    model = float(g @ coef)
    try:
        cov = np.linalg.inv(design.T @ design)
        model_var = float(max(g @ cov @ g, 0.0))
    except np.linalg.LinAlgError:
        model_var = 0.0
    return model, model_var, float(coef[0]), float(coef[n_surface])


def _clipped_mean(values: np.ndarray) -> Tuple[float, int]:
    """3-sigma-clipped mean and the number of values kept (0.0, 0 when empty)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return 0.0, 0
    keep = np.ones(values.size, bool)
    for _ in range(5):
        v = values[keep]
        med, std = np.median(v), v.std()
        new = np.abs(values - med) <= 3.0 * std if std > 0 else keep
        if new.sum() < 3 or (new == keep).all():
            break
        keep = new
    return float(values[keep].mean()), int(keep.sum())


def host_fluxes(bands: np.ndarray, host_mask: np.ndarray, sky: Sequence[float],
                sky_rms: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """(flux (C,), error (C,)) of the host segment per band, sky-subtracted; NaN without a
    host."""
    bands = np.asarray(bands, dtype=np.float64)
    flux = np.full(len(bands), np.nan)
    err = np.full(len(bands), np.nan)
    if not host_mask.any():
        return flux, err
    for c, band in enumerate(bands):
        values = band[host_mask]
        values = values[np.isfinite(values)]
        flux[c] = float((values - sky[c]).sum())
        err[c] = math.sqrt(values.size) * float(sky_rms[c])
    return flux, err


def band_sky(bands: np.ndarray, sky_pixels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Sky level and rms per band: 3-sigma-clipped median and std of ``sky_pixels``."""
    sky = np.zeros(len(bands))
    rms = np.ones(len(bands))
    for c, band in enumerate(np.asarray(bands, dtype=np.float64)):
        values = band[sky_pixels & np.isfinite(band)]
        if values.size < 10:
            values = band[np.isfinite(band)]
        med, std = clipped_stats(values)
        sky[c], rms[c] = float(med), float(max(std, 1e-12))
    return sky, rms


def flux_ratios(flux: np.ndarray, host_flux: np.ndarray) -> np.ndarray:
    """Clump / host flux per band, (C, N); NaN where the host flux is not positive."""
    host = np.asarray(host_flux, dtype=np.float64)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(host > 0, np.asarray(flux, np.float64) / np.where(host > 0, host, 1),
                        np.nan)


def colour_columns(mags: Dict[str, np.ndarray], band_order: Sequence[str]
                   ) -> Dict[str, np.ndarray]:
    """``<a>_<b>`` colours (mag_a - mag_b) of neighbouring bands in ``band_order``."""
    return {f"colour_{a}_{b}": mags[a] - mags[b] for a, b in zip(band_order, band_order[1:])}
