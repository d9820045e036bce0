"""Safe weight loading for ``MODEL.WEIGHTS``: no code runs from a downloaded file, and a model
whose weights did not load is an error, not a silent random model.

:class:`ClumpCheckpointer` is Detectron2's ``DetectionCheckpointer`` with these changes:

* **safe formats by default**: ``.safetensors`` (tensors only) and ``.pth``/``.pt``/``.pyth``
  through ``torch.load(weights_only=True)`` are read; a Python pickle (``.pkl``, Detectron2's
  model-zoo format, or a ``.pth`` that the safe loader refuses) runs arbitrary code when
  loaded and is refused with :class:`UnsafeWeightsError`, unless ``allow_pickle``
  (``MODEL.WEIGHTS_ALLOW_PICKLE True``) says the file is trusted;
* **what "loaded" means**: every weight of the model (its ``state_dict`` less the buffers
  Detectron2 fills from the config, :data:`_CONFIG_BUFFERS`) receives a checkpoint tensor of
  its shape. For inference (``require_weights``) that is required of every weight; for
  training from ``MODEL.WEIGHTS``, weights matching ``MODEL.WEIGHTS_MAY_START_FRESH`` (e.g. a
  new head, or the FPN and heads above an ImageNet backbone) may keep their initialisation.
  Anything else left out, or an empty path where weights are required, raises
  :class:`WeightsNotLoadedError` naming the file, the counts and a few keys;
* **checksums**: :meth:`ClumpCheckpointer.save` stores the sha256 of the checkpoint's content
  in it (:data:`CHECKSUM_KEY`) and loading verifies it, so flipped bytes in a checkpoint we
  wrote are a :class:`CorruptCheckpointError`, not a quietly different model; a file without
  one (a user's own, a converter's) loads under the rule above. Saving is atomic (a temporary
  file renamed over the target, ``last_checkpoint`` likewise);
* **located read errors**: an empty or truncated file raises :class:`CorruptCheckpointError`
  naming it; :meth:`ClumpCheckpointer.resume_or_load` then falls back to the newest earlier
  checkpoint of the output folder, with a warning, as it does when ``last_checkpoint`` is
  empty or names a file that is not there.

Use it wherever a model is built for training or inference::

    ClumpCheckpointer(model, cfg.OUTPUT_DIR, allow_pickle=cfg.MODEL.WEIGHTS_ALLOW_PICKLE,
                      require_weights=True).load(cfg.MODEL.WEIGHTS)
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from detectron2.checkpoint import DetectionCheckpointer

from clump_d2.model_zoo import resolve_weights

logger = logging.getLogger(__name__)

#: The config key that allows executing pickles (named in every refusal).
ALLOW_PICKLE_KEY = "MODEL.WEIGHTS_ALLOW_PICKLE"
#: Model buffers Detectron2 fills from the config, not from checkpoints; and BatchNorm's step
#: counter, which torch never reports missing (it fills it itself), so it must not count as
#: a weight that loaded.
_CONFIG_BUFFERS = ("pixel_mean", "pixel_std", "num_batches_tracked")
#: The config key listing the weights that may start fresh in training (named in refusals).
MAY_START_FRESH_KEY = "MODEL.WEIGHTS_MAY_START_FRESH"
#: The entry of a saved checkpoint dict holding the sha256 of the rest of it.
CHECKSUM_KEY = "__clump_d2_sha256__"
#: The file in ``save_dir`` naming the checkpoint ``--resume`` continues from.
LAST_CHECKPOINT = "last_checkpoint"


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
    except OSError as e:
        if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        # torch's zip reader says "Invalid argument" for a file cut short
        raise CorruptCheckpointError(f"{path}: empty or truncated checkpoint ({e})") from e


def read_safetensors(path: str | os.PathLike) -> Dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file (a format that holds nothing but tensors)."""
    from safetensors.torch import load_file  # optional dependency, needed for this format only

    try:
        return load_file(os.fspath(path), device="cpu")
    except Exception as e:  # safetensors raises its own SafetensorError for a bad header
        raise CorruptCheckpointError(f"{path}: not a readable .safetensors file ({e})") from e


def checkpoint_sha256(data: Mapping) -> str:
    """The sha256 of a checkpoint dict's content, :data:`CHECKSUM_KEY` left out.

    Every tensor counts by its name, dtype, shape and bytes, every other value by its type and
    ``repr``, in sorted key order; lists and tuples count alike. So it is the same for the dict
    that was saved and for the one ``torch.load`` returns, and any changed byte of a tensor
    changes it.
    """
    digest = hashlib.sha256()
    _hash_value(digest, "", {k: v for k, v in data.items() if k != CHECKSUM_KEY})
    return digest.hexdigest()


