"""The paper's transfer-learning comparison: backbone x training-set size, one schedule.

Popp et al. (2024) found that a backbone pretrained on galaxies (Zoobot) beats an ImageNet one,
most of all with few labelled images. Here (:func:`run_study`):

* **Backbones** (:data:`BACKBONES`): EfficientNet-Lite0 from random weights, from ImageNet
  (``imagenet:efficientnet_lite0``), galaxy-pretrained (``tools/pretrain_encoder.py`` on the
  1,400 real SDSS galaxies, from random weights) and ImageNet -> galaxy (the same pretraining
  started from ImageNet). Each is a few config overrides on ``configs/Transfer/Base-Lite0.yaml``.
* **Training-set sizes**: numbers of training *host galaxies* of the real-host dataset (every
  version of a chosen host is kept, so no host is split between sizes). The subsets are nested
  and deterministic (:func:`host_subsets`: one fixed-seed permutation of the sorted host ids,
  each size a prefix of it); each is registered as ``<train>_h<n>``.
* **Schedule**: the same ``SOLVER`` for every run (``--max-iter``); each run is a
  ``tools/train_net.py``-equivalent training (:class:`~clump_d2.engine.ClumpTrainer`) into
  ``<output>/<backbone>_<n>/``. A run whose ``model_final.pth`` exists is not retrained; an
  interrupted one resumes from its last checkpoint.
* **Evaluation**: each run's model predicts once on every dataset (predictions cached in the
  run folder as ``predictions_<dataset>.json``); the operating score threshold is the one
  maximising F1 on the validation hosts (``gz2hosts_val``), then applied unchanged to (a)
  injected clumps in held-out real hosts (``gz2hosts_test``), (b) the real GZH S82 galaxies
  (``gzh_s82c_all``, both folds: at the catalogue's full depth, :data:`REAL_EVAL_OPTS`, and at
  the paper's giant-clump definition, :data:`GIANT_EVAL_OPTS`) and (c) the simulation's
  validation set (``clumpsim_val``). Counts come from :class:`~clump_d2.evaluation.
  ClumpEvaluator` (its ``compute`` on the cached predictions).

Outputs in ``<output>``: ``transfer.{md,csv,json}`` (one row per backbone x size) and
``transfer.png`` (F1, completeness and purity on (a) against the number of training hosts, one
line per backbone).
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from tqdm import tqdm

from clump_d2.data.tables import markdown_table
from clump_d2.engine import (
    ClumpTrainer,
    build_config,
    build_model_for_inference,
    predict_on_dataset,
    prepare_datasets,
)
from clump_d2.evaluation import ClumpEvaluator
from clump_d2.evaluation.metrics import N_DET, N_MATCHED, N_TRUE, ratios
from clump_d2.studies.realdata import PAPER_FLUX_LIMITS, paper_opts

logger = logging.getLogger(__name__)

BASE_CONFIG = "configs/Transfer/Base-Lite0.yaml"

#: Backbone name -> config overrides on :data:`BASE_CONFIG`. Random init trains its BatchNorm
#: statistics (``NORM "BN"``): it has none to freeze, and FrozenBN on random weights would be
#: no normalisation at all.
BACKBONES: Dict[str, List[str]] = {
    "random": ["MODEL.ZOOBOT.WEIGHTS", "", "MODEL.ZOOBOT.NORM", "BN"],
    "imagenet": ["MODEL.ZOOBOT.WEIGHTS", "imagenet:efficientnet_lite0"],
    "galaxy": ["MODEL.ZOOBOT.WEIGHTS", "output/pretrain/lite0_gz2_64"],
    "imagenet_galaxy": ["MODEL.ZOOBOT.WEIGHTS", "output/pretrain/lite0_imagenet_gz2_64"],
}

#: Config overrides of the real-galaxy evaluation (b): the catalogue's clumps are positions
#: whose boxes only encode the seeing, so a detection matches a clump within the distance rule
#: (as in ``docs/realdata.md``), not by box IoU.
REAL_EVAL_OPTS = ["TEST.CLUMP_EVAL.MATCH", "distance"]
#: The paper's giant clumps on the real galaxies (:func:`~clump_d2.studies.realdata.
#: paper_opts`: u-band flux >= 3 % of the host, beyond 1 PSF FWHM of the centre); the other
#: catalogue clumps are ignore regions (a detection on one is neither true nor false).
GIANT_EVAL_OPTS = REAL_EVAL_OPTS + paper_opts(PAPER_FLUX_LIMITS[0])

#: Key of the host galaxy in the real-host dataset's image records.
HOST_KEY = "host_id"


@dataclass
class TransferSpec:
    """What the study runs (defaults: the study of ``docs/transfer.md``).

    Attributes:
        output_dir: folder of the runs and the table.
        backbones: names in :data:`BACKBONES` (or in ``backbone_opts``).
        sizes: numbers of training host galaxies (each <= the hosts of ``train_dataset``).
        train_dataset: the registered real-host training split.
        val_dataset: the split whose F1-best threshold is each run's operating point.
        tests: {column label: registered dataset} evaluated at that threshold.
        test_opts: {column label: extra config overrides of its evaluation}.
        config_file: the base config; ``opts``: overrides of every run (the schedule).
        seed: seed of the host permutation (nested subsets).
        backbone_opts: overrides per backbone name (default :data:`BACKBONES`).
        test_limits: {column label: evaluate only N of its images, evenly spaced}; a
            smaller evaluation set when the CPU is short (:func:`limited_dataset`).
        copy_table, copy_figure: also copy ``transfer.md`` / ``transfer.png`` there after
            every run (e.g. ``docs/transfer_table.md``, ``docs/figures/transfer.png``).
        caption: a line written above the Markdown table (the command and the machine).
    """

    output_dir: str = "output/transfer"
    backbones: Sequence[str] = ("random", "imagenet", "galaxy", "imagenet_galaxy")
    sizes: Sequence[int] = (100, 300, 880)
    train_dataset: str = "gz2hosts_train"
    val_dataset: str = "gz2hosts_val"
    tests: Dict[str, str] = field(default_factory=lambda: {
        "hosts": "gz2hosts_test", "gzh_s82": "gzh_s82c_all", "gzh_s82_giant": "gzh_s82c_all",
        "sim": "clumpsim_val"})
    test_opts: Dict[str, List[str]] = field(default_factory=lambda: {
        "gzh_s82": list(REAL_EVAL_OPTS), "gzh_s82_giant": list(GIANT_EVAL_OPTS)})
    config_file: str = BASE_CONFIG
    opts: List[str] = field(default_factory=list)
    seed: int = 0
    backbone_opts: Dict[str, List[str]] = field(default_factory=lambda: dict(BACKBONES))
    test_limits: Dict[str, int] = field(default_factory=dict)
    copy_table: str = ""
    copy_figure: str = ""
    caption: str = ""


# --- training subsets -----------------------------------------------------------------------


def host_subsets(records: Sequence[Dict], sizes: Sequence[int], seed: int = 0
                 ) -> Dict[int, List[str]]:
    """{size: host ids}: nested prefixes of one fixed-seed permutation of the sorted host ids,
    so a larger training set contains every smaller one and the same seed gives the same
    hosts.

    Raises:
        ValueError: a record without ``host_id`` (naming its image), or a size larger than the
            number of hosts.
    """
    hosts = set()
    for r in records:
        if HOST_KEY not in r:
            raise ValueError(f"image {r.get('file_name', r.get('image_id'))!r} has no "
                             f"{HOST_KEY!r}: not a real-host dataset record")
        hosts.add(str(r[HOST_KEY]))
    order = sorted(hosts)
    perm = np.random.default_rng(seed).permutation(len(order))
    shuffled = [order[i] for i in perm]
    out = {}
    for n in sizes:
        if not 0 < int(n) <= len(shuffled):
            raise ValueError(f"training size {n} outside 1..{len(shuffled)} (the hosts of the "
                             "training split)")
        out[int(n)] = shuffled[:int(n)]
    return out


def register_subset(base: str, name: str, keep: Callable[[Dict], bool]) -> str:
    """Register ``name`` as the records of ``base`` for which ``keep(record)`` is true (lazy,
    as every registration; same metadata). Registering the same name again is a no-op."""
    if name in DatasetCatalog.list():
        return name
    DatasetCatalog.register(name, lambda: [r for r in DatasetCatalog.get(base) if keep(r)])
    meta = {k: v for k, v in MetadataCatalog.get(base).as_dict().items() if k != "name"}
    MetadataCatalog.get(name).set(**meta, subset_of=base)
    return name


def register_host_subsets(spec: TransferSpec) -> Dict[int, str]:
    """Register ``<train>_h<n>`` for every size; write each size's hosts to
    ``<output>/subsets/hosts_<n>.txt``; return {size: dataset name}."""
    subsets = host_subsets(DatasetCatalog.get(spec.train_dataset), spec.sizes, spec.seed)
    folder = Path(spec.output_dir) / "subsets"
    folder.mkdir(parents=True, exist_ok=True)
    names = {}
    for n, hosts in subsets.items():
        (folder / f"hosts_{n}.txt").write_text("\n".join(hosts) + "\n")
        chosen = frozenset(hosts)
        names[n] = register_subset(spec.train_dataset, f"{spec.train_dataset}_h{n}",
                                   lambda r, chosen=chosen: str(r[HOST_KEY]) in chosen)
    return names


def limited_dataset(dataset: str, limit: Optional[int]) -> str:
    """``dataset`` itself, or (``limit``) ``limit`` of its images evenly spaced in image-id
    order (so they spread over the hosts rather than taking the first few), registered as
    ``<dataset>_n<limit>``."""
    if not limit:
        return dataset
    ids = sorted(r["image_id"] for r in DatasetCatalog.get(dataset))
    if int(limit) >= len(ids):
        return dataset
    keep = frozenset(ids[i] for i in np.linspace(0, len(ids) - 1, int(limit)).round()
                     .astype(int))
    return register_subset(dataset, f"{dataset}_n{int(limit)}",
                           lambda r: r["image_id"] in keep)


# --- one run --------------------------------------------------------------------------------


def run_name(backbone: str, size: int) -> str:
    return f"{backbone}_{size}"


def run_config(spec: TransferSpec, backbone: str, train_name: str, out_dir: Path,
               extra: Sequence[str] = ()):
    """The frozen config of one run: base config + the study's opts + the backbone's."""
    if backbone not in spec.backbone_opts:
        raise ValueError(f"unknown backbone {backbone!r}; known: {sorted(spec.backbone_opts)}")
    opts = list(spec.opts) + list(spec.backbone_opts[backbone]) + [
        "DATASETS.TRAIN", f"('{train_name}',)", "DATASETS.TEST", "()",
        "OUTPUT_DIR", str(out_dir)] + list(extra)
    return build_config(spec.config_file, opts)


class _RunLog:
    """The run's log file (``<run>/log.txt``) for the clump_d2 and detectron2 loggers while
    the run trains and evaluates, as ``train_net.py``'s ``default_setup`` would write it."""

    def __init__(self, path: Path):
        self.handler = logging.FileHandler(path)
        self.handler.setFormatter(logging.Formatter(
            "[%(asctime)s] %(name)s %(levelname)s: %(message)s", "%m/%d %H:%M:%S"))
        self.loggers = [logging.getLogger(n) for n in ("clump_d2", "detectron2", "fvcore")]

    def __enter__(self):
        for lg in self.loggers:
            lg.addHandler(self.handler)
            if lg.getEffectiveLevel() > logging.INFO:
                lg.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc):
        for lg in self.loggers:
            lg.removeHandler(self.handler)
        self.handler.close()


