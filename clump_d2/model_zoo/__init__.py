"""clump_d2's model zoo: trained detectors addressed by name, shipped with the package.

Each entry is a folder ``clump_d2/model_zoo/<name>/`` holding

* ``config.yaml``: the complete config the model runs with (no ``_BASE_``; its
  ``MODEL.WEIGHTS`` is ``zoo:<name>``), so ``--model <name>`` needs nothing else;
* ``model.safetensors``: the weights (tensors only, no code can run from them);
* ``card.json``: the model card (training data and their hashes, iterations, time, machine,
  operating point and how it was chosen, held-out figures with the tolerances a rebuilt model
  must meet, the data's licence, the command that rebuilds it) and the weights' sha256;
* ``MODEL_CARD.md``: the same card for people, written from ``card.json``.

``MODEL.WEIGHTS`` (and so every tool's weights argument) accepts ``zoo:<name>`` or the bare
``<name>`` of an entry; the weights are checked against the card's sha256 before use
(:func:`resolve_weights`). This module only reads entries (it imports nothing from the rest
of clump_d2, so the checkpointer can use it); writing, rebuilding and checking entries live in
:mod:`clump_d2.studies.model_zoo` (``tools/model_zoo.py``).
"""
from .registry import (
    ZOO_PREFIX,
    ModelZooError,
    ZooEntry,
    ZooWeightsMismatchError,
    ZooWeightsMissingError,
    config_file,
    get_entry,
    is_zoo_name,
    list_models,
    resolve_weights,
    sha256_file,
    zoo_identity,
    zoo_root,
)

__all__ = [
    "ZOO_PREFIX",
    "ModelZooError",
    "ZooEntry",
    "ZooWeightsMismatchError",
    "ZooWeightsMissingError",
    "config_file",
    "get_entry",
    "is_zoo_name",
    "list_models",
    "resolve_weights",
    "sha256_file",
    "zoo_identity",
    "zoo_root",
]
