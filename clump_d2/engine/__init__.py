from .defaults import (
    add_model_argument,
    apply_model_argument,
    build_config,
    check_launch_args,
    prepare_datasets,
    resolve_config_file,
    resolve_device,
)
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
    "add_model_argument",
    "apply_model_argument",
    "build_config",
    "build_evaluators",
    "build_model_for_inference",
    "build_test_loader",
    "check_launch_args",
    "evaluate_on_dataset",
    "predict_on_dataset",
    "prepare_datasets",
    "resolve_config_file",
    "resolve_device",
]
