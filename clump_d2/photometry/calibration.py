"""Giant flags of display (PNG/JPEG) photometry, calibrated to the u band.

The paper's giant clumps (Clump Scout, Popp et al. 2024) carry >= 3 % (8 %) of the host's
*u-band* light. An SDSS colour JPEG has no u band, and its display photometry (the 8-bit
image linearised by undoing the Lupton stretch, :mod:`clump_d2.photometry.images`) reads
clump/host ratios about 0.4-0.5 dex below the catalogue's u-band fractions. So for display
input the flags are set on a *predicted* u-band fraction, ``flux_ratio_u_est``, from a
calibration fitted on real catalogued clumps (the GZH Stripe 82 galaxies of Mehta et al.
2021; :mod:`clump_d2.studies.giant_calibration` measures them and fits this model).

The model is a *classical calibration* line: the display measurement is modelled as a
function of the truth,

    log10 flux_ratio_B = a + b log10 f_u + c log10(flux_ratio_B / flux_ratio_R),

fitted by least squares (optionally clipped), and inverted for f_u. The
inverse, not the regression of log10 f_u on log10 flux_ratio_B, is used because the flags
cut the rare bright tail: a regression shrinks predictions towards the typical (faint)
clump, so almost nothing would reach 3 %, whereas the inverted line predicts a clump at
3 % to be at 3 % on average and so flags about as many clumps as truly are giants. The
colour term ``c`` is optional (0: the prediction depends on the B ratio alone, and a flag is
a plain cut on ``flux_ratio_B``). Everything here is pure arrays; tests pin it down.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from clump_d2.photometry.flags import DEFAULT_THRESHOLDS_PCT, giant_flags

logger = logging.getLogger(__name__)

#: The calibration fitted on all 24 labelled GZH S82 galaxies (``a, b, c``; see the module
#: docstring), written by ``python tools/measure_clumps.py calibrate-giant`` into
#: docs/photometry.md; ``PHOTOMETRY.DISPLAY_GIANT_CALIBRATION`` defaults to it.
DEFAULT_DISPLAY_GIANT_CALIBRATION = (-0.071, 1.254, 0.0)
#: What the ``giant_band`` column says when the flags use the calibrated u-band fraction.
CALIBRATED_BAND_LABEL = "u (calibrated from display)"
#: Name of the predicted u-band fraction column.
U_ESTIMATE_COLUMN = "flux_ratio_u_est"


@dataclass(frozen=True)
class DisplayGiantCalibration:
    """``log10 flux_ratio_B = intercept + slope log10 f_u + colour log10(B / R ratio)``.

    Attributes:
        intercept: ``a``, dex.
        slope: ``b`` (> 0).
        colour: ``c``, the colour term (0: none; the R ratio is then not needed).
        n_fit: clumps used by the fit (0: not from a fit).
        n_clipped: of those, clipped as outliers.
    """

    intercept: float
    slope: float
    colour: float = 0.0
    n_fit: int = 0
    n_clipped: int = 0

    def __post_init__(self):
        if not (np.isfinite(self.slope) and self.slope > 0):
            raise ValueError(f"calibration slope must be a positive number, got {self.slope}")
        if not (np.isfinite(self.intercept) and np.isfinite(self.colour)):
            raise ValueError(f"calibration coefficients must be finite: {self.coefficients}")

    @property
    def coefficients(self) -> Tuple[float, float, float]:
        """``(a, b, c)``, as ``PHOTOMETRY.DISPLAY_GIANT_CALIBRATION`` holds them."""
        return (float(self.intercept), float(self.slope), float(self.colour))

    @classmethod
    def from_sequence(cls, values: Sequence[float]) -> Optional["DisplayGiantCalibration"]:
        """From ``(a, b)`` or ``(a, b, c)``; None for an empty sequence (no calibration).

        Raises:
            ValueError: another length, or a slope <= 0.
        """
        values = [float(v) for v in values]
        if not values:
            return None
        if len(values) not in (2, 3):
            raise ValueError("PHOTOMETRY.DISPLAY_GIANT_CALIBRATION needs (a, b) or (a, b, c), "
                             f"got {values}")
        return cls(*values)

    def predict(self, ratio_b: np.ndarray, ratio_r: Optional[np.ndarray] = None) -> np.ndarray:
        """Predicted u-band clump/host fraction (a fraction, not %) from the display B (and,
        with a colour term, R) ratios; NaN where a ratio needed is not positive or finite
        (no logarithm: such a clump is not flagged).

        Raises:
            ValueError: a colour term without ``ratio_r``.
        """
        b = np.asarray(ratio_b, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_b = np.where(b > 0, np.log10(np.where(b > 0, b, 1.0)), np.nan)
            x = log_b - self.intercept
            if self.colour != 0.0:
                if ratio_r is None:
                    raise ValueError("this calibration has a colour term: it needs the R ratio")
                r = np.asarray(ratio_r, dtype=np.float64)
                log_r = np.where(r > 0, np.log10(np.where(r > 0, r, 1.0)), np.nan)
                x = x - self.colour * (log_b - log_r)
            return 10.0 ** (x / self.slope)

    def display_threshold(self, pct: float) -> float:
        """The B ratio (a fraction) at which the predicted u fraction is ``pct`` per cent:
        without a colour term, ``flux_ratio_u_est >= pct %`` is ``flux_ratio_B >=`` this.

        Raises:
            ValueError: the calibration has a colour term (the flag is then no B cut).
        """
        if self.colour != 0.0:
            raise ValueError("a calibration with a colour term is not a cut on the B ratio")
        return float(10.0 ** (self.intercept + self.slope * np.log10(float(pct) / 100.0)))


def _usable(*arrays: np.ndarray) -> np.ndarray:
    ok = np.ones(len(arrays[0]), dtype=bool)
    for a in arrays:
        ok &= np.isfinite(a) & (a > 0)
    return ok


def fit_display_calibration(u_fraction: np.ndarray, ratio_b: np.ndarray,
                            ratio_r: Optional[np.ndarray] = None, colour: bool = False,
                            clip_sigma: float = 0.0, max_iter: int = 5
                            ) -> DisplayGiantCalibration:
    """Fit the calibration line (module docstring) to clumps of known u-band fraction.

    Args:
        u_fraction: true u-band clump/host fractions (not %).
        ratio_b, ratio_r: their display B (and R) clump/host ratios. Clumps where a value
            used is not positive and finite are left out (no logarithm).
        colour: fit the colour term ``c`` (needs ``ratio_r``); else ``c = 0``.
        clip_sigma: residuals beyond this many robust sigma (1.4826 x MAD) are dropped and
            the line refitted; 0 (default): plain least squares. The clumps clipping drops are
            display failures (flux swamped by the bulge or a neighbour) that the catalogue
            meets too, and on the GZH clumps clipping moved the line more than leaving one
            galaxy out did, so the shipped fit keeps them.
        max_iter: most clipping rounds.

    Raises:
        ValueError: fewer usable clumps than twice the coefficients, or a fitted slope <= 0.
    """
    u = np.asarray(u_fraction, dtype=np.float64)
    b = np.asarray(ratio_b, dtype=np.float64)
    if colour and ratio_r is None:
        raise ValueError("a colour term needs ratio_r")
    arrays = [u, b] + ([np.asarray(ratio_r, dtype=np.float64)] if colour else [])
    ok = _usable(*arrays)
    n_coef = 3 if colour else 2
    if ok.sum() < 2 * n_coef:
        raise ValueError(f"{int(ok.sum())} usable clumps (positive ratios): too few to fit "
                         f"{n_coef} coefficients")
    y = np.log10(b[ok])
    columns = [np.ones(ok.sum()), np.log10(u[ok])]
    if colour:
        columns.append(y - np.log10(arrays[2][ok]))
    design = np.column_stack(columns)
    keep = np.ones(len(y), dtype=bool)
    coef = np.zeros(n_coef)
    for _ in range(max(1, max_iter)):
        coef, *_ = np.linalg.lstsq(design[keep], y[keep], rcond=None)
        if clip_sigma <= 0:
            break
        resid = y - design @ coef
        sigma = 1.4826 * np.median(np.abs(resid[keep] - np.median(resid[keep])))
        new = np.abs(resid - np.median(resid[keep])) <= clip_sigma * max(sigma, 1e-12)
        if (new == keep).all() or new.sum() < 2 * n_coef:
            break
        keep = new
    if not coef[1] > 0:
        raise ValueError(f"fitted slope {coef[1]:.3g} <= 0: display ratios do not rise with "
                         "the u-band fraction on these clumps")
    return DisplayGiantCalibration(float(coef[0]), float(coef[1]),
                                   float(coef[2]) if colour else 0.0,
                                   n_fit=int(ok.sum()), n_clipped=int((~keep).sum()))


def calibrated_giant_flags(u_estimate: np.ndarray,
                           thresholds_pct: Sequence[float] = DEFAULT_THRESHOLDS_PCT
                           ) -> Dict[str, np.ndarray]:
    """``{is_giant_<p>pct: predicted u fraction >= p %}`` (NaN: False)."""
    return giant_flags(u_estimate, thresholds_pct)


def scatter_dex(predicted: np.ndarray, true: np.ndarray) -> Dict[str, float]:
    """Scatter of log10 predicted / true over the pairs where both are positive: ``n``,
    ``median`` (bias), ``robust`` (1.4826 x MAD) and ``std``, in dex."""
    p = np.asarray(predicted, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    ok = _usable(p, t)
    d = np.log10(p[ok]) - np.log10(t[ok])
    if not d.size:
        return {"n": 0, "median": np.nan, "robust": np.nan, "std": np.nan}
    med = float(np.median(d))
    return {"n": int(d.size), "median": med,
            "robust": float(1.4826 * np.median(np.abs(d - med))), "std": float(d.std())}


def cross_validated_estimates(u_fraction: np.ndarray, ratio_b: np.ndarray,
                              groups: Sequence, ratio_r: Optional[np.ndarray] = None,
                              colour: bool = False, fit_mask: Optional[np.ndarray] = None,
                              **fit_kwargs) -> np.ndarray:
    """Predicted u fractions, each from a calibration fitted without its own group.

    Args:
        groups: one label per clump (a galaxy id for leave-one-galaxy-out, a fold name for
            k-fold): the clumps of each group are predicted by the fit on all other groups.
        fit_mask: clumps that may enter a fit (e.g. off-centre ones); all are predicted.
        fit_kwargs: to :func:`fit_display_calibration`.
    """
    groups = np.asarray([str(g) for g in groups])
    fit_mask = np.ones(len(groups), dtype=bool) if fit_mask is None else np.asarray(fit_mask)
    r = None if ratio_r is None else np.asarray(ratio_r, dtype=np.float64)
    u = np.asarray(u_fraction, dtype=np.float64)
    b = np.asarray(ratio_b, dtype=np.float64)
    out = np.full(len(groups), np.nan)
    for g in np.unique(groups):
        held = groups == g
        train = fit_mask & ~held
        cal = fit_display_calibration(u[train], b[train], None if r is None else r[train],
                                      colour, **fit_kwargs)
        out[held] = cal.predict(b[held], None if r is None else r[held])
    return out


def flag_counts(true_fraction: np.ndarray, flagged: np.ndarray, pct: float,
                mask: Optional[np.ndarray] = None) -> Dict[str, float]:
    """Purity and completeness of ``flagged`` against ``true_fraction >= pct %``.

    Returns:
        ``n_true`` (clumps truly at or above), ``n_flagged``, ``n_both``, ``purity``
        (n_both / n_flagged, NaN without flags) and ``completeness`` (n_both / n_true).
    """
    t = np.nan_to_num(np.asarray(true_fraction, dtype=np.float64), nan=-np.inf) >= pct / 100.0
    f = np.asarray(flagged, dtype=bool)
    if mask is not None:
        t, f = t & mask, f & mask
    n_true, n_flag, n_both = int(t.sum()), int(f.sum()), int((t & f).sum())
    return {"n_true": n_true, "n_flagged": n_flag, "n_both": n_both,
            "purity": n_both / n_flag if n_flag else np.nan,
            "completeness": n_both / n_true if n_true else np.nan}
