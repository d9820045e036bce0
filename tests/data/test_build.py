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


def test_sequential_loader_keeps_input_order_and_errors():
    """Catalogue inference: all records, in order, in batches; the mapper's error records pass
    through as items (the loader adds no error handling of its own)."""
    records = [{"galaxy_id": str(i)} for i in range(7)]

    def mapper(r):
        return dict(r, error="bad") if r["galaxy_id"] == "3" else dict(r, image=int(r["galaxy_id"]))

    batches = list(build_batched_test_loader(records, mapper, batch_size=3, sequential=True))
    assert [[d["galaxy_id"] for d in b] for b in batches] == [["0", "1", "2"], ["3", "4", "5"],
                                                             ["6"]]
    assert batches[1][0]["error"] == "bad" and batches[2][0]["image"] == 6
