"""Safe weight loading for ``MODEL.WEIGHTS``: no code runs from a downloaded file, and a model
whose weights did not load is an error, not a silent random model.

:class:`ClumpCheckpointer` is Detectron2's ``DetectionCheckpointer`` with three changes:

* **safe formats by default**: ``.safetensors`` (tensors only) and ``.pth``/``.pt``/``.pyth``
  through ``torch.load(weights_only=True)`` are read; a Python pickle (``.pkl``, Detectron2's
  model-zoo format, or a ``.pth`` that the safe loader refuses) runs arbitrary code when
  loaded and is refused with :class:`UnsafeWeightsError`, unless ``allow_pickle``
  (``MODEL.WEIGHTS_ALLOW_PICKLE True``) says the file is trusted;
* **unloaded weights detected**: a checkpoint none of whose tensors fits the model, or an
  empty path where weights are required (``require_weights``: inference), raises
  :class:`WeightsNotLoadedError` naming the file and a few model keys left missing;
* **located read errors**: an empty or truncated file raises :class:`CorruptCheckpointError`
  naming it; :meth:`ClumpCheckpointer.resume_or_load` then falls back to the newest earlier
  checkpoint of the output folder, with a warning.

Use it wherever a model is built for training or inference::

    ClumpCheckpointer(model, cfg.OUTPUT_DIR, allow_pickle=cfg.MODEL.WEIGHTS_ALLOW_PICKLE,
                      require_weights=True).load(cfg.MODEL.WEIGHTS)
"""
from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from detectron2.checkpoint import DetectionCheckpointer

logger = logging.getLogger(__name__)

#: The config key that allows executing pickles (named in every refusal).
ALLOW_PICKLE_KEY = "MODEL.WEIGHTS_ALLOW_PICKLE"
#: Model buffers Detectron2 fills from the config, not from checkpoints; and BatchNorm's step
#: counter, which torch never reports missing (it fills it itself), so it must not count as
#: a weight that loaded.
_CONFIG_BUFFERS = ("pixel_mean", "pixel_std", "num_batches_tracked")


class UnsafeWeightsError(ValueError):
    """A weights file that can only be read by executing a Python pickle."""


class WeightsNotLoadedError(RuntimeError):
    """A model left without the weights it was meant to get."""


class CorruptCheckpointError(ValueError):
    """A checkpoint file that is empty, truncated or not a checkpoint."""


def pickle_refusal(path: str | os.PathLike, detail: str = "") -> UnsafeWeightsError:
    """The error for a pickle read without the opt-in: names the risk and the key."""
    return UnsafeWeightsError(
        f"{path} is a Python pickle{f' ({detail})' if detail else ''}: loading it can run any "
        "code the file contains. Convert it to .safetensors or a .pth of tensors (e.g. "
        "tools/convert_torchvision_to_d2.py), or, only for a file you trust, set "
        f"{ALLOW_PICKLE_KEY} True (allow_pickle=True).")


