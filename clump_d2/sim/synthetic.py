"""Deterministic SDSS-like galaxy cutouts with clumps of known position and flux.

The embedded default dataset (``clumpsim_train`` / ``clumpsim_val``). Each galaxy is drawn
in three bands (g, r, i) in units of the sky noise (sky sigma = 1 per pixel per band):

* host: exponential disc (Sersic n=1) + de Vaucouleurs-like bulge (n=4, smoothed by the
  PSF), random inclination and position angle, centred within a few pixels of the image
  centre; disc bluer than bulge;
* PSF: Gaussian with FWHM = seeing (1.0-1.8 arcsec) / pixel scale (0.16-0.26 arcsec/px),
  i.e. about 4-11 px, as for the Clump Scout cutouts;
* clumps: point sources (PSF-shaped) in the disc, 3-35 % of the host's r flux, blue;
  "odd" clumps (about a quarter) are red; a quarter of the galaxies have none;
* distractors: foreground stars (PSF-shaped, yellow-white, anywhere) and small background
  galaxies (extended, red);
* gri composite with the Lupton et al. (2004) asinh stretch (astropy's make_lupton_rgb), as
  SDSS / Galaxy Zoo colour images are made.

``SyntheticParams.sdss()`` selects a second renderer (:func:`render_sdss_galaxy`) calibrated
against real SDSS Stripe 82 images and the Clump Scout label distributions (spiral and
lopsided discs with unlabelled knots, PSF sizes and clump counts of Clump Scout, correlated
grey sky noise, the Lupton composite with a sky pedestal and a JPEG round trip); each number
and its calibration target is in :class:`SdssRealism`. The default above is unchanged.

Labels follow Clump Scout: a square box of side 2.5 x PSF FWHM around each clump, clipped
to the image, classes ``clump`` (COCO id 1) and ``odd_clump`` (id 2). The same seed gives
the same bytes: galaxy ``k`` of a split is drawn from ``SeedSequence([seed, split, k])``,
independent of how many galaxies are made or in which process.
"""
from __future__ import annotations

import json
import logging
import os
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from clump_d2.structures import CATEGORIES, clump_box_xywh_in_frame

logger = logging.getLogger(__name__)

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
BANDS = ("g", "r", "i")


