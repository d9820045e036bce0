"""Forward time per 200 px image of each backbone on this machine (for the README's table).

    python tools/backbone_speed.py [--repeats 7] [--threads 1]

For each encoder of ``configs/ClumpScout/`` (frozen and trainable variants run the same
forward pass) and a few more Zoobot encoders, builds the detector with random weights on the
CPU and times, at batch 1 in eval mode, (a) the encoder alone and (b) the backbone (encoder +
FPN) on the padded 224 x 224 input, and (c) the whole Faster R-CNN inference on a 200 x 200
image. (The FPN's 3x3 convolutions at stride 4 cost about as much as a ResNet18.) Prints the
fastest of ``--repeats`` runs after two warm-up runs: on a shared machine the minimum is the
figure least inflated by other people's jobs.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

import clump_d2  # noqa: F401  (compat layer first)
from detectron2.modeling import build_model

import clump_d2.modeling  # noqa: F401  (registers the backbones)
from clump_d2.engine import build_config



def speed_runs(configs_dir: str | Path):
    """(row name, config, overrides): one row per encoder, from the ``configs/ClumpScout``
    folder ``configs_dir``."""
    configs = Path(configs_dir)
    zoobot = configs / "zoobot_convnext_nano_finetune.yaml"
    return [
        ("ImageNet ResNet50 (detectron2)", configs / "imagenet_resnet50_frozen.yaml", ()),
        ("Zoobot resnet50", configs / "zoobot_resnet50_frozen.yaml", ()),
        ("Zoobot convnext_nano", zoobot, ()),
        ("Zoobot convnext_tiny", configs / "zoobot_convnext_tiny_finetune.yaml", ()),
    ] + [(f"Zoobot {arch}", zoobot, ("MODEL.ZOOBOT.ARCH", arch))
         for arch in ("convnext_pico", "efficientnet_b0", "resnet18")]


def _best_ms(fn, repeats: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def time_config(config: Path, opts=(), repeats: int = 7):
    """``(encoder ms, backbone ms, detector ms)`` per 200 px image for ``config`` (+ ``opts``)."""
    cfg = build_config(str(config), ["MODEL.DEVICE", "cpu", *opts])
    model = build_model(cfg).eval()
    image = torch.randint(0, 256, (3, 200, 200), dtype=torch.uint8).float()
    padded = torch.zeros(1, 3, 224, 224)
    padded[..., :200, :200] = (image - model.pixel_mean) / model.pixel_std
    with torch.no_grad():
        encoder = _best_ms(lambda: model.backbone.bottom_up(padded), repeats)
        backbone = _best_ms(lambda: model.backbone(padded), repeats)
        detector = _best_ms(lambda: model([{"image": image, "height": 200, "width": 200}]),
                              repeats)
    return encoder, backbone, detector


def speed_table(configs_dir: str | Path, repeats: int = 7):
    """Markdown rows (header first) of :func:`time_config` for every :func:`speed_runs` row,
    yielded as each is measured."""
    yield "| encoder | encoder ms | encoder + FPN ms | Faster R-CNN ms |"
    yield "|---|---|---|---|"
    for name, config, opts in speed_runs(configs_dir):
        times = time_config(config, opts, repeats)
        yield f"| {name} | " + " | ".join(f"{t:.0f}" for t in times) + " |"
