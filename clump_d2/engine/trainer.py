"""The clump trainer: Detectron2's ``DefaultTrainer`` with clump data and evaluation."""
from __future__ import annotations

import logging
import os

from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators

from clump_d2.data.mapper import ClumpDatasetMapper
from clump_d2.evaluation import ClumpEvaluator

logger = logging.getLogger(__name__)


class ClumpTrainer(DefaultTrainer):
    """Trains with ``ClumpDatasetMapper`` (flips, 90-degree rotations, negatives kept) and
    evaluates with ``COCOEvaluator`` + ``ClumpEvaluator`` (completeness/purity)."""

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg, mapper=ClumpDatasetMapper(cfg, is_train=True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(
            cfg, dataset_name, mapper=ClumpDatasetMapper(cfg, is_train=False)
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return DatasetEvaluators([
            # The C++ fast path is not available in a pure-Python detectron2.
            COCOEvaluator(dataset_name, output_dir=output_folder, use_fast_impl=False),
            ClumpEvaluator(cfg, dataset_name, output_dir=output_folder),
        ])
