"""Make, rebuild and check the model zoo's entries (``tools/model_zoo.py``).

A :class:`Recipe` says how a zoo model is made from this repository's own code and data: the
data steps (repository tools, each skipped when the file it creates exists), the training
config, and the held-out measurement whose figures go into the model card. With it:

* :func:`rebuild`: data + training, resumable, with a progress bar; the weights it ends with;
* :func:`measure`: the held-out figures of any weights (the recipe's measurement command);
* :func:`package`: a trained checkpoint -> a zoo entry (complete config, ``model.safetensors``
  in float16 when the held-out figures do not move, else float32; ``card.json`` with the
  sha256 and ``MODEL_CARD.md``; the held-out measurement's selection function,
  ``selection_function.csv``, which the entry's config gives the catalogue);
* :func:`compare_to_card`: a model's figures against its card, within the card's tolerances.

Read-only use of the entries (names, verified weights) is :mod:`clump_d2.model_zoo`.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import logging
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog

from clump_d2 import model_zoo
from clump_d2.config import add_clump_config
from clump_d2.convert.coco_writer import atomic_write_bytes, atomic_write_text
from clump_d2.data.tables import markdown_table
from clump_d2.evaluation import selection
from clump_d2.modeling.checkpoint import CorruptCheckpointError, read_safetensors, safe_torch_load

logger = logging.getLogger(__name__)

#: Where ``{shared}`` in a recipe points by default: the real data beside the repository.
DEFAULT_SHARED = "../shared/realdata"


@dataclass(frozen=True)
class Step:
    """One data step: a repository tool (``argv[0]``, relative to the repository root) and its
    arguments (``{shared}`` is the real-data folder); skipped when ``creates`` exists."""

    creates: str
    argv: Tuple[str, ...]


@dataclass(frozen=True)
class Tolerances:
    """How far a rebuilt model's held-out figures may lie from its card's and still "meet"
    it: ``recovered`` (absolute, on every recovered fraction), ``false_per_galaxy`` (absolute,
    upwards only: fewer false detections is never a failure)."""

    recovered: float = 0.03
    false_per_galaxy: float = 0.02


@dataclass(frozen=True)
class Recipe:
    """How a zoo model is made and measured (see the module docstring)."""

    name: str
    title: str
    source_config: str
    steps: Tuple[Step, ...]
    heldout_argv: Tuple[str, ...]
    heldout_description: str
    operating_point_how: str
    training_data: str
    data_licence: str
    tolerances: Tolerances = field(default_factory=Tolerances)
    #: ``KEY VALUE`` overrides on top of ``source_config``, in training and in the entry.
    config_opts: Tuple[str, ...] = ()
    #: Held-out figures may move by at most this much when the weights are stored in float16
    #: (else float32 is shipped).
    fp16_max_change: float = 0.005


_GZ2 = "{shared}/gz2_sdss_1400/jpegs"
# The real-host set (and its hosts.json, whose test hosts are the held-out measurement's) and
# the simulated single-epoch galaxies, as scripts/sdss_eval.sh makes them.
_HOST_SPLIT_ARGS = ("--hosts", _GZ2, "--pretrain-holdout", "0.3", "--val", "100")
_HOST_ARGS = (*_HOST_SPLIT_ARGS, "--clump-frac", "0.01", "0.15", "--psf-full-image")
_REAL_HOSTS = Step("datasets/gz2hosts1pc/split.json", (
    "tools/make_real_hosts.py", "--out", "datasets/gz2hosts1pc", *_HOST_ARGS))
_SDSS1E = Step("datasets/sdss1e/annotations/train.json", (
    "tools/eval_real.py", "simulate", "--out", "datasets/sdss1e", "--preset", "single_epoch",
    "--num-train", "800", "--num-val", "100"))
_HELDOUT_ARGV = (
    "tools/inject_recover.py", "--images", _GZ2 + "/*/*.jpg", "--ids-from",
    "datasets/gz2hosts1pc/hosts.json:test", "--crop-size", "200", "--psf-from-image",
    "--group-by", "parent", "--flux-fractions", "0.01", "0.03", "0.1", "--trials", "1",
    # the selection function's radius bins (x host R50; also the injection range)
    "--radius-edges", "0.3", "0.7", "1.2", "2.0", "--as-catalogue")
_HELDOUT_DESCRIPTION = (
    "injection-recovery on the 420 held-out real SDSS hosts (gz2_sdss_1400, never "
    "trained on): 3 PSF-shaped clumps per host at 1, 3 and 10 % of the host's r light, "
    "PSF from the image; detections as the catalogue lists them (TTA, NMS, PSF "
    "merging, bulge rule) at the operating point; false detections per galaxy outside "
    "injected clumps and the host's own knots (docs/sdss_domain.md)")
_OPERATING_POINT_RULE = (
    "chosen on the 100 validation hosts only: the lowest score at which the catalogue's "
    "detections make no more false detections per galaxy than the classical finder at its "
    "own F1-best point")
_DATA_LICENCE = (
    "SDSS images are public SDSS data products (acknowledge SDSS and Galaxy Zoo 2, "
    "Willett et al. 2013); the simulated galaxies are made by this repository (Apache-2.0)")
_PSEUDO_LABELS = "output/self_train/round1/pseudo_labels.json"

# Round-1 pseudo-labels: the shipped sdss_lite0 and the classical finder vote on the train hosts'
# own knots (scripts/self_train.sh).
_LABEL_STEP = Step(_PSEUDO_LABELS, (
    "tools/self_train.py", "label", "--config-file", "configs/RealData/sdss_realhosts_lite0.yaml",
    "--weights", "zoo:sdss_lite0", "--hosts", _GZ2, "--ids-from",
    "datasets/gz2hosts1pc/hosts.json:train", "--out", _PSEUDO_LABELS))

RECIPES: Dict[str, Recipe] = {
    "sdss_lite0": Recipe(
        name="sdss_lite0",
        title="Faster R-CNN + FPN on ImageNet EfficientNet-Lite0 for single-epoch SDSS "
              "cut-outs (real hosts with injected clumps)",
        source_config="configs/RealData/sdss_realhosts_lite0.yaml",
        steps=(_REAL_HOSTS, _SDSS1E),
        heldout_argv=_HELDOUT_ARGV,
        heldout_description=_HELDOUT_DESCRIPTION,
        operating_point_how=(
            _OPERATING_POINT_RULE + ", with the test-time augmentation's view count "
            "(scripts/sdss_tta_views.sh; scripts/sdss_eval.sh chooses it the same way): the "
            "fewest views that keep >= 0.95 of 3 % and >= 0.98 of 10 % clumps there"),
        training_data=(
            "880 real SDSS DR7 galaxies of the Galaxy Zoo 2 kind (gz2_sdss_1400, 3 versions "
            "each with PSF-shaped clumps of 1-15 % of the host's r light injected, the host's "
            "own knots as ignore regions) + 800 simulated single-epoch SDSS galaxies"),
        data_licence=_DATA_LICENCE,
    ),
    # Self-training, round 1 (docs/sdss_domain.md): sdss_lite0 and the classical finder label
    # the train hosts' own knots; the agreed ones teach the network what real clumps look like.
    "sdss_lite0_st": Recipe(
        name="sdss_lite0_st",
        title="sdss_lite0 self-trained on the real hosts' own knots (round 1): more real "
              "clumps found at single-epoch depth, fewer faint injected ones",
        source_config="configs/RealData/sdss_realhosts_lite0_st.yaml",
        steps=(
            _REAL_HOSTS, _SDSS1E,
            _LABEL_STEP,
            Step("datasets/gz2hosts1pc_st/split.json", (
                "tools/make_real_hosts.py", "--out", "datasets/gz2hosts1pc_st", *_HOST_ARGS,
                "--pseudo-labels", _PSEUDO_LABELS)),
        ),
        heldout_argv=_HELDOUT_ARGV,
        heldout_description=_HELDOUT_DESCRIPTION,
        operating_point_how=(
            _OPERATING_POINT_RULE + " (scripts/self_train.sh), with sdss_lite0's 2 views"),
        training_data=(
            "as sdss_lite0 (the same 880 real SDSS hosts with the same injected clumps + 800 "
            "simulated single-epoch galaxies), but the hosts' own knots that sdss_lite0 (score "
            ">= 0.5, 2-view TTA) and the classical finder (S/N >= 6) agree on, off the nucleus, "
            "are clump labels (195 knots in 145 hosts); the other knots stay ignore regions"),
        data_licence=_DATA_LICENCE,
    ),
    # A real clump population (docs/real_clumps.md): sdss_lite0_st's labels, and injected clumps
    # that reach real clumps' fluxes and radii (scripts/real_population.sh, VARIANT=deep).
    "sdss_lite0_deep": Recipe(
        name="sdss_lite0_deep",
        title="sdss_lite0 self-trained, with injected clumps down to 0.3 % of the host and to "
              "1 PSF FWHM from its centre: the most real clumps found, at single-epoch depth "
              "and on coadds",
        source_config="configs/RealData/sdss_realhosts_lite0_deep.yaml",
        steps=(
            _REAL_HOSTS, _SDSS1E, _LABEL_STEP,
            Step("datasets/gz2hostsdeep/split.json", (
                "tools/make_real_hosts.py", "--out", "datasets/gz2hostsdeep", *_HOST_SPLIT_ARGS,
                "--clump-frac", "0.003", "0.15", "--psf-full-image", "--bulge-fwhm", "1.0",
                "--radius-r50", "0.15", "2.0", "--pseudo-labels", _PSEUDO_LABELS)),
        ),
        heldout_argv=_HELDOUT_ARGV,
        heldout_description=_HELDOUT_DESCRIPTION,
        operating_point_how=(
            _OPERATING_POINT_RULE + " (scripts/self_train.sh via scripts/real_population.sh), "
            "with sdss_lite0's 2 views"),
        training_data=(
            "the same 880 real SDSS hosts as sdss_lite0 with sdss_lite0_st's 195 agreed knots as "
            "clump labels, 3 versions each with PSF-shaped clumps of 0.3-15 % of the host's r "
            "light injected from 1 PSF FWHM and 0.15 R50 of the centre (the host's other knots "
            "ignore regions) + 800 simulated single-epoch SDSS galaxies"),
        data_licence=_DATA_LICENCE,
    ),
}


def get_recipe(name: str) -> Recipe:
    """The recipe of zoo model ``name``."""
    name = name.removeprefix(model_zoo.ZOO_PREFIX)
    if name not in RECIPES:
        raise model_zoo.ModelZooError(f"no recipe for {name!r} (known: {sorted(RECIPES)})")
    return RECIPES[name]


def repo_root() -> Path:
    """The repository clump_d2 runs from (rebuilding needs its ``tools/`` and ``configs/``)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "tools").is_dir() or not (root / "configs").is_dir():
        raise model_zoo.ModelZooError(
            f"{root} is not a clump_d2 repository (no tools/ and configs/): rebuilding and "
            "measuring zoo models need a clone of the repository")
    return root


