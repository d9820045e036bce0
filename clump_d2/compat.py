"""Fill the gaps of detectron2 0.6 on today's stack, once, before detectron2 is imported.

The registry's detectron2 0.6 is installed as pure Python (see scripts/install_detectron2.py),
and today's Pillow and setuptools dropped names it relies on. ``apply()`` (called by
``import clump_d2``) fixes each gap only where it exists, so a user's compiled detectron2
and an old stack are used unchanged:

* ``detectron2._C`` (compiled ops) missing: a stand-in module is installed.
  - Deformable convolution (``DeformConv``, ``ModulatedDeformConv``) runs on
    ``torchvision.ops.deform_conv2d`` (CPU and GPU, with autograd).
  - COCO evaluation: ``COCOeval_opt`` (the C++ fast path) becomes pycocotools' ``COCOeval``,
    so ``COCOEvaluator(use_fast_impl=True)`` gives pycocotools' numbers instead of failing.
  - Rotated-box ops (``box_iou_rotated``, ``ROIAlignRotated``) raise ``NotImplementedError``
    naming the op: clumps use axis-aligned boxes, and a silent wrong answer is worse.
* ``PIL.Image.LINEAR`` (removed in Pillow 10): aliased to ``Image.BILINEAR``, its old value.
* ``caffe2`` (removed from PyTorch 2): ``detectron2.export`` imports it at module level for
  its Caffe2 exporter. A stand-in lets ``detectron2.export`` (``TracingAdapter``, TorchScript
  scripting) import; anything that really calls Caffe2 raises ``NotImplementedError``.
* ``pkg_resources`` (removed from recent setuptools): a small stand-in offering the
  ``resource_filename`` / ``resource_exists`` / ``resource_string`` calls detectron2's
  model zoo makes, answered with ``importlib.resources``.

One change applies to every detectron2, compiled or not, because it closes a hole rather than
a gap: YAML configs are read with ``yaml.safe_load`` only. Detectron2's
``CfgNode.merge_from_file`` defaults to ``allow_unsafe=True``, and fvcore's
``load_yaml_with_base`` then falls back to ``yaml.unsafe_load``, so a config (or any
``_BASE_`` of it) holding a tag such as ``!!python/object/apply:os.system`` ran code. After
``apply()`` such a tag raises :class:`UnsafeConfigError` naming the file, line and column and
the ``_BASE_`` chain that led to it; every other config loads exactly as before.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.resources
import importlib.util
import logging
import os
import sys
import types

logger = logging.getLogger(__name__)

#: True once ``apply()`` has installed the stand-in for ``detectron2._C``.
USING_C_SHIM = False
_APPLIED = False

_SHIM_DOC = "stand-in for detectron2._C installed by clump_d2.compat (no compiled ops)"


def _not_implemented(op_name: str, what: str):
    def op(*args, **kwargs):
        raise NotImplementedError(
            f"detectron2._C.{op_name} ({what}) is not available: this detectron2 was installed "
            "without its compiled C++/CUDA ops, and clump_d2.compat has no pure-PyTorch "
            "replacement for it. clump_d2 only needs axis-aligned boxes; install a compiled "
            "detectron2 if you need rotated boxes."
        )

    op.__name__ = op_name
    return op


def _needs_torchvision(op_name: str):
    def op(*args, **kwargs):
        raise NotImplementedError(
            f"detectron2._C.{op_name} is replaced by torchvision.ops.deform_conv2d in "
            "clump_d2.compat; it should not be called directly"
        )

    op.__name__ = op_name
    return op


def _make_c_shim() -> types.ModuleType:
    shim = types.ModuleType("detectron2._C", _SHIM_DOC)
    shim.__file__ = __file__
    # Marks the module as ours; also gives importlib.util.find_spec a spec to return.
    shim.__spec__ = importlib.machinery.ModuleSpec("detectron2._C", loader=None)
    shim.CLUMP_D2_SHIM = True
    shim.get_compiler_version = lambda: "none (pure-Python detectron2, clump_d2.compat shim)"
    shim.get_cuda_version = lambda: "none (pure-Python detectron2, clump_d2.compat shim)"
    shim.has_cuda = lambda: False
    for name in (
        "deform_conv_forward",
        "deform_conv_backward_input",
        "deform_conv_backward_filter",
        "modulated_deform_conv_forward",
        "modulated_deform_conv_backward",
    ):
        setattr(shim, name, _needs_torchvision(name))
    shim.box_iou_rotated = _not_implemented("box_iou_rotated", "IoU of rotated boxes")
    shim.roi_align_rotated_forward = _not_implemented(
        "roi_align_rotated_forward", "ROIAlignRotated"
    )
    shim.roi_align_rotated_backward = _not_implemented(
        "roi_align_rotated_backward", "ROIAlignRotated"
    )
    for name in ("InstanceAnnotation", "COCOevalEvaluateImages", "COCOevalAccumulate"):
        setattr(shim, name, _not_implemented(name, "fast COCO evaluation; use pycocotools"))
    return shim


def _has_compiled_ops() -> bool:
    if "detectron2._C" in sys.modules:
        return not getattr(sys.modules["detectron2._C"], "CLUMP_D2_SHIM", False)
    try:
        return importlib.util.find_spec("detectron2._C") is not None
    except (ImportError, ValueError):
        return False


# --- deformable convolution on torchvision -------------------------------------------------


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def deform_conv_torchvision(
    input, offset, weight, stride=1, padding=0, dilation=1, groups=1, deformable_groups=1,
    im2col_step=64,
):
    """``detectron2.layers.deform_conv.deform_conv`` on ``torchvision.ops.deform_conv2d``.

    torchvision infers the groups from the weight's and the offset's shapes, so
    ``groups``/``deformable_groups`` need no passing; ``im2col_step`` is a CUDA-kernel detail.
    """
    from torchvision.ops import deform_conv2d

    del groups, deformable_groups, im2col_step
    return deform_conv2d(
        input, offset, weight, stride=_pair(stride), padding=_pair(padding),
        dilation=_pair(dilation),
    )


def modulated_deform_conv_torchvision(
    input, offset, mask, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
    deformable_groups=1,
):
    """``detectron2.layers.deform_conv.modulated_deform_conv`` (DCNv2) on torchvision."""
    from torchvision.ops import deform_conv2d

    del groups, deformable_groups
    return deform_conv2d(
        input, offset, weight, bias=bias, stride=_pair(stride), padding=_pair(padding),
        dilation=_pair(dilation), mask=mask,
    )


# --- pkg_resources ---------------------------------------------------------------------------


def _make_pkg_resources_shim() -> types.ModuleType:
    shim = types.ModuleType(
        "pkg_resources", "minimal stand-in installed by clump_d2.compat for detectron2 0.6"
    )
    shim.__spec__ = importlib.machinery.ModuleSpec("pkg_resources", loader=None)
    shim.CLUMP_D2_SHIM = True

    def resource_filename(package: str, resource: str) -> str:
        return os.fspath(importlib.resources.files(package).joinpath(resource))

    def resource_exists(package: str, resource: str) -> bool:
        return importlib.resources.files(package).joinpath(resource).exists()

    def resource_string(package: str, resource: str) -> bytes:
        return importlib.resources.files(package).joinpath(resource).read_bytes()

    shim.resource_filename = resource_filename
    shim.resource_exists = resource_exists
    shim.resource_string = resource_string
    return shim


class _Caffe2Stub(types.ModuleType):
    """Any attribute of the stand-in ``caffe2`` is another stand-in; calling one raises."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        child = _Caffe2Stub(f"{self.__name__}.{name}")
        setattr(self, name, child)
        return child

    def __call__(self, *args, **kwargs):
        raise NotImplementedError(
            f"{self.__name__}: Caffe2 was removed from PyTorch 2; detectron2's Caffe2 export "
            "cannot run. Use TorchScript (detectron2.export.TracingAdapter + torch.jit.trace)."
        )


