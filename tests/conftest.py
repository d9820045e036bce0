"""Shared fixtures: a tiny synthetic dataset, a tiny model config, the real-data folder, and
the command-line tools loaded as modules."""
import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

import clump_d2  # noqa: F401  (compat layer first)

REPO = Path(__file__).resolve().parents[1]
# Helper modules shared by several test folders (e.g. injection_helpers) import by name.
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))
# Tests share the 2 cores of the CI machine with the data-loader workers.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the repository (``$CLUMP_D2_SHARED`` overrides); skips if absent,
    as on a user's own clone."""
    path = Path(os.environ.get("CLUMP_D2_SHARED", REPO.parent / "shared"))
    if not (path / "realdata").is_dir():
        pytest.skip(f"real data folder {path}/realdata is not present (it sits beside the "
                    "repository in the project's CI only)")
    return path


@pytest.fixture(scope="session")
def realdata(shared_dir) -> Path:
    return shared_dir / "realdata"


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory):
    """A tiny synthetic clump dataset (12 train, 6 val galaxies of 96 px), registered as
    ``tinysim_train`` / ``tinysim_val``; returns its root."""
    from clump_d2.data.datasets import register_clump_dataset
    from clump_d2.sim.synthetic import SyntheticParams, make_split

    root = tmp_path_factory.mktemp("tinysim")
    params = SyntheticParams(image_size=96, disc_re=(8.0, 16.0))
    for split, n in (("train", 12), ("val", 6)):
        make_split(root, split, n, seed=1, params=params, show_progress=False)
        register_clump_dataset(f"tinysim_{split}", root / "annotations" / f"{split}.json",
                               root / "images")
    return root


@pytest.fixture
def tiny_model_opts():
    """``tiny_model_opts(output_dir)``: config overrides for a tiny, fast Faster R-CNN on
    ``tinysim_*`` (for end-to-end tests)."""
    return _tiny_model_opts


def _tiny_model_opts(output_dir) -> list:
    return [
        "MODEL.DEVICE", "cpu",
        "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
        "MODEL.RESNETS.NORM", "BN", "MODEL.FPN.OUT_CHANNELS", "32",
        "MODEL.ROI_BOX_HEAD.FC_DIM", "64", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
        "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50", "MODEL.RPN.POST_NMS_TOPK_TEST", "50",
        "DATASETS.TRAIN", "('tinysim_train',)", "DATASETS.TEST", "('tinysim_val',)",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "4", "SOLVER.BASE_LR", "0.005",
        "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", "1000",
        "DATALOADER.NUM_WORKERS", "0", "TEST.EVAL_PERIOD", "0",
        "OUTPUT_DIR", str(output_dir),
    ]


def _load_tool(name: str):
    """``tools/<name>.py`` executed as a fresh module (tools are scripts, not package members)."""
    path = REPO / "tools" / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no tool {path}")
    spec = importlib.util.spec_from_file_location(f"tool_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_tool():
    """``load_tool(name)``: the module ``tools/<name>.py``, loaded by path (its ``main`` and
    parser reachable without a subprocess)."""
    return _load_tool


def _save_initial_weights(config_file: str, opts, path) -> str:
    """Build ``config_file`` + ``opts`` with its initial (random) weights, save them as a
    tensors-only checkpoint at ``path`` and return the path: inference refuses a model without
    weights, so tests that only need *some* model run it with these."""
    from detectron2.modeling import build_model

    from clump_d2.engine import build_config

    torch.manual_seed(0)
    model = build_model(build_config(config_file, list(opts)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, path)
    return str(path)


@pytest.fixture(scope="session")
def initial_weights():
    """``initial_weights(config_file, opts, path)``: a saved randomly initialised model."""
    return _save_initial_weights


def _write_host_jpegs(root, n: int, seed: int, first_id: int, size: int = 96) -> Path:
    """``n`` clump-free host galaxies rendered by the SDSS preset, saved as JPEGs in two class
    folders (``spiral`` for odd k, ``non_spiral`` for even), named ``first_id + k``."""
    from PIL import Image

    from clump_d2.sim.synthetic import SyntheticParams, galaxy_rng, render_galaxy

    root = Path(root)
    params = SyntheticParams.sdss(image_size=size, disc_re=(10.0, 16.0), empty_fraction=1.0)
    for k in range(n):
        cls = "spiral" if k % 2 else "non_spiral"
        (root / cls).mkdir(parents=True, exist_ok=True)
        g = render_galaxy(galaxy_rng(seed, "test", k), params)
        Image.fromarray(g.rgb).save(root / cls / f"{first_id + k}.jpg", quality=95)
    return root


@pytest.fixture(scope="session")
def write_host_jpegs():
    """``write_host_jpegs(root, n, seed, first_id, size=96)``: real-host stand-ins on disk."""
    return _write_host_jpegs
