"""Stretches that turn band fluxes (C, H, W) into network input (H, W, C) in [0, 1].

* ``linear``: each band clipped to its ``[PERCENTILES[0], PERCENTILES[1]]`` percentiles and
  scaled to [0, 1].
* ``asinh``: the same interval, then ``asinh(v / a) / asinh(1 / a)`` with ``a =
  ASINH_A`` (astropy's ``AsinhStretch``): linear for faint pixels, logarithmic for bright
  ones, so clumps on a bright disc stay visible.
* ``zscale``: each band clipped to IRAF's zscale interval (astropy's ``ZScaleInterval``),
  linear in between: the display astronomers use to see faint structure.
* ``lupton``: Lupton et al. (2004), as SDSS colour images (and ``make_lupton_rgb``) are made,
  for any number of bands: ``I`` = mean of the bands above ``minimum`` (the low percentile of
  each band), every band multiplied by ``asinh(Q I / stretch) / (asinh(Q) I)``, so that
  colours (band ratios) are preserved and ``I = stretch`` maps to 1; pixels whose largest
  band exceeds 1 are scaled down as a whole. ``stretch`` is ``LUPTON_STRETCH``, or when 0
  the high percentile of ``I``.

Percentiles and zscale are computed per image (and per band), so each cutout uses its
own dynamic range, as the Clump Scout PNGs did.

:class:`DisplayStretch` is the other direction: it undoes the Lupton asinh display stretch of
8-bit colour images (PNG/JPEG) to get linear relative fluxes back (injection-recovery,
display photometry).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from astropy.visualization import AsinhStretch, ZScaleInterval

STRETCHES = ("asinh", "lupton", "zscale", "linear")


def stretch_bands(bands: np.ndarray, name: str = "asinh",
                  percentiles: Sequence[float] = (0.5, 99.5), asinh_a: float = 0.1,
                  lupton_q: float = 8.0, lupton_stretch: float = 0.0) -> np.ndarray:
    """Stretch finite (C, H, W) fluxes to an (H, W, C) float32 image in [0, 1]."""
    bands = np.asarray(bands, dtype=np.float32)
    if bands.ndim != 3:
        raise ValueError(f"expected (C, H, W) bands, got shape {bands.shape}")
    if not np.isfinite(bands).all():
        raise ValueError("stretch_bands needs finite pixels (fill NaN/inf first)")
    name = name.lower()
    if name == "lupton":
        out = _lupton(bands, percentiles, lupton_q, lupton_stretch)
    elif name in ("linear", "asinh"):
        out = np.stack([_interval(b, percentiles) for b in bands])
        if name == "asinh":
            out = AsinhStretch(a=asinh_a)(out, clip=True)
    elif name == "zscale":
        out = np.stack([_zscale(b) for b in bands])
    else:
        raise ValueError(f"unknown stretch {name!r}; choose one of {STRETCHES}")
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0).transpose(1, 2, 0), dtype=np.float32)


def _interval(band: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    lo, hi = np.percentile(band, [percentiles[0], percentiles[1]])
    if not hi > lo:  # a flat band: all zeros rather than a division by zero
        return np.zeros_like(band)
    return np.clip((band - lo) / (hi - lo), 0.0, 1.0)


def _zscale(band: np.ndarray) -> np.ndarray:
    lo, hi = ZScaleInterval().get_limits(band)
    if not hi > lo:
        return np.zeros_like(band)
    return np.clip((band - lo) / (hi - lo), 0.0, 1.0)


def _lupton(bands: np.ndarray, percentiles: Sequence[float], q: float,
            stretch: float) -> np.ndarray:
    minimum = np.percentile(bands.reshape(len(bands), -1), percentiles[0], axis=1)
    shifted = np.clip(bands - minimum[:, None, None], 0.0, None)
    intensity = shifted.mean(axis=0)
    if not stretch > 0:
        stretch = float(np.percentile(intensity, percentiles[1]))
        stretch = stretch if stretch > 0 else 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.arcsinh(q * intensity / stretch) / (np.arcsinh(q) * intensity)
    factor[~np.isfinite(factor)] = 0.0
    out = shifted * factor[None]
    peak = out.max(axis=0)
    over = peak > 1.0
    out[:, over] /= peak[over]
    return out


@dataclass
class DisplayStretch:
    """Lupton et al. (2004) colour-preserving asinh display stretch of 8-bit colour images,
    and its inverse.

    If ``c_k`` are the channel values / 255 and ``m`` their mean, the stretch sets
    ``m = asinh(Q I) / Q`` for the linear intensity ``I``, so ``I = sinh(Q m) / Q`` and each
    linear channel is ``x_k = c_k I / m``. Exact for the SDSS-preset simulations (Q = 10,
    ``clump_d2.sim.synthetic.SdssRealism``); an approximation for real survey JPEGs, whose
    exact stretch (and JPEG compression) is unknown: Q = 10 reproduced the GZH Stripe 82
    crops' dynamic range. Saturated (255) and clipped (0) pixels cannot be inverted exactly.
    """

    q: float = 10.0

    def linearise(self, rgb: np.ndarray, rng: Optional[np.random.Generator] = None
                  ) -> np.ndarray:
        """uint8 (H, W, 3) -> linear float (H, W, 3) (intensity units of the stretch).

        With ``rng``, each 8-bit value is dithered uniformly within its quantisation bin
        (+-0.5): the true value is unknown inside the bin, and without dither an injected
        clump's wings fainter than half a grey level would round back to the old value and
        its flux would be lost. ``display()`` of the dithered image still gives the input
        bytes exactly.
        """
        v = np.asarray(rgb, dtype=np.float64)
        if rng is not None:
            v = v + rng.uniform(-0.499, 0.499, size=v.shape)
        c = np.clip(v, 0.0, 255.0) / 255.0
        m = c.mean(axis=2, keepdims=True)
        intensity = np.sinh(self.q * m) / self.q
        with np.errstate(invalid="ignore", divide="ignore"):
            x = np.where(m > 0, c * intensity / np.where(m > 0, m, 1), 0.0)
        return x

    def display(self, x: np.ndarray) -> np.ndarray:
        """Linear (H, W, 3) -> uint8, the forward stretch (a pixel whose brightest channel
        exceeds 255 is scaled down as a whole, as make_lupton_rgb does)."""
        x = np.clip(np.asarray(x, dtype=np.float64), 0.0, None)
        intensity = x.mean(axis=2, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            factor = np.where(intensity > 0, np.arcsinh(self.q * intensity)
                              / (self.q * np.where(intensity > 0, intensity, 1)), 0.0)
        c = x * factor
        peak = c.max(axis=2, keepdims=True)
        c = np.where(peak > 1.0, c / np.where(peak > 1.0, peak, 1), c)
        return np.round(c * 255.0).astype(np.uint8)
