"""Batch evaluation jobs: many (config, checkpoint) pairs x datasets -> one table and one plot.

Each (pair, dataset) unit is evaluated exactly as ``tools/train_net.py --eval-only`` does
(``build_config`` -> :func:`~clump_d2.engine.evaluate.build_model_for_inference` ->
:func:`~clump_d2.engine.evaluate.evaluate_on_dataset`), so both give the same numbers.
Every unit's outcome is stored in its own JSON file under ``<output_dir>/results/`` as soon
as it is known, which makes a job resumable: a re-run skips a unit only if its *merged*
config (the YAML with its ``_BASE_`` files and all overrides, as ``cfg.dump()``; so an edited
config file is evaluated again), its weights (path, size, modification time) and its dataset
(name, annotation file size and modification time) are those of the stored result, and
retries failed ones. A failing unit is recorded with its error and traceback, and the others
go on; a model whose weights did not load (``WeightsNotLoadedError``: empty ``weights``, or a
checkpoint matching none of the model's keys) and a dataset without images are such failures,
with status ``error`` and the message in the table, never an "ok" row.

Outputs in ``output_dir``: ``batch_results.csv``, ``batch_results.md``,
``batch_comparison.png`` and, per unit, the evaluator's files under
``runs/<pair>/inference/<dataset>/``. File names come from the exact pair and dataset names
(:func:`_safe`): a name that is not a plain file name gets a hash of itself, so two pairs never
share a result file or a folder (``run/a`` and ``run_a``), and a stored result is used only
for the pair and dataset it names.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import re
import statistics
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import pandas as pd
import yaml
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation.testing import flatten_results_dict
from tqdm import tqdm

from clump_d2 import model_zoo
from clump_d2.data.tables import markdown_table
from clump_d2.data.tables import write_table as write_dataframe
from clump_d2.evaluation.clump_evaluation import CURVE_FILE, _clean
from clump_d2.evaluation.plots import plot_comparison

from .defaults import build_config, prepare_datasets
from .evaluate import build_model_for_inference, evaluate_on_dataset

logger = logging.getLogger(__name__)

RESULTS_CSV = "batch_results.csv"
RESULTS_MD = "batch_results.md"
COMPARISON_PNG = "batch_comparison.png"
#: Columns of the table (metric names as flattened by detectron2, "clumps/..." and "bbox/...").
TABLE_COLUMNS = [
    ("completeness", "clumps/completeness"), ("purity", "clumps/purity"), ("F1", "clumps/F1"),
    ("C=P", "clumps/equal_CP_value"), ("thresh C=P", "clumps/equal_CP_thresh"),
    ("F1 max", "clumps/F1_max"), ("thresh F1 max", "clumps/F1_max_thresh"),
    ("n_true", "clumps/n_true"), ("n_det", "clumps/n_detections"),
    ("n_matched", "clumps/n_matched"), ("AP", "bbox/AP"), ("AP50", "bbox/AP50"),
]


@dataclass
class EvalPair:
    """One model to evaluate: a config file, its weights, and optional ``KEY VALUE`` overrides.

    ``name`` labels the pair in the table (unique within a job).
    """

    name: str
    config: str
    weights: str
    opts: List[str] = field(default_factory=list)


def load_pairs(path: str) -> List[EvalPair]:
    """Pairs from a YAML list of {name, config, weights[, opts]} or a CSV with columns
    name, config, weights[, opts] (opts space-separated). Relative paths are taken relative
    to the working directory."""
    text = Path(path).read_text()
    if str(path).endswith((".yaml", ".yml")):
        items = yaml.safe_load(text) or []
    else:
        items = list(csv.DictReader(text.splitlines()))
    pairs = []
    for i, item in enumerate(items):
        missing = {"name", "config", "weights"} - set(k for k, v in item.items() if v)
        if missing:
            raise ValueError(f"{path}: entry {i} lacks {sorted(missing)}")
        opts = item.get("opts") or []
        pairs.append(EvalPair(str(item["name"]), str(item["config"]), str(item["weights"]),
                              opts.split() if isinstance(opts, str) else [str(o) for o in opts]))
    names = [p.name for p in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: pair names must be unique, got {names}")
    return pairs


_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _safe(name: str) -> str:
    """A file name for ``name``, one per name: a plain name (letters, digits, ``_.-``, not
    starting with ``.``) as it is; any other (``run/a``, ``..``) as a slug plus ``@`` and a
    hash of the exact name, so that ``run/a`` and ``run_a`` never share a result file or an
    evaluator folder (``@`` never appears in a plain name)."""
    if _PLAIN.fullmatch(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name).lstrip('.')[:60]}@{digest}"


def result_file(output_dir: str, pair: EvalPair, dataset: str) -> Path:
    """Where one unit's outcome is stored (one file per (pair name, dataset): :func:`_safe`)."""
    return Path(output_dir) / "results" / f"{_safe(pair.name)}__{_safe(dataset)}.json"