def train_run(cfg) -> Dict:
    """Train one run unless ``OUTPUT_DIR/model_final.pth`` exists (resuming from the last
    checkpoint of an interrupted one); returns {"trained", "seconds", "weights"}."""
    out = Path(cfg.OUTPUT_DIR)
    final = out / "model_final.pth"
    if final.exists():
        logger.info("%s exists: not retrained", final)
        return {"trained": False, "seconds": None, "weights": str(final)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(cfg.dump())
    start = time.time()
    trainer = ClumpTrainer(cfg)
    trainer.resume_or_load(resume=True)
    trainer.train()
    seconds = time.time() - start
    (out / "train_time.json").write_text(json.dumps(
        {"seconds": seconds, "max_iter": cfg.SOLVER.MAX_ITER,
         "ims_per_batch": cfg.SOLVER.IMS_PER_BATCH, "threads": torch.get_num_threads()}))
    return {"trained": True, "seconds": seconds, "weights": str(final)}


def _to_jsonable(preds: Sequence[Dict]) -> List[Dict]:
    return [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in p.items()}
            for p in preds]


def _from_json(preds: Sequence[Dict]) -> List[Dict]:
    return [{"image_id": p["image_id"],
             "boxes": np.asarray(p["boxes"], dtype=np.float64).reshape(-1, 4),
             "scores": np.asarray(p["scores"], dtype=np.float64),
             "classes": np.asarray(p["classes"], dtype=np.int64)} for p in preds]