def _hash_value(digest, name: str, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        digest.update(f"{name}:tensor:{t.dtype}:{tuple(t.shape)}\n".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, Mapping):
        digest.update(f"{name}:map:{len(value)}\n".encode())
        for key in sorted(value, key=repr):
            _hash_value(digest, f"{name}/{key!r}", value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{name}:seq:{len(value)}\n".encode())
        for i, item in enumerate(value):
            _hash_value(digest, f"{name}[{i}]", item)
    else:
        digest.update(f"{name}:{type(value).__name__}:{value!r}\n".encode())


def _atomic_write(path: str, write: Callable[[Any], None]) -> None:
    """``write(f)`` into a temporary file beside ``path``, flushed to disk, then renamed over
    ``path``: a kill at any moment leaves the old file or the new one, never a part."""
    folder, name = os.path.split(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    try:  # make the rename itself durable (not possible on every file system)
        fd = os.open(folder or ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


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
        require_weights: inference: an empty path is an error, and every weight of the model
            must load (``may_start_fresh`` does not apply).
        may_start_fresh: training: regular expressions (``re.match``, so a key prefix works)
            naming the model keys that may keep their initialisation when the checkpoint
            lacks them or has another shape (``MODEL.WEIGHTS_MAY_START_FRESH``).
    """

    def __init__(self, model, save_dir: str = "", *, allow_pickle: bool = False,
                 require_weights: bool = False, may_start_fresh: Sequence[str] = (),
                 **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.allow_pickle = bool(allow_pickle)
        self.require_weights = bool(require_weights)
        try:
            self.may_start_fresh = [re.compile(p) for p in may_start_fresh]
        except re.error as e:
            raise ValueError(f"{MAY_START_FRESH_KEY}: {e.pattern!r} is not a regular "
                             f"expression ({e})") from e
        self._path: Optional[str] = None
        self._checksum = "none"
        #: After a load: {"file", "loaded", "missing", "unexpected", "incorrect_shapes",
        #: "fresh" (keys left at their initialisation as allowed), "checksum" ("verified" or
        #: "none")}.
        self.last_load: Dict[str, Any] = {}

    @classmethod
    def from_config(cls, cfg, model, save_dir: str = "", **kwargs) -> "ClumpCheckpointer":
        """Read ``MODEL.WEIGHTS_ALLOW_PICKLE`` (False when the key is absent) and
        ``MODEL.WEIGHTS_MAY_START_FRESH`` (none when absent) from ``cfg``."""
        allow = bool(getattr(cfg.MODEL, "WEIGHTS_ALLOW_PICKLE", False))
        kwargs.setdefault("may_start_fresh",
                          tuple(getattr(cfg.MODEL, "WEIGHTS_MAY_START_FRESH", ())))
        return cls(model, save_dir, allow_pickle=allow, **kwargs)

    def save(self, name: str, **kwargs: Any) -> None:
        """As Detectron2's, with the sha256 of the content stored in the file
        (:data:`CHECKSUM_KEY`, verified when it is loaded), and written atomically: the
        checkpoint, then ``last_checkpoint``, each to a temporary file renamed over it."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        data[CHECKSUM_KEY] = checkpoint_sha256(data)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        if os.path.basename(save_file) != basename:
            raise ValueError(f"checkpoint name {name!r} must be a plain file name")
        logger.info("Saving checkpoint to %s", save_file)
        _atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Write ``last_checkpoint`` atomically (a kill never leaves it empty)."""
        _atomic_write(os.path.join(self.save_dir, LAST_CHECKPOINT),
                      lambda f: f.write(last_filename_basename.encode()))

    def get_checkpoint_file(self) -> str:
        """The checkpoint ``--resume`` continues from: the one ``last_checkpoint`` names; if
        that file is empty (a kill during a non-atomic write, by an older version or another
        tool) or names a file that is not there, the newest ``model_*.pth`` of ``save_dir``,
        with a warning. ``""`` when there is no ``last_checkpoint`` (Detectron2's rule:
        nothing to resume)."""
        if not self.save_dir:
            return ""
        tag = os.path.join(self.save_dir, LAST_CHECKPOINT)
        try:
            with open(tag, encoding="utf-8", errors="replace") as f:
                name = f.read().strip()
        except OSError:
            return ""
        named = os.path.join(self.save_dir, name) if name else ""
        if named and os.path.isfile(named):
            return named
        found = self._older_checkpoints()
        problem = f"names {name}, which is not there" if name else "is empty"
        if found:
            logger.warning("%s %s: resuming from the newest checkpoint there, %s", tag, problem,
                           found[0])
            return found[0]
        if named:
            return named  # loading it fails, naming the missing file
        logger.warning("%s %s and %s holds no model_*.pth: nothing to resume", tag, problem,
                       self.save_dir)
        return ""

    def has_checkpoint(self) -> bool:
        """Whether ``--resume`` has a checkpoint to continue from (see
        :meth:`get_checkpoint_file`)."""
        return bool(self.get_checkpoint_file())

    def load(self, path: str, *args, **kwargs) -> Dict[str, Any]:
        if not path:
            if self.require_weights:
                raise WeightsNotLoadedError(
                    "no weights given (MODEL.WEIGHTS is empty): the model would run with random "
                    "weights; set MODEL.WEIGHTS to a trained checkpoint")
            logger.warning("no weights given (MODEL.WEIGHTS is empty): the model starts from "
                           "its initialisation")
        # A model-zoo name ("zoo:sdss_lite0" or "sdss_lite0") becomes its shipped weights file,
        # verified against the model card's sha256 before anything is read from it.
        path = resolve_weights(path) if path else path
        self._path = path
        self._checksum = "none"
        try:
            return super().load(path, *args, **kwargs)
        finally:
            self._path = None

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """As Detectron2's, but a corrupt last checkpoint (0-byte, truncated, checksum
        mismatch) falls back to the newest earlier ``model_*.pth`` of ``save_dir``, with a
        warning; and with ``require_weights``, nothing to resume and no ``path`` is an error
        (not a model with random weights)."""
        last = self.get_checkpoint_file() if resume else ""
        if not last:
            if resume and not path and self.require_weights:
                raise WeightsNotLoadedError(
                    f"--resume: nothing to resume in {self.save_dir or '(no OUTPUT_DIR)'} (no "
                    f"{LAST_CHECKPOINT} naming a checkpoint) and MODEL.WEIGHTS is empty: the "
                    "model would run with random weights; train first, or set MODEL.WEIGHTS")
            return self.load(path, checkpointables=[])
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

        def order(p: Path):  # model_final, then by iteration, then others (model_best)
            m = re.search(r"(\d+)", p.stem)
            return (p.stem == "model_final", int(m.group(1)) if m else -1)

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
        if CHECKSUM_KEY in data:
            expected = data.pop(CHECKSUM_KEY)
            actual = checkpoint_sha256(data)
            if actual != expected:
                raise CorruptCheckpointError(
                    f"{filename}: its content does not match the sha256 stored in it when it "
                    f"was saved ({str(expected)[:16]}... stored, {actual[:16]}... now): the "
                    "file was changed or damaged after it was written (e.g. flipped bytes)")
            self._checksum = "verified"
        if suffix == ".pyth":  # pycls, as DetectionCheckpointer reads it
            if "model_state" not in data:
                raise CorruptCheckpointError(f"{filename}: a pycls .pyth file needs "
                                             "'model_state'")
            state = {k: v for k, v in data["model_state"].items()
                     if not k.endswith("num_batches_tracked")}
            return {"model": state, "__author__": "pycls", "matching_heuristics": True}
        return data if "model" in data else {"model": data}

    def _load_model(self, checkpoint: Dict[str, Any]):
        """Load the tensors, then apply the rule of what "loaded" means (module docstring)."""
        model_keys = [k for k in self.model.state_dict()
                      if k.split(".")[-1] not in _CONFIG_BUFFERS]
        n_given = len(checkpoint.get("model", {}))
        incompatible = super()._load_model(checkpoint)
        shapes = {k: (ckpt, mine) for k, ckpt, mine in incompatible.incorrect_shapes}
        absent = set(incompatible.missing_keys) - set(shapes)
        loaded = [k for k in model_keys if k not in absent and k not in shapes]
        missing = [k for k in model_keys if k in absent]
        mismatched = [k for k in model_keys if k in shapes]
        fresh = [] if self.require_weights else [
            k for k in missing + mismatched if any(p.match(k) for p in self.may_start_fresh)]
        refused_missing = [k for k in missing if k not in fresh]
        refused_shapes = [k for k in mismatched if k not in fresh]
        self.last_load = {"file": self._path, "loaded": len(loaded),
                          "missing": len(missing) + len(mismatched),
                          "unexpected": len(incompatible.unexpected_keys),
                          "incorrect_shapes": len(incompatible.incorrect_shapes),
                          "fresh": len(fresh), "checksum": self._checksum}
        if model_keys and not loaded:
            raise WeightsNotLoadedError(
                f"{self._path}: none of its {n_given} tensors matched the model's "
                f"{len(model_keys)} weights (model keys left missing: {missing[:5]}; "
                f"checkpoint keys not used: {incompatible.unexpected_keys[:5]}): a checkpoint "
                "of another model or an unsupported layout")
        if refused_missing or refused_shapes:
            shape_examples = ", ".join(f"{k}: checkpoint {shapes[k][0]} vs model {shapes[k][1]}"
                                       for k in refused_shapes[:3])
            if self.require_weights:
                remedy = ("inference needs every weight: use the checkpoint trained with this "
                          "config")
            else:
                remedy = ("if these are meant to start from their initialisation (e.g. a new "
                          f"head when fine-tuning), list them in {MAY_START_FRESH_KEY}")
            raise WeightsNotLoadedError(
                f"{self._path}: only {len(loaded)} of the model's {len(model_keys)} weights "
                f"loaded ({len(fresh)} allowed to start fresh); {len(refused_missing)} missing "
                f"from its {n_given} tensors (e.g. {refused_missing[:3]}), "
                f"{len(refused_shapes)} with another shape"
                f"{f' ({shape_examples})' if shape_examples else ''}; "
                f"{len(incompatible.unexpected_keys)} checkpoint tensors not used. A model "
                f"with weights left at their initialisation gives wrong results; {remedy}")
        return incompatible
