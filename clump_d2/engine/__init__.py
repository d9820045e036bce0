from .defaults import build_config, prepare_datasets, resolve_device
from .trainer import ClumpTrainer

__all__ = ["ClumpTrainer", "build_config", "prepare_datasets", "resolve_device"]
