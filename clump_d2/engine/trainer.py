"""The clump trainer: Detectron2's ``DefaultTrainer`` with clump data and evaluation."""
from __future__ import annotations

import logging
import os

from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer, hooks
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators
from detectron2.utils import comm

from clump_d2.data.build import build_batched_test_loader
from clump_d2.data.mapper import ClumpDatasetMapper
from clump_d2.evaluation import ClumpEvaluator
from clump_d2.modeling.runtime import apply_channels_last, wrap_for_inference

from .hooks import EarlyStop, EarlyStopping, ValidationLoss

logger = logging.getLogger(__name__)


class ClumpTrainer(DefaultTrainer):
    """Trains with ``ClumpDatasetMapper`` (flips, 90-degree rotations, negatives kept) and
    evaluates with ``COCOEvaluator`` + ``ClumpEvaluator`` (completeness/purity)."""

    @classmethod
    def build_model(cls, cfg):
        """DefaultTrainer's model, channels-last when ``MODEL.CHANNELS_LAST``."""
        return apply_channels_last(super().build_model(cfg), cfg)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """DefaultTrainer.test, under ``TEST.AMP``'s autocast and with ``TEST.DIHEDRAL_TTA``
        when they are enabled."""
        return super().test(cfg, wrap_for_inference(model, cfg), evaluators)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg, mapper=ClumpDatasetMapper(cfg, is_train=True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_batched_test_loader(
            dataset_name, ClumpDatasetMapper(cfg, is_train=False),
            batch_size=cfg.TEST.IMS_PER_BATCH, num_workers=cfg.DATALOADER.NUM_WORKERS)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return DatasetEvaluators([
            # The C++ fast path is not available in a pure-Python detectron2.
            COCOEvaluator(dataset_name, output_dir=output_folder, use_fast_impl=False),
            ClumpEvaluator(cfg, dataset_name, output_dir=output_folder),
        ])

    @classmethod
    def build_validation_loader(cls, cfg, dataset_name):
        """Loader for the validation loss: annotations kept (as in training) but no random
        augmentation (as in testing), one image per batch, all images split across
        processes."""
        kwargs = ClumpDatasetMapper.from_config(cfg, is_train=True)
        kwargs["augmentations"] = ClumpDatasetMapper.from_config(cfg, is_train=False)[
            "augmentations"]
        return build_detection_test_loader(cfg, dataset_name, mapper=ClumpDatasetMapper(**kwargs))

    def build_hooks(self):
        """DefaultTrainer's hooks plus, right after its ``EvalHook`` (so that they see its
        metrics and the writers record theirs): validation loss (``TEST.VAL_LOSS_PERIOD``),
        best checkpoint by ``SOLVER.BEST_CHECKPOINT.METRIC`` (when ``TEST.EVAL_PERIOD`` > 0;
        otherwise the only evaluation is the final one and ``model_final.pth`` is the best)
        and optional early stopping (``SOLVER.EARLY_STOPPING``)."""
        ret = super().build_hooks()
        cfg = self.cfg
        extra = []
        if cfg.TEST.VAL_LOSS_PERIOD > 0:
            names = list(cfg.TEST.VAL_LOSS_DATASETS) or list(cfg.DATASETS.TEST)
            loaders = {n: self.build_validation_loader(cfg, n) for n in names}
            extra.append(ValidationLoss(cfg.TEST.VAL_LOSS_PERIOD, loaders, seed=cfg.SEED))
        best = cfg.SOLVER.BEST_CHECKPOINT
        if best.METRIC and cfg.TEST.EVAL_PERIOD > 0 and comm.is_main_process():
            extra.append(hooks.BestCheckpointer(cfg.TEST.EVAL_PERIOD, self.checkpointer,
                                                best.METRIC, mode=best.MODE))
        stop = cfg.SOLVER.EARLY_STOPPING
        if stop.ENABLED:
            if cfg.TEST.EVAL_PERIOD <= 0:
                logger.warning("SOLVER.EARLY_STOPPING.ENABLED needs TEST.EVAL_PERIOD > 0; "
                               "early stopping is off")
            else:
                extra.append(EarlyStopping(cfg.TEST.EVAL_PERIOD, stop.METRIC or best.METRIC,
                                           stop.MODE, stop.PATIENCE, stop.MIN_DELTA))
        at = next((i + 1 for i, h in enumerate(ret) if isinstance(h, hooks.EvalHook)), len(ret))
        return ret[:at] + extra + ret[at:]

    def train(self):
        """DefaultTrainer.train, ending quietly when early stopping fires."""
        try:
            return super().train()
        except EarlyStop as stop:
            logger.info("training stopped early after iteration %s; the best checkpoint is "
                        "model_best.pth in %s", stop.args[0] if stop.args else "?",
                        self.cfg.OUTPUT_DIR)
            return getattr(self, "_last_eval_results", None)
