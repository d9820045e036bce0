"""Helpers shared by the injection tests (tests/sim/test_inject.py, tests/studies/
test_injection.py): aperture photometry, centroids and a smooth linear test galaxy."""
import numpy as np

SIZE, FWHM = 120, 5.0


def aperture(img, x, y, radius):
    """Sum in a circular aperture minus the median of an annulus (local background)."""
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]] + 0.5
    r = np.hypot(xx - x, yy - y)
    ann = img[(r >= radius + 3) & (r < radius + 8)]
    return float((img[r < radius] - np.median(ann, axis=0)).sum(axis=0).sum()) \
        if img.ndim == 2 else (img[r < radius] - np.median(ann, axis=0)).sum(axis=0)


def centroid(diff, x, y, radius):
    yy, xx = np.mgrid[0:diff.shape[0], 0:diff.shape[1]] + 0.5
    m = np.hypot(xx - x, yy - y) < radius
    w = diff[m]
    return float((xx[m] * w).sum() / w.sum()), float((yy[m] * w).sum() / w.sum())


def smooth_galaxy(rng, noise=0.02):
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    disc = 3.0 * np.exp(-np.hypot(xx - 60, (yy - 60) / 0.7) / 12.0)
    lin = np.stack([disc * c for c in (1.1, 1.0, 0.9)], axis=2)
    return lin + rng.normal(0, noise, lin.shape)
