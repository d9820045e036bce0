"""A classical clump finder: peaks of an unsharp-masked, PSF-matched image above the noise.

The method of pre-deep-learning clump studies (e.g. Guo et al. 2015; Mehta et al. 2021 ran
SExtractor on a smoothed-background-subtracted image), written with ``scipy.ndimage`` only:

1. **luminance**: the mean of the colour channels (or of the bands of a FITS cube);
2. **contrast image** (unsharp mask): subtract a Gaussian-smoothed copy (sigma =
   ``smooth_fwhm`` x PSF FWHM), which removes the smooth disc and bulge but keeps
   PSF-sized knots;
3. **matched filter**: convolve with the PSF (Gaussian of the image's FWHM), which maximises
   the signal-to-noise ratio of point sources;
4. **noise**: the robust rms (MAD x 1.4826) of the filtered contrast image, measured on the
   pixels outside the galaxy where there are enough (the sky), else on all pixels;
5. **peaks**: local maxima (within ``peak_separation_fwhm`` x FWHM) above ``nsigma`` x the
   noise, inside the galaxy (smoothed luminance above ``galaxy_nsigma`` sky sigma; stars and
   background galaxies off the disc are ignored), not within ``bulge_fwhm`` x FWHM of the
   galaxy centre (the bulge), and at least ``min_contrast`` of the local smooth light above
   it (a knot, not a ripple on a bright disc);
   Optionally (``min_colour``, off by default) a colour cut: star-forming clumps are bluer
   than their disc, so the peak's contrast in the blue and red channels (each channel
   unsharp-masked and PSF-filtered like the luminance) must satisfy
   ``(blue - red) / |reference| >= min_colour`` (channels ``colour_channels``, for RGB
   images B, R and G; SDSS g, i, r). Images with fewer than three channels skip it.
6. **output**: Detectron2 ``Instances`` with square boxes of side 2.5 x PSF FWHM (Clump Scout
   boxes) clipped to the image, class ``clump`` and score ``s^2 / (s^2 + s0^2)`` of the peak
   signal-to-noise ``s`` (``s0 = score_snr``): monotonic in ``s``, so the evaluator's score
   sweep is a sweep of the detection threshold. Its operating point is the networks' key,
   ``TEST.CLUMP_EVAL.SCORE_THRESH`` (0.5 by default: peak S/N = ``score_snr``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from detectron2.structures import Boxes, Instances
from scipy import ndimage as ndi

from clump_d2.structures import BOX_SIDE_PER_FWHM

logger = logging.getLogger(__name__)


@dataclass
class ClassicalParams:
    """Parameters of :func:`find_clumps` (lengths in units of the PSF FWHM)."""

    smooth_fwhm: float = 2.0  # sigma of the unsharp mask's smoothing, x FWHM
    nsigma: float = 4.0  # peak threshold, x the noise of the filtered contrast image
    peak_separation_fwhm: float = 1.0  # two peaks closer than this are one clump
    bulge_fwhm: float = 1.0  # no clump within this of the galaxy centre
    galaxy_nsigma: float = 2.0  # galaxy mask: smoothed luminance above this x sky sigma
    min_contrast: float = 0.05  # peak contrast / local smooth light
    score_snr: float = 10.0  # peak S/N that scores 0.5
    edge_px: int = 2  # ignore peaks this close to the border
    default_fwhm_px: float = 6.9  # used when a record gives no psf_fwhm_px (Clump Scout median)
    min_colour: Optional[float] = None  # colour cut (step 5); None: no cut
    colour_channels: Tuple[int, int, int] = (2, 0, 1)  # blue, red, reference (RGB: B, R, G)


def galaxy_mask(lum: np.ndarray, fwhm: float, p: ClassicalParams
                 ) -> Tuple[np.ndarray, Tuple[float, float], float, float]:
    """Connected region of the smoothed image above the sky containing (or nearest to) the
    image centre; returns (mask, centre (x, y), sky level, sky sigma)."""
    h, w = lum.shape
    border = np.concatenate([lum[:8].ravel(), lum[-8:].ravel(), lum[:, :8].ravel(),
                             lum[:, -8:].ravel()])
    sky = float(np.median(border))
    sky_sigma = float(1.4826 * np.median(np.abs(border - sky))) or float(lum.std()) or 1.0
    smooth = ndi.gaussian_filter(lum, max(1.0, fwhm / 2.3548 * 1.5))
    # Smoothing lowers the noise; the threshold is in the units of the *smoothed* sky noise.
    sm_border = np.concatenate([smooth[:8].ravel(), smooth[-8:].ravel(), smooth[:, :8].ravel(),
                                smooth[:, -8:].ravel()])
    sm_sigma = float(1.4826 * np.median(np.abs(sm_border - np.median(sm_border)))) or sky_sigma
    labels, n = ndi.label(smooth > sky + p.galaxy_nsigma * sm_sigma)
    if n == 0:
        return np.ones_like(lum, bool), ((w - 1) / 2, (h - 1) / 2), sky, sky_sigma
    cy, cx = (h - 1) / 2, (w - 1) / 2
    lab = labels[int(round(cy)), int(round(cx))]
    if lab == 0:  # the centre is not above the threshold: take the nearest region
        idx = np.argwhere(labels > 0)
        k = np.argmin(np.hypot(idx[:, 0] - cy, idx[:, 1] - cx))
        lab = labels[tuple(idx[k])]
    mask = labels == lab
    # Centre: the peak of a heavily smoothed copy (sigma = 1.5 FWHM, so that a bright clump
    # cannot outshine the bulge/disc centre) within 15 % of the image size of the image
    # centre (cutouts are centred on their galaxy), else the image centre.
    heavy = ndi.gaussian_filter(lum, 1.5 * fwhm)
    near = mask & (np.hypot(*np.mgrid[0:h, 0:w] - np.array([cy, cx])[:, None, None])
                   < 0.15 * min(h, w))
    if near.any():
        iy, ix = np.unravel_index(np.argmax(np.where(near, heavy, -np.inf)), lum.shape)
        cx, cy = float(ix), float(iy)
    return mask, (cx, cy), sky, sky_sigma


@dataclass
class ContrastSnrMap:
    """Steps 1-4 of the method for one image (see the module docstring)."""

    contrast: np.ndarray  # PSF-filtered unsharp-masked luminance (H, W)
    noise: float  # robust rms of ``contrast`` off the galaxy: S/N = contrast / noise
    background: np.ndarray  # the smooth light the unsharp mask removed
    mask: np.ndarray  # the galaxy's segment
    sky_region: np.ndarray  # where the noise was measured (off the dilated segment, or all)
    centre: Tuple[float, float]
    sky: float
    sky_sigma: float

    @property
    def snr(self) -> np.ndarray:
        return self.contrast / self.noise


def unsharp_contrast(plane: np.ndarray, psf_fwhm_px: float, params: Optional[ClassicalParams]
                     = None) -> Tuple[np.ndarray, np.ndarray]:
    """Steps 2-3 on one (H, W) plane: (PSF-filtered plane minus its smooth light, the smooth
    light (sigma ``smooth_fwhm`` x FWHM))."""
    p = params or ClassicalParams()
    fwhm = float(psf_fwhm_px)
    background = ndi.gaussian_filter(plane, p.smooth_fwhm * fwhm)
    return ndi.gaussian_filter(plane - background, fwhm / 2.3548), background


def contrast_snr_map(image: np.ndarray, psf_fwhm_px: float,
                     params: Optional[ClassicalParams] = None) -> ContrastSnrMap:
    """Luminance -> unsharp mask -> PSF-matched filter -> noise off the galaxy."""
    p = params or ClassicalParams()
    lum = np.asarray(image, dtype=np.float64)
    if lum.ndim == 3:
        lum = lum.mean(axis=2)
    fwhm = float(psf_fwhm_px)
    mask, centre, sky, sky_sigma = galaxy_mask(lum, fwhm, p)
    contrast, background = unsharp_contrast(lum, fwhm, p)
    outside = ~ndi.binary_dilation(mask, iterations=max(1, int(fwhm)))
    if outside.sum() <= 500:  # a galaxy filling the frame: no sky left to measure on
        outside = np.ones_like(mask)
    ref = contrast[outside]
    noise = float(1.4826 * np.median(np.abs(ref - np.median(ref)))) or 1e-9
    return ContrastSnrMap(contrast, noise, background, mask, outside, centre, sky, sky_sigma)


def local_extrema(values: np.ndarray, psf_fwhm_px: float, params: Optional[ClassicalParams] = None,
                  minima: bool = False) -> np.ndarray:
    """Boolean map of the local maxima (or minima) of ``values`` within
    ``peak_separation_fwhm`` x FWHM, at least ``edge_px`` from the border."""
    p = params or ClassicalParams()
    size = max(3, int(round(p.peak_separation_fwhm * psf_fwhm_px)) | 1)
    filt = ndi.minimum_filter if minima else ndi.maximum_filter
    out = values == filt(values, size=size)
    e = p.edge_px
    out[:e], out[-e:], out[:, :e], out[:, -e:] = False, False, False, False
    return out


def peak_colour(image: np.ndarray, psf_fwhm_px: float, ys: np.ndarray, xs: np.ndarray,
                params: Optional[ClassicalParams] = None) -> np.ndarray:
    """(blue - red) / |reference| of the unsharp-masked, PSF-filtered channels at the
    pixels (ys, xs): > 0 for a knot bluer than grey (see step 5)."""
    p = params or ClassicalParams()
    img = np.asarray(image, dtype=np.float64)
    blue, red, ref = (unsharp_contrast(img[:, :, k], psf_fwhm_px, p)[0][ys, xs]
                      for k in p.colour_channels)
    return (blue - red) / np.maximum(np.abs(ref), 1e-9)


def find_clumps(image: np.ndarray, psf_fwhm_px: float,
                params: Optional[ClassicalParams] = None) -> Dict[str, np.ndarray]:
    """Find clumps in one image.

    Args:
        image: (H, W) or (H, W, C) array (display grey levels or fluxes; any linear offset).
        psf_fwhm_px: PSF FWHM in pixels (sets every length of the method and the box size).
        params: thresholds (default ``ClassicalParams()``).

    Returns:
        dict with ``boxes`` (N, 4) XYXY, ``scores`` (N,), ``snr`` (N,), ``xy`` (N, 2) peak
        positions (pixel centres at i + 0.5), ``centre`` (2,) the galaxy centre used.
    """
    p = params or ClassicalParams()
    fwhm = float(psf_fwhm_px)
    m = contrast_snr_map(image, fwhm, p)
    contrast, noise, background, centre = m.contrast, m.noise, m.background, m.centre
    h, w = contrast.shape
    peaks = local_extrema(contrast, fwhm, p) & (contrast > p.nsigma * noise) & m.mask
    ys, xs = np.nonzero(peaks)
    local = np.maximum(background[ys, xs] - m.sky, m.sky_sigma)
    keep = (contrast[ys, xs] / local >= p.min_contrast)
    keep &= np.hypot(xs - centre[0], ys - centre[1]) >= p.bulge_fwhm * fwhm
    if p.min_colour is not None and np.ndim(image) == 3 and np.shape(image)[2] >= 3:
        keep &= peak_colour(image, fwhm, ys, xs, p) >= p.min_colour
    ys, xs = ys[keep], xs[keep]
    snr = contrast[ys, xs] / noise
    order = np.argsort(-snr, kind="stable")
    ys, xs, snr = ys[order], xs[order], snr[order]
    cx, cy = xs + 0.5, ys + 0.5
    half = BOX_SIDE_PER_FWHM * fwhm / 2
    boxes = np.stack([np.clip(cx - half, 0, w), np.clip(cy - half, 0, h),
                      np.clip(cx + half, 0, w), np.clip(cy + half, 0, h)], axis=1) \
        if len(xs) else np.zeros((0, 4))
    scores = snr**2 / (snr**2 + p.score_snr**2)
    return {"boxes": boxes, "scores": scores, "snr": snr,
            "xy": np.stack([cx, cy], axis=1) if len(xs) else np.zeros((0, 2)),
            "centre": np.asarray(centre)}


class ClassicalClumpFinder(torch.nn.Module):
    """:func:`find_clumps` called like a Detectron2 model in eval mode.

    ``model(batched_inputs)`` takes the dicts of a Detectron2 test loader (``"image"``: a
    (C, H, W) tensor; ``"psf_fwhm_px"`` optional, else ``default_fwhm_px``) and returns
    ``[{"instances": Instances(pred_boxes, scores, pred_classes)}]``, so it runs through
    ``inference_on_dataset`` and the :class:`~clump_d2.evaluation.ClumpEvaluator` exactly as
    a network does. Boxes are scaled to the input's ``height``/``width`` if they differ.
    """

    def __init__(self, params: Optional[ClassicalParams] = None):
        super().__init__()
        self.params = params or ClassicalParams()

    def forward(self, batched_inputs: List[Dict]) -> List[Dict]:
        outputs = []
        for inp in batched_inputs:
            image = inp["image"].detach().cpu().numpy().transpose(1, 2, 0)
            h, w = image.shape[:2]
            fwhm = inp.get("psf_fwhm_px") or self.params.default_fwhm_px
            found = find_clumps(image, float(fwhm), self.params)
            out_h, out_w = inp.get("height", h), inp.get("width", w)
            boxes = found["boxes"] * np.array([out_w / w, out_h / h, out_w / w, out_h / h])
            inst = Instances((out_h, out_w))
            inst.pred_boxes = Boxes(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4))
            inst.scores = torch.as_tensor(found["scores"], dtype=torch.float32)
            inst.pred_classes = torch.zeros(len(boxes), dtype=torch.int64)
            outputs.append({"instances": inst})
        return outputs
