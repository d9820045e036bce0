"""The selection-function table from hand-made injection rows (counts, fractions and Wilson
intervals per cell and margin), and the per-clump detection probability read from it
(interpolation in log flux fraction, radius bins, clipping, groups, fallbacks)."""
import math

import numpy as np
import pandas as pd
import pytest

from clump_d2.evaluation.selection import (SelectionFunction, radius_bin, selection_table,
                                           write_selection_function)

EDGES = [0.3, 0.7, 2.0]


def _rows():
    def r(group, flux, dist, *recovered):
        return [{"group": group, "flux_frac": flux, "distance_r50": dist, "recovered": k}
                for k in recovered]

    return (r("spiral", 0.01, 0.5, True, False, False) + r("spiral", 0.01, 1.0, True, True)
            + r("spiral", 0.1, 0.5, True) + r("non_spiral", 0.01, 0.5, False, False)
            + r("non_spiral", 0.1, 2.0, True)  # on the last edge: in the last bin
            + r("spiral", 0.1, 2.5, True)  # outside the bins: not counted
            + r("", 0.1, 1.0, False))  # no group: in "all" only


def _find(table, margin, group, flux=None, lo=None):
    found = [t for t in table if t["margin"] == margin and t["group"] == group
             and (flux is None or t["flux_frac"] == flux) and (lo is None or t["r50_low"] == lo)]
    assert len(found) == 1, (margin, group, flux, lo)
    return found[0]


def test_table_counts_fractions_and_wilson_intervals_per_cell():
    table = selection_table(_rows(), [0.01, 0.1], EDGES, band="r", score_thresh=0.65)
    assert [t["group"] for t in table][::8] == ["all", "non_spiral", "spiral"]
    assert len(table) == 3 * (4 + 2 + 2)  # per group: 4 cells, 2 flux, 2 radius margins
    assert all(t["band"] == "r" and t["score_thresh"] == 0.65 for t in table)
    # Wilson 68 % (z = 1) worked out by hand: 1/5 -> 0.25 -+ sqrt(0.042) / 1.2,
    # 2/2 -> [2/3, 1], 1/2 -> 1/2 -+ sqrt(3)/6, 1/1 -> [1/2, 1]
    h15 = math.sqrt(0.042) / 1.2
    expect = {  # (group, flux, r50_low): (recovered, n, low, high)
        ("all", 0.01, 0.3): (1, 5, 0.25 - h15, 0.25 + h15),
        ("all", 0.01, 0.7): (2, 2, 2 / 3, 1.0),
        ("all", 0.1, 0.3): (1, 1, 0.5, 1.0),
        ("all", 0.1, 0.7): (1, 2, 0.5 - math.sqrt(3) / 6, 0.5 + math.sqrt(3) / 6),
        ("spiral", 0.01, 0.3): (1, 3, None, None),
        ("non_spiral", 0.1, 0.7): (1, 1, 0.5, 1.0),
        ("non_spiral", 0.01, 0.7): (0, 0, None, None),
    }
    for (group, flux, lo), (k, n, low, high) in expect.items():
        cell = _find(table, "cell", group, flux, lo)
        assert (cell["recovered"], cell["n"]) == (k, n)
        assert cell["r50_high"] == {0.3: 0.7, 0.7: 2.0}[lo]
        if n == 0:
            assert math.isnan(cell["fraction"]) and math.isnan(cell["low"])
            continue
        assert cell["fraction"] == pytest.approx(k / n)
        if low is not None:
            assert (cell["low"], cell["high"]) == pytest.approx((low, high), abs=1e-12)
    # margins count the clumps of the cells: the flux margin over both bins, and the radius
    # margin over both flux fractions; the clump outside the bins is in none
    flux = _find(table, "flux_frac", "all", 0.1)
    assert (flux["recovered"], flux["n"], flux["r50_low"], flux["r50_high"]) == (2, 3, 0.3, 2.0)
    rad = _find(table, "radius", "all", lo=0.7)
    assert (rad["recovered"], rad["n"]) == (3, 4) and math.isnan(rad["flux_frac"])
    assert _find(table, "flux_frac", "spiral", 0.1)["n"] == 1
    assert sum(t["n"] for t in table if t["margin"] == "cell" and t["group"] == "all") == 10


