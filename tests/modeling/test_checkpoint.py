"""ClumpCheckpointer: pickles refused unless opted in, unloaded weights detected, safe formats
read, a corrupt checkpoint named (and skipped on resume)."""
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import clump_d2  # noqa: F401  (compat layer first)
from clump_d2.config import add_clump_config
from clump_d2.modeling.checkpoint import (ClumpCheckpointer, CorruptCheckpointError,
                                          UnsafeWeightsError, WeightsNotLoadedError,
                                          safe_torch_load)
from detectron2.config import get_cfg


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)
        self.register_buffer("pixel_mean", torch.zeros(3, 1, 1))


class Marker:
    """Unpickling this object creates a file: proof that loading ran code."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _state(seed=0):
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in Tiny().state_dict().items()}


def test_pickle_refused_and_no_code_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = {"model": _state(), "x": Marker(str(marker))}
    for name in ("w.pkl", "w.pth"):
        path = tmp_path / name
        if name.endswith(".pkl"):
            with open(path, "wb") as f:
                pickle.dump(evil, f)
        else:
            torch.save(evil, str(path))
        assert not marker.exists()  # saving does not run it
        with pytest.raises(UnsafeWeightsError, match="MODEL.WEIGHTS_ALLOW_PICKLE") as e:
            ClumpCheckpointer(Tiny()).load(str(path))
        assert "run any code" in str(e.value) and str(path) in str(e.value)
        assert not marker.exists(), f"loading {name} executed its pickle"


def test_pickle_opt_in_loads(tmp_path):
    state = _state(1)
    path = tmp_path / "w.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {k: v.numpy() for k, v in state.items()},
                     "__author__": "test", "matching_heuristics": True}, f)
    cfg = get_cfg()
    add_clump_config(cfg)
    assert cfg.MODEL.WEIGHTS_ALLOW_PICKLE is False
    cfg.MODEL.WEIGHTS_ALLOW_PICKLE = True
    model = Tiny()
    ClumpCheckpointer.from_config(cfg, model).load(str(path))
    assert torch.equal(model.fc.weight, state["fc.weight"])


@pytest.mark.parametrize("fmt", ["pth", "safetensors", "bare"])
def test_safe_formats_load(tmp_path, fmt):
    state = _state(2)
    path = tmp_path / f"w.{'safetensors' if fmt == 'safetensors' else 'pth'}"
    if fmt == "safetensors":
        save_file(state, str(path))
    else:
        torch.save({"model": state, "iteration": 5} if fmt == "pth" else state, str(path))
    model = Tiny()
    checkpointer = ClumpCheckpointer(model)
    checkpointer.load(str(path))
    assert torch.equal(model.conv.weight, state["conv.weight"])
    assert checkpointer.last_load["loaded"] == 4 and checkpointer.last_load["missing"] == 0


def test_zero_match_checkpoint_detected(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"model": {"backbone.x.weight": torch.zeros(2), "head.y": torch.ones(1)}},
               str(path))
    with pytest.raises(WeightsNotLoadedError) as e:
        ClumpCheckpointer(Tiny()).load(str(path))
    msg = str(e.value)
    assert str(path) in msg and "none of its 2 tensors" in msg and "conv.weight" in msg
    # the same file with a shape that does not fit counts as not loaded either
    torch.save({"model": {"fc.weight": torch.zeros(7, 7)}}, str(path))
    with pytest.raises(WeightsNotLoadedError):
        ClumpCheckpointer(Tiny()).load(str(path))


def test_empty_weights_where_required():
    with pytest.raises(WeightsNotLoadedError, match="MODEL.WEIGHTS is empty"):
        ClumpCheckpointer(Tiny(), require_weights=True).load("")
    assert ClumpCheckpointer(Tiny()).load("") == {}  # training from scratch: allowed


def test_corrupt_checkpoint_named_and_resume_falls_back(tmp_path):
    state = _state(3)
    torch.save({"model": state, "iteration": 9}, str(tmp_path / "model_0000009.pth"))
    (tmp_path / "model_0000019.pth").write_bytes(b"")  # killed while saving
    (tmp_path / "last_checkpoint").write_text("model_0000019.pth")
    with pytest.raises(CorruptCheckpointError, match="model_0000019.pth"):
        safe_torch_load(tmp_path / "model_0000019.pth")
    model = Tiny()
    extra = ClumpCheckpointer(model, str(tmp_path)).resume_or_load("", resume=True)
    assert extra["iteration"] == 9 and torch.equal(model.fc.bias, state["fc.bias"])
    os.remove(tmp_path / "model_0000009.pth")
    with pytest.raises(CorruptCheckpointError):
        ClumpCheckpointer(Tiny(), str(tmp_path)).resume_or_load("", resume=True)
