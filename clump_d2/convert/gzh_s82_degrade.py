"""The GZH Stripe 82 galaxies at single-epoch SDSS depth: real clump labels where a detector
meets them in single-epoch images.

The 24 labelled GZH S82 JPEGs (:mod:`clump_d2.convert.gzh_s82`) are Stripe 82 *coadds*; the
images Clump Scout showed and users run the detector on are single-epoch SDSS cut-outs of the
Galaxy Zoo 2 kind (``gz2_sdss_1400``). Each coadd is degraded to single-epoch conditions:

1. **linearise** with the project's display model (:class:`~clump_d2.data.stretch.DisplayStretch`,
   Lupton asinh, Q = 10, 8-bit values dithered in their bin) and subtract the sky (per-channel
   median of the sky region, beyond 2 R90 of the centre);
2. **blur** with a Gaussian of FWHM sqrt(target^2 - coadd^2) where the coadd PSF (the
   catalogue's r-band PSF, ``psf_fwhm_px``) is sharper than the single-epoch target;
3. **add sky noise** so that the noise a point source sees (sky filtered with the PSF)
   becomes ``depth_factor`` x the blurred coadd's (its own noise counted; point sources
   2.5 log10(depth_factor) mag shallower): Gaussian noise correlated as a native 0.396"
   SDSS pixel resampled to the cut-out (Gaussian sigma 0.5 x 0.396 / scale px) and 85 %
   shared by the three channels (grey), as the SDSS simulation preset's noise
   (:class:`~clump_d2.sim.synthetic.SdssRealism`);
4. **re-display** as the single-epoch JPEGs are displayed: scaled so that the sky sigma and the
   sky level (linear units of the display model) are those of the single-epoch images,
   re-stretched with the same display model, JPEG quality 75, 4:2:0 (the Galaxy Zoo JPEGs').

**Calibration** (:func:`calibrate`), against ``gz2_sdss_1400``, with the same statistics measured
the same way on the single-epoch images, the coadds and the degraded coadds
(:func:`image_statistics`; every cut-out has R90 = 50 px by the Galaxy Zoo convention of 0.02 x
``PETROR90_R`` arcsec per pixel, so fixed pixel radii are fixed fractions of the galaxy):

* **depth**: the density of point sources at S/N >= 5 (PSF-matched filter) in the sky region,
  per PSF area (FWHM^2): how faint a source the image shows, a property of the survey's depth
  and seeing that, unlike sky noise relative to the host, does not depend on how bright the
  galaxies of a sample are. ``depth_factor`` is the one factor, the same for every galaxy (a
  survey's depth is uniform), at which the degraded coadds' median density equals the
  single-epoch median (bisection on renders of every galaxy);
* **seeing**: the single-epoch median PSF FWHM in pixels (R90 = 50 px: relative to the galaxy)
  over the coadds' median (catalogue PSF) gives the seeing ratio; the target FWHM in arcsec is
  that ratio x the coadds' median seeing, the same for every galaxy;
* **display**: median sky sigma and sky level (linear display units) of the single-epoch images,
  corrected (the search run twice) for what the JPEG round trip does to them;
* **host-relative sky noise** (median sky-subtracted surface brightness in rings at R50 ~ 0.4 R90
  and at R90, over the per-pixel sky sigma) is measured and reported, not matched: see
  docs/real_galaxies.md for why.

**Labels.** Each catalogue clump's S/N in the degraded image (:func:`clump_snrs`): aperture
photometry (radius 0.67 FWHM, the S/N-optimal aperture for a Gaussian PSF; local background the
mean of the ring 1.5-2.5 FWHM) of the noise-free degraded image (linearised back from its JPEG, so
what the display and compression lose is lost), over the noise of the same photometry: the
coadd's own (blurred, rescaled) sky noise from the sky region, plus the added noise measured
locally (within 4 FWHM of the clump) on the difference of the noisy and the noise-free JPEG,
so that the 8-bit display's coarser steps on a bright disc count. A clump at S/N >= ``snr_min``
(5) is a label; a fainter one an ignore region (``iscrowd: 1``, ``ignore_reason: "snr_1e"``).
Every clump records ``snr_1e`` and ``snr_coadd`` (the same photometry on the coadd against its
sky noise).
"""
from __future__ import annotations

import copy
import io
import json
import logging
import math
import os
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from scipy.signal import fftconvolve
from tqdm import tqdm

from clump_d2.convert.coco_writer import (ConversionReport, atomic_write_bytes,
                                          atomic_write_text)
from clump_d2.convert.gzh_s82 import (CROP_OFFSET, DEFAULT_SEED, catalogue_coco, fold_splits,
                                      gzh_paths)
from clump_d2.convert.layout import write_dataset
from clump_d2.data.psf import FWHM_PER_SIGMA, estimate_psf_fwhm
from clump_d2.data.stretch import DisplayStretch
from clump_d2.structures import BOX_SIDE_PER_FWHM, fit_box_to_frame, square_box, xyxy_to_xywh

logger = logging.getLogger(__name__)

#: R90 of a Galaxy Zoo cut-out in its own pixels (0.02 x PETROR90_R arcsec per pixel).
GZ_R90_PX = 50.0
#: The sky region of a 424 px cut-out: pixels beyond this radius (2 R90) from the centre.
SKY_RMIN_PX = 2.0 * GZ_R90_PX
#: SDSS native pixel scale (arcsec / px).
NATIVE_SCALE = 0.396
#: Rings (px) whose median surface brightness, over the sky sigma, is the host-relative depth.
HOST_RINGS = {"host_snr_r50": (18.0, 22.0), "host_snr_r90": (45.0, 55.0)}
#: Percentiles the calibration reports.
PERCENTILES = (10, 25, 50, 75, 90)


