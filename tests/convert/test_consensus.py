"""Consensus tables -> COCO: the real Clump Scout boxes, the edge rule, and bad rows."""
import json

import pandas as pd
import pytest
from PIL import Image

from clump_d2.convert.consensus import (ConsensusOptions, convert_consensus_table,
                                     convert_consensus_tables)

COLUMNS = ["image_id", "local_ids", "filename", "label", "label_text", "x1", "x2", "y1", "y2"]


def _table(tmp_path, rows, name="t.csv"):
    path = tmp_path / name
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    return path


def _row(subject, x1, y1, side=10.0, label=1, key=None):
    return [subject, key or subject * 10, f"x/{subject}.png", label, "clumpy", x1, x1 + side,
            y1, y1 + side]


def test_real_consensus_tables_reproduce_source_counts(realdata):
    folder = realdata / "clumpscout_frcnn_labels"
    out = convert_consensus_tables({"train": folder / "imageGroups_train.csv",
                                    "val": folder / "imageGroups_valid.csv"})
    counts = {s: r.as_dict()["counts"] for s, (_, r) in out.items()}
    # SOURCE.md: train 13,969 images / 32,270 boxes, valid 5,987 / 13,894; 1-9 per image.
    assert counts["train"]["images"]["read"] == 13969
    assert counts["val"]["images"]["read"] == 5987
    assert counts["train"]["boxes"]["read"] == 32270
    assert counts["val"]["boxes"]["read"] == 13894
    assert sum(c["images"]["read"] for c in counts.values()) == 19956
    assert sum(c["boxes"]["read"] for c in counts.values()) == 46164
    assert out["train"][1].info["boxes_per_image_read"] == [1, 9]
    assert out["val"][1].info["boxes_per_image_read"] == [1, 9]
    for split, c in counts.items():
        for tally in c.values():
            assert tally["kept"] + tally["dropped_total"] == tally["read"]
    # SOURCE.md: 934 (train) / 395 (valid) box centres outside the crop -> dropped; of the
    # 1,449 / 634 boxes crossing the edge the rest (515 / 239) are clipped.
    assert counts["train"]["boxes"]["dropped"] == {"centre_outside_crop": 934}
    assert counts["val"]["boxes"]["dropped"] == {"centre_outside_crop": 395}
    assert counts["train"]["boxes"]["notes"]["clipped"] == 515
    assert counts["val"]["boxes"]["notes"]["clipped"] == 239
    coco, report = out["train"]
    assert len(coco.images) == 13969  # images left without boxes stay, as negatives
    assert report.info["images_without_boxes"] == 94
    labels = pd.Series([a["category_id"] for a in coco.annotations]).value_counts()
    assert labels.sum() == 32270 - 934
    for ann in coco.annotations[:2000]:
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 200 + 1e-9 and y + h <= 200 + 1e-9 and w > 0
    im = coco.images[0]
    assert im["width"] == im["height"] == 200 and im["crop"] == [100.0, 100.0, 200, 200]
    assert im["file_name"] == f"{im['image_key']}.png"


def test_edge_rule_clip_or_drop_and_full_frame(tmp_path):
    path = _table(tmp_path, [
        _row(1, 50, 50),  # inside
        _row(1, -3, 80),  # crosses the left edge, centre inside -> clipped to x = 0
        _row(1, 195, 195),  # centre at 200 -> outside the [0, 200) crop -> dropped
        _row(2, -20, 10),  # centre outside -> dropped, image 2 kept without boxes
    ])
    coco, report = convert_consensus_table(path)
    c = report.as_dict()["counts"]
    assert c["boxes"] == {"read": 4, "kept": 2, "dropped": {"centre_outside_crop": 2},
                          "dropped_total": 2, "notes": {"clipped": 1}}
    assert [a["bbox"] for a in coco.annotations] == [[50, 50, 10, 10], [0, 80, 7, 10]]
    assert coco.annotations[1]["clipped"] is True
    assert len(coco.images) == 2 and report.info["images_without_boxes"] == 1
    full, _ = convert_consensus_table(path, ConsensusOptions(frame="full"))
    # in the full 400 px frame nothing crosses an edge: all four boxes, shifted by +100
    assert [a["bbox"][:2] for a in full.annotations] == [[150, 150], [97, 180], [295, 295],
                                                         [80, 110]]
    assert full.images[0]["width"] == 400 and "crop" not in full.images[0]


def test_bad_rows_are_counted_drops_or_errors_naming_file_and_row(tmp_path):
    rows = [_row(1, 50, 50), _row(1, 20, 20, label=7), _row(1, 30, 30, side=0.0),
            _row(2, float("nan"), 40), _row(2, 60, 60), _row(2, 60, 60)]
    path = _table(tmp_path, rows)
    coco, report = convert_consensus_table(path)
    c = report.as_dict()["counts"]["boxes"]
    assert c["read"] == 6 and c["kept"] == 2
    assert c["dropped"] == {"unknown_label": 1, "non_positive_size": 1, "nan_coordinates": 1,
                            "duplicate_box": 1}
    with pytest.raises(ValueError, match=r"t\.csv: row 2 \(line 3\): label '7'"):
        convert_consensus_table(path, ConsensusOptions(on_bad_row="error"))


def test_duplicate_subjects_and_inconsistent_ids_are_errors(tmp_path):
    a = _table(tmp_path, [_row(1, 50, 50)], "a.csv")
    b = _table(tmp_path, [_row(1, 60, 60), _row(2, 60, 60)], "b.csv")
    with pytest.raises(ValueError, match=r"subject 1 is in both .*a\.csv and .*b\.csv"):
        convert_consensus_tables({"train": a, "val": b})
    c = _table(tmp_path, [_row(3, 50, 50, key=30), _row(3, 70, 70, key=31)], "c.csv")
    with pytest.raises(ValueError, match=r"c\.csv: row 2 \(line 3\): subject 3 names image"):
        convert_consensus_table(c)
    with pytest.raises(ValueError, match="missing column"):
        pd.DataFrame({"a": [1]}).to_csv(tmp_path / "d.csv", index=False)
        convert_consensus_table(tmp_path / "d.csv")
    (tmp_path / "e.pkl").write_bytes(b"\x80")
    with pytest.raises(ValueError, match="pickles are not read"):
        convert_consensus_table(tmp_path / "e.pkl")


def test_missing_images_are_dropped_with_their_boxes(tmp_path):
    path = _table(tmp_path, [_row(1, 50, 50), _row(2, 60, 60), _row(2, 80, 80)])
    images = tmp_path / "png"
    images.mkdir()
    Image.new("RGB", (16, 16)).save(images / "10.png")  # the smallest side the reader takes
    coco, report = convert_consensus_table(path, image_dir=images)
    c = report.as_dict()["counts"]
    assert c["images"]["dropped"] == {"missing_image": 1}
    assert c["boxes"]["dropped"] == {"missing_image": 2} and c["boxes"]["kept"] == 1
    json.dumps(coco.to_dict())  # serialisable
