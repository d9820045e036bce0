"""Statistics of colour cutouts (real or simulated), the quantities the SDSS simulation preset
is calibrated on."""
from __future__ import annotations

from typing import Dict

import numpy as np

#: Border width (px) of the ring whose pixels stand for the sky in :func:`cutout_statistics`.
SKY_BORDER = 15


def cutout_statistics(rgb: np.ndarray, bright_level: float = 50.0) -> Dict[str, float]:
    """Display statistics of one RGB uint8 cutout, the quantities the SDSS preset is
    calibrated on.

    Returns:
        ``sky_median`` (grey level of the sky: median of the channel-mean in a
        ``SKY_BORDER``-px border ring), ``sky_noise`` (its MAD x 1.4826), ``sky_lag1`` (the
        sky's autocorrelation at 1 px), ``sky_channel_corr`` (mean correlation of the
        channels' sky noise), ``bright_fraction`` (fraction of pixels whose channel mean >
        ``bright_level``), ``peak`` (99.9th percentile of the brightest channel),
        ``blue_green`` / ``red_green`` (median B/G and R/G over pixels with channel mean > 80;
        NaN if none).
    """
    a = np.asarray(rgb, dtype=np.float64)
    mean = a.mean(axis=2)
    ring = np.zeros(mean.shape, bool)
    b = SKY_BORDER
    ring[:b], ring[-b:], ring[:, :b], ring[:, -b:] = True, True, True, True
    sky = mean[ring]
    med = float(np.median(sky))
    mad = float(1.4826 * np.median(np.abs(sky - med)))
    # Sky noise texture on the top border strip, sources clipped at 3 MAD.
    strip = a[:b].mean(axis=2) - med
    strip = np.clip(strip, -3 * mad - 1e-9, 3 * mad + 1e-9)
    lag1 = float(np.mean(strip[:, 1:] * strip[:, :-1]) / max(np.mean(strip**2), 1e-9))
    chans = a[:b].reshape(-1, 3) - np.median(a[:b].reshape(-1, 3), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cc = np.corrcoef(chans.T)
    corr = float(np.nanmean([cc[0, 1], cc[0, 2], cc[1, 2]]))
    bright = mean > 80
    with np.errstate(invalid="ignore", divide="ignore"):
        bg = float(np.median(a[bright][:, 2] / np.maximum(a[bright][:, 1], 1))) if bright.any() \
            else float("nan")
        rg = float(np.median(a[bright][:, 0] / np.maximum(a[bright][:, 1], 1))) if bright.any() \
            else float("nan")
    return {"sky_median": med, "sky_noise": mad, "sky_lag1": lag1, "sky_channel_corr": corr,
            "bright_fraction": float((mean > bright_level).mean()),
            "peak": float(np.percentile(a.max(axis=2), 99.9)), "blue_green": bg, "red_green": rg}


def radial_profile(rgb: np.ndarray, bin_px: float = 5.0) -> np.ndarray:
    """Azimuthal mean of the channel-mean grey level around the image centre, in rings of
    ``bin_px`` out to the inscribed circle; shape (n_rings,)."""
    a = np.asarray(rgb, dtype=np.float64).mean(axis=2)
    h, w = a.shape
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(xx + 0.5 - w / 2, yy + 0.5 - h / 2)
    n = int(min(h, w) / 2 // bin_px)
    idx = (r // bin_px).astype(int)
    sums = np.bincount(idx.ravel(), a.ravel(), minlength=n + 1)[:n]
    counts = np.bincount(idx.ravel(), minlength=n + 1)[:n]
    return sums / np.maximum(counts, 1)
