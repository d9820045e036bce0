"""Completeness and purity of clump detections as a Detectron2 ``DatasetEvaluator``."""
from __future__ import annotations

import itertools
import json
import logging
import os
from collections import OrderedDict
from typing import Dict, List, Optional

import numpy as np
from detectron2.config import configurable
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils import comm

from .matching import MatchCounts, count_matches

logger = logging.getLogger(__name__)


class ClumpEvaluator(DatasetEvaluator):
    """Completeness, purity and F1 at an operating score threshold.

    For each image, detections with score >= ``score_thresh`` are matched one-to-one to the
    true clumps (``clump_d2.evaluation.matching.match_boxes``); class-agnostic (a clump found
    as the wrong class is found). Images without true clumps count: all their detections
    are false positives. Predictions are gathered from all processes before counting.
    """

    @configurable
    def __init__(self, dataset_name: str, *, score_thresh: float = 0.5,
                 iou_thresh: float = 0.5, output_dir: Optional[str] = None,
                 distributed: bool = True):
        self.dataset_name = dataset_name
        self.score_thresh = score_thresh
        self.iou_thresh = iou_thresh
        self.output_dir = output_dir
        self.distributed = distributed
        self._predictions: List[Dict] = []

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: Optional[str] = None,
                    distributed: bool = True):
        return {
            "dataset_name": dataset_name,
            "score_thresh": cfg.MODEL.CLUMP_EVAL.SCORE_THRESH,
            "iou_thresh": cfg.MODEL.CLUMP_EVAL.IOU_THRESH,
            "output_dir": output_dir,
            "distributed": distributed,
        }

    def reset(self):
        self._predictions = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            instances = out["instances"].to("cpu")
            self._predictions.append({
                "image_id": inp["image_id"],
                "boxes": instances.pred_boxes.tensor.numpy().astype(np.float64),
                "scores": instances.scores.numpy().astype(np.float64),
                "classes": instances.pred_classes.numpy().astype(np.int64),
            })

    def _true_boxes_by_image(self) -> Dict[int, np.ndarray]:
        truth = {}
        for record in DatasetCatalog.get(self.dataset_name):
            boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                     for a in record.get("annotations", [])]
            truth[record["image_id"]] = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        return truth

    def evaluate(self):
        predictions = self._predictions
        if self.distributed:
            comm.synchronize()
            predictions = list(itertools.chain(*comm.gather(predictions, dst=0)))
            if not comm.is_main_process():
                return {}
        truth = self._true_boxes_by_image()
        seen = {p["image_id"] for p in predictions}
        missing = set(truth) - seen
        if missing:
            logger.warning("%d images of %s had no prediction; their clumps count as missed",
                           len(missing), self.dataset_name)
        counts = MatchCounts()
        for pred in predictions:
            keep = pred["scores"] >= self.score_thresh
            counts += count_matches(truth.get(pred["image_id"], np.zeros((0, 4))),
                                    pred["boxes"][keep], self.iou_thresh)
        for image_id in missing:
            counts += MatchCounts(n_true=len(truth[image_id]))
        metrics = OrderedDict(
            completeness=counts.completeness, purity=counts.purity, F1=counts.f1,
            n_true=counts.n_true, n_detections=counts.n_det, n_matched=counts.n_matched,
            score_thresh=self.score_thresh, iou_thresh=self.iou_thresh,
        )
        logger.info("clumps on %s at score >= %.2f, IoU >= %.2f: completeness %.3f, "
                    "purity %.3f (%d true, %d detected, %d matched)", self.dataset_name,
                    self.score_thresh, self.iou_thresh, counts.completeness, counts.purity,
                    counts.n_true, counts.n_det, counts.n_matched)
        if self.output_dir:
            os.makedirs(self.output_dir, exist_ok=True)
            with open(os.path.join(self.output_dir, "clump_metrics.json"), "w") as f:
                json.dump({"dataset": self.dataset_name, **metrics}, f, indent=2)
        return OrderedDict(clumps=metrics)