def expand(argv: Sequence[str], shared: str) -> List[str]:
    """``argv`` with ``{shared}`` replaced by the real-data folder."""
    return [a.replace("{shared}", shared) for a in argv]


def machine_description() -> str:
    """e.g. ``2-core x86_64 CPU, no GPU`` (or the GPU's name)."""
    gpu = (f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU")
    return f"{os.cpu_count()}-core {platform.machine()} CPU, {gpu}"


def _run_tool(argv: Sequence[str], cwd: Path, log_file: Optional[Path] = None) -> float:
    """Run a repository tool with this Python, output to the terminal (and ``log_file``);
    the wall time in seconds. Raises ``CalledProcessError`` naming the command."""
    cmd = [sys.executable, *argv]
    logger.info("running: %s", shlex.join(cmd))
    start = time.time()
    if log_file is None:
        subprocess.run(cmd, cwd=cwd, check=True)
    else:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "a") as log:
            subprocess.run(cmd, cwd=cwd, check=True, stdout=log, stderr=subprocess.STDOUT)
    return time.time() - start


def rebuild(name: str, out_dir: str | os.PathLike, shared: str = DEFAULT_SHARED,
            train_opts: Sequence[str] = (), run=_run_tool) -> Path:
    """Make zoo model ``name`` again from this repository: its data steps, then training into
    ``out_dir`` (``--resume``: an interrupted rebuild continues; a finished one is skipped),
    with a progress bar. Writes ``out_dir/rebuild.json`` (each step, its time, the machine).

    Returns:
        The trained checkpoint (``out_dir/model_final.pth``).
    """
    recipe = get_recipe(name)
    root = repo_root()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = {"name": recipe.name, "machine": machine_description(), "steps": []}
    for step in recipe.steps:
        done = (root / step.creates).exists()
        seconds = 0.0 if done else run(expand(step.argv, shared), root)
        record["steps"].append({"argv": expand(step.argv, shared), "skipped": done,
                                "seconds": round(seconds, 1)})
    final = out / "model_final.pth"
    train_argv = ["tools/train_net.py", "--config-file", recipe.source_config, "--resume",
                  *recipe.config_opts, "OUTPUT_DIR", str(out), "SOLVER.PROGRESS_BAR", "True",
                  *train_opts]
    done = final.exists()
    seconds = 0.0 if done else run(train_argv, root)
    record["train"] = {"argv": train_argv, "skipped": done, "seconds": round(seconds, 1)}
    atomic_write_text(out / "rebuild.json", json.dumps(record, indent=2))
    if not final.exists():
        raise model_zoo.ModelZooError(f"training finished without {final}")
    return final


