"""Trainer hooks: validation loss over all batches, best checkpoint, early stopping."""
import math
import sys
from pathlib import Path

import pytest
import torch
from detectron2.engine import hooks as d2_hooks

from clump_d2.engine import ClumpTrainer, build_config
from clump_d2.engine.hooks import (
    EarlyStopping,
    ValidationLoss,
    should_stop,
    validation_losses,
)

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "evaluation"))
from eval_dist_worker import FakeLossModel, fake_batches  # noqa: E402


def test_should_stop():
    assert not should_stop([0.1, 0.2, 0.3], "max", patience=2)
    assert should_stop([0.3, 0.2, 0.25], "max", patience=2)
    assert not should_stop([0.3, 0.2, 0.31], "max", patience=2)
    assert should_stop([0.3, 0.2, 0.31], "max", patience=2, min_delta=0.05)
    assert should_stop([1.0, 1.5, 1.2], "min", patience=2)
    assert should_stop([0.3, float("nan"), float("nan")], "max", patience=2)  # NaN never helps
    assert not should_stop([float("nan"), 0.1], "max", patience=1)  # nothing to compare with
    with pytest.raises(ValueError):
        should_stop([1, 2], "up", 1)


def test_validation_losses_cover_every_batch_and_leave_state_alone():
    model = FakeLossModel()
    model.eval()
    bn_before = model.bn.running_mean.clone(), model.bn.running_var.clone()
    rng_before = torch.get_rng_state()
    losses = validation_losses(model, fake_batches(9), seed=7)
    # loss_box_reg = x^2 with x = i / 3, averaged over all 9 images (not the last batch)
    assert losses["loss_box_reg"] == pytest.approx(sum((i / 3) ** 2 for i in range(9)) / 9)
    assert losses["loss"] == pytest.approx(losses["loss_cls"] + losses["loss_box_reg"])
    assert not model.training  # mode restored
    torch.testing.assert_close(model.bn.running_mean, bn_before[0])  # BN statistics untouched
    torch.testing.assert_close(model.bn.running_var, bn_before[1])
    assert torch.equal(torch.get_rng_state(), rng_before)  # training's randomness untouched
    # seeded per image: the same number every time, another number with another seed
    assert validation_losses(model, fake_batches(9), seed=7) == losses
    assert validation_losses(model, fake_batches(9), seed=8)["loss_cls"] != losses["loss_cls"]
    assert validation_losses(model, []) == {}


def _tiny_cfg(tmp_path, tiny_model_opts, *extra):
    opts = tiny_model_opts(tmp_path) + [
        # report detections down to score 0, so that F1 is defined for an untrained model
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "TEST.CLUMP_EVAL.SCORE_THRESH", "0.0",
        "TEST.CLUMP_EVAL.PLOTS", "False", "TEST.CLUMP_EVAL.CURVE_POINTS", "11",
        "TEST.DETECTIONS_PER_IMAGE", "10",
        *extra]
    return build_config(str(REPO / "configs" / "quickstart.yaml"), opts)


def test_validation_loss_and_best_checkpoint_in_training(tmp_path, tiny_synthetic,
                                                         tiny_model_opts):
    cfg = _tiny_cfg(tmp_path, tiny_model_opts, "TEST.EVAL_PERIOD", "2",
                    "TEST.VAL_LOSS_PERIOD", "2", "SOLVER.MAX_ITER", "4")
    trainer = ClumpTrainer(cfg)
    kinds = [type(h) for h in trainer._hooks]
    ev = kinds.index(d2_hooks.EvalHook)
    assert kinds[ev + 1: ev + 3] == [ValidationLoss, d2_hooks.BestCheckpointer]
    assert kinds.index(d2_hooks.PeriodicWriter) > ev + 2
    assert EarlyStopping not in kinds  # off by default
    trainer.train()
    storage = trainer.storage
    val = storage.history("validation/loss").values()
    assert [it for _, it in storage.history("validation/loss").values()] == [1, 3]
    assert all(math.isfinite(v) and v > 0 for v, _ in val)
    for term in ("loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"):
        assert math.isfinite(storage.history(f"validation/{term}").latest())
    total = sum(storage.history(f"validation/{t}").latest()
                for t in ("loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"))
    assert storage.history("validation/loss").latest() == pytest.approx(total)
    # what the model logs during validation stays out of training's storage
    assert len(storage.history("fast_rcnn/cls_accuracy").values()) == 4
    # periodic evaluation stored the flattened clump metrics
    f1 = storage.history("clumps/F1").values()
    assert len(f1) == 2 and all(0.0 <= v <= 1.0 for v, _ in f1)
    assert (tmp_path / "model_best.pth").is_file()
    best = torch.load(tmp_path / "model_best.pth", map_location="cpu", weights_only=False)
    # the evaluation with the highest F1 (the earlier one on a tie); the final evaluation is
    # stored at iteration MAX_ITER
    (f1_a, it_a), (f1_b, it_b) = f1
    assert (it_a, it_b) == (1, 4)
    assert best["iteration"] == (it_b if f1_b > f1_a else it_a)


def test_early_stopping_ends_training_quietly(tmp_path, tiny_synthetic, tiny_model_opts):
    # n_true never improves, so with patience 1 training stops after the second evaluation
    cfg = _tiny_cfg(tmp_path, tiny_model_opts, "TEST.EVAL_PERIOD", "1", "SOLVER.MAX_ITER", "6",
                    "SOLVER.EARLY_STOPPING.ENABLED", "True",
                    "SOLVER.EARLY_STOPPING.METRIC", "clumps/n_true",
                    "SOLVER.EARLY_STOPPING.PATIENCE", "1")
    trainer = ClumpTrainer(cfg)
    stopper = next(h for h in trainer._hooks if isinstance(h, EarlyStopping))
    trainer.train()  # returns normally
    assert stopper.stopped_at == 2
    assert len(stopper.history) == 2 and stopper.history[0] == stopper.history[1] > 0
    assert trainer.iter == 1  # iterations 2..5 never ran
    assert not (tmp_path / "model_final.pth").exists()