def test_radius_bins_and_bad_edges():
    assert [radius_bin(d, EDGES) for d in (0.29, 0.3, 0.69, 0.7, 2.0, 2.01)] == \
        [None, 0, 0, 1, 1, None]
    with pytest.raises(ValueError, match="increasing"):
        selection_table(_rows(), [0.01], [0.3, 0.3, 1.0])


def _written(tmp_path, rows, fluxes=(0.01, 0.1)):
    table = selection_table(rows, fluxes, EDGES, band="r", score_thresh=0.5)
    paths = write_selection_function(table, tmp_path, {"note": "test"})
    return SelectionFunction.read(paths["csv"])


def _hand_rows():
    """all hosts: bin 0 completes 1/5 at 1 % and 4/5 at 10 %; bin 1: 1/2 and 2/2; spiral
    hosts differ in bin 0 and have no injection in bin 1."""
    out = []
    for group, flux, dist, k, n in (("non_spiral", 0.01, 0.5, 0, 2), ("spiral", 0.01, 0.5, 1, 3),
                                    ("non_spiral", 0.1, 0.5, 3, 3), ("spiral", 0.1, 0.5, 1, 2),
                                    ("non_spiral", 0.01, 1.5, 1, 2),
                                    ("non_spiral", 0.1, 1.5, 2, 2)):
        out += [{"group": group, "flux_frac": flux, "distance_r50": dist,
                 "recovered": j < k} for j in range(n)]
    return out


def test_p_detect_interpolates_in_log_flux_and_clips(tmp_path):
    sf = _written(tmp_path, _hand_rows())
    assert sf.band == "r" and sf.score_thresh == 0.5
    assert sf.groups == ["all", "non_spiral", "spiral"]
    np.testing.assert_allclose(sf.radius_edges, EDGES)
    flux = [math.sqrt(0.001), 0.02, 0.001, 0.5, 0.0, -0.01, 0.01, np.nan, 0.05]
    dist = [0.5, 1.0, 0.5, 0.5, 1.0, 0.1, 9.0, 1.0, np.nan]
    got = sf.p_detect(flux, dist)
    expected = [0.5,  # half-way in log between 1/5 and 4/5
                0.5 + 0.5 * math.log(2) / math.log(10),  # bin 1: 1/2 -> 1 over a decade
                0.2, 0.8,  # clipped below and above the injected fractions
                0.5, 0.2,  # zero / negative flux: below every injection; 0.1 R50 -> bin 0
                0.5,  # 9 R50 -> the last bin
                np.nan, np.nan]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # spiral hosts: their own bin-0 cells (1/3, 1/2); no spiral injection in bin 1, so the
    # spiral flux margin (1/3 at 1 %, 1/2 at 10 %); an unknown class is "all"
    spiral = sf.p_detect([0.01, math.sqrt(0.001), 0.01], [0.5, 0.5, 1.5], "spiral")
    np.testing.assert_allclose(spiral, [1 / 3, (1 / 3 + 1 / 2) / 2, 1 / 3], atol=1e-12)
    np.testing.assert_allclose(sf.p_detect([0.01], [0.5], "elliptical"), [0.2])


def test_ratio_column_by_band_and_a_table_that_is_not_one(tmp_path):
    sf = _written(tmp_path, _hand_rows())
    assert sf.ratio_column(["R", "G", "B"], display=True) == "flux_ratio_G"  # gri: G = r
    assert sf.ratio_column(["g", "r", "i"], display=False) == "flux_ratio_r"
    assert sf.ratio_column(["u", "g"], display=False) is None
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"group": ["all"], "fraction": [1.0]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="not a selection-function table"):
        SelectionFunction.read(bad)