@dataclass
class SyntheticParams:
    """Ranges of the generator; each documented with the physical quantity it stands for."""

    image_size: int = 200  # pixels (the paper's 200x200 centre crop)
    pixel_scale: tuple = (0.16, 0.26)  # arcsec / px, varies per galaxy in Clump Scout
    seeing: tuple = (1.0, 1.8)  # arcsec FWHM, SDSS r-band seeing
    host_flux_r: tuple = (2.0e4, 1.2e5)  # host r flux in units of the per-pixel sky sigma
    disc_re: tuple = (14.0, 40.0)  # disc effective radius, px
    bulge_re: tuple = (2.0, 6.0)  # bulge effective radius, px
    bulge_frac: tuple = (0.0, 0.4)  # bulge-to-total r flux
    axis_ratio: tuple = (0.3, 1.0)  # disc minor/major axis (inclination)
    clump_frac: tuple = (0.03, 0.35)  # clump r flux / host r flux, log-uniform
    max_clumps: int = 6  # clumps per clumpy galaxy, uniform in 1..max_clumps
    empty_fraction: float = 0.25  # fraction of galaxies without clumps (real negatives)
    odd_fraction: float = 0.25  # fraction of clumps of class odd_clump
    star_rate: float = 0.8  # mean number of foreground stars per image (Poisson)
    bg_galaxy_rate: float = 1.0  # mean number of background galaxies per image (Poisson)
    lupton_q: float = 8.0  # asinh softening of make_lupton_rgb
    lupton_stretch: float = 12.0  # linear stretch of make_lupton_rgb (sky sigma units)
    # Band flux ratios g:r:i of each component (r = 1); disc blue, bulge red.
    colour_disc: tuple = (0.85, 1.0, 1.1)
    colour_bulge: tuple = (0.55, 1.0, 1.3)
    colour_clump: tuple = (1.3, 1.0, 0.85)
    colour_odd: tuple = (0.5, 1.0, 1.45)
    colour_star: tuple = (0.75, 1.0, 1.1)
    colour_bg: tuple = (0.45, 1.0, 1.5)
    # "basic": the generator above (the default; its output is pinned by the quickstart's
    # figures). "sdss": the calibrated renderer of :func:`render_sdss_galaxy`; use
    # ``SyntheticParams.sdss()``, which also sets the fields below to calibrated values.
    realism: str = "basic"
    sdss_realism: Optional["SdssRealism"] = None  # used when realism == "sdss" (None: defaults)

    @classmethod
    def sdss(cls, **overrides) -> "SyntheticParams":
        """The preset calibrated against real SDSS images and Clump Scout labels.

        Every number is documented in :class:`SdssRealism` with what it was calibrated to.
        ``overrides`` replace fields of ``SyntheticParams`` (e.g. ``image_size``); fields of
        the realism model go in ``sdss_realism=SdssRealism(...)``.
        """
        base = dict(
            realism="sdss", sdss_realism=SdssRealism(),
            pixel_scale=(0.16, 0.26),  # arcsec/px (DESIGN: Clump Scout cutouts); sets the
            # noise correlation length only: the PSF is drawn in pixels (SdssRealism).
            disc_re=(15.0, 32.0),  # px: real GZH S82 JPEGs PETROR50_R = 16.7-29.1 px
            bulge_re=(2.0, 5.0),
            # FRACDEV_R of the real galaxies: 10/50/90 % = 0/0.18/0.70, but a de Vaucouleurs
            # fit of a clumpy disc overstates the bulge; 0-0.15 matches the crops' peak grey.
            bulge_frac=(0.0, 0.15),
            axis_ratio=(0.3, 1.0),
            # Clump r flux / host r flux, log-uniform: from Clump Scout's ~3 % limit to 15 %
            # (Mehta et al.'s brightest clump: 9.7 %; brighter ones saturate the crops' peak
            # grey level, real 50/90 %: 216/253). Unlabelled knots go lower (SdssRealism).
            clump_frac=(0.03, 0.15),
            max_clumps=9,  # Clump Scout labels: 1-9 clumps per galaxy
            empty_fraction=0.25,  # the label files hold no empty galaxy; negatives kept (DESIGN)
            odd_fraction=0.276,  # Clump Scout labels: 12,753 of 46,164 boxes are label 2
            star_rate=0.6, bg_galaxy_rate=1.0,
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def sdss_catalogue(cls, **overrides) -> "SyntheticParams":
        """The SDSS preset with clumps labelled to the depth of a software + expert catalogue
        (Mehta et al. 2021 on Stripe 82 coadds) instead of Clump Scout volunteers' ~3 % limit.

        Same images as :meth:`sdss` (PSF, discs, noise, colours, display); only the label
        population changes, each number measured on the 133 catalogue clumps that fall in the
        central 200 px crops of the 24 ``gzh_s82_clumps`` galaxies:

        * clump r flux / host r flux log-normal, median 0.33 %, ln-sigma 1.35 (catalogue
          25/50/75 %: 0.14/0.33/0.86 %), clipped to 0.03-15 % (5th pct 0.04 %, max 9.7 %);
        * clumps per clumpy galaxy geometric, mean 5.7, up to 20 (catalogue: 137 clumps in 24
          galaxies, median 4, max 26);
        * radius 0.2-3.2 disc R_e (catalogue distance / PETROR50_R: 5/50/95 % 0.31/1.29/3.18);
        * down to 1 FWHM from the centre whatever the bulge (5 % of the catalogue's clumps lie
          within 1.15 FWHM of it) and 1 FWHM apart (443 of 543 catalogue clumps are flagged
          near another clump or star);
        * plus 15 % bright clumps, log-uniform 3-15 % of the host (Clump Scout's range; 5 of
          the 133 catalogue clumps are >= 3 %, but a model trained on the log-normal alone
          misses injected bright clumps, mistaking them for the unlabelled foreground stars);
        * one class (the catalogue has no "odd" clumps): ``odd_fraction`` 0;
        * unlabelled knots only below the catalogue's depth (0.01-0.03 %).
        """
        geometric = 1.0 / 5.7
        probs = tuple(float(geometric * (1 - geometric) ** k) for k in range(20))
        realism = SdssRealism(
            clump_count_probs=probs, clump_frac_lognormal=(0.0033, 1.35),
            clump_radius_re=(0.2, 3.2), clump_min_sep_fwhm=1.0, centre_exclusion_bulge_re=0.0,
            knot_frac=(0.0001, 0.0003), bright_clump_fraction=0.15, bright_clump_frac=(0.03, 0.15))
        base = dict(sdss_realism=realism, clump_frac=(0.0003, 0.15), odd_fraction=0.0)
        base.update(overrides)
        return cls.sdss(**base)

    @classmethod
    def sdss_single_epoch(cls, **overrides) -> "SyntheticParams":
        """The SDSS preset for single-epoch SDSS cut-outs of the Galaxy Zoo 2 kind (the images
        of Clump Scout and of most users), shallower and noisier than the Stripe 82 coadds
        that :meth:`sdss` is calibrated on.

        Same galaxies, clumps and labels as :meth:`sdss`; the display and noise are calibrated
        against the central 200 px crops of ``gz2_sdss_1400`` (``tools/compare_real_sim.py
        --real '../shared/realdata/gz2_sdss_1400/jpegs/*/*.jpg' --limit 200 --preset
        single_epoch``; real and simulated 10/50/90 % in ``docs/sdss_domain.md``; real medians
        below):

        * a single epoch has ~1/sqrt(N) of a coadd's depth, so the same galaxy spans fewer sky
          sigmas and the display stretch is larger in sky-sigma units: ``lupton_stretch`` 55
          (coadd preset 21) gives the real sky noise of ~4 grey levels (coadd JPEGs: ~11);
        * the GZ2 JPEGs' black point sits close to the sky (sky median grey ~4.3, coadds ~18):
          ``black_sigma`` 0.8;
        * redder colour balance (galaxy pixels B/G median 0.84, R/G 1.18; coadd crops 1.16 /
          1.01): ``band_weights`` (i, r, g) = (1.0, 1.0, 1.1);
        * more strongly correlated sky noise (lag-1 autocorrelation 0.91; GZ2 cut-outs are
          resampled to 0.02 x petroR90 per pixel, often finer than SDSS's 0.396"): noise
          correlation from ``pixel_scale`` 0.10-0.18 "/px;
        * host flux x 1.2 (bright fraction 0.15, peak grey 208).
        """
        coadd = SdssRealism()
        realism = dataclasses.replace(
            coadd, lupton_stretch=55.0, black_sigma=0.8, band_weights=(1.0, 1.0, 1.1),
            host_flux_r=tuple(1.2 * f for f in coadd.host_flux_r))
        base = dict(sdss_realism=realism, pixel_scale=(0.10, 0.18))
        base.update(overrides)
        return cls.sdss(**base)


@dataclass
class SdssRealism:
    """Calibrated ingredients of the ``"sdss"`` renderer (:func:`render_sdss_galaxy`).

    Real references: the 24 SDSS Stripe 82 Galaxy Zoo JPEGs of ``gzh_s82_clumps`` (central
    200x200 crop of the 424 px images), their galaxy table (``final_clumpy_sample.fits``) and
    clump catalogue (Mehta et al. 2021), and the 46,164 Clump Scout consensus boxes of
    ``clumpscout_frcnn_labels``. Numbers in comments are the measured targets.
    """

    # PSF FWHM in px, log-normal: Clump Scout box side / 2.5; ln(side) mean 2.842, std 0.332
    # over 19,956 images (side 4.3-48.2 px, median 17.5 px per image) -> FWHM median 6.9 px,
    # clipped to 4.3/2.5-48.2/2.5 px. (GZH S82 JPEGs: median 6.3 px.)
    psf_ln_mean: float = 1.926
    psf_ln_std: float = 0.332
    psf_range: tuple = (1.72, 19.28)
    # Clumps per clumpy galaxy, 1..9: fractions in the Clump Scout labels.
    clump_count_probs: tuple = (0.259, 0.417, 0.179, 0.080, 0.036, 0.019, 0.007, 0.002, 0.001)
    # Where clumps may sit: radius range in disc R_e; minimum separation in PSF FWHM (blended
    # clumps would be one mark for a volunteer); no clump within max(1 FWHM, this x the
    # bulge R_e) of the centre (a mark on the bulge is not a clump).
    clump_radius_re: tuple = (0.3, 1.6)
    clump_min_sep_fwhm: float = 1.2
    centre_exclusion_bulge_re: float = 2.0
    # None: clump flux fractions log-uniform in ``SyntheticParams.clump_frac``; (median,
    # ln-sigma): log-normal, clipped to that range (``SyntheticParams.sdss_catalogue``).
    clump_frac_lognormal: Optional[tuple] = None
    # With the log-normal: this fraction of clumps drawn log-uniform in ``bright_clump_frac``
    # instead (bright, Clump Scout-like clumps, rare in a deep catalogue but the ones a
    # detector must never miss; without them a model learns "bright point = star").
    bright_clump_fraction: float = 0.0
    bright_clump_frac: tuple = (0.03, 0.15)
    # Spiral arms (log spirals in the disc plane) in this fraction of discs; m = 2 arms,
    # pitch angle (deg), arm/inter-arm contrast amplitude, arm sharpness exponent.
    spiral_fraction: float = 0.6
    spiral_pitch_deg: tuple = (12.0, 30.0)
    spiral_amplitude: tuple = (0.3, 0.8)
    spiral_sharpness: tuple = (1.0, 4.0)
    # Lopsidedness (m = 1 amplitude) and flocculence (log-normal random field, rms in dex x
    # ln 10, correlation length in PSF FWHM): irregular discs with knots that are not clumps.
    lopsided_amplitude: tuple = (0.0, 0.35)
    flocculence_rms: tuple = (0.05, 0.35)
    flocculence_scale_fwhm: tuple = (0.7, 2.0)
    # Unlabelled star-forming knots below the labelling limit: Poisson mean per disc, and
    # flux fraction (log-uniform). Mehta et al. clumps are mostly this faint (median flux
    # fraction 0.33 %); Clump Scout volunteers mark few of them.
    knot_rate: float = 6.0
    knot_frac: tuple = (0.002, 0.015)
    # Colours as AB colours (mag): disc g-r, r-i ~ N(mean, std) (GZH S82 galaxies:
    # PETROMAG g-r median 0.28, r-i median 0.14); bulge red; clumps bluer than the disc
    # (Mehta clumps g-r median 0.05, 5-95 % -0.34..0.51; r-i median 0.10); odd clumps red.
    disc_gr: tuple = (0.28, 0.12)
    disc_ri: tuple = (0.14, 0.08)
    bulge_gr: tuple = (0.75, 0.08)
    bulge_ri: tuple = (0.38, 0.05)
    clump_gr: tuple = (0.05, 0.2)
    clump_ri: tuple = (0.05, 0.15)
    odd_gr: tuple = (0.9, 0.25)
    odd_ri: tuple = (0.4, 0.15)
    star_gr: tuple = (0.3, 1.5)  # uniform: the stellar locus at high latitude
    bg_gr: tuple = (0.6, 1.3)  # uniform: background galaxies at z ~ 0.2-0.5 are red
    # Host r flux in sky-sigma units (total, log-uniform): sets the surface brightness against
    # the noise. Calibrated so that the fraction of crop pixels brighter than grey level 50
    # matches the real crops (10/50/90 %: 0.17/0.31/0.68).
    host_flux_r: tuple = (1.5e5, 2.5e6)
    # Noise: white per native SDSS pixel (0.396"), resampled to the cutout scale -> Gaussian
    # correlation sigma = 0.5 x 0.396 / pixel_scale px. Real crops: neighbour autocorrelation
    # of the sky 0.76-0.86 at lag 1, 0.36-0.57 at lag 2 (Gaussian sigma ~1 px gives 0.78/0.37).
    native_scale: float = 0.396
    # Display: Lupton asinh composite of (i, r, g) x band_weights -> (R, G, B), with the black
    # point ``black_sigma`` sky sigma below the sky, softening Q and stretch (sky sigma), then
    # a JPEG round trip at quality 75 with 4:2:0 chroma subsampling (the GZH JPEGs' quantisation
    # tables are exactly libjpeg's quality-75 tables, sampling 4:2:0). Real crops: sky median
    # grey 13-31 (median ~18), sky MAD noise 10-13 grey levels; galaxy pixels B/G median 1.16,
    # R/G 1.01.
    band_weights: tuple = (0.86, 1.0, 1.6)  # i, r, g
    black_sigma: float = 1.5
    lupton_q: float = 10.0
    lupton_stretch: float = 21.0
    # Fraction of the sky noise variance shared by the three bands (grey noise, see above).
    shared_noise: float = 0.85
    jpeg_quality: int = 75


@dataclass
class SyntheticGalaxy:
    """One rendered galaxy: the RGB image, the per-band fluxes and the truth."""

    rgb: np.ndarray  # (H, W, 3) uint8
    bands: np.ndarray  # (3, H, W) float32, g r i in sky-sigma units
    psf_fwhm_px: float
    pixel_scale: float
    centre: tuple
    clumps: List[Dict] = field(default_factory=list)
    # Flux of the galaxy per band (g, r, i): disc + bulge + clumps (+ unlabelled knots), summed
    # over the image before stars, background galaxies and noise: the host flux of the
    # clump/host flux ratios (Popp et al. 2024's clump fraction of the galaxy's light).
    host_flux_bands: tuple = ()


def _sersic_b(n: float) -> float:
    return 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n)


