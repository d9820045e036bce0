from .defaults import build_config, check_launch_args, prepare_datasets, resolve_device
from .evaluate import (
    build_evaluators,
    build_model_for_inference,
    build_test_loader,
    evaluate_on_dataset,
    predict_on_dataset,
)
from .trainer import ClumpTrainer

__all__ = [
    "ClumpTrainer",
    "build_config",
    "build_evaluators",
    "build_model_for_inference",
    "build_test_loader",
    "check_launch_args",
    "evaluate_on_dataset",
    "predict_on_dataset",
    "prepare_datasets",
    "resolve_device",
]