def heldout_command(recipe: Recipe, weights: str, out_dir: str | os.PathLike, shared: str,
                    config: Optional[str] = None) -> List[str]:
    """The recipe's held-out measurement for ``weights`` (a file, or ``zoo:<name>``) with
    ``config`` (default: the recipe's training config), writing to ``out_dir``."""
    return [*expand(recipe.heldout_argv, shared), "--config-file",
            config or recipe.source_config, "--weights", str(weights), "--output-dir",
            str(out_dir), *([] if config else recipe.config_opts)]


def read_heldout_figures(out_dir: str | os.PathLike) -> Dict:
    """The card's figures from a held-out measurement's ``injection_table.json``: recovered
    fraction (with counts) at each injected flux fraction and false detections per galaxy, over
    all hosts, for its one detector."""
    path = Path(out_dir) / "injection_table.json"
    data = json.loads(path.read_text())
    results = data["results"]
    if len(results) != 1:
        raise ValueError(f"{path}: expected one detector, found {sorted(results)}")
    groups = next(iter(results.values()))
    every = next(g for g in groups if g["group"] == "all")
    figures = {"images": every["n_images"], "score_thresh": every["score_thresh"],
               "false_per_galaxy": round(float(every["false_per_galaxy"]), 4),
               "recovered": {f"{b['flux_frac']:g}": {"fraction": round(b["fraction"], 4),
                                                      "recovered": b["recovered"], "n": b["n"]}
                             for b in every["by_flux_frac"]},
               "by_group": {g["group"]: {"false_per_galaxy": round(float(g["false_per_galaxy"]),
                                                                   4),
                                         "recovered": {f"{b['flux_frac']:g}":
                                                       round(b["fraction"], 4)
                                                       for b in g["by_flux_frac"]}}
                            for g in groups if g["group"] != "all"},
               "command": data.get("command", ""), "machine": data.get("machine", "")}
    return figures