def check_unit_files(units: Sequence[Tuple[EvalPair, str]], output_dir: str) -> None:
    """Refuse two units whose result files would be one file (names equal but for letter case,
    on a file system that ignores case), naming both."""
    seen: Dict[str, Tuple[str, str]] = {}
    for pair, dataset in units:
        key = str(result_file(output_dir, pair, dataset)).lower()
        if key in seen and seen[key] != (pair.name, dataset):
            raise ValueError(f"pairs {seen[key][0]!r} and {pair.name!r} on {dataset!r} would "
                             f"share the result file {result_file(output_dir, pair, dataset)}; "
                             "rename one")
        seen[key] = (pair.name, dataset)


def fingerprint(pair: EvalPair, dataset: str, extra_opts: Sequence[str] = ()) -> Dict:
    """What identifies a unit's result: a change in any of these makes a re-run evaluate it.

    The config is compared by content: the sha256 of the unit's merged config
    (:func:`unit_config`, ``_BASE_`` files and overrides included; ``OUTPUT_DIR`` left out, so
    that moving the job's folder does not invalidate it). A config that cannot be built gets
    the error text instead (the unit then fails, and is retried).
    """
    try:
        cfg = unit_config(pair, dataset, "", extra_opts).clone()
        cfg.defrost()
        cfg.OUTPUT_DIR = ""
        config = {"config_sha256": hashlib.sha256(cfg.dump().encode()).hexdigest()}
    except Exception as e:  # noqa: BLE001  (recorded; evaluate_unit raises it again)
        config = {"config_error": f"{type(e).__name__}: {e}"}
    return {"config": os.path.abspath(pair.config), **config,
            "weights": _file_identity(pair.weights), "opts": list(pair.opts) + list(extra_opts),
            "dataset": dataset, "dataset_file": _file_identity(_dataset_file(dataset))}


def _file_identity(path: Optional[str]) -> Optional[Dict]:
    """Path, size and modification time of a file (None for no path; size None if absent)."""
    if not path:
        return None
    zoo = model_zoo.zoo_identity(path)  # a shipped model: its card's checksum names it
    if zoo is not None:
        return zoo
    stat = Path(path).stat() if Path(path).is_file() else None
    return {"path": os.path.abspath(path), "size": stat.st_size if stat else None,
            "mtime": stat.st_mtime if stat else None}


def _dataset_file(dataset: str) -> Optional[str]:
    """The annotation file of a registered dataset (None when it names none)."""
    if dataset not in DatasetCatalog.list():
        return None
    return MetadataCatalog.get(dataset).get("json_file", None)


def unit_config(pair: EvalPair, dataset: str, output_dir: str, extra_opts: Sequence[str] = ()):
    """The frozen config of one unit (its evaluator writes under runs/<pair>/)."""
    run_dir = os.path.join(output_dir, "runs", _safe(pair.name))
    return build_config(pair.config, [*pair.opts, *extra_opts, "MODEL.WEIGHTS", pair.weights,
                                      "DATASETS.TEST", (dataset,), "OUTPUT_DIR", run_dir])


