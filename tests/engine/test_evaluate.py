"""engine/evaluate.py: the one "evaluate this model on this dataset" entry. The model is
loaded as saved, ClumpTrainer.test gives the entry's numbers, and predict_on_dataset hands
back exactly the detections the evaluator counted."""
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

from clump_d2.engine import (
    ClumpTrainer,
    build_config,
    build_model_for_inference,
    evaluate_on_dataset,
    predict_on_dataset,
)
from clump_d2.evaluation import ClumpEvaluator

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cfg_and_weights(tiny_synthetic, tiny_model_opts, tmp_path):
    opts = tiny_model_opts(tmp_path / "out") + [
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "TEST.CLUMP_EVAL.SCORE_THRESH", "0.3",
        "TEST.CLUMP_EVAL.MATCH", "distance", "TEST.CLUMP_EVAL.DISTANCE_FACTOR", "4.0",
        "TEST.CLUMP_EVAL.CURVE_POINTS", "11", "TEST.CLUMP_EVAL.PLOTS", "False",
        "TEST.IMS_PER_BATCH", "4"]
    cfg = build_config(str(REPO / "configs" / "quickstart.yaml"), opts)
    torch.manual_seed(0)
    saved = build_model(cfg)
    path = tmp_path / "random.pth"
    torch.save({"model": saved.state_dict()}, path)
    cfg = build_config(str(REPO / "configs" / "quickstart.yaml"),
                       opts + ["MODEL.WEIGHTS", str(path)])
    return cfg, saved


def test_model_for_inference_is_the_saved_one_in_eval_mode(cfg_and_weights):
    cfg, saved = cfg_and_weights
    model = build_model_for_inference(cfg)
    assert not model.training
    state = model.state_dict()
    for name, value in saved.state_dict().items():
        assert torch.equal(state[name], value), name


def test_trainer_test_predictions_and_evaluator_agree(cfg_and_weights):
    cfg, _ = cfg_and_weights
    model = build_model_for_inference(cfg)
    evaluator = ClumpEvaluator(cfg, "tinysim_val", distributed=False)
    results = evaluate_on_dataset(cfg, model, "tinysim_val", evaluators=[evaluator])
    clumps = results["clumps"]
    assert clumps["n_true"] == sum(len(d["annotations"])
                                   for d in DatasetCatalog.get("tinysim_val"))
    assert 0 < clumps["n_matched"] < clumps["n_detections"]
    assert clumps["score_thresh"] == pytest.approx(0.3)
    # the report and raw predictions are public
    assert evaluator.report["operating"]["all"]["n_matched"] == clumps["n_matched"]
    assert len(evaluator.predictions) == 6

    # predict_on_dataset: the very detections the evaluator saw (all of them, unthresholded)
    raw = {p["image_id"]: p for p in predict_on_dataset(cfg, model, "tinysim_val")}
    assert set(raw) == {p["image_id"] for p in evaluator.predictions}
    for p in evaluator.predictions:
        q = raw[p["image_id"]]
        for key in ("boxes", "scores", "classes"):
            np.testing.assert_array_equal(q[key], p[key])
    assert min(s for p in raw.values() for s in p["scores"]) < 0.3  # the floor is 0.0

    # ClumpTrainer.test (train_net.py, batch evaluation) gives the same numbers, and AP
    trainer_results = ClumpTrainer.test(cfg, model)
    assert set(trainer_results) == {"bbox", "clumps"}
    for key in ("n_true", "n_detections", "n_matched", "completeness", "purity"):
        assert trainer_results["clumps"][key] == pytest.approx(clumps[key], nan_ok=True)


def test_eval_only_resume_with_nothing_to_resume_is_an_error(tmp_path, tiny_synthetic,
                                                             tiny_model_opts, load_tool):
    """``train_net.py --eval-only --resume`` on an output folder without a checkpoint (and no
    MODEL.WEIGHTS) stops with an error instead of evaluating a randomly initialised model."""
    from detectron2.engine import default_argument_parser

    from clump_d2.modeling.checkpoint import WeightsNotLoadedError

    out = tmp_path / "never_trained"
    args = default_argument_parser().parse_args([
        "--config-file", str(REPO / "configs" / "quickstart.yaml"), "--eval-only", "--resume",
        *tiny_model_opts(out)])
    with pytest.raises(WeightsNotLoadedError, match=f"nothing to resume in {out}"):
        load_tool("train_net").main(args)
    assert not (out / "inference").exists()