def heldout_selection_function(out_dir: str | os.PathLike) -> Optional[Path]:
    """The selection function of a held-out measurement: its ``selection_function.csv``, made
    from its ``injections.csv`` and ``injection_summary.json`` when an older measurement did not
    write one; None when the folder holds neither."""
    out = Path(out_dir)
    path = out / selection.CSV_NAME
    if path.is_file():
        return path
    rows_file, summary_file = out / "injections.csv", out / "injection_summary.json"
    if not (rows_file.is_file() and summary_file.is_file()):
        return None
    summary = json.loads(summary_file.read_text())
    settings = summary.get("settings", {})
    edges = [b["r50_low"] for b in summary["by_radius"]] + [summary["by_radius"][-1]["r50_high"]]
    with open(rows_file, newline="") as f:
        rows = [dict(r, recovered=r["recovered"] == "True") for r in csv.DictReader(f)]
    table = selection.selection_table(rows, settings["flux_fractions"], edges, "r",
                                      settings.get("score_thresh"))
    logger.info("%s: selection function made from the measurement's %d injections", out,
                len(rows))
    return selection.write_selection_function(
        table, out, {**settings, "band": "r", "radius_edges": edges,
                     "made_from": str(rows_file)})["csv"]


def measure(name: str, weights: str, out_dir: str | os.PathLike, shared: str = DEFAULT_SHARED,
            config: Optional[str] = None, run=_run_tool) -> Dict:
    """Run the recipe's held-out measurement on ``weights`` (skipped when ``out_dir`` already
    holds its table) and return its figures (:func:`read_heldout_figures`)."""
    recipe = get_recipe(name)
    out = Path(out_dir)
    if not (out / "injection_table.json").exists():
        run(heldout_command(recipe, weights, out, shared, config), repo_root())
    return read_heldout_figures(out)


