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
"""
from __future__ import annotations

from typing import Sequence

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
