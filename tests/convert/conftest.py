"""Factories for the data tests: a synthetic Zooniverse export with known clumps, tiny images
and FITS files."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest

# The column layout of the real export in ../shared/realdata/zooniverse_export_sample
# (checked against its header by test_export_layout_matches_real_sample).
EXPORT_COLUMNS = ["classification_id", "user_name", "user_id", "user_ip", "workflow_id",
                  "workflow_name", "workflow_version", "created_at", "gold_standard", "expert",
                  "metadata", "annotations", "subject_data", "subject_ids"]


def make_synthetic_export(out_dir: Path, seed: int = 0, n_subjects: int = 30,
                          n_volunteers: int = 15, image_size: int = 400,
                          metadata_template: dict | None = None):
    """Write a Clump Scout-like classification export with known true clumps.

    Volunteers are noisy and partly wrong: each finds a true clump with p = 0.75, marks it
    with a Gaussian error of 0.25 PSF FWHM per axis, uses the right tool with p = 0.85;
    adds Poisson(0.4) false marks anywhere on the galaxy; marks the bulge with p = 0.2;
    10 % mark nothing at all.

    Returns:
        (csv path, subject table path, truth: {subject id: [(x, y, category)]}, fwhm map).
    """
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    centre = image_size / 2.0
    truth, fwhms, rows, subjects = {}, {}, [], []
    cid = 900000000
    for s in range(n_subjects):
        sid = str(40000000 + s)
        fwhm = float(rng.uniform(4.0, 10.0))
        fwhms[sid] = fwhm
        clumps = []
        n_true = int(rng.integers(0, 6))
        tries = 0
        while len(clumps) < n_true and tries < 500:
            tries += 1
            r, a = rng.uniform(2.5 * fwhm, 110.0), rng.uniform(0, 2 * np.pi)
            x, y = centre + r * np.cos(a), centre + r * np.sin(a)
            if all(np.hypot(x - cx, y - cy) > 3.0 * fwhm for cx, cy, _ in clumps):
                clumps.append((x, y, "odd_clump" if rng.random() < 0.3 else "clump"))
        truth[sid] = clumps
        subjects.append({"subject_id": sid, "file_name": f"{sid}.png", "psf_fwhm_px": fwhm})
        for v in range(n_volunteers):
            cid += 1
            marks = []
            if rng.random() > 0.10:
                for x, y, cat in clumps:
                    if rng.random() < 0.75:
                        right = rng.random() < 0.85
                        tool = (1 if cat == "odd_clump" else 0) if right else (
                            0 if cat == "odd_clump" else 1)
                        marks.append((x + rng.normal(0, 0.25 * fwhm),
                                      y + rng.normal(0, 0.25 * fwhm), tool))
                for _ in range(rng.poisson(0.4)):
                    r, a = rng.uniform(0, 130.0), rng.uniform(0, 2 * np.pi)
                    marks.append((centre + r * np.cos(a), centre + r * np.sin(a),
                                  int(rng.integers(0, 2))))
                if rng.random() < 0.2:
                    marks.append((centre + rng.normal(0, 1.0), centre + rng.normal(0, 1.0), 0))
            rows.append(_row(cid, f"volunteer{v}", v + 1000, sid, marks, image_size,
                             metadata_template))
    # Bad input the reader must count: an unknown tool, a mark outside the image, a NaN
    # coordinate, malformed JSON, a repeated classification id, a volunteer seen twice.
    sid0 = str(40000000)
    rows.append(_row(cid + 1, "extra1", 1, sid0, [(10.0, 10.0, 7)], image_size,
                     metadata_template))
    rows.append(_row(cid + 2, "extra2", 2, sid0, [(-5.0, 20.0, 0), (image_size + 3, 5, 0)],
                     image_size, metadata_template))
    bad = _row(cid + 3, "extra3", 3, sid0, [], image_size, metadata_template)
    bad["annotations"] = '[{"task": "T0", "value": [{"x": 1,'
    rows.append(bad)
    rows.append(dict(rows[0]))  # repeated classification id
    again = _row(cid + 4, "volunteer0", 1000, sid0, [(50.0, 50.0, 0)], image_size,
                 metadata_template)
    rows.append(again)  # volunteer 0 classifying subject 0 a second time
    nan_row = _row(cid + 5, "extra5", 5, sid0, [(150.0, 150.0, 0)], image_size,
                   metadata_template)
    nan_row["annotations"] = nan_row["annotations"].replace("150.0", "NaN", 1)
    rows.append(nan_row)
    export = out_dir / "clump-scout-classifications.csv"
    with export.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=EXPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    table = out_dir / "subjects.csv"
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["subject_id", "file_name", "psf_fwhm_px"])
        writer.writeheader()
        writer.writerows(subjects)
    return export, table, truth, fwhms


def _row(cid, user, user_id, sid, marks, size, template):
    metadata = dict(template or {"source": "api", "user_language": "en"})
    metadata["subject_dimensions"] = [{"clientWidth": size, "clientHeight": size,
                                       "naturalWidth": size, "naturalHeight": size}]
    value = [{"x": float(x), "y": float(y), "tool": int(t), "frame": 0, "details": [],
              "tool_label": ["Clump", "Odd clump"][t] if t in (0, 1) else "?"}
             for x, y, t in marks]
    annotations = [{"task": "T0", "task_label": "Mark the clumps", "value": value},
                   {"task": "T1", "task_label": "Anything odd?", "value": "No"}]
    subject_data = {sid: {"retired": None, "#local_id": sid}}
    return {"classification_id": cid, "user_name": user, "user_id": user_id,
            "user_ip": f"ip{user_id}", "workflow_id": 17, "workflow_name": "Clump Scout",
            "workflow_version": "1.2", "created_at": "2020-01-01 00:00:00 UTC",
            "gold_standard": "", "expert": "", "metadata": json.dumps(metadata),
            "annotations": json.dumps(annotations), "subject_data": json.dumps(subject_data),
            "subject_ids": sid}


@pytest.fixture
def synthetic_export(tmp_path):
    return make_synthetic_export(tmp_path / "export")


@pytest.fixture
def export_factory():
    """``make_synthetic_export`` (for tests that need other seeds or a metadata template)."""
    return make_synthetic_export