#: Tolerances are inclusive: 0.60 - 0.57 is within 0.03 although floats make it 0.0300000001.
_EPS = 1e-9


def compare_to_card(card_figures: Dict, measured: Dict, tolerances: Dict) -> List[Dict]:
    """One row per figure: the card's value, the measured one, the tolerance and whether the
    measured value meets the card (recovered fractions within ``tolerances["recovered"]``
    either way; false detections per galaxy at most ``tolerances["false_per_galaxy"]`` above)."""
    rows = []
    for frac, card in card_figures["recovered"].items():
        got = measured["recovered"].get(frac)
        value = None if got is None else got["fraction"]
        ok = value is not None and abs(value - card["fraction"]) <= tolerances["recovered"] + _EPS
        rows.append({"figure": f"recovered at {frac}", "card": card["fraction"],
                     "measured": value, "tolerance": f"± {tolerances['recovered']:g}",
                     "meets": bool(ok)})
    card_false, got_false = card_figures["false_per_galaxy"], measured["false_per_galaxy"]
    rows.append({"figure": "false detections / galaxy", "card": card_false,
                 "measured": got_false, "tolerance": f"+ {tolerances['false_per_galaxy']:g}",
                 "meets": bool(got_false <= card_false + tolerances["false_per_galaxy"] + _EPS)})
    return rows


def figures_move(a: Dict, b: Dict, max_change: float) -> float:
    """The largest change between two sets of held-out figures (recovered fractions and false
    detections per galaxy)."""
    changes = [abs(a["recovered"][f]["fraction"] - b["recovered"][f]["fraction"])
               for f in a["recovered"]]
    changes.append(abs(a["false_per_galaxy"] - b["false_per_galaxy"]))
    return max(changes)


