"""Catalogue positions turned the wrong way: the orientation check and the opt-in correction
(clump_d2.convert.gzh_s82.orientation_scores / rotate_positions, eval_real.py --rotate-galaxy)."""
import json

import pytest

from clump_d2.convert.gzh_s82 import (_quarter_turn, catalogue_coco, fold_splits,
                                      orientation_scores, rotate_positions)

#: The GZH S82 galaxy whose catalogue positions lie a quarter turn from its disc.
TURNED = "8647474690867200065"


def test_quarter_turns():
    assert _quarter_turn(110.0, 100.0, 100.0, 100.0, 1) == (100.0, 90.0)
    assert _quarter_turn(110.0, 100.0, 100.0, 100.0, 2) == (90.0, 100.0)
    assert _quarter_turn(13.0, 7.0, 100.0, 100.0, 4) == (13.0, 7.0)


def test_rotate_positions_moves_clumps_boxes_and_rejects_of_the_named_galaxy_only():
    coco = {"images": [{"id": 1, "galaxy_id": "g1", "width": 200, "height": 200,
                        "rejected_candidates": [[150.0, 100.0]]},
                       {"id": 2, "galaxy_id": "g2", "width": 200, "height": 200}],
            "annotations": [{"id": 1, "image_id": 1, "bbox": [140.0, 95.0, 20.0, 10.0],
                             "x": 150.0, "y": 100.0},
                            {"id": 2, "image_id": 2, "bbox": [140.0, 95.0, 20.0, 10.0],
                             "x": 150.0, "y": 100.0}]}
    out = rotate_positions(coco, {"g1": 1})
    a, b = out["annotations"]
    assert (a["x"], a["y"]) == (100.0, 50.0) and a["rotated_quarter_turns"] == 1
    assert a["bbox"] == [95.0, 40.0, 10.0, 20.0]  # centre turned, sides swapped
    assert out["images"][0]["rejected_candidates"] == [[100.0, 50.0]]
    assert (b["x"], b["y"]) == (150.0, 100.0) and "rotated_quarter_turns" not in b
    assert coco["annotations"][0]["x"] == 150.0  # the input is not changed
    with pytest.raises(ValueError, match="not in the catalogue: \\['nope'\\]"):
        rotate_positions(coco, {"nope": 1})


def test_the_turned_galaxy_is_found_and_corrected(realdata):
    gzh = realdata / "gzh_s82_clumps"
    coco, _ = catalogue_coco(gzh)
    images = gzh / "jpegs"
    rows = orientation_scores(coco, images)
    top = rows[0]
    assert top["galaxy_id"] == TURNED and top["clumps"] == 26
    assert top["best_turns"] == 1 and top["gain"] > 15  # on the disc, a quarter turn away
    assert all(r["gain"] < 12 for r in rows[1:])  # no other galaxy (one-clump ones are noise)
    fixed, _ = catalogue_coco(gzh, rotations={TURNED: 1})
    assert fixed["info"]["rotations"] == {TURNED: 1}
    again = {r["galaxy_id"]: r for r in orientation_scores(fixed, images)}
    assert again[TURNED]["best_turns"] == 0
    # the same clumps, the same folds
    assert len(fixed["annotations"]) == len(coco["annotations"])
    for name in ("train", "test", "train_a", "test_b"):
        ids = [{im["galaxy_id"] for im in f[name][0]["images"]}
               for f in (fold_splits(coco), fold_splits(fixed))]
        assert ids[0] == ids[1]


def test_tool_prepare_with_a_turn_and_the_orientation_verb(realdata, tmp_path, load_tool,
                                                           capsys):
    tool = load_tool("eval_real")
    with pytest.raises(SystemExit) as e:
        tool.main(["prepare", "--gzh", str(realdata / "gzh_s82_clumps"), "--out",
                   str(tmp_path / "x"), "--rotate-galaxy", f"{TURNED}=5"])
    assert e.value.code == 2 and "is not GALAXY_ID=QUARTER_TURNS" in capsys.readouterr().err
    out = tmp_path / "s82rot"
    tool.main(["prepare", "--gzh", str(realdata / "gzh_s82_clumps"), "--out", str(out),
               "--rotate-galaxy", f"{TURNED}=1"])
    coco = json.loads((out / "annotations" / "all.json").read_text())
    assert coco["info"]["rotations"] == {TURNED: 1}
    tool.main(["orientation", "--dataset-dir", str(out), "--output", str(tmp_path / "o.md")])
    table = (tmp_path / "o.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith(f"| {TURNED} |"))
    assert row.split("|")[7].strip() == "0"  # best turn: none, once corrected
