"""Raw Zooniverse export -> consensus clumps: the reader, the aggregation, bad input."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clump_d2.convert.aggregation import (AggregationParams, SubjectOptions, aggregate_subject,
                                       convert_export)
from clump_d2.convert.zooniverse import ExportOptions, read_export

EXPORT_COLUMNS = ["classification_id", "user_name", "user_id", "user_ip", "workflow_id",
                  "workflow_name", "workflow_version", "created_at", "gold_standard", "expert",
                  "metadata", "annotations", "subject_data", "subject_ids"]


def _match(coco, truth, fwhms):
    """One-to-one matching of consensus clumps to the truth within 1 PSF FWHM."""
    errors, n_true, n_matched, n_spurious, n_class_ok = [], 0, 0, 0, 0
    for im in coco.images:
        sid = im["galaxy_id"]
        anns = [a for a in coco.annotations if a["image_id"] == im["id"]]
        used = set()
        n_true += len(truth[sid])
        for x, y, category in truth[sid]:
            cands = sorted((np.hypot(a["x"] - x, a["y"] - y), i) for i, a in enumerate(anns)
                           if i not in used)
            if cands and cands[0][0] < fwhms[sid]:
                d, i = cands[0]
                used.add(i)
                n_matched += 1
                errors.append(d / fwhms[sid])
                n_class_ok += anns[i]["category_id"] == (2 if category == "odd_clump" else 1)
        n_spurious += len(anns) - len(used)
    return n_true, n_matched, n_spurious, n_class_ok, np.array(errors)


def test_synthetic_export_is_aggregated_back_to_the_truth(synthetic_export):
    export, table, truth, fwhms = synthetic_export
    coco, report = convert_export(export, ExportOptions(task="T0"),
                                  SubjectOptions(subject_table=str(table)))
    n_true, n_matched, n_spurious, n_class_ok, err = _match(coco, truth, fwhms)
    # Tolerance: >= 97 % of true clumps found, <= 3 % spurious, >= 95 % right class,
    # median position error <= 0.15 FWHM, worst <= 0.5 FWHM (measured, seed 0: 82/82 found,
    # 0 spurious, 82/82 right class, median 0.12, worst 0.30 FWHM).
    assert n_true == 82
    assert n_matched >= 0.97 * n_true
    assert n_spurious <= 0.03 * n_true
    assert n_class_ok >= 0.95 * n_matched
    assert np.median(err) <= 0.15 and err.max() <= 0.5
    assert len(coco.images) == 30  # subjects without clumps are kept (negatives)
    assert sum(1 for s in truth.values() if not s) == sum(
        1 for im in coco.images if not any(a["image_id"] == im["id"] for a in coco.annotations))
    ann = coco.annotations[0]
    for key in ("n_volunteers", "volunteer_fraction", "mean_tool", "n_marks", "scatter_px"):
        assert key in ann
    counts = report.as_dict()["counts"]
    for tally in counts.values():
        assert tally["kept"] + tally["dropped_total"] == tally["read"]
    # the bad rows and marks the factory planted are each counted under their reason
    assert counts["classifications"]["dropped"] == {"malformed_json": 1,
                                                    "duplicate_classification": 1,
                                                    "repeat_volunteer": 1}
    assert counts["marks"]["dropped"]["unknown_tool"] == 1
    assert counts["marks"]["dropped"]["outside_image"] == 2
    assert counts["marks"]["dropped"]["nan_coordinates"] == 1
    assert counts["marks"]["dropped"]["bulge"] > 50  # ~20 % of volunteers mark the bulge
    assert counts["subjects"] == {"read": 30, "kept": 30, "dropped": {}, "dropped_total": 0}
    assert counts["clusters"]["kept"] == len(coco.annotations)


def test_export_layout_matches_the_real_sample(realdata, tmp_path, export_factory):
    real = realdata / "zooniverse_export_sample" / "cls_export.csv"
    header = pd.read_csv(real, nrows=0).columns.tolist()
    assert header == EXPORT_COLUMNS
    template = json.loads(pd.read_csv(real, dtype=str).loc[0, "metadata"])
    export, *_ = export_factory(tmp_path, n_subjects=2, metadata_template=template)
    assert pd.read_csv(export, nrows=0).columns.tolist() == header
    # the real export (question tasks only) parses: 7 classifications, no point marks
    classifications, subject_data, subjects = read_export(real)
    assert len(classifications) == 7 and all(not c.marks for c in classifications)
    assert classifications[0].natural_size == (1200, 900)
    assert "96588114" in subject_data and "ZTF_URL" in subject_data["96588114"]


def test_strict_mode_and_bad_subject_tables_name_file_and_line(synthetic_export, tmp_path):
    export, table, *_ = synthetic_export
    with pytest.raises(ValueError, match=r"clump-scout-classifications\.csv: line \d+: "
                       r"classification \d+: malformed JSON"):
        convert_export(export, ExportOptions(on_bad_row="error", task="T0"),
                       SubjectOptions(subject_table=str(table)))
    dup = tmp_path / "dup.csv"
    rows = pd.read_csv(table)
    pd.concat([rows, rows.iloc[[3]]]).to_csv(dup, index=False)
    with pytest.raises(ValueError, match=r"dup\.csv: duplicate subject id.*40000003.*lines"):
        convert_export(export, subject_options=SubjectOptions(subject_table=str(dup)))
    with pytest.raises(ValueError, match="missing column"):
        pd.DataFrame({"x": [1]}).to_csv(tmp_path / "notexport.csv", index=False)
        read_export(tmp_path / "notexport.csv")


def test_subjects_without_psf_or_image_are_counted(synthetic_export, tmp_path):
    export, table, *_ = synthetic_export
    coco, report = convert_export(export)  # no subject table, no default PSF
    c = report.as_dict()["counts"]
    assert c["subjects"]["dropped"] == {"missing_psf": 30} and not coco.images
    assert c["marks"]["kept"] == 0 and c["marks"]["dropped"]["subject_dropped"] > 900
    images = tmp_path / "imgs"
    images.mkdir()
    Image.new("RGB", (16, 16)).save(images / "40000001.png")  # the smallest side it takes
    coco, report = convert_export(export, subject_options=SubjectOptions(
        default_psf_fwhm_px=6.0), image_dir=images)
    c = report.as_dict()["counts"]
    assert c["subjects"]["kept"] == 1 and c["subjects"]["dropped"] == {"missing_image": 29}
    assert [im["id"] for im in coco.images] == [40000001]


def test_aggregate_subject_thresholds():
    rng = np.random.default_rng(0)
    # 10 volunteers: 6 mark clump A (tool 0), 2 mark clump B (odd tool), 1 stray mark.
    a = np.array([50.0, 50.0]) + rng.normal(0, 0.5, (6, 2))
    b = np.array([80.0, 60.0]) + rng.normal(0, 0.5, (2, 2))
    xy = np.vstack([a, b, [[10.0, 90.0]]])
    tools = np.array([0] * 6 + [1] * 2 + [0])
    vols = [f"v{i}" for i in range(9)]
    params = AggregationParams(min_volunteer_fraction=0.3)
    clumps, n_clusters = aggregate_subject(xy, tools, vols, 10, 5.0, params)
    assert n_clusters == 3 and len(clumps) == 1  # B: 2/10 < 0.3; the stray mark: 1
    assert clumps[0].category == "clump" and clumps[0].n_volunteers == 6
    assert abs(clumps[0].x - 50) < 1 and abs(clumps[0].y - 50) < 1
    clumps, _ = aggregate_subject(xy, tools, vols, 10, 5.0,
                                  AggregationParams(min_volunteer_fraction=0.2))
    assert [c.category for c in clumps] == ["clump", "odd_clump"]
    # one volunteer clicking five times on one spot is one vote, not five
    clumps, _ = aggregate_subject(np.full((5, 2), 30.0), np.zeros(5), ["v0"] * 5, 10, 5.0,
                                  AggregationParams(min_volunteers=2, min_volunteer_fraction=0))
    assert clumps == []
