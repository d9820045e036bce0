"""Clump data: readers, the synthetic generator, dataset registration and mappers.

Importing it registers every dataset found under ``$CLUMP_D2_DATASETS`` (see
``clump_d2.data.datasets.builtin``).
"""
from .datasets import builtin as _builtin
from .datasets import register_clump_dataset  # noqa: F401

_builtin.register_all_clump_datasets()
