"""The compatibility layer: each gap of detectron2 0.6 on today's stack is filled."""
import importlib
import pkgutil
import sys

import numpy as np
import pytest
import torch

import clump_d2
from clump_d2 import compat


def test_every_public_detectron2_module_imports():
    import detectron2

    failures = {}
    for module in pkgutil.walk_packages(detectron2.__path__, "detectron2."):
        if module.name == "detectron2.export.caffe2_export":
            continue  # needs Caffe2 itself (documented in the README)
        try:
            importlib.import_module(module.name)
        except Exception as e:  # collected, reported together below
            failures[module.name] = repr(e)
    assert failures == {}


def test_pillow_linear_alias():
    from PIL import Image

    assert Image.LINEAR == Image.BILINEAR
    from detectron2.data.transforms import ExtentTransform

    t = ExtentTransform(src_rect=(0, 0, 4, 4), output_size=(2, 2))
    assert t.interp == Image.BILINEAR
    out = t.apply_image(np.arange(16, dtype=np.uint8).reshape(4, 4))
    assert out.shape == (2, 2)


def test_pkg_resources_model_zoo_lookup():
    from detectron2 import model_zoo

    path = model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml")
    assert path.endswith("faster_rcnn_R_50_FPN_1x.yaml")
    with open(path) as f:
        assert "_BASE_" in f.read()
    with pytest.raises(RuntimeError, match="not available"):
        model_zoo.get_config_file("COCO-Detection/no_such_config.yaml")