def read_model_state(path: str | os.PathLike) -> Dict[str, torch.Tensor]:
    """The model tensors of a checkpoint (``.pth`` of tensors, or ``.safetensors``), read
    safely."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    data = safe_torch_load(path)
    state = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not state:
        raise CorruptCheckpointError(f"{path}: holds no model tensors")
    return {k: v for k, v in state.items() if torch.is_tensor(v)}


def export_weights(checkpoint: str | os.PathLike, dest: str | os.PathLike,
                   dtype: str = "float16") -> Dict:
    """Write the model tensors of ``checkpoint`` to ``dest`` (``.safetensors``), floating-point
    tensors cast to ``dtype`` (integer buffers kept); returns size, sha256 and dtype."""
    from safetensors.torch import save  # optional dependency, needed for writing only

    target = {"float16": torch.float16, "float32": torch.float32}[dtype]
    state = {k: (v.to(target) if v.is_floating_point() else v).contiguous()
             for k, v in read_model_state(checkpoint).items()}
    # One metadata entry: the format keeps metadata in a hash map, so two entries can be
    # written in either order, and the same weights would get another sha256 each time.
    dest = atomic_write_bytes(dest, save(state, metadata={"clump_d2": json.dumps(
        {"source": Path(checkpoint).name, "dtype": dtype}, sort_keys=True)}))
    return {"file": dest.name, "dtype": dtype, "bytes": dest.stat().st_size,
            "tensors": len(state), "sha256": model_zoo.sha256_file(dest)}


def merged_config(config_file: str, opts: Sequence[str] = ()):
    """The complete config of ``config_file`` (``_BASE_`` files merged, ``opts`` applied),
    with ``MODEL.DEVICE`` as written (no CPU fallback baked in)."""
    cfg = get_cfg()
    add_clump_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    return cfg


def dataset_fingerprints(names: Sequence[str]) -> Dict[str, Dict]:
    """Per training dataset: its annotation file, that file's sha256, and its counts of images,
    clumps and images without clumps (the training data's identity in the card)."""
    out = {}
    for name in names:
        json_file = MetadataCatalog.get(name).get("json_file", None)
        entry: Dict = {"annotations": None, "sha256": None}
        if json_file and Path(json_file).is_file():
            entry = {"annotations": os.path.relpath(json_file),
                     "sha256": model_zoo.sha256_file(json_file)}
            records = DatasetCatalog.get(name)
            entry.update(images=len(records),
                         clumps=sum(len(r.get("annotations", [])) for r in records),
                         empty_images=sum(not r.get("annotations") for r in records))
        out[name] = entry
    return out


def training_time_from_log(log_file: str | os.PathLike) -> Optional[float]:
    """Seconds of Detectron2's "Total training time: H:MM:SS" in a training ``log.txt``."""
    path = Path(log_file)
    if not path.is_file():
        return None
    found = re.findall(r"Total training time: (?:(\d+) days?, )?(\d+):(\d\d):(\d\d)",
                       path.read_text(errors="replace"))
    if not found:
        return None
    days, h, m, s = found[-1]
    return ((int(days or 0) * 24 + int(h)) * 60 + int(m)) * 60 + int(s)


def package(name: str, checkpoint: str | os.PathLike, figures: Dict,
            fp16_figures: Optional[Dict] = None, dest_root: Optional[str] = None,
            training: Optional[Dict] = None,
            selection_function: Optional[str | os.PathLike] = None) -> Path:
    """Write zoo entry ``name`` (see the module docstring) from a trained ``checkpoint`` and the
    held-out ``figures`` measured on it. With ``fp16_figures`` (the same measurement on the
    float16 weights), float16 is shipped if no figure moves by more than the recipe's
    ``fp16_max_change``; without them, float32. ``selection_function``: the held-out
    measurement's ``selection_function.csv`` (:func:`heldout_selection_function`), copied
    into the entry, named in the card and set as the config's
    ``INFERENCE.SELECTION_FUNCTION`` (``zoo:<name>``), so the catalogue gives ``p_detect``.

    Returns:
        The entry's folder.
    """
    recipe = get_recipe(name)
    folder = Path(dest_root or model_zoo.zoo_root()) / recipe.name
    folder.mkdir(parents=True, exist_ok=True)
    move = None if fp16_figures is None else figures_move(figures, fp16_figures,
                                                          recipe.fp16_max_change)
    dtype = ("float16" if move is not None and move <= recipe.fp16_max_change + _EPS
             else "float32")
    weights = export_weights(checkpoint, folder / model_zoo.registry.WEIGHTS_FILE, dtype)
    source = Path(recipe.source_config)
    cfg = merged_config(str(source if source.is_absolute() else repo_root() / source),
                        recipe.config_opts)
    cfg.MODEL.WEIGHTS = model_zoo.ZOO_PREFIX + recipe.name
    cfg.OUTPUT_DIR = f"output/{recipe.name}"
    sf_file = folder / selection.CSV_NAME
    sf_summary = None
    if selection_function is not None:
        sf = selection.SelectionFunction.read(selection_function)  # refuses a wrong table
        atomic_write_bytes(sf_file, Path(selection_function).read_bytes())
        cfg.INFERENCE.SELECTION_FUNCTION = model_zoo.ZOO_PREFIX + recipe.name
        sf_summary = selection_summary(sf)
    elif sf_file.exists():  # an earlier packaging's table would describe other weights
        sf_file.unlink()
    atomic_write_text(folder / model_zoo.registry.CONFIG_FILE,
                      f"# clump_d2 model zoo: {recipe.name} (complete config, written by "
                      f"tools/model_zoo.py package from {recipe.source_config})\n" + cfg.dump())
    card = {
        "name": recipe.name,
        "title": recipe.title,
        "config": model_zoo.registry.CONFIG_FILE,
        "source_config": recipe.source_config,
        "weights": weights,
        "training": {
            "data": recipe.training_data,
            "datasets": dataset_fingerprints(list(cfg.DATASETS.TRAIN)),
            "iterations": int(cfg.SOLVER.MAX_ITER),
            "images_per_batch": int(cfg.SOLVER.IMS_PER_BATCH),
            "base_lr": float(cfg.SOLVER.BASE_LR),
            "backbone": f"{cfg.MODEL.BACKBONE.NAME} ({cfg.MODEL.ZOOBOT.ARCH}, initial "
                        f"weights {cfg.MODEL.ZOOBOT.WEIGHTS})",
            "seed": int(cfg.SEED),
            **(training or {}),
        },
        "operating_point": {"score_thresh": float(cfg.TEST.CLUMP_EVAL.SCORE_THRESH),
                            "how": recipe.operating_point_how,
                            "test_time_augmentation": bool(cfg.TEST.DIHEDRAL_TTA.ENABLED),
                            "tta_views": (int(cfg.TEST.DIHEDRAL_TTA.VIEWS)
                                          if cfg.TEST.DIHEDRAL_TTA.ENABLED else 1),
                            "drop_bulge": bool(cfg.INFERENCE.DROP_BULGE)},
        # The card's figures are those of the weights that ship.
        "heldout": {"description": recipe.heldout_description,
                    "figures": fp16_figures if dtype == "float16" else figures,
                    "tolerances": asdict(recipe.tolerances)},
        "precision": {"shipped": dtype, "largest_change_fp16_vs_fp32": move,
                      "max_change_allowed": recipe.fp16_max_change,
                      "fp32_figures": figures, "fp16_figures": fp16_figures},
        "selection_function": sf_file.name if selection_function is not None else None,
        "selection_function_summary": sf_summary,
        "data_licence": recipe.data_licence,
        "rebuild": {"command": f"python tools/model_zoo.py rebuild {recipe.name}",
                    "check": f"python tools/model_zoo.py check {recipe.name} --weights "
                             f"output/zoo/{recipe.name}/model_final.pth",
                    "steps": [list(s.argv) for s in recipe.steps]},
        "packaged": _dt.date.today().isoformat(),
    }
    # Every file of the entry all or nothing; the card, which names the weights' sha256, last.
    atomic_write_text(folder / "MODEL_CARD.md", card_markdown(card))
    atomic_write_text(folder / model_zoo.registry.CARD_FILE, json.dumps(card, indent=2) + "\n")
    return folder


def card_markdown(card: Dict) -> str:
    """The model card for people (``MODEL_CARD.md``), from ``card.json``."""
    t, op, held = card["training"], card["operating_point"], card["heldout"]
    fig = held["figures"]
    lines = [f"# Model card: `{card['name']}`", "", card["title"] + ".", "",
             f"Use: `python tools/predict_catalog.py --model {card['name']} --input <cut-outs>` "
             f"(or `MODEL.WEIGHTS zoo:{card['name']}`). Written by `tools/model_zoo.py "
             f"package` from `card.json`.", "", "## Training", "",
             f"* data: {t['data']}",
             f"* backbone: {t['backbone']}",
             f"* {t['iterations']} iterations of {t['images_per_batch']} images, base LR "
             f"{t['base_lr']:g}, seed {t['seed']}, config `{card['source_config']}`"]
    if t.get("seconds"):
        lines.append(f"* training time: {t['seconds'] / 60:.0f} min on {t.get('machine', '?')}"
                     + (f" ({t['load']})" if t.get("load") else ""))
    lines += ["", "| dataset | annotations | sha256 | images | clumps | images without clumps |",
              "|---|---|---|---|---|---|"]
    for dname, d in t["datasets"].items():
        lines.append(f"| {dname} | `{d.get('annotations')}` | `{(d.get('sha256') or '')[:16]}` "
                     f"| {d.get('images', '')} | {d.get('clumps', '')} | "
                     f"{d.get('empty_images', '')} |")
    lines += ["", "## Operating point", "",
              f"Score >= **{op['score_thresh']:g}**, {op['how']}. Test-time augmentation "
              + (f"with {op.get('tta_views', 8)} views" if op['test_time_augmentation']
                 else "off") + "; detections within 1 PSF "
              f"FWHM of the centre {'dropped' if op['drop_bulge'] else 'kept'}.", "",
              "## Held-out figures", "", held["description"] + ".", "",
              f"Measured by `{fig.get('command', '')}` on {fig.get('machine', '')}.", ""]
    rows = [{"figure": f"recovered at {k} of the host", "value":
             f"{v['fraction']:.3f} ({v['recovered']}/{v['n']})"}
            for k, v in fig["recovered"].items()]
    rows.append({"figure": "false detections / galaxy", "value": f"{fig['false_per_galaxy']:.3f}"})
    lines.append(markdown_table(rows, ["figure", "value"]).rstrip("\n"))
    tol = held["tolerances"]
    lines += ["", f"A rebuilt model meets this card when every recovered fraction is within "
              f"± {tol['recovered']:g} and false detections per galaxy at most "
              f"{tol['false_per_galaxy']:g} above (`{card['rebuild']['check']}`).", "",
              "## Weights", "",
              f"`{card['weights']['file']}`, {card['weights']['dtype']}, "
              f"{card['weights']['bytes'] / 1e6:.1f} MB, sha256 `{card['weights']['sha256']}` "
              "(checked before every use)."]
    prec = card["precision"]
    if prec.get("largest_change_fp16_vs_fp32") is not None:
        lines.append(f"Float16 vs float32 weights: largest change of a held-out figure "
                     f"{prec['largest_change_fp16_vs_fp32']:.4f} (allowed "
                     f"{prec['max_change_allowed']:g}).")
    if card.get("selection_function"):
        lines += ["", "## Selection function", "", selection_markdown(card)]
    lines += ["", "## Rebuild", "", f"`{card['rebuild']['command']}` (data + training, "
              "resumable), then the check above.", "", "## Licence of the data", "",
              card["data_licence"] + ".", ""]
    return "\n".join(lines)


def selection_summary(sf: "selection.SelectionFunction") -> Dict:
    """The card's compact view of a selection function: its band, operating point, radius
    bins and flux fractions, and the recovered fraction (with counts) per radius bin and flux
    fraction over all hosts, and per host group over all radii."""
    t = sf.table
    fluxes = sorted(t.loc[t["margin"] == "cell", "flux_frac"].unique())

    def cells(sel) -> Dict[str, Dict]:
        return {f"{r.flux_frac:g}": {"fraction": None if r.n == 0 else round(r.fraction, 4),
                                     "recovered": int(r.recovered), "n": int(r.n)}
                for r in sel.itertuples()}

    every = t[t["group"] == selection.ALL_HOSTS]
    by_radius = {f"{lo:g}-{hi:g}": cells(every[(every["margin"] == "cell")
                                               & (every["r50_low"] == lo)])
                 for lo, hi in zip(sf.radius_edges[:-1], sf.radius_edges[1:])}
    by_group = {g: cells(t[(t["group"] == g) & (t["margin"] == "flux_frac")])
                for g in sf.groups}
    return {"band": sf.band,
            "score_thresh": sf.score_thresh if math.isfinite(sf.score_thresh) else None,
            "radius_edges_r50": [float(e) for e in sf.radius_edges],
            "flux_fractions": [float(f) for f in fluxes], "by_radius_all_hosts": by_radius,
            "by_group_all_radii": by_group}


def selection_markdown(card: Dict) -> str:
    """The model card's selection-function section: what the file is, and a compact table."""
    s = card.get("selection_function_summary") or {}
    text = (f"`{card['selection_function']}` (read by the catalogue through the entry's "
            f"`INFERENCE.SELECTION_FUNCTION zoo:{card['name']}`: each clump's `p_detect`; "
            "docs/catalogues.md). Recovered fraction of clumps injected into the held-out "
            f"hosts at score >= {s.get('score_thresh')}, by flux fraction in "
            f"{s.get('band', '?')} (columns) and distance from the centre in host R50 (rows, "
            "all hosts), then per host class over all distances:")
    if not s:
        return text
    fluxes = [f"{f:g}" for f in s["flux_fractions"]]

    def cell(c: Optional[Dict]) -> str:
        if not c or c["fraction"] is None:
            return "-"
        return f"{c['fraction']:.2f} ({c['recovered']}/{c['n']})"

    rows = [{"where": f"r/R50 {k}", **{f: cell(v.get(f)) for f in fluxes}}
            for k, v in s["by_radius_all_hosts"].items()]
    rows += [{"where": f"hosts: {g}", **{f: cell(v.get(f)) for f in fluxes}}
             for g, v in s["by_group_all_radii"].items()]
    return text + "\n\n" + markdown_table(rows, ["where", *fluxes],
                                           ["", *[f"flux {f}" for f in fluxes]]).rstrip("\n")


def fp16_figures_for(name: str, checkpoint: str, out_dir: str | os.PathLike,
                     shared: str = DEFAULT_SHARED, run=_run_tool) -> Dict:
    """The held-out figures of ``checkpoint``'s weights stored in float16 (exported to a
    temporary ``.safetensors`` and measured like any weights)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    half = out / "model_fp16.safetensors"
    if not half.exists():
        export_weights(checkpoint, half, "float16")
    return measure(name, str(half), out / "heldout", shared, run=run)


__all__ = [
    "RECIPES", "Recipe", "Step", "Tolerances", "card_markdown", "compare_to_card",
    "dataset_fingerprints", "export_weights", "fp16_figures_for", "get_recipe",
    "heldout_command", "heldout_selection_function", "measure", "merged_config", "package",
    "read_heldout_figures", "read_model_state", "rebuild", "selection_markdown",
    "selection_summary", "training_time_from_log",
]
