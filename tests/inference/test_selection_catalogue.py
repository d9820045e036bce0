"""The selection function in the catalogue: with the oracle stub model (true boxes, for the
bookkeeping only) on the tiny simulated PNGs, every clump's p_detect is the table's completeness
interpolated by hand at its measured r flux fraction (the G channel) and distance in host R50,
in its host class from the input; NaN without photometry."""
import math

import numpy as np
import pandas as pd

from clump_d2.evaluation.selection import selection_table, write_selection_function
from clump_d2.inference.catalogue import read_table
from clump_d2.inference.inputs import load_records
from clump_d2.inference.predict import run_catalogue

EDGES = [0.3, 0.7, 2.0]
FLUXES = [0.01, 0.1]
#: Completeness of the hand-made table: group -> radius bin -> (at 1 %, at 10 %).
COMPLETENESS = {"all": {0: (1 / 5, 4 / 5), 1: (1 / 2, 1.0)},
                "spiral": {0: (1 / 3, 1 / 2), 1: (1 / 3, 1 / 2)}}  # bin 1: the flux margin


def _table(path):
    rows = []
    for group, flux, dist, k, n in (("non_spiral", 0.01, 0.5, 0, 2), ("spiral", 0.01, 0.5, 1, 3),
                                    ("non_spiral", 0.1, 0.5, 3, 3), ("spiral", 0.1, 0.5, 1, 2),
                                    ("non_spiral", 0.01, 1.5, 1, 2),
                                    ("non_spiral", 0.1, 1.5, 2, 2)):
        rows += [{"group": group, "flux_frac": flux, "distance_r50": dist, "recovered": j < k}
                 for j in range(n)]
    return write_selection_function(selection_table(rows, FLUXES, EDGES, "r", 0.5),
                                    path)["csv"]


def _by_hand(flux, dist, group):
    """The table's completeness at one clump, worked out independently of the reader."""
    if not (np.isfinite(flux) and np.isfinite(dist)):
        return math.nan
    b = 0 if dist < EDGES[1] else 1  # below 0.3 R50: the first bin; beyond 2: the last
    lo, hi = COMPLETENESS.get(group, COMPLETENESS["all"])[b]
    t = (math.log(min(max(flux, FLUXES[0]), FLUXES[1])) - math.log(FLUXES[0])) / math.log(10)
    return lo + t * (hi - lo)


def _inputs(root, tmp_path, classes):
    import json

    coco = json.loads((root / "annotations" / "val.json").read_text())
    rows = [{"galaxy_id": str(im["id"]), "file_name": str(root / "images" / im["file_name"]),
             "psf_fwhm_px": im["psf_fwhm_px"], "centre_x": im["centre_x"],
             "centre_y": im["centre_y"], "host_class": c}
            for im, c in zip(coco["images"], classes)]
    table = tmp_path / "galaxies.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    return load_records(table), {r["galaxy_id"]: r for r in rows}


def test_catalogue_p_detect_is_the_interpolated_table(tiny_synthetic, inference_cfg, oracle,
                                                      coco_truth, tmp_path):
    sf = _table(tmp_path / "sf")
    classes = ["spiral", "spiral", "spiral", "", "non_spiral", "elliptical"]
    records, inputs = _inputs(tiny_synthetic, tmp_path, classes)
    assert records[0]["host_class"] == "spiral" and "host_class" not in records[3]
    truth = coco_truth(tiny_synthetic / "annotations" / "val.json")
    common = ("TEST.CLUMP_EVAL.SCORE_THRESH", "0.5", "INFERENCE.MERGE_FWHM", "0.0",
              "INFERENCE.NMS_THRESH", "0.0")
    cfg = inference_cfg(*common, "INFERENCE.SELECTION_FUNCTION", str(sf))
    out = tmp_path / "with" / "clumps.parquet"
    assert run_catalogue(cfg, records, out, model=oracle(truth), model_tag="oracle",
                         progress=False).complete
    clumps = read_table(out)
    clumps = clumps[clumps["clump_id"] > 0]
    assert len(clumps) == sum(len(b) for b, _ in truth.values()) and len(clumps) >= 6
    ok = clumps[np.isfinite(clumps["host_r50_px"])]
    assert len(ok) >= len(clumps) - 1 and (ok["host_r50_px"] >= ok["aperture_radius_px"]).all()
    for row in clumps.itertuples():
        galaxy = inputs[row.galaxy_id]
        distance = math.hypot(row.x - galaxy["centre_x"], row.y - galaxy["centre_y"])
        if np.isfinite(row.host_r50_px):
            assert abs(row.distance_r50 - distance / row.host_r50_px) < 1e-9
        group = galaxy["host_class"] if galaxy["host_class"] in ("spiral", "non_spiral") \
            else "all"
        expected = _by_hand(row.flux_ratio_G, row.distance_r50, group)
        if math.isnan(expected):
            assert math.isnan(row.p_detect)
        else:
            assert abs(row.p_detect - expected) < 1e-12
    # the clumps span the table: interpolated, clipped and both radius bins
    p = clumps["p_detect"].dropna()
    assert len(p) >= len(clumps) - 1 and p.between(0.2 - 1e-12, 1.0).all()

    # photometry off: the columns are there, NaN
    cfg = inference_cfg(*common, "INFERENCE.SELECTION_FUNCTION", str(sf),
                        "PHOTOMETRY.ENABLED", "False")
    off = tmp_path / "off" / "clumps.parquet"
    run_catalogue(cfg, records, off, model=oracle(truth), model_tag="oracle", progress=False)
    cat = read_table(off)
    assert cat[["host_r50_px", "distance_r50", "p_detect"]].isna().all().all()
