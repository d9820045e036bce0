"""GPU speed settings behind config keys: channels-last weights, autocast at inference, and
Detectron2's AMP training turned off (not crashed) on the CPU. Checked on the CPU, where
autocast runs in bfloat16."""
import logging

import pytest
import torch

import clump_d2  # noqa: F401  (compat layer first)
from detectron2.checkpoint import DetectionCheckpointer

from clump_d2.engine import ClumpTrainer, build_config
from clump_d2.inference.predict import build_inference_model
from clump_d2.modeling.runtime import AutocastInference, autocast_dtype

CONFIG = "configs/quickstart.yaml"


def _cfg(tiny_model_opts, tmp_path, *extra):
    return build_config(CONFIG, tiny_model_opts(tmp_path) + list(extra))


def _image(seed=0, size=96):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 255, (3, size, size), generator=g, dtype=torch.uint8)


def _boxes(model, image):
    model.eval()
    with torch.inference_mode():
        out = model([{"image": image, "height": 96, "width": 96}])[0]["instances"]
    return out.pred_boxes.tensor, out.scores


def test_channels_last_weights_give_the_same_detections(tiny_model_opts, tmp_path):
    torch.manual_seed(0)
    plain = ClumpTrainer.build_model(_cfg(tiny_model_opts, tmp_path))
    weights = tmp_path / "w.pth"
    torch.save({"model": plain.state_dict()}, weights)
    cl_cfg = _cfg(tiny_model_opts, tmp_path, "MODEL.CHANNELS_LAST", "True",
                  "MODEL.WEIGHTS", str(weights))
    fast = ClumpTrainer.build_model(cl_cfg)
    DetectionCheckpointer(fast).load(str(weights))
    convs = [m.weight for m in fast.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not all(w.is_contiguous() for w in convs)  # really NHWC, not a no-op
    # the same numbers from the inference builder too (channels-last + weights loaded)
    built = build_inference_model(cl_cfg)
    for model in (fast, built):
        image = _image()
        (b0, s0), (b1, s1) = _boxes(plain, image), _boxes(model, image)
        assert b0.shape == b1.shape and len(b0) > 0
        assert torch.allclose(b0, b1, atol=1e-3) and torch.allclose(s0, s1, atol=1e-4)


def test_inference_autocast_runs_the_convolutions_in_half_precision(tiny_model_opts, tmp_path,
                                                                    initial_weights):
    weights = initial_weights(CONFIG, tiny_model_opts(tmp_path), tmp_path / "init.pth")
    cfg = _cfg(tiny_model_opts, tmp_path, "TEST.AMP.ENABLED", "True",
               "TEST.AMP.DTYPE", "bfloat16", "MODEL.WEIGHTS", weights)
    model = build_inference_model(cfg)
    assert isinstance(model, AutocastInference)
    seen = []
    stem = model.model.backbone.bottom_up.stem.conv1
    stem.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    boxes, scores = _boxes(model, _image())
    assert seen == [torch.bfloat16]
    # box decoding and ROIAlign stay in float32: coordinates keep full precision; scores
    # are handed on as float32, as without autocast
    assert boxes.dtype == torch.float32 and scores.dtype == torch.float32

    # off (the default): float32 throughout, no wrapper
    plain = build_inference_model(_cfg(tiny_model_opts, tmp_path, "MODEL.WEIGHTS", weights))
    assert not isinstance(plain, AutocastInference)
    seen.clear()
    plain.backbone.bottom_up.stem.conv1.register_forward_hook(
        lambda m, i, o: seen.append(o.dtype))
    _boxes(plain, _image())
    assert seen == [torch.float32]


def test_evaluation_runs_under_autocast(tiny_synthetic, tiny_model_opts, tmp_path):
    cfg = _cfg(tiny_model_opts, tmp_path, "TEST.AMP.ENABLED", "True",
               "TEST.AMP.DTYPE", "bfloat16", "TEST.CLUMP_EVAL.PLOTS", "False")
    model = ClumpTrainer.build_model(cfg)
    seen = []
    model.backbone.bottom_up.stem.conv1.register_forward_hook(
        lambda m, i, o: seen.append(o.dtype))
    results = ClumpTrainer.test(cfg, model)
    assert "clumps" in results and len(seen) >= 1 and set(seen) == {torch.bfloat16}


def test_unknown_amp_dtype_names_the_key(tiny_model_opts, tmp_path):
    cfg = _cfg(tiny_model_opts, tmp_path, "TEST.AMP.ENABLED", "True", "TEST.AMP.DTYPE", "fp8")
    with pytest.raises(ValueError, match="TEST.AMP.DTYPE"):
        autocast_dtype(cfg)


def test_amp_training_falls_back_to_float32_on_the_cpu(tiny_model_opts, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="clump_d2"):
        cfg = _cfg(tiny_model_opts, tmp_path, "SOLVER.AMP.ENABLED", "True")
    assert cfg.SOLVER.AMP.ENABLED is False
    assert any("SOLVER.AMP.ENABLED needs CUDA" in r.getMessage() for r in caplog.records)
