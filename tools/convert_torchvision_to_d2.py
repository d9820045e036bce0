#!/usr/bin/env python
"""Convert torchvision ResNet ImageNet weights for Detectron2's ResNet (the ImageNet baseline).

    # resnet50-0676ba61.pth from https://download.pytorch.org/models/resnet50-0676ba61.pth
    python tools/convert_torchvision_to_d2.py resnet50-0676ba61.pth weights/R-50-torchvision.pth
    python tools/train_net.py --config-file configs/ClumpScout/imagenet_resnet50_frozen.yaml \
        MODEL.WEIGHTS weights/R-50-torchvision.pth

The output (.pth of tensors, or .safetensors) is read safely by the checkpointer; a .pkl is
not written (a pickle runs code when loaded). The configs using it set
MODEL.RESNETS.STRIDE_IN_1X1 False and torchvision's RGB mean/std.
"""
import argparse
import logging

import clump_d2  # noqa: F401  (fills detectron2 0.6's gaps before detectron2 is used)
from clump_d2.modeling.backbone.convert import convert_torchvision_file


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("src", help="torchvision ResNet state dict (.pth)")
    parser.add_argument("dst", help="output for MODEL.WEIGHTS (.pth or .safetensors)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    converted = convert_torchvision_file(args.src, args.dst)
    print(f"converted {len(converted)} tensors -> {args.dst}")


if __name__ == "__main__":
    main()
