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


class Many(nn.Module):
    """65 small linear layers: 130 weights, as a detector has ~130 tensors."""

    def __init__(self, width=2):
        super().__init__()
        self.layers = nn.Sequential(*[nn.Linear(width, width) for _ in range(65)])


def test_partly_loaded_checkpoint_refused_naming_file_and_counts(tmp_path):
    """1 of 130 tensors, or 100 of another shape: refused in inference and in training, unless
    training lists what may start fresh."""
    one = tmp_path / "one_of_130.pth"
    torch.save({"model": {"layers.0.weight": torch.ones(2, 2)}}, str(one))
    for require in (True, False):
        with pytest.raises(WeightsNotLoadedError) as e:
            ClumpCheckpointer(Many(), require_weights=require).load(str(one))
        msg = str(e.value)
        assert msg.startswith(f"{one}: only 1 of the model's 130 weights loaded")
        assert "129 missing from its 1 tensors" in msg and "layers.0.bias" in msg
        assert ("MODEL.WEIGHTS_MAY_START_FRESH" in msg) is not require

    shapes = tmp_path / "shapes.pth"
    state = Many(width=3).state_dict()
    state.update({k: v for k, v in Many().state_dict().items()
                  if int(k.split(".")[1]) >= 50})  # layers 50..64 fit: 30 tensors
    torch.save({"model": state}, str(shapes))
    with pytest.raises(WeightsNotLoadedError) as e:
        ClumpCheckpointer(Many(), require_weights=True).load(str(shapes))
    msg = str(e.value)
    assert "only 30 of the model's 130 weights loaded" in msg
    assert "0 missing" in msg and "100 with another shape" in msg
    assert "layers.0.weight: checkpoint (3, 3) vs model (2, 2)" in msg

    # Training may start the listed layers fresh (an explicit list), inference never.
    model = Many()
    checkpointer = ClumpCheckpointer(model, may_start_fresh=[r"layers\.[0-4]?\d\."])
    checkpointer.load(str(shapes))
    assert checkpointer.last_load["loaded"] == 30 and checkpointer.last_load["fresh"] == 100
    assert torch.equal(model.layers[60].weight, state["layers.60.weight"])
    with pytest.raises(WeightsNotLoadedError, match="only 30 of"):
        ClumpCheckpointer(Many(), require_weights=True,
                          may_start_fresh=[r"layers\.[0-4]?\d\."]).load(str(shapes))
    with pytest.raises(ValueError, match="WEIGHTS_MAY_START_FRESH: '\\(' is not"):
        ClumpCheckpointer(Many(), may_start_fresh=["("])


def test_saved_checkpoint_has_a_checksum_that_loading_verifies(tmp_path):
    """4 kB of flipped tensor bytes in a checkpoint we saved: a named error, and --resume falls
    back to the previous checkpoint; a file without a checksum still loads."""
    from checkpoint_helpers import flip_tensor_bytes

    class Wide(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 64)  # 16 kB of weights

    torch.manual_seed(0)
    saved = Wide()
    writer = ClumpCheckpointer(saved, str(tmp_path))
    writer.save("model_0000009", iteration=9)
    with torch.no_grad():
        saved.fc.weight.add_(1.0)
    writer.save("model_0000019", iteration=19)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000019.pth"
    last = tmp_path / "model_0000019.pth"
    good = last.read_bytes()
    flip_tensor_bytes(last, 4096)
    with pytest.raises(CorruptCheckpointError) as e:
        ClumpCheckpointer(Wide(), require_weights=True).load(str(last))
    assert str(last) in str(e.value) and "sha256" in str(e.value)
    extra = ClumpCheckpointer(Wide(), str(tmp_path)).resume_or_load("", resume=True)
    assert extra["iteration"] == 9
    last.write_bytes(good[: len(good) // 2])  # cut short (an old, non-atomic save killed)
    with pytest.raises(CorruptCheckpointError, match="model_0000019.pth: empty or truncated"):
        ClumpCheckpointer(Wide(), require_weights=True).load(str(last))

    last.write_bytes(good)
    model = Wide()
    reader = ClumpCheckpointer(model, str(tmp_path), require_weights=True)
    assert reader.load(str(last))["iteration"] == 19
    assert reader.last_load["checksum"] == "verified"
    assert torch.equal(model.fc.weight, saved.fc.weight)
    plain = tmp_path / "users_own.pth"  # no checksum: loads under the coverage rule
    torch.save({"model": saved.state_dict()}, str(plain))
    reader.load(str(plain))
    assert reader.last_load["checksum"] == "none" and reader.last_load["missing"] == 0


def test_empty_or_stale_last_checkpoint_resumes_from_newest(tmp_path):
    """A kill while ``last_checkpoint`` was written leaves it empty: --resume takes the newest
    model_*.pth instead of stopping."""
    model = Tiny()
    writer = ClumpCheckpointer(model, str(tmp_path))
    for it in (9, 19):
        with torch.no_grad():
            model.fc.bias.fill_(it)
        writer.save(f"model_{it:07d}", iteration=it)
    for content in ("", "\n", "model_0000029.pth"):
        (tmp_path / "last_checkpoint").write_text(content)
        fresh = Tiny()
        checkpointer = ClumpCheckpointer(fresh, str(tmp_path))
        assert checkpointer.has_checkpoint()
        assert checkpointer.get_checkpoint_file() == str(tmp_path / "model_0000019.pth")
        assert checkpointer.resume_or_load("", resume=True)["iteration"] == 19
        assert torch.equal(fresh.fc.bias, torch.full((2,), 19.0))
    # nothing to resume at all: inference refuses, training starts from MODEL.WEIGHTS ("")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "last_checkpoint").write_text("")
    assert not ClumpCheckpointer(Tiny(), str(empty)).has_checkpoint()
    assert ClumpCheckpointer(Tiny(), str(empty)).resume_or_load("", resume=True) == {}
    with pytest.raises(WeightsNotLoadedError, match="nothing to resume in .*empty"):
        ClumpCheckpointer(Tiny(), str(empty), require_weights=True).resume_or_load(
            "", resume=True)


_KILL_DURING_SAVE = r"""
import io, sys, time
import torch
from torch import nn
import clump_d2
from clump_d2.modeling.checkpoint import ClumpCheckpointer

torch.manual_seed(0)
model = nn.Linear(128, 128)
checkpointer = ClumpCheckpointer(model, sys.argv[1])
checkpointer.save("model_final", iteration=1)
real_save = torch.save

def half_then_hang(obj, f, *args, **kwargs):
    buf = io.BytesIO()
    real_save(obj, buf)
    f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
    f.flush()
    print("MID-WRITE", flush=True)
    time.sleep(120)

torch.save = half_then_hang
with torch.no_grad():
    model.weight.add_(1.0)
checkpointer.save("model_final", iteration=2)
"""


def test_sigkill_during_save_keeps_the_previous_checkpoint(tmp_path):
    """A process SIGKILLed half-way through writing model_final.pth leaves the previous one
    whole (the write goes to a temporary file that is renamed when complete)."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", _KILL_DURING_SAVE, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "MID-WRITE"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert sorted(p.name for p in tmp_path.glob("model_*.pth")) == ["model_final.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    model = nn.Linear(128, 128)
    checkpointer = ClumpCheckpointer(model, str(tmp_path), require_weights=True)
    assert checkpointer.resume_or_load("", resume=True)["iteration"] == 1
    assert checkpointer.last_load["checksum"] == "verified"