def evaluate_unit(pair: EvalPair, dataset: str, output_dir: str,
                  extra_opts: Sequence[str] = ()) -> Dict:
    """Evaluate one pair on one dataset as ``train_net.py --eval-only`` does.

    Returns:
        {"metrics": flat {"clumps/F1": ..., "bbox/AP": ...}, "curve": {column: [...]}}.

    Raises:
        ValueError: the dataset is not registered or has no images (naming it).
        WeightsNotLoadedError: the pair's weights are empty or match none of the model's keys.
    """
    cfg = unit_config(pair, dataset, output_dir, extra_opts)
    prepare_datasets(cfg)
    check_dataset(dataset)  # before building the model: the cheaper failure first
    results = evaluate_on_dataset(cfg, build_model_for_inference(cfg), dataset)
    metrics = {k: float(v) for k, v in flatten_results_dict(results).items()}
    curve_path = Path(cfg.OUTPUT_DIR) / "inference" / dataset / CURVE_FILE
    return {"metrics": metrics, "curve": read_curve(curve_path) if curve_path.is_file() else {}}


def check_dataset(dataset: str) -> int:
    """The number of images of a registered dataset.

    Raises:
        ValueError: naming the dataset (and its annotation file) when it is not registered or
            has no images: completeness and purity of nothing are not results.
    """
    if dataset not in DatasetCatalog.list():
        raise ValueError(f"dataset {dataset!r} is not registered (register it, or give one of "
                         "the names tools/train_net.py accepts)")
    n = len(DatasetCatalog.get(dataset))
    if n == 0:
        source = _dataset_file(dataset)
        raise ValueError(f"dataset {dataset!r} has no images"
                         f"{f' ({source})' if source else ''}: nothing to evaluate")
    return n


