"""A detector's selection function: completeness against clump flux, position and host class,
as a table the catalogue reads to give every clump its detection probability.

**The table** (``selection_function.csv``, written by ``tools/inject_recover.py`` beside its
other outputs; :func:`selection_table` from the injection rows of
:func:`clump_d2.studies.injection.run_injection`): the recovered fraction of injected clumps,
with its Wilson 68 % interval and counts, in cells of

* injected flux fraction (clump / host flux in ``band``, e.g. r: the G channel of an SDSS gri
  JPEG), one value per ``--flux-fractions``;
* distance from the galaxy centre in host R50 (the ``--radius-edges`` bins; the last bin
  includes its upper edge);
* host group (``--group-by parent``: the host class, e.g. spiral / non_spiral), and ``all``
  (every host, whatever its group).

``margin`` says what a row is: ``cell`` (one flux fraction, one radius bin), ``flux_frac``
(one flux fraction, every radius: ``r50_low`` / ``r50_high`` span all bins) or ``radius`` (one
radius bin, every flux fraction: ``flux_frac`` empty). Margins count the same clumps as the
cells (those inside the radius bins), so cells add up to them. ``score_thresh`` is the
operating point the recoveries were judged at: the table describes a catalogue made at that
threshold.

**Per-clump estimate** (:meth:`SelectionFunction.p_detect`): the completeness of the cell at
the clump's measured flux fraction and distance: the radius bin holding the distance (the
first or last bin outside them), and within it linear interpolation in log flux fraction
between the injected fractions; clipped at the table's edges (a clump fainter than the
faintest injection gets the faintest cell's completeness, which is then an upper bound).
Cells with no injection are skipped; a radius bin without any falls back to the group's
``flux_frac`` margin, then to ``all``. NaN where the flux fraction or the distance is NaN.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from clump_d2.convert.coco_writer import atomic_write_text
from clump_d2.evaluation.metrics import wilson_interval

logger = logging.getLogger(__name__)

#: The group of every host; the other groups are host classes (e.g. spiral / non_spiral).
ALL_HOSTS = "all"
#: Columns of ``selection_function.csv``, in order.
SELECTION_COLUMNS = ["margin", "group", "flux_frac", "r50_low", "r50_high", "n", "recovered",
                     "fraction", "low", "high", "band", "score_thresh"]
CSV_NAME = "selection_function.csv"
JSON_NAME = "selection_function.json"
#: Band -> display channel of an SDSS gri colour composite (R = i, G = r, B = g): the channel
#: whose ``flux_ratio_<channel>`` is the clump's fraction of the host's light in that band.
GRI_DISPLAY_CHANNELS = {"i": "R", "r": "G", "g": "B"}


def _cell(rows: Sequence[Dict]) -> Dict:
    """Counts, recovered fraction and Wilson 68 % interval of ``rows`` (NaN when empty)."""
    n = len(rows)
    k = int(sum(bool(r["recovered"]) for r in rows))
    lo, hi = wilson_interval(k, n) if n else (math.nan, math.nan)
    return {"n": n, "recovered": k, "fraction": k / n if n else math.nan, "low": lo, "high": hi}


def radius_bin(distance_r50: float, edges: Sequence[float]) -> Optional[int]:
    """Index of the bin of ``edges`` holding ``distance_r50`` (the last bin includes its upper
    edge); None outside the bins."""
    if not (edges[0] <= distance_r50 <= edges[-1]):
        return None
    return min(int(np.searchsorted(edges, distance_r50, side="right")) - 1, len(edges) - 2)


def selection_table(rows: Sequence[Dict], flux_fractions: Sequence[float],
                    radius_edges: Sequence[float], band: str = "r",
                    score_thresh: Optional[float] = None) -> List[Dict]:
    """The selection-function table (module docstring) of injection rows.

    Args:
        rows: one dict per injected clump with ``flux_frac``, ``distance_r50`` (distance from
            the centre / host R50), ``recovered`` (bool) and optionally ``group`` (host class;
            "" or missing: counted in ``all`` only).
        flux_fractions: the injected flux fractions (the table's flux grid, in this order).
        radius_edges: increasing bin edges of ``distance_r50``; clumps outside are not counted.
        band: the band of the flux fractions (written in every row).
        score_thresh: the operating point the recoveries were judged at.

    Returns:
        One dict per row, keys :data:`SELECTION_COLUMNS`: per group (``all`` first, then the
        groups sorted), the ``cell`` rows (radius bin outer, flux fraction inner), then the
        ``flux_frac`` margins, then the ``radius`` margins.
    """
    edges = [float(e) for e in radius_edges]
    if len(edges) < 2 or any(b <= a for a, b in zip(edges[:-1], edges[1:])):
        raise ValueError(f"radius edges must be at least two increasing values, got {edges}")
    fluxes = [float(f) for f in flux_fractions]
    binned = [(r, radius_bin(float(r["distance_r50"]), edges)) for r in rows]
    outside = sum(b is None for _, b in binned)
    if outside:
        logger.info("%d of %d injected clumps lie outside the radius bins %s: not counted",
                    outside, len(binned), edges)
    binned = [(r, b) for r, b in binned if b is not None]
    groups = sorted({str(r.get("group") or "") for r, _ in binned} - {""})
    extra = {"band": band, "score_thresh": math.nan if score_thresh is None
             else float(score_thresh)}
    out: List[Dict] = []
    for group in [ALL_HOSTS] + [g for g in groups if g != ALL_HOSTS]:
        sel = [(r, b) for r, b in binned if group == ALL_HOSTS or str(r.get("group")) == group]
        for b, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
            for f in fluxes:
                out.append({"margin": "cell", "group": group, "flux_frac": f, "r50_low": lo,
                            "r50_high": hi, **_cell([r for r, rb in sel if rb == b
                                                     and float(r["flux_frac"]) == f]), **extra})
        for f in fluxes:
            out.append({"margin": "flux_frac", "group": group, "flux_frac": f,
                        "r50_low": edges[0], "r50_high": edges[-1],
                        **_cell([r for r, _ in sel if float(r["flux_frac"]) == f]), **extra})
        for b, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
            out.append({"margin": "radius", "group": group, "flux_frac": math.nan,
                        "r50_low": lo, "r50_high": hi,
                        **_cell([r for r, rb in sel if rb == b
                                 and float(r["flux_frac"]) in fluxes]), **extra})
    return out


def write_selection_function(table: Sequence[Dict], output_dir: str | os.PathLike,
                             settings: Optional[Dict] = None) -> Dict[str, Path]:
    """Write ``selection_function.csv`` (the table, :data:`SELECTION_COLUMNS`) and
    ``selection_function.json`` (``settings``, e.g. the injection and matching rules, and the
    same rows) into ``output_dir``; returns their paths."""
    out = Path(output_dir)
    paths = {"csv": out / CSV_NAME, "json": out / JSON_NAME}
    frame = pd.DataFrame(list(table), columns=SELECTION_COLUMNS)
    atomic_write_text(paths["csv"], frame.to_csv(index=False))
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in frame.to_dict("records")]
    atomic_write_text(paths["json"], json.dumps({"settings": settings or {}, "rows": rows},
                                                indent=2, default=str))
    return paths


def resolve_selection_function(spec: str) -> Optional[Path]:
    """The CSV that ``INFERENCE.SELECTION_FUNCTION`` names: a path, or ``zoo:<name>`` (that
    model-zoo entry's ``selection_function`` file); None for "".

    Raises:
        FileNotFoundError: the file is not there, or the zoo entry has no selection function.
    """
    from clump_d2 import model_zoo  # reads entries only; imports nothing else of clump_d2

    spec = str(spec or "").strip()
    if not spec:
        return None
    if spec.startswith(model_zoo.ZOO_PREFIX):
        entry = model_zoo.get_entry(spec)
        name = entry.card.get("selection_function")
        if not name:
            raise FileNotFoundError(f"INFERENCE.SELECTION_FUNCTION {spec}: model {entry.name!r} "
                                    "has no selection function in its card")
        path = entry.folder / name
    else:
        path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"INFERENCE.SELECTION_FUNCTION {spec}: {path} does not exist")
    return path


@dataclass
class SelectionFunction:
    """A selection-function table, read for per-clump detection probabilities.

    Attributes:
        table: the rows (:data:`SELECTION_COLUMNS`).
        band: the band of its flux fractions (e.g. ``r``).
        score_thresh: the operating point it was measured at (NaN if not recorded).
        source: where it was read from (for messages).
    """

    table: pd.DataFrame
    band: str
    score_thresh: float
    source: str = ""

    @classmethod
    def read(cls, path: str | os.PathLike) -> "SelectionFunction":
        """Read a ``selection_function.csv``.

        Raises:
            ValueError: a column is missing, or the table mixes bands.
        """
        table = pd.read_csv(path, dtype={"margin": str, "group": str, "band": str},
                            keep_default_na=False, na_values={
                                c: [""] for c in SELECTION_COLUMNS
                                if c not in ("margin", "group", "band")})
        missing = [c for c in SELECTION_COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(f"{path}: not a selection-function table (no column "
                             f"{', '.join(missing)})")
        bands = sorted(set(table["band"]))
        if len(bands) != 1:
            raise ValueError(f"{path}: expected one band, found {bands}")
        thresh = table["score_thresh"].dropna()
        return cls(table, bands[0], float(thresh.iloc[0]) if len(thresh) else math.nan,
                   os.fspath(path))

    @property
    def groups(self) -> List[str]:
        """The host groups of the table (``all`` first)."""
        return list(dict.fromkeys(self.table["group"]))

    @property
    def radius_edges(self) -> np.ndarray:
        cells = self.table[self.table["margin"] == "radius"].drop_duplicates("r50_low")
        return np.append(cells["r50_low"].to_numpy(float), cells["r50_high"].to_numpy(float)[-1])

    def ratio_column(self, band_names: Sequence[str], display: bool) -> Optional[str]:
        """The catalogue column holding the clump's flux fraction in the table's band:
        ``flux_ratio_<band>`` (FITS), or for a display image the gri composite's channel of
        that band (r -> ``flux_ratio_G``); None when the image has no such band."""
        band = GRI_DISPLAY_CHANNELS.get(self.band, self.band) if display else self.band
        return f"flux_ratio_{band}" if band in band_names else None

    def _curve(self, group: str, margin: str, r50_low: Optional[float]):
        """(log flux fractions, completeness) of the non-empty rows of one curve."""
        t = self.table
        sel = (t["group"] == group) & (t["margin"] == margin) & (t["n"] > 0)
        if r50_low is not None:
            sel &= np.isclose(t["r50_low"], r50_low)
        rows = t[sel].sort_values("flux_frac")
        return np.log(rows["flux_frac"].to_numpy(float)), rows["fraction"].to_numpy(float)

    def p_detect(self, flux_frac, distance_r50, group: str = ALL_HOSTS) -> np.ndarray:
        """Detection probability of clumps at measured flux fractions ``flux_frac`` and
        distances ``distance_r50`` (arrays of one length) in hosts of ``group`` (a group the
        table does not have counts as ``all``); see the module docstring."""
        flux = np.asarray(flux_frac, dtype=np.float64).reshape(-1)
        dist = np.asarray(distance_r50, dtype=np.float64).reshape(-1)
        if group not in self.groups:
            group = ALL_HOSTS
        edges = self.radius_edges
        fmin = float(self.table["flux_frac"].min())
        # A clump at or below zero flux is below every injection: clipped to the faintest.
        logf = np.log(np.maximum(np.where(np.isfinite(flux), flux, fmin), fmin))
        bins = np.clip(np.searchsorted(edges, dist, side="right") - 1, 0, len(edges) - 2)
        out = np.full(flux.shape, np.nan)
        for b in np.unique(bins):
            for g, margin, lo in ((group, "cell", edges[b]), (group, "flux_frac", None),
                                  (ALL_HOSTS, "cell", edges[b]), (ALL_HOSTS, "flux_frac", None)):
                xs, ys = self._curve(g, margin, lo)
                if len(xs):
                    break
            else:
                continue
            k = bins == b
            out[k] = np.interp(logf[k], xs, ys)  # np.interp clips to the end values
        out[~(np.isfinite(flux) & np.isfinite(dist))] = np.nan
        return out


__all__ = ["ALL_HOSTS", "CSV_NAME", "GRI_DISPLAY_CHANNELS", "JSON_NAME", "SELECTION_COLUMNS",
           "SelectionFunction", "radius_bin", "resolve_selection_function", "selection_table",
           "write_selection_function"]
