from .builtin import (
    CLUMP_CLASSES,
    datasets_root,
    load_clump_json,
    register_all_clump_datasets,
    register_clump_dataset,
)

__all__ = [
    "CLUMP_CLASSES",
    "datasets_root",
    "load_clump_json",
    "register_all_clump_datasets",
    "register_clump_dataset",
]
