"""The batched test loader: every image once, in batches, same predictions as one by one."""
import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

from clump_d2.data.build import build_batched_test_loader
from clump_d2.data.mapper import ClumpDatasetMapper
from clump_d2.engine import build_config


def test_batched_loader_covers_every_image_once(tiny_synthetic, tiny_model_opts, tmp_path):
    cfg = build_config("", tiny_model_opts(tmp_path))
    mapper = ClumpDatasetMapper(cfg, is_train=False)
    batches = list(build_batched_test_loader("tinysim_val", mapper, batch_size=4))
    assert [len(b) for b in batches] == [4, 2]
    ids = [d["image_id"] for b in batches for d in b]
    assert sorted(ids) == sorted(d["image_id"] for d in DatasetCatalog.get("tinysim_val"))


def test_batched_inference_equals_one_by_one(tiny_synthetic, tiny_model_opts, tmp_path):
    torch.manual_seed(0)
    cfg = build_config("", tiny_model_opts(tmp_path) + ["MODEL.ROI_HEADS.SCORE_THRESH_TEST",
                                                         "0.0"])
    model = build_model(cfg).eval()
    mapper = ClumpDatasetMapper(cfg, is_train=False)
    with torch.inference_mode():
        batched = [o for b in build_batched_test_loader("tinysim_val", mapper, 3)
                   for o in model(b)]
        single = [model(b)[0] for b in build_batched_test_loader("tinysim_val", mapper, 1)]
    assert len(batched) == len(single) == 6
    for a, b in zip(batched, single):
        ia, ib = a["instances"], b["instances"]
        assert len(ia) == len(ib) > 0
        assert np.allclose(ia.pred_boxes.tensor.numpy(), ib.pred_boxes.tensor.numpy(), atol=1e-3)
        assert np.allclose(ia.scores.numpy(), ib.scores.numpy(), atol=1e-4)