def read_curve(path) -> Dict[str, List[float]]:
    """clump_curve.csv -> {column: values} (class-agnostic columns only)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keys = ("score_thresh", "completeness", "purity", "F1")
    return {k: [float(r[k]) for r in rows] for k in keys if rows and k in rows[0]}


def run_batch(pairs: Sequence[EvalPair], datasets: Sequence[str], output_dir: str,
              extra_opts: Sequence[str] = (), retry_failed: bool = True,
              evaluate_fn: Callable[..., Dict] = evaluate_unit,
              show_progress: bool = True, summary: bool = False) -> List[Dict]:
    """Evaluate every pair on every dataset, skipping units already done; write the table
    and the comparison plot.

    Args:
        pairs: the models.
        datasets: registered dataset names; empty: each pair's own ``DATASETS.TEST``.
        output_dir: where results, table, plot and evaluator outputs go.
        extra_opts: ``KEY VALUE`` overrides applied to every pair (after its own).
        retry_failed: evaluate again the units whose stored outcome is an error.
        evaluate_fn: ``(pair, dataset, output_dir, extra_opts) -> {"metrics", "curve"}``.
        summary: add min / median / max rows over the pairs per dataset to the table.

    Returns:
        one record per (pair, dataset), in order: name, dataset, status ("ok" / "error"),
        metrics, curve, error, traceback, seconds, skipped (True if taken from a previous
        run).
    """
    os.makedirs(output_dir, exist_ok=True)
    units = []
    for pair in pairs:
        for dataset in (datasets or _default_datasets(pair, extra_opts)):
            units.append((pair, dataset))
    check_unit_files(units, output_dir)
    records = []
    bar = tqdm(units, desc="batch evaluation", unit="eval", disable=not show_progress)
    for pair, dataset in bar:
        bar.set_postfix_str(f"{pair.name} on {dataset}")
        path = result_file(output_dir, pair, dataset)
        fp = fingerprint(pair, dataset, extra_opts)
        previous = _load_record(path)
        if previous and (previous.get("name"), previous.get("dataset")) != (pair.name, dataset):
            previous = None  # another unit's file (an older layout): never its result
        if previous and previous.get("fingerprint") == _clean(fp) and (
                previous["status"] == "ok" or not retry_failed):
            logger.info("skipping %s on %s: already evaluated (%s)", pair.name, dataset, path)
            records.append(dict(previous, skipped=True))
            continue
        record = {"name": pair.name, "dataset": dataset, "pair": asdict(pair), "fingerprint": fp}
        start = time.perf_counter()
        try:
            out = evaluate_fn(pair, dataset, output_dir, extra_opts)
            record.update(status="ok", metrics=out["metrics"], curve=out.get("curve", {}),
                          error=None, traceback=None)
        except Exception as e:  # one failing unit must not stop the job; its traceback is kept
            logger.exception("evaluation of %s on %s failed", pair.name, dataset)
            record.update(status="error", metrics={}, curve={},
                          error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        record["seconds"] = round(time.perf_counter() - start, 3)
        record = _clean(record)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(path)  # atomic: a killed job never leaves half a record
        records.append(dict(record, skipped=False))
    write_table(records, output_dir, summary)
    return records


def _default_datasets(pair: EvalPair, extra_opts) -> List[str]:
    try:
        return list(build_config(pair.config, [*pair.opts, *extra_opts]).DATASETS.TEST)
    except Exception as e:  # reported as the pair's failure on a placeholder dataset
        logger.error("cannot read DATASETS.TEST of %s (%s): %s", pair.name, pair.config, e)
        return ["<config error>"]


def _load_record(path: Path) -> Optional[Dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "undefined"
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return str(int(value))
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def table_rows(records: Sequence[Dict]) -> List[Dict[str, str]]:
    """Records -> rows of strings (undefined values written as ``undefined``)."""
    rows = []
    for r in records:
        row = {"pair": r["name"], "dataset": r["dataset"], "status": r["status"]}
        for column, key in TABLE_COLUMNS:
            row[column] = _fmt(r.get("metrics", {}).get(key)) if r["status"] == "ok" else ""
        row["seconds"] = f"{r['seconds']:.1f}" if r.get("seconds") is not None else ""
        row["error"] = (r.get("error") or "").replace("\n", " ")
        rows.append(row)
    return rows


def summary_rows(records: Sequence[Dict]) -> List[Dict[str, str]]:
    """Per dataset with at least two ``ok`` pairs: rows ``min``, ``median`` and ``max`` of each
    table figure over those pairs (a seed study's spread; the pair column names the
    statistic)."""
    rows = []
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        ok = [r for r in records if r["dataset"] == dataset and r["status"] == "ok"]
        if len(ok) < 2:
            continue
        for stat, fn in (("min", min), ("median", statistics.median), ("max", max)):
            row = {"pair": f"{stat} of {len(ok)}", "dataset": dataset, "status": "summary",
                   "seconds": "", "error": ""}
            for column, key in TABLE_COLUMNS:
                values = [r["metrics"].get(key) for r in ok]
                values = [float(v) for v in values if v is not None and not math.isnan(v)]
                row[column] = _fmt(fn(values)) if values else "undefined"
            rows.append(row)
    return rows


def write_table(records: Sequence[Dict], output_dir: str, summary: bool = False
                ) -> Dict[str, str]:
    """Write the CSV and Markdown tables and the comparison plot; returns their paths.
    ``summary``: also the min / median / max rows of :func:`summary_rows`."""
    os.makedirs(output_dir, exist_ok=True)
    rows = table_rows(records) + (summary_rows(records) if summary else [])
    header = ["pair", "dataset", "status", *[c for c, _ in TABLE_COLUMNS], "seconds", "error"]
    paths = {"csv": os.path.join(output_dir, RESULTS_CSV),
             "md": os.path.join(output_dir, RESULTS_MD),
             "png": os.path.join(output_dir, COMPARISON_PNG)}
    write_dataframe(pd.DataFrame(rows, columns=header), paths["csv"])
    Path(paths["md"]).write_text(markdown_table(rows, header))
    ok = [r for r in records if r["status"] == "ok"]
    plot_comparison(paths["png"], [
        {"name": r["name"], "dataset": r["dataset"],
         "completeness": _nan(r["metrics"].get("clumps/completeness")),
         "purity": _nan(r["metrics"].get("clumps/purity")),
         "curve": {k: [_nan(v) for v in vals] for k, vals in (r.get("curve") or {}).items()}}
        for r in ok], title="purity vs completeness:")
    logger.info("batch table: %s (%d ok, %d failed)", paths["csv"], len(ok),
                len(records) - len(ok))
    return paths


def _nan(value) -> float:
    return float("nan") if value is None else float(value)
