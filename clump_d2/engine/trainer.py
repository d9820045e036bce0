"""The clump trainer: Detectron2's ``DefaultTrainer`` with clump data and evaluation."""
from __future__ import annotations

import logging
import weakref
from collections import OrderedDict

from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer, hooks
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from clump_d2.data.mapper import ClumpDatasetMapper
from clump_d2.modeling.checkpoint import ClumpCheckpointer
from clump_d2.modeling.runtime import apply_channels_last, wrap_for_inference

from .evaluate import build_evaluators, build_test_loader, evaluate_on_dataset
from .hooks import EarlyStop, EarlyStopping, ProgressBar, ValidationLoss

logger = logging.getLogger(__name__)


class ClumpTrainer(DefaultTrainer):
    """Trains with ``ClumpDatasetMapper`` (flips, 90-degree rotations, negatives kept) and
    evaluates with ``COCOEvaluator`` + ``ClumpEvaluator`` (completeness/purity).

    Checkpoints load safely (:class:`~clump_d2.modeling.checkpoint.ClumpCheckpointer`:
    tensors-only formats unless ``MODEL.WEIGHTS_ALLOW_PICKLE``; ``--resume`` onto a 0-byte or
    truncated last checkpoint falls back to the previous one, with a warning)."""


    @classmethod
    def build_model(cls, cfg):
        """DefaultTrainer's model, channels-last when ``MODEL.CHANNELS_LAST``."""
        return apply_channels_last(super().build_model(cfg), cfg)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """DefaultTrainer.test through :func:`~clump_d2.engine.evaluate.evaluate_on_dataset`
        for each of ``DATASETS.TEST`` (under ``TEST.AMP``'s autocast and with
        ``TEST.DIHEDRAL_TTA`` when they are enabled).

        Returns:
            {dataset: results}, or the results alone with one dataset (as Detectron2).
        """
        if isinstance(evaluators, DatasetEvaluator):
            evaluators = [evaluators]
        if evaluators is not None and len(evaluators) != len(cfg.DATASETS.TEST):
            raise ValueError(f"{len(evaluators)} evaluators for {len(cfg.DATASETS.TEST)} "
                             "test datasets")
        model = wrap_for_inference(model, cfg)
        results = OrderedDict()
        for idx, name in enumerate(cfg.DATASETS.TEST):
            results[name] = evaluate_on_dataset(
                cfg, model, name,
                evaluators=evaluators[idx] if evaluators else cls.build_evaluator(cfg, name),
                data_loader=cls.build_test_loader(cfg, name), wrap=False)
        return list(results.values())[0] if len(results) == 1 else results

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg, mapper=ClumpDatasetMapper(cfg, is_train=True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """:func:`~clump_d2.engine.evaluate.build_test_loader` (batched test-time mapper)."""
        return build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """:func:`~clump_d2.engine.evaluate.build_evaluators` (COCO AP + completeness/purity)."""
        return build_evaluators(cfg, dataset_name, output_folder)

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
        # DefaultTrainer.__init__ made a DetectionCheckpointer (it unpickles .pkl files and
        # crashes on a truncated last checkpoint) just before calling this: the hooks and
        # resume_or_load get the safe one instead.
        self.checkpointer = ClumpCheckpointer.from_config(
            cfg=self.cfg, model=self.checkpointer.model, save_dir=self.cfg.OUTPUT_DIR,
            trainer=weakref.proxy(self))
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
        if cfg.SOLVER.PROGRESS_BAR:
            extra.append(ProgressBar())
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
