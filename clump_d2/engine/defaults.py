"""Set-up steps shared by the command-line tools (kept here so tests can reach them)."""
from __future__ import annotations

import logging

import torch
from detectron2.config import get_cfg
from detectron2.utils import comm

from clump_d2 import model_zoo
from clump_d2.config import add_clump_config
from clump_d2.data.datasets import builtin
from clump_d2.sim.synthetic import SyntheticParams, make_split

logger = logging.getLogger(__name__)


def build_config(config_file: str = "", opts=None, freeze: bool = True):
    """``get_cfg()`` + clump keys + YAML + ``KEY VALUE`` overrides, device resolved.

    ``config_file`` may name a model-zoo entry (``zoo:sdss_lite0``): its complete config,
    whose ``MODEL.WEIGHTS`` is the entry's verified weights (:mod:`clump_d2.model_zoo`).
    """
    cfg = get_cfg()
    add_clump_config(cfg)
    if config_file:
        cfg.merge_from_file(resolve_config_file(config_file))
    cfg.merge_from_list(list(opts or []))
    resolve_device(cfg)
    if freeze:
        cfg.freeze()
    return cfg


def resolve_config_file(config_file: str) -> str:
    """A config path as given, or the complete config of a model-zoo entry named
    ``zoo:<name>``."""
    config_file = str(config_file)
    if config_file.startswith(model_zoo.ZOO_PREFIX):
        return model_zoo.config_file(config_file)
    return config_file


def add_model_argument(parser) -> None:
    """``--model NAME``: run the model zoo's ``NAME`` (its config and verified weights)
    instead of ``--config-file`` (see :func:`apply_model_argument`)."""
    names = ", ".join(model_zoo.list_models()) or "none installed"
    parser.add_argument("--model", default="", metavar="NAME",
                        help=f"a trained model from the model zoo, by name ({names}): its "
                             "config and weights; KEY VALUE overrides still apply")


def apply_model_argument(args) -> None:
    """Turn ``args.model`` into ``args.config_file`` (``zoo:NAME``); both at once is an error,
    since the zoo entry's config is complete."""
    name = getattr(args, "model", "")
    if not name:
        return
    if getattr(args, "config_file", ""):
        raise SystemExit(f"give --model {name} or --config-file {args.config_file}, not both: "
                         "a zoo model brings its own config (override keys with KEY VALUE)")
    model_zoo.get_entry(name)  # unknown names fail here, listing the known ones
    args.config_file = model_zoo.ZOO_PREFIX + name.removeprefix(model_zoo.ZOO_PREFIX)


def resolve_device(cfg) -> str:
    """Fall back to the CPU, with a warning, when the config asks for CUDA and none exists
    (and to float32 training, as Detectron2's AMP trainer needs CUDA)."""
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger("clump_d2").warning(
            "MODEL.DEVICE is %r but CUDA is not available: running on the CPU",
            cfg.MODEL.DEVICE)
        cfg.MODEL.DEVICE = "cpu"
    if cfg.SOLVER.AMP.ENABLED and not cfg.MODEL.DEVICE.startswith("cuda"):
        # Detectron2's AMPTrainer asserts CUDA; the same YAML should still train on a laptop.
        logging.getLogger("clump_d2").warning(
            "SOLVER.AMP.ENABLED needs CUDA; training in float32 on %s", cfg.MODEL.DEVICE)
        cfg.SOLVER.AMP.ENABLED = False
    return cfg.MODEL.DEVICE


def check_launch_args(args) -> None:
    """Fail early, with a message that says what to do, where Detectron2's ``launch`` would
    fail with a bare assertion: several training processes need one GPU each."""
    if args.num_gpus > 1 and not torch.cuda.is_available():
        raise SystemExit(
            f"--num-gpus {args.num_gpus} asks for {args.num_gpus} GPU processes, but CUDA is not "
            "available on this machine. Train on the CPU with --num-gpus 1 (the default).")


def prepare_datasets(cfg) -> None:
    """Generate the synthetic dataset if a config uses it and its files are missing.

    Runs on the main process only; the others wait, so no two processes write one file.
    """
    names = list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)
    wanted = {n.split("_", 1)[1] for n in names if n.startswith(builtin.SYNTHETIC_NAME + "_")}
    syn = cfg.DATASETS.SYNTHETIC
    if wanted and comm.is_main_process() and syn.AUTO_GENERATE:
        root = builtin.datasets_root() / builtin.SYNTHETIC_NAME
        counts = {"train": syn.NUM_TRAIN, "val": syn.NUM_VAL}
        for split in sorted(wanted):
            if not (root / "annotations" / f"{split}.json").exists():
                logger.info("generating synthetic %s split (%d galaxies) in %s", split,
                            counts[split], root)
                make_split(root, split, counts[split], seed=syn.SEED,
                           params=SyntheticParams(image_size=syn.IMAGE_SIZE))
    comm.synchronize()