def cached_predictions(cfg, model_fn: Callable[[], torch.nn.Module], dataset: str,
                       run_dir: Path) -> List[Dict]:
    """The model's raw detections on ``dataset`` (:func:`~clump_d2.engine.predict_on_dataset`),
    cached in ``run_dir/predictions_<dataset>.json`` and re-used while it is newer than the
    run's ``model_final.pth``."""
    path = run_dir / f"predictions_{dataset}.json"
    final = run_dir / "model_final.pth"
    if path.exists() and (not final.exists() or path.stat().st_mtime >= final.stat().st_mtime):
        return _from_json(json.loads(path.read_text()))
    preds = predict_on_dataset(cfg, model_fn(), dataset)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_to_jsonable(preds)))
    os.replace(tmp, path)
    return preds


def f1_best_threshold(report: Dict) -> tuple:
    """(threshold, F1) of the F1 maximum of a ClumpEvaluator report's sweep (class-agnostic;
    the lowest such threshold on ties)."""
    c = report["curves"]["all"]
    counts = np.zeros((len(report["thresholds"]), 3))
    counts[:, N_TRUE] = c["n_true"]
    counts[:, N_DET] = c["n_detections"]
    counts[:, N_MATCHED] = c["n_matched"]
    f1 = np.nan_to_num(ratios(counts)["F1"], nan=-1.0)
    best = int(np.argmax(f1))
    return float(report["thresholds"][best]), float(max(f1[best], 0.0))


