"""TorchScript export: the traced model, saved and reloaded, gives the PyTorch model's boxes,
classes and scores (tiny Faster R-CNN, random weights) within the stated tolerance
(1e-3 px, 1e-5 in score), also on an image of another size than the tracing image."""
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clump_d2.inference.export import BOX_ATOL_PX, SCORE_ATOL, as_numpy_outputs

REPO = Path(__file__).resolve().parents[2]


def test_torchscript_export_reproduces_pytorch(tiny_synthetic, tiny_weights, tiny_model_opts,
                                               tmp_path, load_tool):
    val = sorted((tiny_synthetic / "images" / "val").glob("*.png"))
    # a 64 x 80 crop: another size than the 96 x 96 tracing image
    other = tmp_path / "other.png"
    Image.open(val[2]).crop((5, 10, 85, 74)).save(other)
    out = tmp_path / "model.ts"
    argv = ["--config-file", str(REPO / "configs" / "quickstart.yaml"), "--output", str(out),
            "--image", str(val[0]), "--image", str(val[1]), "--image", str(other),
            *tiny_model_opts(tmp_path), "MODEL.WEIGHTS", str(tiny_weights),
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.2"]
    result = load_tool("export_model").main(argv)
    assert out.is_file() and out.with_suffix(".json").is_file()
    checks = result["checks"]
    assert len(checks) == 3
    for c in checks:
        assert c["same_classes"] and c["n_boxes"] == c["n_boxes_traced"]
        assert c["max_box_diff_px"] <= BOX_ATOL_PX and c["max_score_diff"] <= SCORE_ATOL
    assert sum(c["n_boxes"] for c in checks) > 0  # something to compare

    # used as a deployer would: torch only, a uint8 image tensor in, named outputs
    traced = torch.jit.load(str(out))
    image = torch.as_tensor(np.asarray(Image.open(other).convert("RGB")).transpose(2, 0, 1)
                            .copy())
    outputs = as_numpy_outputs(traced(image))
    assert outputs["pred_boxes"].shape == (checks[2]["n_boxes"], 4)
    assert outputs["image_size"].tolist() == [64, 80]
    boxes = outputs["pred_boxes"]
    assert ((boxes[:, 2] <= 80 + 1e-3) & (boxes[:, 3] <= 64 + 1e-3)).all()
