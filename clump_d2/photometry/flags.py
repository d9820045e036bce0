"""Giant-clump flags: ``is_giant_<pct>pct`` = clump / host flux >= pct per cent in one band.

Clump Scout (Adams et al. 2022) and Popp et al. (2024) call a clump *giant* by its fraction of
the host's u-band light (their ``is_clump_3pct`` / ``is_clump_8pct``). The band is
configurable (``PHOTOMETRY.GIANT_BAND``); by default it is the bluest band of the image (u for
SDSS ugriz, g for gri). For RGB display images the channels are named ``R``, ``G``, ``B`` and
the bluest is ``B`` (SDSS gri composites: B = g); the ``giant_band`` column then says
``"B (display)"``, unless the display ratios are calibrated to the u band
(:mod:`clump_d2.photometry.calibration`, the default). A NaN ratio (NaN pixels, no host)
gives False.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

#: Effective wavelengths (nm) used only to order bands from blue to red.
BAND_WAVELENGTH_NM = {
    "FUV": 154, "NUV": 231, "u": 355, "U": 365, "B": 445, "g": 477, "V": 551, "r": 623,
    "R": 658, "VIS": 715, "i": 763, "I": 806, "z": 913, "y": 1004, "Y": 1020, "J": 1250,
    "H": 1650, "K": 2200, "Ks": 2150,
}
#: Channel names of RGB display images (PNG/JPEG).
DISPLAY_CHANNELS = ("R", "G", "B")
DEFAULT_THRESHOLDS_PCT = (3.0, 8.0)


def bluest_band(bands: Sequence[str]) -> str:
    """The band of shortest wavelength among ``bands`` (names as in ``BAND_WAVELENGTH_NM``,
    also ``"u_sdss"``-style names by their first letter); the first band if none is known."""
    if not bands:
        raise ValueError("no bands given")

    def wavelength(name: str) -> float:
        for key in (name, name.split("_")[0], name[:1]):
            if key in BAND_WAVELENGTH_NM:
                return BAND_WAVELENGTH_NM[key]
        return float("inf")

    known = [(wavelength(b), i) for i, b in enumerate(bands)]
    best = min(known)
    return bands[best[1]] if np.isfinite(best[0]) else bands[0]


def giant_band(bands: Sequence[str], wanted: str = "", display: bool = False) -> str:
    """The band the flags use: ``wanted`` if given, else the bluest.

    Raises:
        ValueError: ``wanted`` is not one of ``bands``.
    """
    if wanted:
        if wanted not in bands:
            raise ValueError(f"giant-flag band {wanted!r} is not among the bands {list(bands)}")
        return wanted
    return "B" if display and "B" in bands else bluest_band(bands)


def giant_band_label(band: str, display: bool) -> str:
    """What the ``giant_band`` column says, e.g. ``"u"`` or ``"B (display)"``."""
    return f"{band} (display)" if display else band


def flag_name(pct: float) -> str:
    """Column name of a threshold: 3 -> ``is_giant_3pct``, 2.5 -> ``is_giant_2p5pct``."""
    text = f"{float(pct):g}".replace(".", "p")
    return f"is_giant_{text}pct"


def giant_flags(ratio: np.ndarray, thresholds_pct: Sequence[float] = DEFAULT_THRESHOLDS_PCT
                ) -> Dict[str, np.ndarray]:
    """``{is_giant_<pct>pct: bool array}`` of clump/host flux ratios (fractions, not %)."""
    ratio = np.asarray(ratio, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return {flag_name(p): np.nan_to_num(ratio, nan=-np.inf) >= float(p) / 100.0
                for p in thresholds_pct}