class _Caffe2Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``caffe2`` and every ``caffe2.*`` submodule as a ``_Caffe2Stub``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "caffe2" or fullname.startswith("caffe2."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _Caffe2Stub(spec.name)
        module.CLUMP_D2_SHIM = True
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


# --- YAML configs without code -------------------------------------------------------------


class UnsafeConfigError(ValueError):
    """A YAML config (or a ``_BASE_`` of it) with a tag ``yaml.safe_load`` refuses, such as
    ``!!python/object/apply:...``, which would run Python code.

    Attributes:
        file: the config holding the tag.
        chain: the configs from the one given down to ``file`` (each a ``_BASE_`` of the
            previous one).
    """

    def __init__(self, chain, detail: str):
        self.chain = [str(c) for c in chain]
        self.file = self.chain[-1]
        self.detail = detail
        via = ""
        if len(self.chain) > 1:
            via = " (reached through _BASE_: " + " -> ".join(self.chain) + ")"
        super().__init__(
            f"config {self.file}{detail}{via}: configs are read with yaml.safe_load, and this "
            "tag would build a Python object (running code) instead of a plain value; remove "
            "it (keys take numbers, strings, lists and mappings only)")


def _safe_load_yaml_with_base(original):
    """``load_yaml_with_base`` that never falls back to ``yaml.unsafe_load``.

    ``original`` is fvcore's classmethod; it reads each ``_BASE_`` by calling
    ``cls.load_yaml_with_base`` again, i.e. this function, so every file of the chain is read
    safely and the error names the chain.
    """
    import yaml

    func = original.__func__

    def load_yaml_with_base(cls, filename, allow_unsafe: bool = False):
        del allow_unsafe  # detectron2 passes True by default: never honoured
        try:
            return func(cls, filename, allow_unsafe=False)
        except UnsafeConfigError as e:  # raised for a _BASE_ of this file
            raise UnsafeConfigError([filename, *e.chain], e.detail) from e.__cause__
        except yaml.constructor.ConstructorError as e:
            mark = e.problem_mark
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise UnsafeConfigError([filename], f"{where}: {e.problem}") from e

    load_yaml_with_base.CLUMP_D2_SAFE = True
    load_yaml_with_base.__doc__ = original.__doc__
    return classmethod(load_yaml_with_base)


def _make_config_loading_safe() -> None:
    """Replace ``load_yaml_with_base`` on fvcore's ``CfgNode`` (detectron2's inherits it) and
    on any subclass in detectron2 that defines its own."""
    from fvcore.common.config import CfgNode as FvcoreCfgNode

    classes = [FvcoreCfgNode]
    try:
        from detectron2.config import CfgNode as D2CfgNode

        classes.append(D2CfgNode)
    except ImportError:  # only fvcore's then
        pass
    for cls in classes:
        current = cls.__dict__.get("load_yaml_with_base")
        if current is None or getattr(current.__func__, "CLUMP_D2_SAFE", False):
            continue
        cls.load_yaml_with_base = _safe_load_yaml_with_base(current)


def _patch_detectron2_modules() -> None:
    """Route detectron2's users of ``_C`` to the replacements (only with the shim)."""
    import detectron2.layers.deform_conv as deform_conv_module

    deform_conv_module.deform_conv = deform_conv_torchvision
    deform_conv_module.modulated_deform_conv = modulated_deform_conv_torchvision

    from pycocotools.cocoeval import COCOeval

    import detectron2.evaluation.coco_evaluation as coco_evaluation
    import detectron2.evaluation.fast_eval_api as fast_eval_api

    fast_eval_api.COCOeval_opt = COCOeval
    coco_evaluation.COCOeval_opt = COCOeval


def apply() -> None:
    """Install every needed fix; idempotent, and a no-op where nothing is missing."""
    global _APPLIED, USING_C_SHIM
    if _APPLIED:
        return
    import warnings

    # detectron2 0.6 scripts a few helpers at import time; torch 2.14 warns on each.
    warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated",
                            category=FutureWarning)
    from PIL import Image

    if not hasattr(Image, "LINEAR"):
        # Pillow < 10 defined LINEAR == BILINEAR; detectron2 0.6 uses it as a default argument.
        Image.LINEAR = Image.BILINEAR

    if importlib.util.find_spec("pkg_resources") is None:
        sys.modules["pkg_resources"] = _make_pkg_resources_shim()

    if importlib.util.find_spec("caffe2") is None:
        sys.meta_path.append(_Caffe2Finder())

    if importlib.util.find_spec("detectron2") is None:
        raise ImportError(
            "detectron2 is not installed. Run `make setup` (scripts/setup_env.sh), which builds "
            "detectron2 0.6 from the registry's pb1-detectron2 sdist."
        )
    if not _has_compiled_ops():
        sys.modules["detectron2._C"] = _make_c_shim()
        import detectron2

        detectron2._C = sys.modules["detectron2._C"]
        USING_C_SHIM = True
        _patch_detectron2_modules()
        logger.debug("detectron2 has no compiled ops; clump_d2.compat shim installed")
    _make_config_loading_safe()
    _APPLIED = True
