#!/usr/bin/env python
"""Export a trained clump detector as TorchScript (see clump_d2/inference/export.py for why
TorchScript and not ONNX).

    python tools/export_model.py --config-file configs/quickstart.yaml \
        --output output/quickstart/model.ts MODEL.WEIGHTS output/quickstart/model_final.pth

Load it anywhere with torch:  boxes, classes, scores, size = torch.jit.load("model.ts")(image)
"""
import clump_d2  # noqa: F401  (fills detectron2 0.6's gaps before detectron2 is used)
from clump_d2.inference.cli import export_cli

if __name__ == "__main__":
    export_cli()