def _sersic_image(xx, yy, x0, y0, re, n, q, pa, total_flux):
    """Sersic profile sampled at pixel centres, normalised to ``total_flux`` in the stamp."""
    dx, dy = xx - x0, yy - y0
    cos, sin = np.cos(pa), np.sin(pa)
    xr = dx * cos + dy * sin
    yr = (-dx * sin + dy * cos) / q
    r = np.sqrt(xr**2 + yr**2)
    profile = np.exp(-_sersic_b(n) * ((r / re) ** (1.0 / n) - 1.0))
    return profile * (total_flux / profile.sum())


def _point_source(xx, yy, x0, y0, sigma, flux):
    g = np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2.0 * sigma**2))
    return g * (flux / (2.0 * np.pi * sigma**2))


def _log_uniform(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def render_galaxy(rng: np.random.Generator, params: SyntheticParams) -> SyntheticGalaxy:
    """Draw one galaxy (host, clumps, distractors, noise) and its Clump Scout labels.

    ``params.realism == "sdss"`` renders with :func:`render_sdss_galaxy` instead.
    """
    if params.realism == "sdss":
        return render_sdss_galaxy(rng, params)
    if params.realism != "basic":
        raise ValueError(f"unknown realism {params.realism!r}; expected 'basic' or 'sdss'")
    size = params.image_size
    # Pixel centres at i + 0.5: detectron2's continuous coordinates, in which the boxes live.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    pixel_scale = rng.uniform(*params.pixel_scale)
    fwhm = rng.uniform(*params.seeing) / pixel_scale
    sigma = fwhm / 2.3548
    x0, y0 = size / 2 + rng.uniform(-3, 3, size=2)
    flux_r = _log_uniform(rng, *params.host_flux_r)
    disc_re = rng.uniform(*params.disc_re)
    q = rng.uniform(*params.axis_ratio)
    pa = rng.uniform(0, np.pi)
    b_t = rng.uniform(*params.bulge_frac)
    bulge_re = rng.uniform(*params.bulge_re)

    disc = _sersic_image(xx, yy, x0, y0, disc_re, 1.0, q, pa, flux_r * (1 - b_t))
    bulge = _sersic_image(xx, yy, x0, y0, bulge_re, 4.0, min(1.0, q + 0.3), pa, flux_r * b_t)
    # Smooth components are convolved with the PSF; point sources are drawn PSF-shaped.
    bands = np.stack(
        [
            gaussian_filter(disc * cd + bulge * cb, sigma)
            for cd, cb in zip(params.colour_disc, params.colour_bulge)
        ]
    )

    clumps: List[Dict] = []
    if rng.uniform() >= params.empty_fraction:
        n_clumps = int(rng.integers(1, params.max_clumps + 1))
        for _ in range(n_clumps):
            # Position in the disc plane, then projected: radius 0.3-1.6 disc Re, so beyond
            # the bulge (marks on the bulge are not clumps) and on the visible disc.
            radius = disc_re * rng.uniform(0.3, 1.6)
            angle = rng.uniform(0, 2 * np.pi)
            xr, yr = radius * np.cos(angle), radius * np.sin(angle) * q
            cx = x0 + xr * np.cos(pa) - yr * np.sin(pa)
            cy = y0 + xr * np.sin(pa) + yr * np.cos(pa)
            if not (2 <= cx <= size - 3 and 2 <= cy <= size - 3):
                continue
            if any(np.hypot(cx - c["x"], cy - c["y"]) < 1.2 * fwhm for c in clumps):
                continue  # blended clumps would be one mark for a volunteer
            frac = _log_uniform(rng, *params.clump_frac)
            odd = bool(rng.uniform() < params.odd_fraction)
            colour = params.colour_odd if odd else params.colour_clump
            flux = frac * flux_r
            for b, c in enumerate(colour):
                bands[b] += _point_source(xx, yy, cx, cy, sigma, flux * c)
            clumps.append(
                {"x": float(cx), "y": float(cy), "flux_r": float(flux), "flux_frac": float(frac),
                 "odd": odd, "distance_px": float(np.hypot(cx - x0, cy - y0)),
                 "flux_bands": tuple(float(flux * c) for c in colour)}
            )

    galaxy_flux = tuple(float(v) for v in bands.sum(axis=(1, 2)))
    for _ in range(int(rng.poisson(params.star_rate))):
        sx, sy = rng.uniform(5, size - 5, size=2)
        sflux = flux_r * _log_uniform(rng, 0.02, 0.6)
        for b, c in enumerate(params.colour_star):
            bands[b] += _point_source(xx, yy, sx, sy, sigma, sflux * c)
    for _ in range(int(rng.poisson(params.bg_galaxy_rate))):
        gx, gy = rng.uniform(5, size - 5, size=2)
        gal = _sersic_image(
            xx, yy, gx, gy, rng.uniform(2.0, 5.0), 1.0, rng.uniform(0.4, 1.0),
            rng.uniform(0, np.pi), flux_r * _log_uniform(rng, 0.01, 0.1),
        )
        gal = gaussian_filter(gal, sigma)
        for b, c in enumerate(params.colour_bg):
            bands[b] += gal * c

    bands += rng.normal(0.0, 1.0, size=bands.shape)
    rgb = lupton_composite(bands, params.lupton_q, params.lupton_stretch)
    return SyntheticGalaxy(
        rgb=rgb, bands=bands.astype(np.float32), psf_fwhm_px=float(fwhm),
        pixel_scale=float(pixel_scale), centre=(float(x0), float(y0)), clumps=clumps,
        host_flux_bands=galaxy_flux,
    )


def _ab_ratios(gr: float, ri: float) -> tuple:
    """AB colours g-r, r-i -> band flux ratios (g, r, i) with r = 1."""
    return (10 ** (-0.4 * gr), 1.0, 10 ** (0.4 * ri))


def _normal(rng, mean_std) -> float:
    return float(rng.normal(mean_std[0], mean_std[1]))


def _disc_plane(xx, yy, x0, y0, q, pa):
    """Radius and azimuth in the disc plane of a disc at (x0, y0), axis ratio q, angle pa."""
    dx, dy = xx - x0, yy - y0
    xr = dx * np.cos(pa) + dy * np.sin(pa)
    yr = (-dx * np.sin(pa) + dy * np.cos(pa)) / q
    return np.hypot(xr, yr), np.arctan2(yr, xr)


def _to_image(x0, y0, q, pa, radius, angle):
    """Disc-plane polar position -> image position."""
    xr, yr = radius * np.cos(angle), radius * np.sin(angle) * q
    return x0 + xr * np.cos(pa) - yr * np.sin(pa), y0 + xr * np.sin(pa) + yr * np.cos(pa)


def correlated_noise(rng: np.random.Generator, shape, sigma_px: float) -> np.ndarray:
    """Gaussian noise of unit rms per pixel, correlated over ``sigma_px`` (a resampled image)."""
    noise = rng.normal(0.0, 1.0, size=shape)
    if sigma_px > 0.3:
        noise = gaussian_filter(noise, (0, sigma_px, sigma_px) if len(shape) == 3 else sigma_px)
        noise /= noise.std()
    return noise


def sdss_composite(bands: np.ndarray, r: "SdssRealism") -> np.ndarray:
    """g, r, i fluxes (sky sigma units) -> RGB uint8 as the SDSS / Galaxy Zoo JPEGs.

    Lupton et al. (2004) colour-preserving asinh stretch of (i, r, g) x ``band_weights`` with
    the black point ``black_sigma`` below the sky (so the sky is dark grey, not black, as in
    the real cutouts), then a JPEG round trip (quality ``jpeg_quality``, 4:2:0), whose chroma
    quantisation is why the real sky noise is grey (the three channels' noise correlates at
    0.93-1.0 in the real crops).
    """
    import io

    from astropy.visualization import make_lupton_rgb

    g, rr, i = bands
    wi, wr, wg = r.band_weights
    rgb = make_lupton_rgb(i * wi, rr * wr, g * wg, minimum=-r.black_sigma,
                          stretch=r.lupton_stretch, Q=r.lupton_q)
    if r.jpeg_quality <= 0:
        return rgb
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=int(r.jpeg_quality), subsampling=2)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