def robust_sigma(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation (the sigma of a Gaussian; robust to sources)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def sky_mask(shape: Sequence[int], rmin: float = SKY_RMIN_PX, border: int = 0) -> np.ndarray:
    """Pixels at least ``rmin`` from the image centre and ``border`` from its edges."""
    h, w = int(shape[0]), int(shape[1])
    yy, xx = np.mgrid[0:h, 0:w]
    mask = np.hypot(xx + 0.5 - w / 2, yy + 0.5 - h / 2) >= rmin
    if border > 0:
        mask[:border] = mask[-border:] = False
        mask[:, :border] = mask[:, -border:] = False
    return mask


def luminance(linear: np.ndarray) -> np.ndarray:
    """Mean of the channels of an (H, W, C) image (the display model's intensity)."""
    return np.asarray(linear, dtype=np.float64).mean(axis=2)


def lag1_autocorrelation(lum: np.ndarray, mask: np.ndarray) -> float:
    """Autocorrelation at 1 px (horizontal) of the sky: the noise's correlation length. Sources
    are clipped at 3 sigma."""
    sky = lum[mask]
    med, sig = float(np.median(sky)), robust_sigma(sky)
    d = np.clip(lum - med, -3 * sig, 3 * sig)
    pair = mask[:, 1:] & mask[:, :-1]
    return float(np.mean((d[:, 1:] * d[:, :-1])[pair]) / max(np.mean(d[mask] ** 2), 1e-30))


def ring_median(image: np.ndarray, r_in: float, r_out: float) -> float:
    """Median of ``image`` in the ring r_in <= r < r_out (px) about the image centre."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(xx + 0.5 - w / 2, yy + 0.5 - h / 2)
    return float(np.median(image[(r >= r_in) & (r < r_out)]))


def count_point_sources(lum: np.ndarray, fwhm_px: float, mask: np.ndarray,
                        snr: float = 5.0) -> Tuple[int, float]:
    """Point sources at S/N >= ``snr`` in ``mask``: local maxima of the PSF-matched filtered
    image (Gaussian of ``fwhm_px``) in units of its robust sigma over ``mask``.

    Returns:
        (count, area of the searched region in PSF areas, FWHM^2): their ratio is the source
        density per PSF area.
    """
    border = int(math.ceil(fwhm_px))
    mask = mask.copy()
    mask[:border] = mask[-border:] = False
    mask[:, :border] = mask[:, -border:] = False
    filtered = ndi.gaussian_filter(np.asarray(lum, np.float64), fwhm_px / FWHM_PER_SIGMA)
    sky = filtered[mask]
    sigma = robust_sigma(sky)
    if not sigma > 0:
        return 0, float(mask.sum()) / fwhm_px ** 2
    z = (filtered - np.median(sky)) / sigma
    size = max(3, int(2 * fwhm_px) | 1)  # one peak per ~PSF: the maximum over 2 FWHM
    peaks = (z == ndi.maximum_filter(z, size=size)) & (z >= snr) & mask
    return int(peaks.sum()), float(mask.sum()) / fwhm_px ** 2


def image_statistics(rgb: np.ndarray, fwhm_px: Optional[float], rng: np.random.Generator,
                     q: float = 10.0, source_snr: float = 5.0) -> Dict[str, float]:
    """The calibration statistics of one 8-bit colour cut-out (424 px, Galaxy Zoo scale).

    Args:
        rgb: (H, W, 3) uint8.
        fwhm_px: its PSF FWHM (px), or None to measure it from its compact sources
            (:func:`~clump_d2.data.psf.estimate_psf_fwhm`; NaN when none qualify, and then no
            source density).
        rng: dithers the 8-bit values within their bins when linearising.
        q: the display model's softening.
        source_snr: S/N of the counted point sources.

    Returns:
        ``sky_r/g/b`` (linear sky level per channel), ``sky_sigma`` (per-pixel sky sigma of the
        luminance, linear), ``sky_grey`` / ``sky_sigma_grey`` (the same in grey levels),
        ``lag1``, ``host_snr_r50`` / ``host_snr_r90`` (median surface brightness of the host in
        a ring at ~R50 / at R90 over the sky sigma), ``fwhm_px``, ``n_sources``,
        ``psf_areas``, ``source_density`` (sources per PSF area).
    """
    rgb = np.asarray(rgb)
    linear = DisplayStretch(q).linearise(rgb, rng)
    lum = luminance(linear)
    mask = sky_mask(lum.shape)
    sky = np.median(linear[mask], axis=0)
    sky_lum = float(np.median(lum[mask]))
    sigma = robust_sigma(lum[mask])
    grey = rgb.astype(np.float64).mean(axis=2)[mask]
    out = {"sky_r": float(sky[0]), "sky_g": float(sky[1]), "sky_b": float(sky[2]),
           "sky_sigma": sigma, "sky_grey": float(np.median(grey)),
           "sky_sigma_grey": robust_sigma(grey), "lag1": lag1_autocorrelation(lum, mask)}
    for name, (r_in, r_out) in HOST_RINGS.items():
        out[name] = (ring_median(lum, r_in, r_out) - sky_lum) / sigma if sigma > 0 else math.nan
    if fwhm_px is None:
        psf = estimate_psf_fwhm(rgb)
        fwhm_px = psf.fwhm_px if psf.ok else math.nan
    out["fwhm_px"] = float(fwhm_px)
    if math.isfinite(fwhm_px) and fwhm_px > 0:
        n, areas = count_point_sources(lum, fwhm_px, mask, source_snr)
        out.update(n_sources=n, psf_areas=areas, source_density=n / areas)
    else:
        out.update(n_sources=math.nan, psf_areas=math.nan, source_density=math.nan)
    return out


def summarise(stats: Sequence[Dict[str, float]],
              keys: Optional[Sequence[str]] = None) -> Dict[str, Dict]:
    """{statistic: {"p10", "p25", "p50", "p75", "p90", "n"}} over images (NaN ignored; keys
    default to the numeric ones of the first image)."""
    if keys is None:
        keys = [k for k, v in (stats[0].items() if stats else ())
                if isinstance(v, (int, float, np.number))]
    out = {}
    for k in keys:
        v = np.asarray([s.get(k, math.nan) for s in stats], dtype=np.float64)
        v = v[np.isfinite(v)]
        row = {f"p{p}": (float(np.percentile(v, p)) if v.size else math.nan)
               for p in PERCENTILES}
        row["n"] = int(v.size)
        out[k] = row
    return out


# --- the degradation ---------------------------------------------------------------------


def blur_sigma_px(fwhm_from: float, fwhm_to: float) -> float:
    """Sigma (px) of the Gaussian that turns a Gaussian PSF of ``fwhm_from`` into one of
    ``fwhm_to`` (FWHMs add in quadrature); 0 when ``fwhm_to <= fwhm_from``."""
    return math.sqrt(max(fwhm_to ** 2 - fwhm_from ** 2, 0.0)) / FWHM_PER_SIGMA


def sky_noise(rng: np.random.Generator, shape: Sequence[int], corr_px: float,
              shared: float = 0.85) -> np.ndarray:
    """(H, W, 3) Gaussian sky noise whose luminance (channel mean) has rms exactly 1.

    Correlated over ``corr_px`` (Gaussian sigma, px: a native pixel resampled to the cut-out)
    and ``shared`` of its variance common to the three channels (grey noise, as in the
    Galaxy Zoo JPEGs)."""
    h, w = int(shape[0]), int(shape[1])
    fields = rng.normal(size=(4, h, w))
    if corr_px > 0.3:
        fields = ndi.gaussian_filter(fields, (0, corr_px, corr_px))
    fields /= fields.std(axis=(1, 2), keepdims=True)
    noise = (math.sqrt(shared) * fields[0][..., None]
             + math.sqrt(1.0 - shared) * np.moveaxis(fields[1:], 0, -1))
    return noise / luminance(noise).std()


@dataclass
class DegradePlan:
    """How one galaxy is degraded (every number in the image's own pixels)."""

    coadd_fwhm_px: float  # the coadd's PSF FWHM
    target_fwhm_px: float  # the single-epoch PSF FWHM (>= coadd: never sharpened)
    depth_factor: float  # point-source noise at the target PSF / the blurred coadd's
    noise_corr_px: float  # Gaussian correlation sigma of the added noise
    display_sigma: float  # sky sigma of the result, linear display units
    display_sky: Tuple[float, float, float]  # sky level per channel of the result


@dataclass
class Degraded:
    """One degraded image, linear (display units) and displayed."""

    noisy: np.ndarray  # (H, W, 3) float, the degraded linear image
    noise_free: np.ndarray  # the same without the added noise (the coadd's own noise stays)
    info: Dict[str, float]


def lower_sigma(values: np.ndarray) -> float:
    """Median minus the 15.87th percentile: a Gaussian's sigma from the lower half alone, which
    sources (all positive) do not widen, where they would widen the MAD."""
    v = np.asarray(values, dtype=np.float64).ravel()
    return float(np.median(v) - np.percentile(v, 15.865)) if v.size else float("nan")


def point_source_noise(lum: np.ndarray, fwhm_px: float, mask: np.ndarray) -> float:
    """Sigma (:func:`lower_sigma`) over ``mask`` of ``lum`` filtered with a Gaussian PSF of
    ``fwhm_px``: the noise a point source's (PSF-weighted) flux sees, up to a constant of the
    PSF alone. Two images compared at the same PSF have the ratio of their point-source
    depths; unlike the per-pixel sigma it counts the noise's correlation."""
    return lower_sigma(ndi.gaussian_filter(np.asarray(lum, np.float64),
                                           fwhm_px / FWHM_PER_SIGMA)[mask])


def degrade_linear(linear: np.ndarray, plan: DegradePlan,
                   noise_rng: np.random.Generator) -> Degraded:
    """Blur, add sky noise and rescale a linearised coadd (steps 1-4 of the module docstring,
    before the display).

    The sky (per-channel median of the sky region) is subtracted and the coadd blurred to the
    target PSF; then noise is added so that the point-source noise at the target PSF
    (:func:`point_source_noise`) is ``depth_factor`` x the blurred coadd's (its own noise
    counted: depth factor 1 adds none; point sources end up 2.5 log10(depth_factor) mag
    shallower); the result is scaled so that its per-pixel sky sigma is ``display_sigma`` and
    offset to ``display_sky``."""
    linear = np.asarray(linear, dtype=np.float64)
    mask = sky_mask(linear.shape)
    x = linear - np.median(linear[mask], axis=0)
    sigma0 = robust_sigma(luminance(x)[mask])
    blur = blur_sigma_px(plan.coadd_fwhm_px, plan.target_fwhm_px)
    if blur > 0:
        x = ndi.gaussian_filter(x, (blur, blur, 0))
    sigma_blurred = robust_sigma(luminance(x)[mask])
    point_blurred = point_source_noise(luminance(x), plan.target_fwhm_px, mask)
    noise, added = 0.0, 0.0
    if plan.depth_factor > 1.0 and point_blurred > 0:
        unit = sky_noise(noise_rng, x.shape[:2], plan.noise_corr_px)
        point_unit = point_source_noise(luminance(unit), plan.target_fwhm_px, mask)
        added = math.sqrt(plan.depth_factor ** 2 - 1.0) * point_blurred / point_unit
        noise = added * unit
    total = math.sqrt(sigma_blurred ** 2 + added ** 2)  # the unit noise has luminance rms 1
    scale = plan.display_sigma / total if total > 0 else 1.0
    sky = np.asarray(plan.display_sky, dtype=np.float64)
    info = {"coadd_sigma": sigma0, "blur_sigma_px": blur, "blurred_sigma": sigma_blurred,
            "point_noise_blurred": point_blurred, "added_sigma": added, "total_sigma": total,
            "display_scale": scale}
    return Degraded((x + noise) * scale + sky, x * scale + sky, info)


def jpeg_bytes(rgb: np.ndarray, quality: int = 75) -> bytes:
    """uint8 RGB -> JPEG bytes (4:2:0 chroma subsampling, as the Galaxy Zoo JPEGs)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, np.uint8)).save(buf, format="JPEG", quality=int(quality),
                                                    subsampling=2)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    """JPEG/PNG bytes -> uint8 RGB array."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def display_jpeg(linear: np.ndarray, q: float = 10.0, quality: int = 75) -> bytes:
    """Linear display units -> the 8-bit display model -> JPEG bytes."""
    return jpeg_bytes(DisplayStretch(q).display(linear), quality)


# --- clump S/N and labels ----------------------------------------------------------------


#: Aperture photometry of a clump, in PSF FWHM: aperture radius (S/N-optimal for a Gaussian
#: PSF on sky noise) and the ring of the local background.
APERTURE_FWHM = 0.67
BACKGROUND_RING_FWHM = (1.5, 2.5)


def aperture_kernel(fwhm_px: float, radius_fwhm: float = APERTURE_FWHM,
                    ring_fwhm: Tuple[float, float] = BACKGROUND_RING_FWHM) -> np.ndarray:
    """Kernel of aperture photometry with a local background: 1 in the aperture (radius at
    least 1.5 px), minus (aperture pixels / ring pixels) in the background ring. Convolved
    with an image it gives, at every pixel, the background-subtracted aperture flux; its sum
    is 0, so a constant or a plane does not contribute."""
    r_ap, r_in, r_out = _aperture_geometry(fwhm_px, radius_fwhm, ring_fwhm)
    half = int(math.ceil(r_out))
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    r = np.hypot(xx, yy)
    disc, ring = r <= r_ap, (r >= r_in) & (r <= r_out)
    return disc.astype(np.float64) - ring * (disc.sum() / ring.sum())


def enclosed_fraction(fwhm_px: float, radius_px: float) -> float:
    """Fraction of a Gaussian PSF's light within ``radius_px`` of its centre."""
    sigma = fwhm_px / FWHM_PER_SIGMA
    return 1.0 - math.exp(-radius_px ** 2 / (2 * sigma ** 2))


def _aperture_geometry(fwhm_px: float, radius_fwhm: float = APERTURE_FWHM,
                       ring_fwhm: Tuple[float, float] = BACKGROUND_RING_FWHM):
    """(aperture radius, ring inner radius, ring outer radius) in px, as
    :func:`aperture_kernel` uses them."""
    r_ap = max(radius_fwhm * fwhm_px, 1.5)
    r_in, r_out = (max(f * fwhm_px, r_ap + 1.0) for f in ring_fwhm)
    return r_ap, r_in, max(r_out, r_in + 1.5)


def clump_snrs(noise_free: np.ndarray, noisy: Optional[np.ndarray], positions: np.ndarray,
               fwhm_px: float, display_error: Optional[np.ndarray] = None,
               local_fwhm: float = 4.0) -> Dict[str, np.ndarray]:
    """S/N of clumps at ``positions`` ((N, 2) x, y in full-image pixels) in a degraded image.

    Args:
        noise_free: (H, W) luminance of the degraded image without the added noise (linear
            units, read back from its 8-bit display).
        noisy: the same with the noise (None: the noise is the sky's only, e.g. a coadd).
        positions: clump centres; pixel i spans [i, i + 1).
        fwhm_px: the image's PSF FWHM.
        display_error: (H, W) what the 8-bit display and the JPEG round trip changed in the
            noise-free image (read back minus the float image), or None.
        local_fwhm: the added and the display noise are measured within this many FWHM of
            each clump.

    Returns:
        ``signal`` (aperture sum minus the aperture's pixels x the median of the background
        ring, which neighbouring clumps do not bias as a mean would; the largest within
        max(1.5 px, 0.5 FWHM) of the position: catalogue positions are good to 1-2 px),
        ``sky_noise`` (robust sigma of the photometry, as the linear :func:`aperture_kernel`,
        over the sky region: the noise already in ``noise_free``), ``added_noise`` (the same
        of noisy - noise_free near the clump; 0 without ``noisy``), ``display_noise`` (the
        same of ``display_error`` near the clump: the 8-bit steps are coarse on a bright disc;
        0 without it), ``snr`` = signal / the three noises in quadrature.
    """
    kernel = aperture_kernel(fwhm_px)
    half = kernel.shape[0] // 2
    mask = sky_mask(noise_free.shape, border=half)
    sky = robust_sigma(fftconvolve(noise_free, kernel, mode="same")[mask])
    maps = {name: fftconvolve(m, kernel, mode="same") for name, m in
            (("added_noise", None if noisy is None else noisy - noise_free),
             ("display_noise", display_error)) if m is not None}
    r_ap, r_in, r_out = _aperture_geometry(fwhm_px)
    disc_sum = fftconvolve(noise_free, (np.hypot(*np.mgrid[-half:half + 1, -half:half + 1])
                                        <= r_ap).astype(np.float64), mode="same")
    n_ap = int((np.hypot(*np.mgrid[-half:half + 1, -half:half + 1]) <= r_ap).sum())
    h, w = noise_free.shape
    yy, xx = np.mgrid[0:h, 0:w]
    inside = (xx >= half) & (xx < w - half) & (yy >= half) & (yy < h - half)
    search = max(1.5, 0.5 * fwhm_px)
    keys = ("signal", "sky_noise", "added_noise", "display_noise", "snr")
    out = {k: np.zeros(len(positions)) for k in keys}
    for i, (x, y) in enumerate(np.asarray(positions, np.float64).reshape(-1, 2)):
        r = np.hypot(xx + 0.5 - x, yy + 0.5 - y)
        near = r <= search
        if not near.any():  # a position between pixel centres: the nearest pixel
            near = r <= r.min()
        best = -np.inf
        for py, px in zip(*np.nonzero(near)):
            # the ring about this candidate centre, in a window around it
            y0, y1 = max(py - half, 0), min(py + half + 1, h)
            x0, x1 = max(px - half, 0), min(px + half + 1, w)
            rr = np.hypot(xx[y0:y1, x0:x1] - px, yy[y0:y1, x0:x1] - py)
            ring = noise_free[y0:y1, x0:x1][(rr >= r_in) & (rr <= r_out)]
            best = max(best, float(disc_sum[py, px] - n_ap * np.median(ring)))
        local = (r <= local_fwhm * fwhm_px) & inside
        noises = {"sky_noise": sky}
        for name, m in maps.items():
            noises[name] = robust_sigma(m[local]) if local.sum() > 8 else robust_sigma(m[mask])
        total = math.sqrt(sum(v ** 2 for v in noises.values()))
        out["signal"][i] = best
        for name, v in noises.items():
            out[name][i] = v
        out["snr"][i] = best / total if total > 0 else math.nan
    return out


# --- calibration ---------------------------------------------------------------------------


def _rng(seed: int, key: str, stream: int) -> np.random.Generator:
    """The generator of one galaxy's stream (0: dither of the coadd, 1 + k: realisation k's
    noise, 9999 / 10000: the calibration renders' noise / read-back dither)."""
    return np.random.default_rng([int(seed), zlib.crc32(str(key).encode()), int(stream)])


STREAM_DITHER, STREAM_CALIBRATION = 0, 9999


@dataclass
class Calibration:
    """The single-epoch calibration of the degradation and its measurements.

    Attributes:
        depth_factor: point-source noise of the degraded images over the (blurred) coadd's,
            every galaxy.
        seeing_arcsec: single-epoch PSF FWHM, every galaxy (never sharper than its coadd).
        seeing_ratio: single-epoch median FWHM (px) / coadd median FWHM (px).
        display_sigma, display_sky: sky sigma and per-channel sky level of the results
            (linear display units) before the JPEG round trip.
        density_target: the single-epoch median point-source density per PSF area.
        single_epoch, coadd, degraded: :func:`summarise` of each set's statistics.
        search: the depth bisection, [[depth_factor, median density], ...].
        params: what it was run with.
    """

    depth_factor: float
    seeing_arcsec: float
    seeing_ratio: float
    display_sigma: float
    display_sky: Tuple[float, float, float]
    density_target: float
    single_epoch: Dict = field(default_factory=dict)
    coadd: Dict = field(default_factory=dict)
    degraded: Dict = field(default_factory=dict)
    search: List = field(default_factory=list)
    params: Dict = field(default_factory=dict)
    per_image: Dict = field(default_factory=dict)

    def to_json(self, path: str | os.PathLike) -> Path:
        return atomic_write_text(path, json.dumps(_clean(asdict(self)), indent=1))

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "Calibration":
        data = json.loads(Path(path).read_text())
        data["display_sky"] = tuple(data["display_sky"])
        return cls(**data)


def _clean(value):
    """NaN -> None, numpy -> Python, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_clean(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def single_epoch_images(folder: str | os.PathLike) -> List[Path]:
    """The JPEG/PNG files under ``folder`` (recursively), sorted."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise FileNotFoundError(f"no JPEG/PNG images under {folder}")
    return files


def measure_single_epoch(files: Sequence[Path], seed: int = DEFAULT_SEED,
                         q: float = 10.0, progress: bool = True) -> List[Dict[str, float]]:
    """:func:`image_statistics` of every single-epoch image, PSF measured from its stars; an
    image without a measurable PSF gets the median of the measured ones for its source
    count (``fwhm_measured`` says which)."""
    stats = []
    for f in tqdm(files, desc="single-epoch images", disable=not progress):
        rgb = np.asarray(Image.open(f).convert("RGB"))
        s = image_statistics(rgb, None, _rng(seed, f.name, STREAM_DITHER), q)
        s["fwhm_measured"] = float(math.isfinite(s["fwhm_px"]))
        s["file"] = f.name
        stats.append(s)
    measured = [s["fwhm_px"] for s in stats if s["fwhm_measured"]]
    fallback = float(np.median(measured)) if measured else 6.5
    for f, s in zip(files, stats):
        if not s["fwhm_measured"]:
            rgb = np.asarray(Image.open(f).convert("RGB"))
            lum = luminance(DisplayStretch(q).linearise(rgb, _rng(seed, f.name, STREAM_DITHER)))
            n, areas = count_point_sources(lum, fallback, sky_mask(lum.shape))
            s.update(n_sources=n, psf_areas=areas, source_density=n / areas,
                     fwhm_fallback=fallback)
    return stats


@dataclass
class CoaddGalaxy:
    """One coadd to degrade: its image, PSF, pixel scale and the generator key."""

    galaxy_id: str
    rgb: np.ndarray
    fwhm_px: float
    pixel_scale: float

    def linear(self, seed: int, q: float = 10.0) -> np.ndarray:
        return DisplayStretch(q).linearise(self.rgb, _rng(seed, self.galaxy_id, STREAM_DITHER))

    def plan(self, cal: Calibration) -> DegradePlan:
        target = max(self.fwhm_px, cal.seeing_arcsec / self.pixel_scale)
        return DegradePlan(self.fwhm_px, target, cal.depth_factor,
                           0.5 * NATIVE_SCALE / self.pixel_scale, cal.display_sigma,
                           tuple(cal.display_sky))


def _render_stats(galaxies: Sequence[CoaddGalaxy], linears: Sequence[np.ndarray],
                  cal: Calibration, seed: int, q: float, quality: int) -> List[Dict]:
    """Statistics of one calibration render of every galaxy with ``cal``'s parameters."""
    out = []
    for g, lin in zip(galaxies, linears):
        plan = g.plan(cal)
        d = degrade_linear(lin, plan, _rng(seed, g.galaxy_id, STREAM_CALIBRATION))
        rgb = decode(display_jpeg(d.noisy, q, quality))
        out.append(image_statistics(rgb, plan.target_fwhm_px,
                                    _rng(seed, g.galaxy_id, STREAM_CALIBRATION + 1), q))
    return out


def calibrate(galaxies: Sequence[CoaddGalaxy], single_epoch: Sequence[Dict[str, float]],
              seed: int = DEFAULT_SEED, q: float = 10.0, quality: int = 75,
              depth_factor: Optional[float] = None, seeing_arcsec: Optional[float] = None,
              depth_range: Tuple[float, float] = (1.0, 16.0), steps: int = 9,
              progress: bool = True) -> Calibration:
    """Calibrate the degradation of ``galaxies`` against single-epoch image statistics.

    Args:
        galaxies: the coadds.
        single_epoch: :func:`measure_single_epoch` of the single-epoch images.
        depth_factor, seeing_arcsec: fixed values instead of the calibrated ones.
        depth_range, steps: the bisection of the depth factor (log-spaced).

    Returns:
        the :class:`Calibration` (module docstring: what is matched and how).
    """
    se = summarise(single_epoch)
    coadd_stats = [image_statistics(g.rgb, g.fwhm_px, _rng(seed, g.galaxy_id, STREAM_DITHER), q)
                   for g in galaxies]
    co = summarise(coadd_stats)
    coadd_arcsec = float(np.median([g.fwhm_px * g.pixel_scale for g in galaxies]))
    measured_fwhm = [s["fwhm_px"] for s in single_epoch if s.get("fwhm_measured")]
    ratio = float(np.median(measured_fwhm) / np.median([g.fwhm_px for g in galaxies]))
    cal = Calibration(
        depth_factor=1.0, seeing_arcsec=seeing_arcsec or max(ratio, 1.0) * coadd_arcsec,
        seeing_ratio=ratio, display_sigma=se["sky_sigma"]["p50"],
        display_sky=(se["sky_r"]["p50"], se["sky_g"]["p50"], se["sky_b"]["p50"]),
        density_target=se["source_density"]["p50"], single_epoch=se, coadd=co,
        params={"seed": seed, "q": q, "jpeg_quality": quality, "coadd_seeing_arcsec":
                coadd_arcsec, "depth_factor_fixed": depth_factor,
                "seeing_arcsec_fixed": seeing_arcsec, "n_galaxies": len(galaxies),
                "n_single_epoch": len(single_epoch)})
    linears = [g.linear(seed, q) for g in galaxies]

    def median_density(a: float) -> float:
        cal.depth_factor = a
        d = float(np.median([s["source_density"] for s in
                             _render_stats(galaxies, linears, cal, seed, q, quality)]))
        cal.search.append([a, d])
        return d

    # Two rounds: the JPEG round trip changes the displayed sky sigma and level a little, and
    # the display scale changes which faint sources survive the 8-bit display.
    bar = tqdm(total=2 * (steps + 1), desc="calibrating depth", disable=not progress)
    for _ in range(2):
        if depth_factor is not None:
            cal.depth_factor = float(depth_factor)
        else:
            lo, hi = (math.log(v) for v in depth_range)
            d_lo = median_density(math.exp(lo))
            bar.update()
            if d_lo <= cal.density_target:  # not deeper than single-epoch images already
                hi = lo
            for _ in range(steps):
                if hi - lo < 1e-3:
                    break
                mid = 0.5 * (lo + hi)
                if median_density(math.exp(mid)) > cal.density_target:
                    lo = mid
                else:
                    hi = mid
                bar.update()
            cal.depth_factor = math.exp(0.5 * (lo + hi))
        rendered = _render_stats(galaxies, linears, cal, seed, q, quality)
        bar.update()
        got = summarise(rendered)
        cal.display_sigma *= se["sky_sigma"]["p50"] / got["sky_sigma"]["p50"]
        cal.display_sky = tuple(v * se[k]["p50"] / got[k]["p50"] for v, k in
                                zip(cal.display_sky, ("sky_r", "sky_g", "sky_b")))
    bar.close()
    rendered = _render_stats(galaxies, linears, cal, seed, q, quality)
    cal.degraded = summarise(rendered)
    cal.per_image = {"single_epoch": single_epoch, "coadd": coadd_stats, "degraded": rendered}
    logger.info("calibration: depth factor %.2f, seeing %.2f\" (ratio %.2f), display sigma %.4f;"
                " source density / PSF area: single-epoch %.4f, coadd %.4f, degraded %.4f",
                cal.depth_factor, cal.seeing_arcsec, ratio, cal.display_sigma,
                se["source_density"]["p50"], co["source_density"]["p50"],
                cal.degraded["source_density"]["p50"])
    return cal


# --- the dataset ---------------------------------------------------------------------------

#: Per-clump S/N at or above which a catalogue clump stays a label at single-epoch depth.
DEFAULT_SNR_MIN = 5.0
#: Why a clump is an ignore region in the degraded dataset (``ignore_reason``).
IGNORE_REASON = "snr_1e"
#: Flux fraction (u band) at which the paper calls a clump giant (counted in the summary).
GIANT_FRAC_U = 0.03


def coadd_galaxies(coco: Dict, gzh_dir: str | os.PathLike) -> Dict[str, CoaddGalaxy]:
    """{galaxy_id: :class:`CoaddGalaxy`} of a crop-frame GZH S82 COCO dict (424 px JPEGs;
    PSF: the image's catalogue ``psf_fwhm_px``, else ``PSF_WIDTH_R`` of the galaxy table)."""
    from astropy.table import Table

    paths = gzh_paths(gzh_dir)
    table = {str(r["survey_id"]): r for r in Table.read(paths["galaxies"])}
    out = {}
    for im in coco["images"]:
        gid = str(im["galaxy_id"])
        scale = float(im["pixel_scale_arcsec"])
        fwhm = im.get("psf_fwhm_px")
        if not fwhm:
            fwhm = float(table[gid]["PSF_WIDTH_r"]) / scale
            logger.info("galaxy %s has no clump PSF: PSF_WIDTH_r, %.2f px", gid, fwhm)
        rgb = np.asarray(Image.open(paths["images"] / im["file_name"]).convert("RGB"))
        out[gid] = CoaddGalaxy(gid, rgb, float(fwhm), scale)
    return out


def _subset(coco: Dict, image_ids: set) -> Dict:
    images = [im for im in coco["images"] if im["id"] in image_ids]
    anns = [a for a in coco["annotations"] if a["image_id"] in image_ids]
    return {**{k: v for k, v in coco.items() if k not in ("images", "annotations")},
            "images": images, "annotations": anns}


def degrade_galaxy(galaxy: CoaddGalaxy, image: Dict, annotations: Sequence[Dict],
                   cal: Calibration, realisation: int, seed: int, snr_min: float,
                   q: float = 10.0, quality: int = 75) -> Tuple[bytes, Dict, List[Dict]]:
    """One noise realisation of one galaxy: (JPEG bytes, image record, annotations).

    The image record is the coadd's with ``psf_fwhm_px`` the degraded PSF, ``realisation``,
    ``coadd_file``, ``coadd_psf_fwhm_px`` and ``degrade`` (plan and measured sigmas); each
    annotation gets the degraded PSF's box (2.5 x FWHM, edge rule of the crop), ``snr_1e``,
    ``snr_coadd``, and ``iscrowd`` 1 with ``ignore_reason`` when ``snr_1e < snr_min``."""
    plan = galaxy.plan(cal)
    linear = galaxy.linear(seed, q)
    d = degrade_linear(linear, plan, _rng(seed, galaxy.galaxy_id, 1 + realisation))
    data = display_jpeg(d.noisy, q, quality)
    stretch = DisplayStretch(q)
    # Read back as a reader would (bin centres: the same rounding for both images, so that
    # their difference is the added noise as the 8-bit display shows it).
    noisy = luminance(stretch.linearise(decode(data)))
    noise_free = luminance(stretch.linearise(decode(display_jpeg(d.noise_free, q, quality))))
    # display_error: what the 8-bit display and JPEG lose (negative linear values are
    # clipped by the display: compared with the clipped float image).
    display_error = noise_free - luminance(np.clip(d.noise_free, 0.0, None))
    x0, y0 = image["crop"][:2] if image.get("crop") else (CROP_OFFSET, CROP_OFFSET)
    pos = np.asarray([[a["x"] + x0, a["y"] + y0] for a in annotations], np.float64)
    snr = clump_snrs(noise_free, noisy, pos, plan.target_fwhm_px, display_error)
    coadd = clump_snrs(luminance(linear), None, pos, plan.coadd_fwhm_px)
    stem = Path(image["file_name"]).stem
    record = dict(copy.deepcopy(image), id=int(image["id"]) * 100 + realisation,
                  file_name=f"{stem}_1e{realisation}.jpg", psf_fwhm_px=plan.target_fwhm_px,
                  coadd_psf_fwhm_px=plan.coadd_fwhm_px, coadd_file=image["file_name"],
                  realisation=realisation,
                  degrade={**asdict(plan), **d.info, "snr_min": snr_min, "seed": seed})
    anns = []
    w, h = record["width"], record["height"]
    for i, a in enumerate(annotations):
        box, status = fit_box_to_frame(square_box(a["x"], a["y"],
                                                  BOX_SIDE_PER_FWHM * plan.target_fwhm_px),
                                       w, h, frame="crop")
        if box is None:  # centres are inside the crop (prepare kept only those)
            raise ValueError(f"clump {a.get('clump_id')} of {image['file_name']} outside the crop")
        ann = dict(copy.deepcopy(a), image_id=record["id"], bbox=xyxy_to_xywh(box),
                   area=(box[2] - box[0]) * (box[3] - box[1]), psf_fwhm_px=plan.target_fwhm_px,
                   clipped=status == "clipped",
                   snr_1e=float(snr["snr"][i]), snr_coadd=float(coadd["snr"][i]),
                   iscrowd=int(not snr["snr"][i] >= snr_min))
        if ann["iscrowd"]:
            ann["ignore_reason"] = IGNORE_REASON
        anns.append(ann)
    return data, record, anns


def degrade_gzh_s82(gzh_dir: str | os.PathLike, out_dir: str | os.PathLike,
                    calibration: Calibration, realisations: int = 3, seed: int = DEFAULT_SEED,
                    galaxies: Optional[Sequence[str]] = None, snr_min: float = DEFAULT_SNR_MIN,
                    split_seed: int = DEFAULT_SEED, progress: bool = True,
                    rotations: Optional[Dict[str, int]] = None) -> Dict[str, Path]:
    """Write the degraded GZH S82 dataset: ``realisations`` noise draws of each galaxy.

    Splits as :func:`~clump_d2.convert.gzh_s82.prepare_gzh_s82` writes them (``all``, ``train``,
    ``test``, ``train_a/b``, ``test_a/b``), each galaxy in the fold it has there (folds made on
    the whole catalogue with ``split_seed``, then restricted to ``galaxies``), all its
    realisations together; so a model fine-tuned on ``gzh_s82c_train`` meets only its test
    galaxies in ``<out>_test``.

    Args:
        gzh_dir: the ``gzh_s82_clumps`` folder.
        out_dir: the dataset folder (e.g. ``datasets/gzh_s82_1e``).
        calibration: :func:`calibrate`'s result (depth, seeing, display).
        realisations: noise draws per galaxy (at most 100; image id = coadd id x 100 + draw).
        seed: seeds every draw (same seed: identical bytes).
        galaxies: galaxy ids to write (default: all).
        snr_min: clumps below this S/N become ignore regions.
        split_seed: the folds' seed (prepare's default: the folds of ``gzh_s82c``).
        rotations: {galaxy id: quarter turns} of its catalogue positions
            (:func:`~clump_d2.convert.gzh_s82.catalogue_coco`).

    Returns:
        {split: JSON path}.
    """
    if not 1 <= realisations <= 100:
        raise ValueError(f"realisations must be 1-100, got {realisations}")
    coco, _ = catalogue_coco(gzh_dir, rotations=rotations)
    folds = fold_splits(coco, seed=split_seed)
    known = {str(im["galaxy_id"]) for im in coco["images"]}
    chosen = sorted(known) if galaxies is None else [str(g) for g in galaxies]
    unknown = sorted(set(chosen) - known)
    if unknown:
        raise ValueError(f"galaxies not in {gzh_dir}: {unknown}")
    coadds = coadd_galaxies({"images": [im for im in coco["images"]
                                        if str(im["galaxy_id"]) in chosen]}, gzh_dir)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    report = ConversionReport("degrade", [gzh_dir], params={
        "realisations": realisations, "seed": seed, "snr_min": snr_min,
        "split_seed": split_seed, "galaxies": chosen, "depth_factor": calibration.depth_factor,
        "seeing_arcsec": calibration.seeing_arcsec})
    img_t, ann_t = report.tally("images"), report.tally("annotations")
    images, anns = [], []
    by_image: Dict[int, List[Dict]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    todo = [(im, k) for im in coco["images"] if str(im["galaxy_id"]) in chosen
            for k in range(realisations)]
    for im, k in tqdm(todo, desc="degrading", disable=not progress):
        data, record, new = degrade_galaxy(coadds[str(im["galaxy_id"])], im,
                                           by_image.get(im["id"], []), calibration, k, seed,
                                           snr_min)
        atomic_write_bytes(out_dir / "images" / record["file_name"], data)
        images.append(record)
        anns.extend(new)
    img_t.add_read(len(coco["images"]) * realisations)
    img_t.keep(len(images))
    img_t.drop("galaxy_not_chosen", len(coco["images"]) * realisations - len(images))
    ann_t.add_read(len(anns))
    ann_t.keep(len(anns))
    ann_t.note("ignore_snr_below_min", sum(a["iscrowd"] for a in anns))
    for i, a in enumerate(anns, start=1):
        a["id"] = i
    everything = {**{k: v for k, v in coco.items() if k not in ("images", "annotations")},
                  "images": images, "annotations": anns}
    everything["info"] = dict(coco.get("info", {}), degraded=(
        f"single-epoch depth: depth factor {calibration.depth_factor:.3f}, seeing "
        f"{calibration.seeing_arcsec:.3f} arcsec, {realisations} noise realisations, seed "
        f"{seed}; clumps at S/N < {snr_min:g} are ignore regions"))
    unit = {"all": (everything, report)}
    for name, (fold, _) in folds.items():
        gids = {str(im["galaxy_id"]) for im in fold["images"]}
        ids = {im["id"] for im in images if str(im["galaxy_id"]) in gids}
        sub = _subset(everything, ids)
        rep = ConversionReport("split", params={"folds_of": "prepare_gzh_s82",
                                                "split_seed": split_seed, "group_key":
                                                "galaxy_id"})
        rep.info["derived_from"] = name.rsplit("_", 1)[0] if name.endswith(("_a", "_b")) \
            else "all"
        for kind, n_all, n_sub in (("images", len(images), len(sub["images"])),
                                   ("annotations", len(anns), len(sub["annotations"]))):
            t = rep.tally(kind)
            t.add_read(n_all)
            t.keep(n_sub)
            t.drop("other_fold", n_all - n_sub)
        if not sub["images"]:
            logger.warning("split %s has none of the chosen galaxies", name)
        unit[name] = (sub, rep)
    written = write_dataset(out_dir, unit)
    summary = dataset_summary({k: v[0] for k, v in unit.items()})
    atomic_write_text(out_dir / "degrade_summary.json", json.dumps(_clean(summary), indent=1))
    for name, row in summary.items():
        logger.info("%s: %d images, %d labels, %d ignore regions (giants >= 3 %% u: %d labels "
                    "of %d)", name, row["images"], row["labels"], row["ignored"],
                    row["giant_labels"], row["giants"])
    return written


def dataset_summary(splits: Dict[str, Dict]) -> Dict[str, Dict]:
    """Per split: images, galaxies, labels, ignore regions, and the paper's giants (u-band flux
    fraction >= 3 %) among them, counted per realisation image (so a clump counts once per
    realisation)."""
    out = {}
    for name, coco in splits.items():
        anns = coco["annotations"]
        giants = [a for a in anns if (a.get("flux_frac_u") or 0) >= GIANT_FRAC_U]
        out[name] = {"images": len(coco["images"]),
                     "galaxies": len({str(im["galaxy_id"]) for im in coco["images"]}),
                     "clumps": len(anns), "labels": sum(not a["iscrowd"] for a in anns),
                     "ignored": sum(bool(a["iscrowd"]) for a in anns),
                     "giants": len(giants), "giant_labels": sum(not a["iscrowd"] for a in giants)}
    return out


def calibration_figure(cal: Calibration, out_png: str | os.PathLike,
                       examples: Sequence[Tuple[np.ndarray, np.ndarray]] = ()) -> Path:
    """Histograms of the calibration statistics (single-epoch, coadd, degraded) and, with
    ``examples``, (coadd, degraded) central crops side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (matplotlib.ticker.NullFormatter below)

    panels = (("source_density", "point sources (S/N >= 5) per PSF area", True),
              ("sky_sigma", "sky sigma (linear display units)", True),
              ("host_snr_r50", "host surface brightness at ~R50 / sky sigma", True),
              ("fwhm_px", "PSF FWHM (px; R90 = 50 px)", False))
    n_ex = min(len(examples), 3)
    fig = plt.figure(figsize=(13, 6.4 if n_ex else 3.2))
    grid = fig.add_gridspec(2 if n_ex else 1, 12)
    sets = (("single_epoch", "gz2_sdss_1400", "k"), ("coadd", "S82 coadds", "tab:blue"),
            ("degraded", "S82 degraded", "tab:orange"))
    for i, (key, title, log) in enumerate(panels):
        ax = fig.add_subplot(grid[0, 3 * i:3 * i + 3])
        values = {name: np.asarray([s.get(key, math.nan) for s in cal.per_image.get(name, [])],
                                   np.float64) for name, _, _ in sets}
        finite = np.concatenate([v[np.isfinite(v) & ((v > 0) if log else True)]
                                 for v in values.values()])
        if finite.size == 0:
            continue
        lo, hi = np.percentile(finite, [1, 99])
        bins = np.geomspace(max(lo, 1e-6), hi, 25) if log else np.linspace(lo, hi, 25)
        for name, label, colour in sets:
            v = values[name][np.isfinite(values[name])]
            if v.size:
                ax.hist(np.clip(v, bins[0], bins[-1]), bins=bins, density=True,
                        histtype="step", color=colour, label=f"{label} ({v.size})")
                ax.axvline(np.median(v), color=colour, ls=":")
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_yticks([])
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7)
    for i, (before, after) in enumerate(examples[:n_ex]):
        ax = fig.add_subplot(grid[1, 4 * i:4 * i + 4])
        ax.imshow(np.concatenate([before, after], axis=1))
        ax.set_title("coadd | degraded (central 200 px)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"single-epoch calibration: depth factor {cal.depth_factor:.2f} (point-source "
                 f"noise), seeing {cal.seeing_arcsec:.2f}\" (medians dotted)", fontsize=10)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=70)
    plt.close(fig)
    return out_png


CALIBRATION_FILE = "calibration.json"
FIGURE_FILE = "calibration.png"


def make_degraded_dataset(gzh_dir: str | os.PathLike, out_dir: str | os.PathLike,
                          single_epoch_dir: Optional[str | os.PathLike] = None,
                          calibration: Optional[str | os.PathLike] = None,
                          single_epoch_limit: Optional[int] = None,
                          depth_factor: Optional[float] = None,
                          seeing_arcsec: Optional[float] = None, realisations: int = 3,
                          seed: int = DEFAULT_SEED, galaxies: Optional[Sequence[str]] = None,
                          snr_min: float = DEFAULT_SNR_MIN, progress: bool = True,
                          rotations: Optional[Dict[str, int]] = None) -> Dict[str, Path]:
    """Calibrate (or read a calibration) and write the degraded dataset, the calibration
    (``<out>/calibration.json``) and its figure (``<out>/calibration.png``).

    The calibration always uses every catalogue galaxy (a survey's depth does not depend on
    which galaxies are written). ``depth_factor`` / ``seeing_arcsec`` fix those numbers
    instead of calibrating them (also over a read calibration).

    Returns:
        {split: JSON path, "calibration": path, "figure": path}.
    """
    out_dir = Path(out_dir)
    if calibration is not None:
        cal = Calibration.from_json(calibration)
        if depth_factor is not None:
            cal.depth_factor = float(depth_factor)
        if seeing_arcsec is not None:
            cal.seeing_arcsec = float(seeing_arcsec)
    else:
        if single_epoch_dir is None:
            raise ValueError("give single-epoch images to calibrate on, or a calibration file")
        files = single_epoch_images(single_epoch_dir)
        if single_epoch_limit:
            pick = np.random.default_rng(seed).permutation(len(files))[:single_epoch_limit]
            files = [files[i] for i in sorted(pick)]
        stats = measure_single_epoch(files, seed, progress=progress)
        coco, _ = catalogue_coco(gzh_dir)
        coadds = coadd_galaxies(coco, gzh_dir)
        cal = calibrate(list(coadds.values()), stats, seed, depth_factor=depth_factor,
                        seeing_arcsec=seeing_arcsec, progress=progress)
        cal.params["single_epoch_dir"] = os.fspath(single_epoch_dir)
    written = degrade_gzh_s82(gzh_dir, out_dir, cal, realisations, seed, galaxies, snr_min,
                              progress=progress, rotations=rotations)
    cal.params.update(realisations=realisations, seed=seed, snr_min=snr_min)
    written["calibration"] = cal.to_json(out_dir / CALIBRATION_FILE)
    examples = []
    coco = json.loads(Path(written["all"]).read_text())
    for im in [im for im in coco["images"] if im.get("realisation") == 0][:3]:
        after = decode((out_dir / "images" / im["file_name"]).read_bytes())
        before = np.asarray(Image.open(gzh_paths(gzh_dir)["images"] / im["coadd_file"])
                            .convert("RGB"))
        x0, y0, w, h = im["crop"]
        examples.append((before[y0:y0 + h, x0:x0 + w], after[y0:y0 + h, x0:x0 + w]))
    written["figure"] = calibration_figure(cal, out_dir / FIGURE_FILE, examples)
    return written