def score(cfg, dataset: str, predictions: Sequence[Dict], thresh: float) -> Dict:
    """The ClumpEvaluator report of ``predictions`` on ``dataset`` at score >= ``thresh``
    (the matching rule of ``cfg``)."""
    kwargs = ClumpEvaluator.from_config(cfg, dataset, output_dir=None, distributed=False)
    kwargs.update(score_thresh=thresh, plot=False)
    evaluator = ClumpEvaluator(**kwargs)
    return evaluator.compute(predictions, DatasetCatalog.get(dataset))


def evaluate_run(spec: TransferSpec, backbone: str, train_name: str, run_dir: Path,
                 tests: Dict[str, str]) -> Dict:
    """Threshold from ``spec.val_dataset`` (F1 maximum), then each test at it; returns the
    row's evaluation fields (also written to ``run_dir/transfer_eval.json``)."""
    weights = ["MODEL.WEIGHTS", str(run_dir / "model_final.pth")]
    model_cache: Dict[str, torch.nn.Module] = {}

    def model_fn():
        if "m" not in model_cache:
            model_cache["m"] = build_model_for_inference(
                run_config(spec, backbone, train_name, run_dir, weights))
        return model_cache["m"]

    base_cfg = run_config(spec, backbone, train_name, run_dir, weights)
    val_preds = cached_predictions(base_cfg, model_fn, spec.val_dataset, run_dir)
    val = score(base_cfg, spec.val_dataset, val_preds, 0.5)
    thresh, val_f1 = f1_best_threshold(val)
    row = {"thresh": thresh, "val_F1": val_f1}
    for label, dataset in tests.items():
        cfg = run_config(spec, backbone, train_name, run_dir,
                         weights + list(spec.test_opts.get(label, [])))
        preds = cached_predictions(cfg, model_fn, dataset, run_dir)
        rep = score(cfg, dataset, preds, thresh)
        op, s = rep["operating"]["all"], rep["curve_summary"]["all"]
        row.update({f"{label}_{k}": op[k] for k in ("completeness", "purity", "F1", "n_true",
                                                    "n_detections", "n_matched")})
        row[f"{label}_F1_max"] = s["F1_max"]
        row[f"{label}_dataset"] = dataset
        ig = rep.get("ignore") or {}
        row[f"{label}_n_ignored"] = ig.get("n_ignored", 0)
        # iscrowd knots and the giant definition's ignore regions, as the evaluator counts them
        row[f"{label}_rule"] = rep["match"]["rule"] + (
            f"; ignore regions: {ig.get('rule') or 'iscrowd'} ({ig['n_ignored']} clumps)"
            if ig.get("n_ignored") else "")
        logger.info("%s on %s at score >= %.2f: C %.3f P %.3f F1 %.3f", run_dir.name, dataset,
                    thresh, op["completeness"], op["purity"], op["F1"])
    (run_dir / "transfer_eval.json").write_text(json.dumps(_clean(row), indent=2))
    return row


