"""Real-data evaluation end to end on a tiny subset of the GZH Stripe 82 galaxies."""
import json

import numpy as np
import pytest
from PIL import Image

from clump_d2.realdata import CROP_OFFSET, CROP_SIZE, Method, evaluate_methods, prepare_gzh_s82

N_GALAXIES = 6


@pytest.fixture(scope="module")
def tiny_gzh(realdata, tmp_path_factory):
    from clump_d2.data.datasets import register_clump_dataset

    out = tmp_path_factory.mktemp("gzhtiny")
    paths = prepare_gzh_s82(realdata / "gzh_s82_clumps", out, galaxies=N_GALAXIES)
    for split in ("train", "test"):
        register_clump_dataset(f"gzhtiny_{split}", paths[split], out / "images")
    return out, paths


def test_prepare_crop_frame_and_split(tiny_gzh):
    out, paths = tiny_gzh
    full = json.loads(paths["all"].read_text())
    assert len(full["images"]) == N_GALAXIES
    train = json.loads(paths["train"].read_text())
    test = json.loads(paths["test"].read_text())
    assert {i["id"] for i in train["images"]}.isdisjoint({i["id"] for i in test["images"]})
    assert len(train["images"]) + len(test["images"]) == N_GALAXIES
    assert len(train["annotations"]) + len(test["annotations"]) == len(full["annotations"])
    for im in full["images"]:
        assert im["crop"] == [CROP_OFFSET, CROP_OFFSET, CROP_SIZE, CROP_SIZE]
        assert im["width"] == im["height"] == CROP_SIZE and im["full_width"] == 424
        assert 1.5 < im["psf_fwhm_px"] < 40
    for a in full["annotations"]:
        x, y, w, h = a["bbox"]
        assert 0 <= x and 0 <= y and x + w <= CROP_SIZE + 1e-6 and y + h <= CROP_SIZE + 1e-6
        # the clump position moved with the crop and sits in its box
        assert x <= a["x"] <= x + w and y <= a["y"] <= y + h


def test_evaluation_table_matches_a_direct_count(tiny_gzh, tmp_path, tiny_model_opts):
    """Baseline + an (untrained) tiny network through the evaluator; the baseline's numbers
    equal matching find_clumps' boxes on the crops by hand at the same threshold."""
    from clump_d2.baselines import find_clumps
    from clump_d2.evaluation.matching import MatchCounts, count_matches

    out, paths = tiny_gzh
    opts = tiny_model_opts(tmp_path / "model")
    methods = [Method("classical_baseline", kind="baseline"),
               Method("tiny_random", config="configs/RealData/sim_sdss_r18.yaml", weights="",
                      opts=opts)]
    rows = evaluate_methods(methods, "gzhtiny_train", "gzhtiny_test", tmp_path / "eval",
                            "configs/RealData/sim_sdss_r18.yaml")
    test = json.loads(paths["test"].read_text())
    assert [r["method"] for r in rows] == ["classical_baseline", "tiny_random"]
    for r in rows:
        assert r["n_true"] == len(test["annotations"])
        for k in ("completeness", "purity", "F1"):
            assert np.isnan(r[k]) or 0.0 <= r[k] <= 1.0
    base = rows[0]
    counts = MatchCounts()
    for im in test["images"]:
        rgb = np.asarray(Image.open(out / "images" / im["file_name"]).convert("RGB"))
        crop = rgb[CROP_OFFSET:CROP_OFFSET + CROP_SIZE, CROP_OFFSET:CROP_OFFSET + CROP_SIZE]
        found = find_clumps(crop, im["psf_fwhm_px"])
        truth = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                  a["bbox"][1] + a["bbox"][3]]
                 for a in test["annotations"] if a["image_id"] == im["id"]]
        counts += count_matches(truth, found["boxes"][found["scores"] >= base["thresh"] - 1e-9])
    assert base["n_matched"] == counts.n_matched and base["n_detections"] == counts.n_det
    assert base["n_matched"] >= 1  # the baseline finds some real clumps
    md = (tmp_path / "eval" / "real_eval.md").read_text()
    assert "classical_baseline" in md and "tiny_random" in md


def test_psf_sized_boxes_resizes_around_the_centre():
    import torch
    from detectron2.structures import Boxes, Instances

    from clump_d2.realdata import PsfSizedBoxes

    def one():
        inst = Instances((100, 100))
        inst.pred_boxes = Boxes(torch.tensor([[40.0, 50.0, 60.0, 60.0], [0.0, 0.0, 6.0, 4.0]]))
        inst.scores = torch.tensor([0.9, 0.8])
        return inst

    def fake(batched):
        return [{"instances": one()} for _ in batched]

    out = PsfSizedBoxes(fake)([{"psf_fwhm_px": 4.0}, {}])
    b = out[0]["instances"].pred_boxes.tensor
    assert torch.allclose(b[0], torch.tensor([45.0, 50.0, 55.0, 60.0]))  # side 2.5 x 4
    assert torch.allclose(b[1], torch.tensor([0.0, 0.0, 8.0, 7.0]))  # clipped at the edge
    kept = out[1]["instances"].pred_boxes.tensor  # no PSF: boxes unchanged
    assert torch.allclose(kept[0], torch.tensor([40.0, 50.0, 60.0, 60.0]))


def test_simulate_presets_write_their_label_populations(tmp_path):
    """eval_real simulate --preset: 'catalogue' labels clumps far below Clump Scout's ~3 %
    limit, 'clumpscout' does not; an unknown preset is refused by name."""
    from clump_d2.realdata import simulate_sdss

    fracs = {}
    for preset in ("clumpscout", "catalogue"):
        paths = simulate_sdss(tmp_path / preset, num_train=12, num_val=0, seed=1,
                              image_size=96, preset=preset)
        assert set(paths) == {"train"}
        coco = json.loads(paths["train"].read_text())
        assert len(coco["images"]) == 12
        fracs[preset] = [a["flux_frac"] for a in coco["annotations"]]
    assert min(fracs["clumpscout"]) >= 0.03 - 1e-9
    assert fracs["catalogue"] and np.median(fracs["catalogue"]) < 0.01
    with pytest.raises(ValueError, match="hst.*clumpscout"):
        simulate_sdss(tmp_path / "x", num_train=1, num_val=0, preset="hst")
