from .defaults import build_config, check_launch_args, prepare_datasets, resolve_device
from .trainer import ClumpTrainer

__all__ = [
    "ClumpTrainer",
    "build_config",
    "check_launch_args",
    "prepare_datasets",
    "resolve_device",
]