def safe_torch_load(path: str | os.PathLike, allow_pickle: bool = False) -> Any:
    """``torch.load`` with ``weights_only=True``; full unpickling only with ``allow_pickle``.

    Raises:
        UnsafeWeightsError: the file needs full unpickling and ``allow_pickle`` is False.
        CorruptCheckpointError: an empty or truncated file (naming it).
    """
    path = os.fspath(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if _looks_corrupt(path, e):
            raise CorruptCheckpointError(f"{path}: empty or truncated checkpoint ({e})") from e
        if not allow_pickle:
            raise pickle_refusal(path, "it holds Python objects besides tensors") from e
        logger.warning("%s: executing its pickle (%s is set)", path, ALLOW_PICKLE_KEY)
        return torch.load(path, map_location="cpu", weights_only=False)
    except (EOFError, RuntimeError, zipfile.BadZipFile) as e:
        raise CorruptCheckpointError(f"{path}: empty or truncated checkpoint ({e})") from e


def read_safetensors(path: str | os.PathLike) -> Dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file (a format that holds nothing but tensors)."""
    from safetensors.torch import load_file  # optional dependency, needed for this format only

    try:
        return load_file(os.fspath(path), device="cpu")
    except Exception as e:  # safetensors raises its own SafetensorError for a bad header
        raise CorruptCheckpointError(f"{path}: not a readable .safetensors file ({e})") from e


def _looks_corrupt(path: str, exc: Exception) -> bool:
    try:
        if os.path.getsize(path) == 0:
            return True
    except OSError:
        return False
    return "EOF" in str(exc) or "truncated" in str(exc).lower()


class ClumpCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` that loads safely and checks that weights loaded.

    Args:
        model, save_dir, save_to_disk, checkpointables: as ``DetectionCheckpointer``.
        allow_pickle: read Python pickles (``.pkl``; ``.pth`` with Python objects), which
            execute code; only for trusted files (``MODEL.WEIGHTS_ALLOW_PICKLE``).
        require_weights: an empty path is an error (inference: a model must have weights).
    """

    def __init__(self, model, save_dir: str = "", *, allow_pickle: bool = False,
                 require_weights: bool = False, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.allow_pickle = bool(allow_pickle)
        self.require_weights = bool(require_weights)
        self._path: Optional[str] = None
        #: After a load: {"file", "loaded", "missing", "unexpected", "incorrect_shapes"}.
        self.last_load: Dict[str, Any] = {}

    @classmethod
    def from_config(cls, cfg, model, save_dir: str = "", **kwargs) -> "ClumpCheckpointer":
        """Read ``MODEL.WEIGHTS_ALLOW_PICKLE`` from ``cfg`` (False when the key is absent)."""
        allow = bool(getattr(cfg.MODEL, "WEIGHTS_ALLOW_PICKLE", False))
        return cls(model, save_dir, allow_pickle=allow, **kwargs)

    def load(self, path: str, *args, **kwargs) -> Dict[str, Any]:
        if not path:
            if self.require_weights:
                raise WeightsNotLoadedError(
                    "no weights given (MODEL.WEIGHTS is empty): the model would run with random "
                    "weights; set MODEL.WEIGHTS to a trained checkpoint")
            logger.warning("no weights given (MODEL.WEIGHTS is empty): the model starts from "
                           "its initialisation")
        self._path = path
        try:
            return super().load(path, *args, **kwargs)
        finally:
            self._path = None

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """As Detectron2's, but a corrupt last checkpoint (0-byte, truncated) falls back to the
        newest earlier ``model_*.pth`` of ``save_dir``, with a warning."""
        if not (resume and self.has_checkpoint()):
            return self.load(path, checkpointables=[])
        last = self.get_checkpoint_file()
        candidates = [last] + [c for c in self._older_checkpoints() if c != last]
        for i, candidate in enumerate(candidates):
            try:
                return self.load(candidate)
            except CorruptCheckpointError as e:
                nxt = candidates[i + 1] if i + 1 < len(candidates) else None
                if nxt is None:
                    raise
                logger.warning("%s; resuming from the previous checkpoint %s instead", e, nxt)
        raise AssertionError("unreachable")

    def _older_checkpoints(self) -> List[str]:
        folder = Path(self.save_dir)
        found = [p for p in folder.glob("model_*.pth") if p.is_file()]

        def order(p: Path):
            m = re.search(r"(\d+)", p.stem)
            return (p.stem != "model_final", int(m.group(1)) if m else -1)

        return [str(p) for p in sorted(found, key=order, reverse=True)]

    def _load_file(self, filename: str) -> Dict[str, Any]:
        suffix = Path(filename).suffix.lower()
        if suffix == ".safetensors":
            return {"model": read_safetensors(filename), "matching_heuristics": True,
                    "__author__": "safetensors"}
        if suffix in (".pkl", ".pickle"):
            if not self.allow_pickle:
                raise pickle_refusal(filename, "the .pkl format")
            logger.warning("%s: executing its pickle (%s is set)", filename, ALLOW_PICKLE_KEY)
            try:
                return super()._load_file(filename)
            except (EOFError, pickle.UnpicklingError) as e:
                raise CorruptCheckpointError(f"{filename}: empty or truncated ({e})") from e
        data = safe_torch_load(filename, allow_pickle=self.allow_pickle)
        if not isinstance(data, dict):
            raise CorruptCheckpointError(f"{filename}: holds a {type(data).__name__}, not a "
                                         "checkpoint dict")
        if suffix == ".pyth":  # pycls, as DetectionCheckpointer reads it
            if "model_state" not in data:
                raise CorruptCheckpointError(f"{filename}: a pycls .pyth file needs "
                                             "'model_state'")
            state = {k: v for k, v in data["model_state"].items()
                     if not k.endswith("num_batches_tracked")}
            return {"model": state, "__author__": "pycls", "matching_heuristics": True}
        return data if "model" in data else {"model": data}

    def _load_model(self, checkpoint: Dict[str, Any]):
        model_keys = [k for k in self.model.state_dict()
                      if k.split(".")[-1] not in _CONFIG_BUFFERS]
        n_given = len(checkpoint.get("model", {}))
        incompatible = super()._load_model(checkpoint)
        not_loaded = set(incompatible.missing_keys) | {k for k, *_ in
                                                       incompatible.incorrect_shapes}
        loaded = [k for k in model_keys if k not in not_loaded]
        missing = [k for k in model_keys if k in not_loaded]
        self.last_load = {"file": self._path, "loaded": len(loaded), "missing": len(missing),
                          "unexpected": len(incompatible.unexpected_keys),
                          "incorrect_shapes": len(incompatible.incorrect_shapes)}
        if model_keys and not loaded:
            raise WeightsNotLoadedError(
                f"{self._path}: none of its {n_given} tensors matched the model's "
                f"{len(model_keys)} weights (model keys left missing: {missing[:5]}; "
                f"checkpoint keys not used: {incompatible.unexpected_keys[:5]}): a checkpoint "
                "of another model or an unsupported layout")
        return incompatible
