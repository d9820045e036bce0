"""Real against simulated cutouts: the statistics the SDSS preset is calibrated on, side by
side, and a figure (``tools/compare_real_sim.py``)."""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from clump_d2.convert.gzh_s82 import CROP_SIZE
from clump_d2.data.image_io import COLOUR_SUFFIXES, read_display_image
from clump_d2.sim.statistics import cutout_statistics, radial_profile
from clump_d2.sim.synthetic import SyntheticParams, galaxy_rng, render_galaxy


def real_crops(image_dir: str | os.PathLike, crop_size: int = CROP_SIZE,
               limit: Optional[int] = None, seed: Optional[int] = None) -> List[np.ndarray]:
    """Central ``crop_size`` crops (uint8 RGB) of the JPEG/PNG images in ``image_dir`` (a
    folder, or a glob pattern such as ``'gz2_sdss_1400/jpegs/*/*.jpg'``), sorted by path;
    with ``seed``, a seeded random ``limit`` of them (so that every class of a sorted folder
    tree is sampled), else the first ``limit``."""
    if Path(image_dir).is_dir():
        files = sorted(p for p in Path(image_dir).iterdir()
                       if p.suffix.lower() in COLOUR_SUFFIXES)
    else:
        files = sorted(Path(p) for p in glob.glob(os.fspath(image_dir))
                       if Path(p).suffix.lower() in COLOUR_SUFFIXES)
    if seed is not None and limit:
        files = [files[i] for i in sorted(np.random.default_rng(seed).permutation(
            len(files))[:limit])]
    files = files[:limit]
    if not files:
        raise FileNotFoundError(f"no JPEG/PNG images in {image_dir}")
    out = []
    for f in files:
        # the one display reader: bounded pixels before decoding, 16-bit scaled (not clipped)
        a = np.clip(np.rint(read_display_image(f, "RGB")), 0, 255).astype(np.uint8)
        y0, x0 = (a.shape[0] - crop_size) // 2, (a.shape[1] - crop_size) // 2
        out.append(a[y0:y0 + crop_size, x0:x0 + crop_size])
    return out


#: ``compare_real_sim --preset`` name -> the ``SyntheticParams`` preset it compares.
REALISM_PRESETS = {"sdss": SyntheticParams.sdss,
                   "single_epoch": SyntheticParams.sdss_single_epoch}


def simulated_crops(n: int, seed: int = 0, params=None) -> List[np.ndarray]:
    """``n`` simulated cutouts (split ``test`` of ``seed``) of ``params`` (default: the SDSS
    preset, ``SyntheticParams.sdss()``)."""
    params = params or SyntheticParams.sdss()
    return [render_galaxy(galaxy_rng(seed, "test", k), params).rgb for k in range(n)]


def compare_statistics(real: Sequence[np.ndarray], sim: Sequence[np.ndarray]) -> Dict:
    """10/50/90th percentiles over cutouts of every :func:`~clump_d2.sim.synthetic.
    cutout_statistics` quantity, for the real and the simulated set."""
    out = {}
    for name, crops in (("real", real), ("sim", sim)):
        stats = [cutout_statistics(c) for c in crops]
        out[name] = {k: [float(v) for v in np.nanpercentile([s[k] for s in stats],
                                                             [10, 50, 90])]
                     for k in stats[0]}
        out[name]["n"] = len(crops)
    return out


def realism_figure(real: Sequence[np.ndarray], sim: Sequence[np.ndarray], out_png: str,
                   n_show: int = 6, real_label: str = "real SDSS S82",
                   sim_label: str = "simulated (sdss)") -> Dict:
    """Figure: real and simulated cutouts, per-channel pixel histograms, radial profiles
    (median and 16-84 % band) and the colour distribution of galaxy pixels; returns the
    statistics (:func:`compare_statistics`)."""
    # Local: the Agg backend must be chosen before pyplot is imported, and only plots need it.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = compare_statistics(real, sim)
    fig = plt.figure(figsize=(13, 8.6))
    gs = fig.add_gridspec(3, n_show, height_ratios=[1, 1, 1.25])
    for row, (label, crops) in enumerate(((real_label, real), (sim_label, sim))):
        for k in range(n_show):
            ax = fig.add_subplot(gs[row, k])
            ax.imshow(crops[k % len(crops)])
            ax.set_xticks([])
            ax.set_yticks([])
            if k == 0:
                ax.set_ylabel(label)
    colours = ("r", "g", "b")
    ax = fig.add_subplot(gs[2, 0:2])
    bins = np.arange(0, 257, 4)
    for crops, ls, label in ((real, "-", "real"), (sim, "--", "sim")):
        pix = np.concatenate([c.reshape(-1, 3) for c in crops])
        for ch in range(3):
            ax.hist(pix[:, ch], bins=bins, density=True, histtype="step", ls=ls,
                    color=colours[ch], label=f"{label} {'RGB'[ch]}")
    ax.set_yscale("log")
    ax.set_xlabel("pixel value")
    ax.set_title("pixel histograms per channel")
    ax.legend(fontsize=6, ncol=2)
    ax = fig.add_subplot(gs[2, 2:4])
    for crops, colour, label in ((real, "k", "real"), (sim, "tab:orange", "sim")):
        prof = np.array([radial_profile(c) for c in crops])
        r = (np.arange(prof.shape[1]) + 0.5) * 5
        lo, med, hi = np.percentile(prof, [16, 50, 84], axis=0)
        ax.plot(r, med, color=colour, label=f"{label} median")
        ax.fill_between(r, lo, hi, color=colour, alpha=0.2)
    ax.set_xlabel("radius (px)")
    ax.set_ylabel("mean grey level")
    ax.set_title("radial profiles (16-84 %)")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(gs[2, 4:6])
    for crops, colour, label in ((real, "k", "real"), (sim, "tab:orange", "sim")):
        pix = np.concatenate([c.reshape(-1, 3) for c in crops]).astype(float)
        pix = pix[pix.mean(axis=1) > 80]
        g = np.maximum(pix[:, 1], 1)
        ax.hist(pix[:, 2] / g, bins=np.linspace(0.6, 1.8, 61), density=True, histtype="step",
                color=colour, label=f"{label} B/G")
        ax.hist(pix[:, 0] / g, bins=np.linspace(0.6, 1.8, 61), density=True, histtype="step",
                color=colour, ls=":", label=f"{label} R/G")
    ax.set_xlabel("colour ratio (galaxy pixels, mean > 80)")
    ax.set_title("colours")
    ax.legend(fontsize=7)
    s_r, s_s = stats["real"], stats["sim"]
    keys = ("sky_median", "sky_noise", "sky_lag1", "bright_fraction", "peak", "blue_green")
    text = "median real / sim: " + ", ".join(
        f"{k} {s_r[k][1]:.2f}/{s_s[k][1]:.2f}" for k in keys)
    fig.suptitle(f"{len(real)} crops {real_label} vs {len(sim)} {sim_label}\n{text}",
                 fontsize=9)
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=60)
    plt.close(fig)
    return stats