# --- the study ------------------------------------------------------------------------------


def _clean(row: Dict) -> Dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in row.items()}


def run_study(spec: TransferSpec, progress: bool = True) -> List[Dict]:
    """Every (size, backbone) run, smallest size first (the paper's key comparison finishes
    first): train unless done, evaluate, and rewrite the table and figure after each run, so
    an interrupted study leaves a table of what has finished. Returns the rows."""
    out = Path(spec.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for b in spec.backbones:
        if b not in spec.backbone_opts:
            raise ValueError(f"unknown backbone {b!r}; known: {sorted(spec.backbone_opts)}")
    # Synthetic validation images are generated on first use (as train_net.py does).
    prepare_datasets(build_config(spec.config_file, list(spec.opts) + [
        "DATASETS.TRAIN", "()", "DATASETS.TEST", f"{tuple(spec.tests.values())!r}"]))
    train_names = register_host_subsets(spec)
    tests = {label: limited_dataset(ds, spec.test_limits.get(label))
             for label, ds in spec.tests.items()}
    n_images = {n: len(DatasetCatalog.get(name)) for n, name in train_names.items()}
    # Sizes in the order given (the first is the key comparison; a size wanted only if time
    # allows can come last), every backbone at one size before the next size.
    grid = [(int(n), b) for n in dict.fromkeys(spec.sizes) for b in spec.backbones]
    rows = []
    for n, b in tqdm(grid, desc="transfer runs", unit="run", disable=not progress):
        run_dir = out / run_name(b, n)
        run_dir.mkdir(parents=True, exist_ok=True)
        with _RunLog(run_dir / "log.txt"):
            cfg = run_config(spec, b, train_names[n], run_dir)
            trained = train_run(cfg)
            timing = run_dir / "train_time.json"
            seconds = json.loads(timing.read_text())["seconds"] if timing.exists() else None
            row = {"backbone": b, "n_hosts": n, "n_train_images": n_images[n],
                   "max_iter": cfg.SOLVER.MAX_ITER, "train_seconds": seconds,
                   "retrained": trained["trained"], "weights": trained["weights"]}
            row.update(evaluate_run(spec, b, train_names[n], run_dir, tests))
        rows.append(row)
        rows.sort(key=lambda r: (r["n_hosts"], list(spec.backbones).index(r["backbone"])))
        write_table(rows, out, tests, spec.caption)
        plot_transfer(rows, out / "transfer.png")
        for src, dst in ((out / "transfer.md", spec.copy_table),
                         (out / "transfer.png", spec.copy_figure)):
            if dst:
                Path(dst).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
    return rows


def _fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "undefined"
    return f"{v:.{digits}f}"


def write_table(rows: Sequence[Dict], output_dir: str | os.PathLike,
                tests: Dict[str, str], caption: str = "") -> Dict[str, Path]:
    """``transfer.{json,csv,md}`` in ``output_dir``: one row per (backbone, size);
    completeness / purity / F1 of each test at the run's validation threshold (``caption``:
    a line above the Markdown table)."""
    output_dir = Path(output_dir)
    paths = {k: output_dir / f"transfer.{k}" for k in ("json", "csv", "md")}
    clean = [_clean(r) for r in rows]
    paths["json"].write_text(json.dumps(clean, indent=2))
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    headers = ["backbone", "train hosts (images)", "iterations", "train min",
               "thresh (F1-best on val)", "val F1"]
    for label, ds in tests.items():
        headers += [f"{label} C", f"{label} P", f"{label} F1", f"{label} matched / true"]
    cells = []
    for r in rows:
        mins = None if r["train_seconds"] is None else r["train_seconds"] / 60
        c = [r["backbone"], f"{r['n_hosts']} ({r['n_train_images']})", r["max_iter"],
             _fmt(mins, 1), _fmt(r["thresh"]), _fmt(r["val_F1"])]
        for label in tests:
            c += [_fmt(r[f"{label}_completeness"]), _fmt(r[f"{label}_purity"]),
                  _fmt(r[f"{label}_F1"]), f"{r[f'{label}_n_matched']} / {r[f'{label}_n_true']}"]
        cells.append(dict(zip(headers, c)))
    legend = "; ".join(f"{label} = {ds} ({rows[0].get(f'{label}_rule', '?')})"
                       for label, ds in tests.items()) if rows else ""
    head = f"{caption}\n\n" if caption else ""
    paths["md"].write_text(head + markdown_table(cells, headers) + f"\nDatasets: {legend}.\n")
    return paths


def plot_transfer(rows: Sequence[Dict], path: str | os.PathLike, label: str = "hosts") -> None:
    """The paper's figure: F1, completeness and purity on test ``label`` against the number of
    training hosts, one line per backbone."""
    import matplotlib  # local: plotting is optional for the study's numbers

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharex=True, sharey=True)
    for b in dict.fromkeys(r["backbone"] for r in rows):
        rs = sorted((r for r in rows if r["backbone"] == b), key=lambda r: r["n_hosts"])
        x = [r["n_hosts"] for r in rs]
        for ax, key in zip(axes, ("F1", "completeness", "purity")):
            y = [np.nan if r[f"{label}_{key}"] is None else r[f"{label}_{key}"] for r in rs]
            ax.plot(x, y, marker="o", label=b)
    sizes = sorted({r["n_hosts"] for r in rows})
    for ax, key in zip(axes, ("F1", "completeness", "purity")):
        ax.set_title(key)
        ax.set_xlabel("training host galaxies")
        ax.set_xscale("log")
        # Ticks at the sizes run, not log decades (whose minor labels overlap).
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{label} test, at the val F1-best threshold")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
