"""Export a trained detector as TorchScript, for deployment without Detectron2.

Why TorchScript tracing (``detectron2.export.TracingAdapter`` + ``torch.jit.trace``) and not
ONNX, on our stack (torch 2.14, pure-Python detectron2 0.6):

* Tracing runs the model's own PyTorch code once and records it; the pure-Python
  detectron2 calls only torch/torchvision ops (``roi_align``, ``nms``), which TorchScript
  serialises. The result loads with ``torch.jit.load`` (Python) or libtorch (C++), with no
  detectron2 and no extra package. On CPU the traced model reproduces the eager model's
  boxes exactly in our tests, also on images of another size than the tracing image.
* detectron2 0.6's ONNX route (``Caffe2Tracer``) emits Caffe2 operators, and Caffe2 is gone
  from PyTorch 2 (``clump_d2.compat`` only stubs it). torch 2.14's default ONNX exporter
  (``torch.export``-based) needs the ``onnx``/``onnxscript`` packages and static control flow,
  while R-CNN post-processing is data-dependent (variable numbers of proposals and boxes).
  We did not pursue it.

The traced module takes one image tensor ``(C, H, W)`` in ``INPUT.FORMAT`` channel order,
at the test size (no resizing is recorded: resize first if ``INPUT.MIN_SIZE_TEST`` is set),
normalised inside; it returns ``(boxes (N, 4) XYXY px, classes (N,), scores (N,),
image_size (2,))`` with the model's ``SCORE_THRESH_TEST``; a JSON file beside it records
this, the class names and the config.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.export import TracingAdapter

from clump_d2.data.mapper import ClumpDatasetMapper
from clump_d2.modeling.runtime import unwrap_inference_model

from .predict import build_inference_model, dataset_class_names

logger = logging.getLogger(__name__)

#: Order of the traced model's outputs (TracingAdapter flattens Instances fields sorted by
#: name, then the image size).
OUTPUT_NAMES = ("pred_boxes", "pred_classes", "scores", "image_size")
#: Tolerances the export check holds the traced model to (the same boxes, to rounding).
BOX_ATOL_PX = 1e-3
SCORE_ATOL = 1e-5


def _inference(model, inputs):
    # do_postprocess=False: boxes stay in the input tensor's frame, no Python-side rescaling
    # (which tracing could not record for other image sizes).
    return [{"instances": model.inference(inputs, do_postprocess=False)[0]}]


def trace_model(model, sample_image: torch.Tensor):
    """TorchScript trace of a Detectron2 ``GeneralizedRCNN`` on one (C, H, W) image."""
    model.eval()
    image = sample_image.to(model.device)
    adapter = TracingAdapter(model, [{"image": image}], _inference)
    with torch.no_grad(), warnings.catch_warnings():
        # detectron2's shape asserts and branches on tensor values each warn; the
        # reload-and-compare check below is what tells whether the trace generalises.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(adapter, (image,), check_trace=False)
    return traced, adapter


def compare_with_pytorch(model, traced, image: torch.Tensor) -> Dict:
    """Run both on ``image``; the largest box and score differences (inf if the number of
    boxes or the classes differ)."""
    image = image.to(model.device)
    with torch.no_grad():
        ref = model.inference([{"image": image}], do_postprocess=False)[0].to("cpu")
        boxes, classes, scores, _ = (t.to("cpu") for t in traced(image))
    ref_boxes = ref.pred_boxes.tensor
    same = (len(boxes) == len(ref_boxes)
            and torch.equal(classes.long(), ref.pred_classes.long()))
    result = {"n_boxes": int(len(ref_boxes)), "n_boxes_traced": int(len(boxes)),
              "same_classes": bool(same)}
    if same:
        result["max_box_diff_px"] = float((boxes - ref_boxes).abs().max()) if len(boxes) else 0.0
        result["max_score_diff"] = float((scores - ref.scores).abs().max()) if len(boxes) else 0.0
    else:
        result["max_box_diff_px"] = result["max_score_diff"] = float("inf")
    result["within_tolerance"] = bool(result["max_box_diff_px"] <= BOX_ATOL_PX
                                      and result["max_score_diff"] <= SCORE_ATOL)
    return result


def load_image_tensor(cfg, file_name: str) -> torch.Tensor:
    """An image file as the (C, H, W) tensor the test-time mapper gives the model."""
    return ClumpDatasetMapper(cfg, is_train=False)({"file_name": file_name})["image"]


def export_torchscript(cfg, model, sample_image: torch.Tensor, output: str | os.PathLike,
                       check_images: Sequence[torch.Tensor] = (),
                       class_names: Sequence[str] = ("clump", "odd_clump")) -> Dict:
    """Trace ``model`` on ``sample_image``, save it to ``output`` (+ ``.json`` beside it),
    reload it and compare with the PyTorch model on ``check_images``.

    Returns:
        {"path", "metadata", "checks": [compare_with_pytorch results]}

    Raises:
        RuntimeError: if the reloaded traced model misses the tolerance on a check image.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    traced, _ = trace_model(model, sample_image)
    traced.save(str(output))
    reloaded = torch.jit.load(str(output), map_location=model.device)
    checks = [compare_with_pytorch(model, reloaded, im) for im in (check_images or
                                                                   [sample_image])]
    metadata = {
        "format": "torchscript-trace",
        "input": f"one ({len(cfg.MODEL.PIXEL_MEAN)}, H, W) tensor, channels in INPUT.FORMAT "
                 f"{cfg.INPUT.FORMAT!r}, values as the training images (0-255); normalised "
                 "inside; no resizing inside",
        "outputs": list(OUTPUT_NAMES),
        "box_format": "XYXY, continuous pixel coordinates of the input",
        "class_names": list(class_names),
        "score_thresh_test": cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
        "min_size_test": cfg.INPUT.MIN_SIZE_TEST,
        "max_size_test": cfg.INPUT.MAX_SIZE_TEST,
        "weights": cfg.MODEL.WEIGHTS,
        "torch": torch.__version__,
        "tolerance": {"box_px": BOX_ATOL_PX, "score": SCORE_ATOL},
        "checks": checks,
    }
    output.with_suffix(".json").write_text(json.dumps(metadata, indent=2))
    failed = [c for c in checks if not c["within_tolerance"]]
    if failed:
        raise RuntimeError(f"traced model differs from PyTorch beyond the tolerance: {failed}")
    logger.info("TorchScript model %s: %d check image(s), max box difference %.2g px, max "
                "score difference %.2g", output, len(checks),
                max(c["max_box_diff_px"] for c in checks),
                max(c["max_score_diff"] for c in checks))
    return {"path": output, "metadata": metadata, "checks": checks}


def export_main(cfg, output, images: Sequence[str]) -> Dict:
    """Build ``cfg``'s model with its weights; trace on ``images[0]``, check on all."""
    if not images:
        raise ValueError("give at least one image to trace on (--image)")
    if cfg.TEST.DIHEDRAL_TTA.ENABLED:
        logger.warning("TEST.DIHEDRAL_TTA is not exported: the traced model predicts one view")
    # A traced graph fixes its dtypes at tracing time and holds one view: export the plain
    # float32 model.
    model = unwrap_inference_model(build_inference_model(cfg))
    tensors = [load_image_tensor(cfg, f) for f in images]
    return export_torchscript(cfg, model, tensors[0], output, check_images=tensors,
                              class_names=dataset_class_names(cfg))


def first_images_of(dataset_name: str, n: int = 2) -> list:
    return [d["file_name"] for d in DatasetCatalog.get(dataset_name)[:n]]


def as_numpy_outputs(outputs) -> Dict[str, np.ndarray]:
    """The traced model's output tuple as a name -> array dict."""
    return {name: t.detach().cpu().numpy() for name, t in zip(OUTPUT_NAMES, outputs)}
