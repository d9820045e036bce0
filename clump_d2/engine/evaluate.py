"""One way to run a model for evaluation: "evaluate this model on this dataset".

Every evaluation path goes through here, so they all see the same detections:
``tools/train_net.py`` (training's final and periodic evaluation, ``--eval-only``), batch
evaluation (:mod:`clump_d2.engine.batch`), the real-data comparison
(:mod:`clump_d2.studies.realdata`), and the pictures (:mod:`clump_d2.inference.visualize`,
which draws exactly the detections the evaluator counted).

* :func:`build_model_for_inference`: the model with ``MODEL.WEIGHTS`` loaded, in eval mode
  (channels-last per ``MODEL.CHANNELS_LAST``), not yet wrapped.
* :func:`build_test_loader` / :func:`build_evaluators`: the test-time mapper in batches of
  ``TEST.IMS_PER_BATCH``; ``COCOEvaluator`` + :class:`~clump_d2.evaluation.ClumpEvaluator`.
* :func:`evaluate_on_dataset`: wraps the model for inference (``TEST.AMP``,
  ``TEST.DIHEDRAL_TTA``) and runs ``inference_on_dataset`` with the evaluators.
* :func:`predict_on_dataset`: the same run, returning each image's raw detections as the
  evaluator sees them (every box the model output, above ``MODEL.ROI_HEADS.
  SCORE_THRESH_TEST``; the operating threshold ``TEST.CLUMP_EVAL.SCORE_THRESH`` is applied
  when counting).
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional, Sequence

import torch
from detectron2.evaluation import (
    COCOEvaluator,
    DatasetEvaluator,
    DatasetEvaluators,
    inference_on_dataset,
    print_csv_format,
)
from detectron2.modeling import build_model
from detectron2.utils import comm

from clump_d2.data.build import build_batched_test_loader
from clump_d2.data.mapper import ClumpDatasetMapper
from clump_d2.evaluation import ClumpEvaluator, instances_to_prediction
from clump_d2.modeling.checkpoint import ClumpCheckpointer
from clump_d2.modeling.runtime import apply_channels_last, wrap_for_inference

logger = logging.getLogger(__name__)


def build_model_for_inference(cfg, resume: bool = False) -> torch.nn.Module:
    """``build_model(cfg)`` in eval mode, channels-last if ``MODEL.CHANNELS_LAST``, with
    ``MODEL.WEIGHTS`` loaded (``resume``: the last checkpoint in ``OUTPUT_DIR`` if there is
    one, as ``train_net.py --resume``).

    Weights are loaded safely (:class:`~clump_d2.modeling.checkpoint.ClumpCheckpointer`:
    tensors-only formats unless ``MODEL.WEIGHTS_ALLOW_PICKLE``; a checkpoint we saved is
    verified against its checksum), and a model whose weights did not all load is an error
    (``WeightsNotLoadedError``: empty ``MODEL.WEIGHTS`` and nothing to resume, or a checkpoint
    leaving any weight of the model missing or of another shape), never a silent random model.

    Not wrapped: :func:`evaluate_on_dataset` adds autocast and test-time augmentation
    (``modeling.runtime.wrap_for_inference``); the catalogue's
    ``inference.predict.build_inference_model`` does the same for prediction.
    """
    model = apply_channels_last(build_model(cfg), cfg)
    model.eval()
    checkpointer = ClumpCheckpointer.from_config(cfg, model, cfg.OUTPUT_DIR,
                                                 require_weights=True)
    checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=resume)
    return model


def build_test_loader(cfg, dataset_name: str, records: Optional[Sequence[Dict]] = None):
    """The evaluation loader: ``ClumpDatasetMapper(cfg, is_train=False)`` over the dataset
    (or over ``records``, some of its dicts), ``TEST.IMS_PER_BATCH`` images per batch, every
    image once, split across processes."""
    return build_batched_test_loader(
        dataset_name if records is None else list(records),
        ClumpDatasetMapper(cfg, is_train=False), batch_size=cfg.TEST.IMS_PER_BATCH,
        num_workers=cfg.DATALOADER.NUM_WORKERS)


def build_evaluators(cfg, dataset_name: str, output_dir: Optional[str] = None
                     ) -> DatasetEvaluators:
    """``COCOEvaluator`` (AP) + ``ClumpEvaluator`` (completeness/purity), writing under
    ``output_dir`` (default ``OUTPUT_DIR/inference/<dataset>``)."""
    output_dir = output_dir or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    return DatasetEvaluators([
        # The C++ fast path is not available in a pure-Python detectron2.
        COCOEvaluator(dataset_name, output_dir=output_dir, use_fast_impl=False),
        ClumpEvaluator(cfg, dataset_name, output_dir=output_dir),
    ])


def evaluate_on_dataset(cfg, model, dataset_name: str, output_dir: Optional[str] = None,
                        evaluators=None, *, data_loader=None, wrap: bool = True) -> Dict:
    """Evaluate ``model`` on one registered dataset; the one entry every evaluation uses.

    Args:
        cfg: the config (loader, evaluators, ``TEST.AMP``, ``TEST.DIHEDRAL_TTA``).
        model: a model as :func:`build_model_for_inference` returns it (or anything called
            like one, e.g. the classical baseline, with ``wrap=False``).
        dataset_name: a registered dataset.
        output_dir: where the default evaluators write (default
            ``OUTPUT_DIR/inference/<dataset>``).
        evaluators: a ``DatasetEvaluator`` or a list of them (default
            :func:`build_evaluators`).
        data_loader: default :func:`build_test_loader`.
        wrap: wrap the model for inference (autocast, TTA); False if it is wrapped already.

    Returns:
        the evaluators' results, e.g. ``{"bbox": {...}, "clumps": {...}}`` (``{}`` on
        processes other than the main one).
    """
    if evaluators is None:
        evaluators = build_evaluators(cfg, dataset_name, output_dir)
    elif not isinstance(evaluators, DatasetEvaluator):
        evaluators = DatasetEvaluators(list(evaluators))
    if data_loader is None:
        data_loader = build_test_loader(cfg, dataset_name)
    if wrap:
        model = wrap_for_inference(model, cfg)
    results = inference_on_dataset(model, data_loader, evaluators)
    if comm.is_main_process() and results:
        logger.info("Evaluation results for %s in csv format:", dataset_name)
        print_csv_format(results)
    return results if results is not None else {}


class PredictionCollector(DatasetEvaluator):
    """Keeps each image's raw predictions (:func:`~clump_d2.evaluation.
    instances_to_prediction`), as ``ClumpEvaluator`` does; ``evaluate()`` returns ``{}``."""

    def __init__(self):
        self.predictions: List[Dict] = []

    def reset(self):
        self.predictions = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            self.predictions.append(instances_to_prediction(inp["image_id"], out["instances"]))

    def evaluate(self):
        return {}


def predict_on_dataset(cfg, model, dataset_name: str,
                       records: Optional[Sequence[Dict]] = None, *,
                       wrap: bool = True) -> List[Dict]:
    """Every image's raw detections exactly as :func:`evaluate_on_dataset` hands them to the
    evaluator (same loader, batching and wrapping): ``[{"image_id", "boxes" XYXY,
    "scores", "classes"}]`` in this process, over ``records`` (default: the whole
    dataset)."""
    collector = PredictionCollector()
    loader = build_test_loader(cfg, dataset_name, records)
    evaluate_on_dataset(cfg, model, dataset_name, evaluators=collector, data_loader=loader,
                        wrap=wrap)
    return collector.predictions