def sample_psf_fwhm(rng: np.random.Generator, r: "SdssRealism") -> float:
    """PSF FWHM (px) drawn from the Clump Scout box-side distribution / 2.5."""
    return float(np.clip(np.exp(rng.normal(r.psf_ln_mean, r.psf_ln_std)), *r.psf_range))


def render_sdss_galaxy(rng: np.random.Generator, params: SyntheticParams) -> SyntheticGalaxy:
    """Draw one galaxy with the calibrated SDSS realism model (``SyntheticParams.sdss()``).

    Compared with the basic renderer: PSF sizes from the Clump Scout box distribution; discs
    with log-spiral arms, lopsidedness and flocculent texture plus unlabelled faint knots (so
    not every bright knot is a clump); colours drawn around the measured SDSS colours; clump
    counts and odd fraction from the Clump Scout labels; correlated sky noise of a resampled
    image; the composite with a grey sky pedestal and a JPEG round trip. Numbers and their
    calibration targets: :class:`SdssRealism`. Labels: as the basic renderer. Of
    ``params`` it uses the geometry and label fields (``image_size``, ``pixel_scale``,
    ``disc_re``, ``bulge_re``, ``bulge_frac``, ``axis_ratio``, ``clump_frac``,
    ``empty_fraction``, ``odd_fraction``, ``star_rate``, ``bg_galaxy_rate``); seeing, host
    flux, colours and the composite come from ``params.sdss_realism``. ``disc_re`` and
    ``bulge_re`` are for 200 px images and scale with ``image_size``.
    """
    r = params.sdss_realism or SdssRealism()
    size = params.image_size
    # Pixel centres at i + 0.5: detectron2's continuous coordinates, in which the boxes live.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    pixel_scale = rng.uniform(*params.pixel_scale)
    fwhm = sample_psf_fwhm(rng, r)
    sigma = fwhm / 2.3548
    x0, y0 = size / 2 + rng.uniform(-3, 3, size=2)
    flux_r = _log_uniform(rng, *r.host_flux_r)
    disc_re = rng.uniform(*params.disc_re) * size / 200.0
    q = rng.uniform(*params.axis_ratio)
    pa = rng.uniform(0, np.pi)
    b_t = rng.uniform(*params.bulge_frac)
    bulge_re = rng.uniform(*params.bulge_re) * size / 200.0

    # Disc: exponential x (spiral arms) x (lopsidedness) x (flocculent random field).
    radius, phi = _disc_plane(xx, yy, x0, y0, q, pa)
    disc = np.exp(-_sersic_b(1.0) * radius / disc_re)
    spiral = None
    if rng.uniform() < r.spiral_fraction:
        pitch = np.radians(rng.uniform(*r.spiral_pitch_deg))
        amp = rng.uniform(*r.spiral_amplitude)
        sharp = rng.uniform(*r.spiral_sharpness)
        phase0 = rng.uniform(0, 2 * np.pi)
        spiral = (pitch, phase0)
        arg = 2.0 * (phi - np.log(np.maximum(radius, 1.0) / disc_re) / np.tan(pitch) - phase0)
        arms = ((1.0 + np.cos(arg)) / 2.0) ** sharp
        # Arms fade into the centre (a bar/bulge region), full strength beyond ~0.5 Re.
        weight = amp * (1.0 - np.exp(-((radius / (0.5 * disc_re)) ** 2)))
        disc = disc * (1.0 - weight + 2.0 * weight * arms)
    lop = rng.uniform(*r.lopsided_amplitude)
    disc = disc * (1.0 + lop * np.cos(phi - rng.uniform(0, 2 * np.pi)) * np.tanh(radius / disc_re))
    floc_rms = rng.uniform(*r.flocculence_rms)
    field_ = gaussian_filter(rng.normal(size=(size, size)),
                             max(0.5, rng.uniform(*r.flocculence_scale_fwhm) * fwhm / 2.3548))
    disc = disc * np.exp(floc_rms * field_ / max(field_.std(), 1e-9))
    disc *= flux_r * (1 - b_t) / disc.sum()
    bulge = _sersic_image(xx, yy, x0, y0, bulge_re, 4.0, min(1.0, q + 0.3), pa, flux_r * b_t)
    c_disc = _ab_ratios(_normal(rng, r.disc_gr), _normal(rng, r.disc_ri))
    c_bulge = _ab_ratios(_normal(rng, r.bulge_gr), _normal(rng, r.bulge_ri))
    bands = np.stack([gaussian_filter(disc * cd + bulge * cb, sigma)
                      for cd, cb in zip(c_disc, c_bulge)])

    def disc_position(rmin, rmax):
        rad = disc_re * rng.uniform(rmin, rmax)
        if spiral is not None and rng.uniform() < 0.6:  # star formation follows the arms
            pitch, phase0 = spiral
            ang = np.log(max(rad, 1.0) / disc_re) / np.tan(pitch) + phase0 \
                + np.pi * rng.integers(0, 2) + rng.normal(0, 0.15)
        else:
            ang = rng.uniform(0, 2 * np.pi)
        return _to_image(x0, y0, q, pa, rad, ang)

    clumps: List[Dict] = []
    if rng.uniform() >= params.empty_fraction:
        n_clumps = int(rng.choice(np.arange(1, len(r.clump_count_probs) + 1),
                                  p=np.asarray(r.clump_count_probs) / sum(r.clump_count_probs)))
        for _ in range(n_clumps):
            cx, cy = disc_position(*r.clump_radius_re)
            if not (2 <= cx <= size - 3 and 2 <= cy <= size - 3):
                continue
            if any(np.hypot(cx - c["x"], cy - c["y"]) < r.clump_min_sep_fwhm * fwhm
                   for c in clumps):
                continue  # blended clumps would be one mark for a volunteer
            if np.hypot(cx - x0, cy - y0) < max(1.0 * fwhm, r.centre_exclusion_bulge_re
                                                * bulge_re):
                continue  # a mark on the bulge is not a clump
            if r.clump_frac_lognormal is None:
                frac = _log_uniform(rng, *params.clump_frac)
            elif rng.uniform() < r.bright_clump_fraction:
                frac = _log_uniform(rng, *r.bright_clump_frac)
            else:
                median, ln_sigma = r.clump_frac_lognormal
                frac = float(np.clip(median * np.exp(ln_sigma * rng.normal()),
                                     *params.clump_frac))
            odd = bool(rng.uniform() < params.odd_fraction)
            colour = (_ab_ratios(_normal(rng, r.odd_gr), _normal(rng, r.odd_ri)) if odd
                      else _ab_ratios(_normal(rng, r.clump_gr), _normal(rng, r.clump_ri)))
            flux = frac * flux_r
            for b, c in enumerate(colour):
                bands[b] += _point_source(xx, yy, cx, cy, sigma, flux * c)
            clumps.append(
                {"x": float(cx), "y": float(cy), "flux_r": float(flux), "flux_frac": float(frac),
                 "odd": odd, "distance_px": float(np.hypot(cx - x0, cy - y0)),
                 "flux_bands": tuple(float(flux * c) for c in colour)}
            )
    # Unlabelled faint knots: below the labelling limit, blue like clumps.
    for _ in range(int(rng.poisson(r.knot_rate))):
        kx, ky = disc_position(0.2, 2.0)
        kflux = flux_r * _log_uniform(rng, *r.knot_frac)
        colour = _ab_ratios(_normal(rng, r.clump_gr), _normal(rng, r.clump_ri))
        for b, c in enumerate(colour):
            bands[b] += _point_source(xx, yy, kx, ky, sigma, kflux * c)

    galaxy_flux = tuple(float(v) for v in bands.sum(axis=(1, 2)))
    for _ in range(int(rng.poisson(params.star_rate))):
        sx, sy = rng.uniform(5, size - 5, size=2)
        sflux = flux_r * _log_uniform(rng, 0.005, 0.3)
        gr = rng.uniform(*r.star_gr)
        for b, c in enumerate(_ab_ratios(gr, 0.4 * gr)):
            bands[b] += _point_source(xx, yy, sx, sy, sigma, sflux * c)
    for _ in range(int(rng.poisson(params.bg_galaxy_rate))):
        gx, gy = rng.uniform(5, size - 5, size=2)
        gal = _sersic_image(
            xx, yy, gx, gy, rng.uniform(1.5, 5.0), rng.choice([1.0, 4.0]), rng.uniform(0.4, 1.0),
            rng.uniform(0, np.pi), flux_r * _log_uniform(rng, 0.002, 0.03),
        )
        gal = gaussian_filter(gal, sigma)
        gr = rng.uniform(*r.bg_gr)
        for b, c in enumerate(_ab_ratios(gr, 0.5 * gr)):
            bands[b] += gal * c

    corr = 0.5 * r.native_scale / pixel_scale
    bands += (np.sqrt(r.shared_noise) * correlated_noise(rng, (size, size), corr)[None]
              + np.sqrt(1 - r.shared_noise) * correlated_noise(rng, bands.shape, corr))
    rgb = sdss_composite(bands, r)
    return SyntheticGalaxy(
        rgb=rgb, bands=bands.astype(np.float32), psf_fwhm_px=float(fwhm),
        pixel_scale=float(pixel_scale), centre=(float(x0), float(y0)), clumps=clumps,
        host_flux_bands=galaxy_flux,
    )