def _reference_deform_conv(x, offset, weight, mask=None):
    """Deformable conv (stride 1, padding 1, 3x3) by explicit bilinear sampling."""
    n, c, h, w = x.shape
    out_c, _, kh, kw = weight.shape
    out = torch.zeros(n, out_c, h, w, dtype=x.dtype)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype),
                            indexing="ij")
    for k in range(kh * kw):
        dy, dx = offset[:, 2 * k], offset[:, 2 * k + 1]
        py = ys + (k // kw - 1) + dy
        px = xs + (k % kw - 1) + dx
        grid = torch.stack([2 * px / (w - 1) - 1, 2 * py / (h - 1) - 1], dim=-1)
        sampled = torch.nn.functional.grid_sample(x, grid, align_corners=True,
                                                  padding_mode="zeros")
        if mask is not None:
            sampled = sampled * mask[:, k : k + 1]
        out += torch.einsum("nchw,oc->nohw", sampled, weight[:, :, k // kw, k % kw])
    return out


def test_deform_conv_uses_torchvision_and_matches_reference():
    from detectron2.layers import DeformConv, ModulatedDeformConv

    torch.manual_seed(0)
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    # Small offsets keep every sample inside the image, where the reference is exact.
    offset = 0.3 * torch.rand(1, 18, 6, 6)
    conv = DeformConv(2, 3, kernel_size=3, padding=1, bias=False)
    out = conv(x, offset)
    ref = _reference_deform_conv(x.detach(), offset, conv.weight.detach())
    inner = (slice(None), slice(None), slice(1, -2), slice(1, -2))
    assert torch.allclose(out[inner], ref[inner], atol=1e-4)
    out.sum().backward()  # CPU backward: the compiled op had none
    assert x.grad is not None and torch.isfinite(x.grad).all()

    mask = torch.rand(1, 9, 6, 6)
    mconv = ModulatedDeformConv(2, 3, kernel_size=3, padding=1, bias=False)
    mout = mconv(x, offset, mask)
    mref = _reference_deform_conv(x.detach(), offset, mconv.weight.detach(), mask)
    assert torch.allclose(mout[inner], mref[inner], atol=1e-4)


def test_rotated_ops_raise_clear_error():
    if not compat.USING_C_SHIM:
        pytest.skip("a compiled detectron2 is installed; its rotated ops are real")
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    boxes = torch.tensor([[5.0, 5.0, 4.0, 4.0, 30.0]])
    with pytest.raises(NotImplementedError, match="box_iou_rotated"):
        pairwise_iou_rotated(boxes, boxes)


def test_coco_fast_path_falls_back_to_pycocotools():
    if not compat.USING_C_SHIM:
        pytest.skip("a compiled detectron2 is installed; its fast COCO eval is real")
    from pycocotools.cocoeval import COCOeval

    import detectron2.evaluation.coco_evaluation as coco_evaluation

    assert coco_evaluation.COCOeval_opt is COCOeval


def test_caffe2_stand_in_lets_export_import_but_not_run():
    from detectron2.export import TracingAdapter  # noqa: F401

    import caffe2.python.core as core

    with pytest.raises(NotImplementedError, match="Caffe2 was removed"):
        core.Net("x")


def test_compiled_detectron2_left_unchanged(monkeypatch):
    """With a real compiled ``detectron2._C`` present, apply() installs no shim."""
    import types

    fake_compiled = types.ModuleType("detectron2._C")
    monkeypatch.setitem(sys.modules, "detectron2._C", fake_compiled)
    assert compat._has_compiled_ops()
    monkeypatch.setattr(compat, "_APPLIED", False)
    monkeypatch.setattr(compat, "USING_C_SHIM", False)
    compat.apply()
    assert sys.modules["detectron2._C"] is fake_compiled
    assert compat.USING_C_SHIM is False


def test_shim_marks_itself():
    if compat.USING_C_SHIM:
        from detectron2 import _C

        assert _C.CLUMP_D2_SHIM and "shim" in _C.get_compiler_version()
    assert clump_d2.__version__


def test_detectron2_is_a_pip_managed_distribution():
    """`pip show detectron2` reports it and `pip uninstall` can remove it: its RECORD lists
    every module file of the installed package."""
    import importlib.metadata as md
    from pathlib import Path

    import detectron2

    dist = md.distribution("detectron2")
    assert dist.version.startswith("0.6")
    recorded = {Path(dist.locate_file(f)).resolve() for f in dist.files}
    package_dir = Path(detectron2.__file__).resolve().parent
    modules = {p.resolve() for p in package_dir.rglob("*.py")}
    assert modules and modules <= recorded


def _evil_configs(tmp_path, marker):
    """A config whose YAML tag creates ``marker`` when unsafely loaded, and a child of it."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    evil = tmp_path / "evil.yaml"
    evil.write_text(f'_BASE_: "{repo / "configs" / "quickstart.yaml"}"\n'
                    f'SEED: !!python/object/apply:builtins.open ["{marker}", "w"]\n')
    child = tmp_path / "child.yaml"
    child.write_text("_BASE_: evil.yaml\nSOLVER:\n  MAX_ITER: 3\n")
    return evil, child


def test_config_with_python_tag_runs_no_code_in_train_net(tmp_path, load_tool):
    """train_net.py's setup (build_config -> detectron2's merge_from_file): a Python tag in a
    config or in its _BASE_ is refused, naming the file, line, column and the chain."""
    from detectron2.engine import default_argument_parser

    marker = tmp_path / "pwned"
    evil, child = _evil_configs(tmp_path, marker)
    train_net = load_tool("train_net")
    for config in (evil, child):
        args = default_argument_parser().parse_args(["--config-file", str(config)])
        try:
            train_net.setup(args)
            error = None
        except Exception as e:  # checked below, after the marker
            error = e
        assert not marker.exists(), f"loading {config.name} ran code"
        assert type(error).__name__ == "UnsafeConfigError", repr(error)
        msg = str(error)
        assert msg.startswith(f"config {evil}, line 2, column 7: ")
        assert "python/object/apply:builtins.open" in msg and "yaml.safe_load" in msg
        assert error.file == str(evil)
        assert error.chain == ([str(evil)] if config == evil else [str(child), str(evil)])
    assert f"reached through _BASE_: {child} -> {evil}" in msg
    # the same holds for any CfgNode, whatever allow_unsafe says (detectron2's default: True)
    from detectron2.config import get_cfg

    with pytest.raises(ValueError, match="would build a Python object"):
        get_cfg().merge_from_file(str(child), allow_unsafe=True)
    assert not marker.exists()


def test_config_with_python_tag_is_an_error_unit_in_batch_eval(tmp_path):
    """Batch evaluation reads each pair's config (datasets, fingerprint, evaluation): the tag
    runs nothing there either, and the unit is an error naming the file."""
    from clump_d2.engine.batch import EvalPair, run_batch

    marker = tmp_path / "pwned"
    _, child = _evil_configs(tmp_path, marker)
    (record,) = run_batch([EvalPair("evil", str(child), str(tmp_path / "w.pth"))], [],
                          str(tmp_path / "batch"), show_progress=False)
    assert not marker.exists()
    assert record["status"] == "error"
    assert record["error"].startswith(f"UnsafeConfigError: config {tmp_path / 'evil.yaml'}, "
                                      "line 2, column 7")