def lupton_composite(bands: np.ndarray, q: float, stretch: float) -> np.ndarray:
    """g, r, i fluxes -> RGB uint8 with the Lupton asinh stretch (i->R, r->G, g->B)."""
    from astropy.visualization import make_lupton_rgb

    g, r, i = bands
    return make_lupton_rgb(i, r, g, minimum=0.0, stretch=stretch, Q=q)


def galaxy_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, SPLIT_CODES[split], index]))


def make_split(
    out_dir: str | os.PathLike,
    split: str,
    num: int,
    seed: int = 0,
    params: Optional[SyntheticParams] = None,
    show_progress: bool = True,
    fits: bool = False,
    fits_bunit: str = "nanomaggy",
    fits_zero_point: Optional[float] = None,
) -> Path:
    """Write ``num`` galaxies as PNGs under ``out_dir/images/<split>/`` and a COCO JSON
    ``out_dir/annotations/<split>.json``; returns the JSON path.

    With ``fits``, each galaxy's g, r, i bands (sky-sigma units, noise included) are also
    written as per-band FITS files ``sim_<split>_<index>_<band>.fits`` with ``BUNIT =
    fits_bunit`` (omitted when empty; "nanomaggy" means AB zero point 22.5) and ``MAGZP =
    fits_zero_point`` when given, and the truth of the photometry joins the records: each image
    gets ``fits_file`` (the ``{band}`` template, relative to the image root), ``fits_bands``,
    ``flux_unit`` and ``host_flux_<band>`` (the galaxy's light: disc, bulge, clumps, knots), each
    annotation ``flux_<band>`` and ``flux_frac_<band>`` (clump / host flux). ``flux_frac`` stays
    the clump's r flux / (disc + bulge) r flux, as without ``fits``.

    The JSON is written last and atomically, so its presence means the split is complete.
    """
    params = params or SyntheticParams()
    out_dir = Path(out_dir)
    image_dir = out_dir / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    iterator = range(num)
    if show_progress:
        iterator = tqdm(iterator, desc=f"synthetic {split}", unit="galaxy")
    for index in iterator:
        galaxy = render_galaxy(galaxy_rng(seed, split, index), params)
        image_id = SPLIT_CODES[split] * 10_000_000 + index + 1  # stable, unique across splits
        file_name = f"{split}/sim_{split}_{index:06d}.png"
        Image.fromarray(galaxy.rgb).save(out_dir / "images" / file_name)
        images.append(
            {"id": image_id, "file_name": file_name, "width": params.image_size,
             "height": params.image_size, "psf_fwhm_px": galaxy.psf_fwhm_px,
             "pixel_scale": galaxy.pixel_scale, "centre_x": galaxy.centre[0],
             "centre_y": galaxy.centre[1]}
        )
        if fits:
            images[-1].update(write_fits_bands(galaxy, out_dir / "images", file_name,
                                               fits_bunit, fits_zero_point))
        for clump in galaxy.clumps:
            box = clump_box_xywh_in_frame(clump["x"], clump["y"], galaxy.psf_fwhm_px,
                                          params.image_size, params.image_size)
            if box is None:
                continue
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "bbox": box,
                 "area": box[2] * box[3], "iscrowd": 0, "category_id": 2 if clump["odd"] else 1,
                 "flux_r": clump["flux_r"], "flux_frac": clump["flux_frac"],
                 "distance_px": clump["distance_px"], "psf_fwhm_px": galaxy.psf_fwhm_px}
            )
            if fits:
                annotations[-1].update(clump_band_truth(galaxy, clump))
    coco = {
        "info": {"description": "clump_d2 synthetic SDSS-like galaxies", "seed": seed,
                 "split": split, "generator": "clump_d2.sim.synthetic"},
        "images": images, "annotations": annotations, "categories": CATEGORIES,
    }
    json_path = out_dir / "annotations" / f"{split}.json"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(coco))
    tmp.replace(json_path)
    logger.info("wrote %d galaxies, %d clumps to %s", len(images), len(annotations), json_path)
    return json_path


def clump_band_truth(galaxy: SyntheticGalaxy, clump: Dict) -> Dict[str, float]:
    """``x``, ``y``, ``flux_<band>`` and ``flux_frac_<band>`` (clump / host flux) of a clump."""
    out = {"x": clump["x"], "y": clump["y"]}
    for band, f, host in zip(BANDS, clump["flux_bands"], galaxy.host_flux_bands):
        out[f"flux_{band}"] = float(f)
        out[f"flux_frac_{band}"] = float(f / host) if host > 0 else float("nan")
    return out


def write_fits_bands(galaxy: SyntheticGalaxy, image_root: Path, file_name: str,
                     bunit: str = "nanomaggy", zero_point: Optional[float] = None) -> Dict:
    """Write a galaxy's bands as per-band FITS next to ``file_name`` (relative to
    ``image_root``); returns the image-record keys (see :func:`make_split`)."""
    from astropy.io import fits as pyfits

    stem = file_name.rsplit(".", 1)[0]
    template = f"{stem}_{{band}}.fits"
    for band, data in zip(BANDS, galaxy.bands):
        header = pyfits.Header()
        header["BAND"] = band
        if bunit:
            header["BUNIT"] = bunit
        if zero_point is not None:
            header["MAGZP"] = float(zero_point)
        header["PSF_FWHM"] = (galaxy.psf_fwhm_px, "PSF FWHM, pixels")
        pyfits.PrimaryHDU(np.asarray(data, np.float32), header).writeto(
            image_root / template.format(band=band), overwrite=True)
    record = {"fits_file": template, "fits_bands": list(BANDS),
              "flux_unit": bunit or "stored units"}
    for band, host in zip(BANDS, galaxy.host_flux_bands):
        record[f"host_flux_{band}"] = float(host)
    return record


def make_dataset(out_dir, splits: Dict[str, int], seed: int = 0,
                 params: Optional[SyntheticParams] = None) -> Dict[str, Path]:
    """Write several splits (e.g. ``{"train": 600, "val": 150}``)."""
    return {split: make_split(out_dir, split, n, seed, params) for split, n in splits.items()}


#: Label populations of the SDSS simulation: Clump Scout's (clumps >= ~3 % of the host) or
#: the Mehta et al. catalogue's (median 0.33 %); see ``SyntheticParams.sdss*``.
SIM_PRESETS = ("clumpscout", "catalogue", "single_epoch")

#: ``simulate_sdss`` preset name -> the ``SyntheticParams`` constructor it uses.
_PRESET_PARAMS = {"clumpscout": "sdss", "catalogue": "sdss_catalogue",
                  "single_epoch": "sdss_single_epoch"}


def simulate_sdss(out_dir: str | os.PathLike, num_train: int = 600, num_val: int = 150,
                  seed: int = 0, image_size: int = 200,
                  preset: str = "clumpscout") -> Dict[str, Path]:
    """Write the calibrated SDSS simulation: ``preset`` "clumpscout" is
    ``SyntheticParams.sdss()``, "catalogue" ``SyntheticParams.sdss_catalogue()``,
    "single_epoch" ``SyntheticParams.sdss_single_epoch()``."""
    if preset not in SIM_PRESETS:
        raise ValueError(f"unknown simulation preset {preset!r}: choose one of {SIM_PRESETS}")
    make = getattr(SyntheticParams, _PRESET_PARAMS[preset])
    params = make(image_size=image_size)
    return {split: make_split(out_dir, split, n, seed=seed, params=params)
            for split, n in (("val", num_val), ("train", num_train)) if n > 0}
