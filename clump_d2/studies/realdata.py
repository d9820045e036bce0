"""Real-galaxy evaluation: the GZH Stripe 82 clumps as a dataset, and a table comparing the
classical baseline, a simulation-only model and a fine-tuned model on held-out galaxies.

Dataset (:func:`prepare_gzh_s82`): the clump catalogue of Mehta et al. (2021) is placed on the
424 px Galaxy Zoo JPEGs by the ``catalog`` converter (:func:`clump_d2.convert.catalog.
convert_catalog`, its defaults are these tables), then moved to the central 200x200 crop
(``crop: [112, 112, 200, 200]``, as the Clump Scout detector sees its images; the mapper cuts
it) with the converter's edge rule, and split by galaxy with :func:`clump_d2.convert.splits.
split_coco` (fixed: ``train=0.5, test=0.5``, seed 0; stratified by clump count). Every image
carries ``psf_fwhm_px`` (median of its clumps' PSF FWHM in px) and ``centre_x/centre_y``.

Evaluation (:func:`evaluate_methods`): every method runs through
:func:`clump_d2.engine.evaluate_on_dataset` (the test loader and :class:`~clump_d2.
evaluation.ClumpEvaluator` of every evaluation; one-to-one matching, IoU >= 0.5 by
default). The operating score threshold of each method is the one that maximises F1 on
the *train* split (the galaxies the fine-tuned model saw), so the test numbers are not tuned
on the test galaxies; or, for a fine-tuned model, *cross-fitted* on that split
(``Method.threshold_from``: models fine-tuned on one half of it, each scored on the other
half), so that the galaxies choosing the threshold are new to the model scoring them, as the
test galaxies are.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.data import DatasetCatalog

from clump_d2.baselines import ClassicalClumpFinder, ClassicalParams
from clump_d2.data.tables import markdown_table
from clump_d2.engine import build_config, build_model_for_inference, evaluate_on_dataset
from clump_d2.evaluation import ClumpEvaluator
from clump_d2.evaluation.clump_evaluation import IgnoreRule, galaxy_centre, truth_from_dicts
from clump_d2.inference.postprocess import Detections, PostProcessConfig, postprocess_uncut
from clump_d2.evaluation.matching import MatchCriterion, f1_score, safe_ratio
from clump_d2.evaluation.metrics import (
    N_DET,
    N_MATCHED,
    N_TRUE,
    match_masks,
    match_masks_ignoring,
    ratios,
)
from clump_d2.modeling.runtime import wrap_for_inference
from clump_d2.photometry import PhotometryImage, PhotometryOptions, load_photometry_image
from clump_d2.photometry import measure_image
from clump_d2.photometry.calibration import CALIBRATED_BAND_LABEL, DisplayGiantCalibration
from clump_d2.structures import BOX_HALF_SIDE_PER_FWHM, BOX_SIDE_PER_FWHM

logger = logging.getLogger(__name__)

@dataclass
class Method:
    """One row of the comparison: ``kind`` "baseline" or "model" (config + weights);
    ``psf_boxes``: re-size the model's boxes to 2.5 x the image's PSF FWHM
    (:class:`PsfSizedBoxes`).

    ``threshold_from``: (weights, dataset) pairs that choose the operating threshold instead
    of (``weights``, the tuning split): the F1-best threshold of their counts pooled. A model
    fine-tuned on the tuning galaxies scores them higher than new ones, so its F1-best there
    is too strict; cross-fitting (models fine-tuned on one half of the tuning galaxies, each
    scored on the other half: ``train_a``/``train_b``) scores every tuning galaxy with a model
    that has not seen it."""

    name: str
    kind: str = "model"
    config: str = ""
    weights: str = ""
    opts: List[str] = field(default_factory=list)
    psf_boxes: bool = False
    threshold_from: List[tuple] = field(default_factory=list)
    baseline_params: Optional[ClassicalParams] = None  # of a "baseline" (None: defaults)


class PsfSizedBoxes:
    """Wrap a Detectron2 model so that every predicted box becomes a square of side
    2.5 x the input's ``psf_fwhm_px`` on the predicted centre (Clump Scout's box
    definition): where the PSF is known, the box size carries no information, and a network
    that localises clumps well but sizes boxes poorly is otherwise penalised by the IoU rule.
    Inputs without ``psf_fwhm_px`` keep their boxes."""

    def __init__(self, model):
        self.model = model

    def __call__(self, batched_inputs):
        outputs = self.model(batched_inputs)
        for inp, out in zip(batched_inputs, outputs):
            fwhm = inp.get("psf_fwhm_px")
            inst = out["instances"]
            if not fwhm or len(inst) == 0:
                continue
            b = inst.pred_boxes.tensor
            c = (b[:, :2] + b[:, 2:]) / 2
            half = BOX_HALF_SIDE_PER_FWHM * float(fwhm)
            h, w = inst.image_size
            new = torch.cat([c - half, c + half], dim=1)
            new[:, 0::2] = new[:, 0::2].clamp(0, w)
            new[:, 1::2] = new[:, 1::2].clamp(0, h)
            inst.pred_boxes.tensor = new
        return outputs

    @property
    def training(self) -> bool:  # read by inference_on_dataset's inference_context
        return bool(getattr(self.model, "training", False))

    def eval(self):  # inference_on_dataset switches the model to eval mode
        self.model.eval()
        return self

    def train(self, mode: bool = True):
        self.model.train(mode)
        return self


def _run(method: Method, cfg, dataset: str, output_dir: Optional[str]) -> Dict:
    """Evaluate one method on one dataset through :func:`~clump_d2.engine.
    evaluate_on_dataset` (the loader and evaluator of every evaluation); returns the
    ClumpEvaluator's full report, with the count of false positives on hand-rejected
    candidates (:func:`false_positive_census`)."""
    if method.kind == "baseline":
        # Not a network: no autocast or test-time augmentation around it.
        model, wrap = ClassicalClumpFinder(method.baseline_params), False
    else:
        model, wrap = build_model_for_inference(cfg), True
        if method.psf_boxes:
            # Boxes re-sized after autocast/TTA, as the catalogue would see them.
            model, wrap = PsfSizedBoxes(wrap_for_inference(model, cfg)), False
    evaluator = ClumpEvaluator(cfg, dataset, output_dir=output_dir, distributed=False)
    evaluate_on_dataset(cfg, model, dataset, evaluators=[evaluator], wrap=wrap)
    report = evaluator.report
    report["false_positives"] = false_positive_census(
        evaluator.predictions, DatasetCatalog.get(dataset), evaluator.score_thresh,
        evaluator.criterion, evaluator.ignore_rule)
    report["predictions"] = evaluator.predictions  # for the giant-clump target
    return report


#: A false positive "is" a hand-rejected candidate within this many PSF FWHM of it (the
#: distance rule's tolerance: half the 2.5 x FWHM box side).
REJECT_MATCH_FWHM = BOX_HALF_SIDE_PER_FWHM


def false_positive_census(predictions: Sequence[Dict], dataset_dicts: Sequence[Dict],
                          score_thresh: float, criterion,
                          rule: Optional[IgnoreRule] = None) -> Dict[str, int]:
    """Unmatched detections at ``score_thresh`` (same one-to-one matching and ignore regions
    as the evaluator: detections on ignored clumps are not false) and how many of them lie
    within ``REJECT_MATCH_FWHM`` x the image's PSF FWHM of a candidate that the catalogue's
    authors rejected by hand (``rejected_candidates`` of the image record; images without it
    count as having none)."""
    truth = truth_from_dicts(dataset_dicts, rule)
    records = {d["image_id"]: d for d in dataset_dicts}
    by_image = {}
    for p in predictions:
        by_image.setdefault(p["image_id"], p)
    unmatched = on_rejected = rejected = 0
    for image_id, t in truth.items():
        rec = records[image_id]
        cands = np.asarray(rec.get("rejected_candidates") or [], dtype=float).reshape(-1, 2)
        rejected += len(cands)
        p = by_image.get(image_id)
        if p is None:
            continue
        _, matched, on_ignored = match_masks_ignoring(t["boxes"], p["boxes"], p["scores"],
                                                      score_thresh, criterion, t["ignore"])
        free = (p["scores"] >= score_thresh) & ~matched & ~on_ignored
        unmatched += int(free.sum())
        if free.any() and len(cands) and rec.get("psf_fwhm_px"):
            centres = (p["boxes"][free, :2] + p["boxes"][free, 2:]) / 2
            dist = np.hypot(*(centres[:, None, :] - cands[None, :, :]).transpose(2, 0, 1))
            on_rejected += int((dist.min(axis=1)
                                <= REJECT_MATCH_FWHM * rec["psf_fwhm_px"]).sum())
    return {"n_unmatched": unmatched, "n_unmatched_on_rejected": on_rejected,
            "n_rejected_candidates": rejected}


#: Flux-fraction bins (clump r flux / host r flux) reported for every method on real data.
FLUX_BIN_EDGES = (0.0, 0.003, 0.01, 0.03, 1.0)


def _cfg_for(method: Method, base_config: str, extra: Sequence[str] = ()):
    opts = list(method.opts) + list(extra)
    if method.kind == "model":
        opts += ["MODEL.WEIGHTS", method.weights]
    return build_config(method.config or base_config, opts + ["DATALOADER.NUM_WORKERS", "0"])


def evaluate_methods(methods: Sequence[Method], tune_dataset: str, test_dataset: str,
                     output_dir: str | os.PathLike, base_config: str,
                     target: Optional["GiantTarget"] = None) -> List[Dict]:
    """Evaluate each method on ``test_dataset`` at the score threshold maximising F1 on
    ``tune_dataset`` (both under the methods' ``TEST.CLUMP_EVAL`` ignore rule, if any);
    write ``real_eval.{json,csv,md}`` to ``output_dir``; return the rows. With ``target``,
    each row also has the giant-clump target's counts (:func:`giant_target`), and every row
    the false detections per image on the tuning and the test split at its threshold."""
    output_dir = Path(output_dir)
    rows = []
    fold_target = None  # the target with this fold's calibrated flag, made once
    edges = "flux_fraction:" + ",".join(f"{e:g}" for e in FLUX_BIN_EDGES)
    for m in methods:
        pairs = list(m.threshold_from) or [(m.weights, tune_dataset)]
        scorers = [(dataclasses.replace(m, weights=w), ds) for w, ds in pairs]
        tune_reports = [_run(scorer, _cfg_for(scorer, base_config), ds, None)
                        for scorer, ds in scorers]
        thresh, tune_f1 = tuned_threshold(tune_reports)
        tune_false = false_per_image(tune_reports, thresh)
        # The test run reports (and writes its metrics, binned completeness and plots) at
        # the threshold chosen on the tuning split.
        cfg = _cfg_for(m, base_config, ["TEST.CLUMP_EVAL.SCORE_THRESH", str(thresh),
                                        "TEST.CLUMP_EVAL.BIN_EDGES", f"['{edges}']"])
        test = _run(m, cfg, test_dataset, str(output_dir / m.name / test_dataset))
        op = test["operating"]["all"]
        at = {"thresh": thresh, **{k: op[k] for k in ("completeness", "purity", "F1", "n_true",
                                                        "n_detections", "n_matched")},
              "n_ignored": test["ignore"]["n_ignored"],
              "n_detections_on_ignored": test["ignore"]["n_detections_on_ignored"],
              **test["false_positives"]}
        if target is not None:
            if fold_target is None:
                fold_target = _fold_target(target, tune_dataset, IgnoreRule.from_config(cfg))
            criterion, rule = MatchCriterion.from_config(cfg), IgnoreRule.from_config(cfg)
            if target.as_catalogue:
                post = PostProcessConfig.from_cfg(cfg)
                test = {**test, "predictions": catalogue_predictions(
                    test["predictions"], DatasetCatalog.get(test_dataset), post)}
            at.update(giant_target(test["predictions"], DatasetCatalog.get(test_dataset),
                                   thresh, criterion, rule, fold_target))
            at.update({f"flag_pct_{k}": v for k, v in fold_target.named_flags.items()})
            if target.select_purity is not None:
                # Every (score, flag) pair counted once on the tuning runs (scored as the F1
                # threshold is); both giant catalogues choose from these counts.
                tune_counts = {}
                for r, (_, ds) in zip(tune_reports, scorers):
                    preds = r["predictions"]
                    if target.as_catalogue:
                        preds = catalogue_predictions(preds, DatasetCatalog.get(ds),
                                                      PostProcessConfig.from_cfg(cfg))
                    counts = target_counts_by_threshold(
                        preds, DatasetCatalog.get(ds), GIANT_SCORE_GRID,
                        _pair_search_pcts(fold_target), criterion, rule, fold_target.photometry)
                    for k, c in counts.items():
                        tune_counts[k] = tuple(a + b for a, b in
                                               zip(tune_counts.get(k, (0, 0, 0)), c))
                at.update(_selected_giant_counts(fold_target, tune_counts, test, test_dataset,
                                                 criterion, rule))
                at.update(_joint_giant_counts(fold_target, tune_counts, test, test_dataset,
                                              criterion, rule))
            if target.ceiling_purity is not None:
                at.update(_ceiling_counts(fold_target, test["predictions"],
                                          DatasetCatalog.get(test_dataset), criterion, rule))
        flux_bins = test["binned"].get("flux_fraction", {}).get("bins", [])
        s = test["curve_summary"]["all"]
        rows.append({"method": m.name, "tuned_on": ", ".join(ds for _, ds in pairs),
                     "test": test_dataset, **at,
                     **{f"C_flux_{b['lo']:g}-{b['hi']:g}": b["completeness"] for b in flux_bins},
                     **{f"n_flux_{b['lo']:g}-{b['hi']:g}": b["n_true"] for b in flux_bins},
                     "tune_F1": tune_f1, "tune_false_per_image": tune_false,
                     "test_false_per_image": test["false_positives"]["n_unmatched"]
                     / max(test["n_images"], 1),
                     "test_F1_max": s["F1_max"],
                     "test_F1_max_thresh": s["F1_max_thresh"],
                     "test_equal_CP_value": s["equal_CP_value"], "rule": test["match"]["rule"],
                     "weights": m.weights})
        logger.info("%s on %s at score >= %.2f: C %.3f P %.3f F1 %.3f", m.name, test_dataset,
                    at["thresh"], at["completeness"], at["purity"], at["F1"])
    write_table(rows, output_dir)
    return rows


def _pooled_counts(reports: Sequence[Dict]) -> tuple:
    """(threshold grid, counts (n_thresholds, 3), number of images) of the ClumpEvaluator
    reports summed; every report must share the threshold grid."""
    grid = np.asarray(reports[0]["thresholds"], dtype=np.float64)
    counts = np.zeros((len(grid), 3))
    n_images = 0
    for r in reports:
        if not np.allclose(np.asarray(r["thresholds"], dtype=np.float64), grid):
            raise ValueError("threshold grids differ between the tuning runs")
        c = r["curves"]["all"]
        for k, key in ((N_TRUE, "n_true"), (N_DET, "n_detections"), (N_MATCHED, "n_matched")):
            counts[:, k] += np.asarray(c[key], dtype=np.float64)
        n_images += int(r.get("n_images", 0))
    return grid, counts, n_images


def false_per_image(reports: Sequence[Dict], thresh: float) -> float:
    """False detections per image of the reports pooled at score ``thresh`` (a value of their
    grid): detections that match no clump and lie outside every ignore region (the evaluator
    leaves detections on ignore regions out of its detection counts)."""
    grid, counts, n_images = _pooled_counts(reports)
    i = int(np.argmin(np.abs(grid - thresh)))
    return float(counts[i, N_DET] - counts[i, N_MATCHED]) / max(n_images, 1)


#: The three per-flag target counts of a row (each followed by the flag's key).
_TARGET_COUNT_NAMES = ("n_target_found_flagged_", "n_target_flagged_",
                       "n_target_flagged_on_catalogue_")


def _selected_giant_counts(target: GiantTarget, tune_counts: Dict[tuple, tuple], test: Dict,
                           test_dataset: str, criterion, rule: IgnoreRule) -> Dict:
    """The giant catalogue's counts (``GiantTarget.select_purity``): its score threshold
    chosen on the tuning runs' counts (:func:`target_counts_by_threshold`, summed), then the
    selection flag's counts on the test split at it, keys suffixed :data:`SELECTED_SUFFIX`;
    ``giant_thresh`` the threshold (NaN: none qualified, no counts)."""
    key = _selection_flag(target)
    t = giant_score_threshold([flag_counts(tune_counts, dict(target.flags())[key])],
                              target.select_purity)
    if t is None:
        return {"giant_thresh": float("nan")}
    at = giant_target(test["predictions"], DatasetCatalog.get(test_dataset), t, criterion,
                      rule, target)
    return {"giant_thresh": t, f"flag_pct_{key}{SELECTED_SUFFIX}": dict(target.flags())[key],
            **{f"{n}{key}{SELECTED_SUFFIX}": at[f"{n}{key}"] for n in _TARGET_COUNT_NAMES}}


def _pair_counts(key: str, pair: Optional[tuple], counts: Sequence[int]) -> Dict:
    """Row entries of a (score, flag) pair chosen under ``key``: its thresholds (NaN when none
    qualified) and its three target counts."""
    t, pct = pair if pair else (float("nan"), float("nan"))
    return {f"score_thresh_{key}": t, f"flag_pct_{key}": pct,
            **{f"{n}{key}": int(c) for n, c in zip(_TARGET_COUNT_NAMES, counts)}}


def _pair_search_pcts(target: GiantTarget) -> List[float]:
    """Flag thresholds searched with the score: :data:`CEILING_FLAG_PCTS` and the target's."""
    return sorted(set(CEILING_FLAG_PCTS) | {float(p) for _, p in target.flags()})


def _ceiling_counts(target: GiantTarget, predictions: Sequence[Dict],
                    dataset_dicts: Sequence[Dict], criterion, rule: IgnoreRule) -> Dict:
    """The ceiling's counts (:func:`giant_ceiling` over :data:`GIANT_SCORE_GRID` x
    :func:`_pair_search_pcts`) under :data:`CEILING_KEY`, with its score and flag
    thresholds; none qualified: the thresholds NaN and zero counts."""
    best = giant_ceiling(target_counts_by_threshold(predictions, dataset_dicts,
                                                    GIANT_SCORE_GRID, _pair_search_pcts(target),
                                                    criterion, rule, target.photometry),
                         target.ceiling_purity)
    return _pair_counts(CEILING_KEY, *(best if best else (None, (0, 0, 0))))


def _joint_giant_counts(target: GiantTarget, tune_counts: Dict[tuple, tuple], test: Dict,
                        test_dataset: str, criterion, rule: IgnoreRule) -> Dict:
    """The giant catalogue with score *and* flag chosen together on the tuning runs (key
    :data:`JOINT_KEY`): :func:`giant_ceiling` of their counts (summed; the pair with the most
    tuning targets detected and flagged at flagged purity >= ``select_purity``), then
    :func:`giant_target`'s counts on the test split at that pair."""
    best = giant_ceiling(tune_counts, target.select_purity)
    if best is None:
        return _pair_counts(JOINT_KEY, None, (0, 0, 0))
    (t, pct), _ = best
    at = giant_target(test["predictions"], DatasetCatalog.get(test_dataset), t, criterion,
                      rule, dataclasses.replace(target, flag_pcts=(pct,), named_flags={}))
    key = _pct_key(pct)
    return _pair_counts(JOINT_KEY, (t, pct), [at[f"{n}{key}"] for n in _TARGET_COUNT_NAMES])


def tuned_threshold(reports: Sequence[Dict]) -> tuple:
    """(threshold, F1) maximising the F1 of the ClumpEvaluator reports' counts summed (one
    report: its own F1 curve); every report must share the threshold grid."""
    grid, counts, _ = _pooled_counts(reports)
    f1 = np.nan_to_num(ratios(counts)["F1"], nan=-1.0)
    best = int(np.argmax(f1))
    return float(grid[best]), float(f1[best])


def _fmt(v) -> str:
    return "undefined" if v is None or (isinstance(v, float) and not math.isfinite(v)) \
        else f"{v:.2f}"


def write_table(rows: Sequence[Dict], output_dir: str | os.PathLike) -> Dict[str, Path]:
    """``real_eval.json``, ``real_eval.csv`` and ``real_eval.md`` (the README table)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: output_dir / f"real_eval.{k}" for k in ("json", "csv", "md")}
    clean = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
              for k, v in r.items()} for r in rows]
    paths["json"].write_text(json.dumps(clean, indent=2))
    with open(paths["csv"], "w", newline="") as f:
        # every key of every row (a method without a giant catalogue threshold has fewer)
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r))
                           or ["method"])
        w.writeheader()
        w.writerows(rows)
    flux_keys = [k for k in (rows[0] if rows else {}) if k.startswith("C_flux_")]
    headers = ["method", "score thresh (F1-best on the tuning galaxies)", "completeness",
               "purity", "F1", "matched / true", "detections",
               "false pos. (on hand-rejected candidates)", "false pos. / image (tuning; test)",
               "best F1 on test (thresh)", "C = P",
               *(f"C, flux frac {k[7:]} (n)" for k in flux_keys)]
    cells = [[r["method"], f"{r['thresh']:.2f}", _fmt(r["completeness"]), _fmt(r["purity"]),
              _fmt(r["F1"]), f"{r['n_matched']} / {r['n_true']}", r["n_detections"],
              f"{r['n_unmatched']} ({r['n_unmatched_on_rejected']})",
              "; ".join("undefined" if r.get(k) is None else f"{r[k]:.3f}"
                        for k in ("tune_false_per_image", "test_false_per_image")),
              f"{_fmt(r['test_F1_max'])} ({_fmt(r['test_F1_max_thresh'])})",
              _fmt(r["test_equal_CP_value"]),
              *(f"{_fmt(r[k])} ({r['n_flux_' + k[7:]]})" for k in flux_keys)] for r in rows]
    paths["md"].write_text(markdown_table([dict(zip(headers, c)) for c in cells], headers))
    return paths


def pool_folds(folds: Dict[str, str | os.PathLike], output_dir: str | os.PathLike) -> List[Dict]:
    """Pool :func:`evaluate_methods` runs on complementary splits ({label: its output dir
    holding ``real_eval.json``}): per method, each fold's row and a pooled row (counts summed,
    completeness = matched / true, purity = matched / detections); written to
    ``real_eval_folds.{json,md}`` in ``output_dir``; returns the pooled rows."""
    runs = {label: json.loads((Path(d) / "real_eval.json").read_text())
            for label, d in folds.items()}
    methods = list(dict.fromkeys(r["method"] for rows in runs.values() for r in rows))
    counts = ("n_true", "n_detections", "n_matched", "n_unmatched", "n_unmatched_on_rejected",
              "n_ignored", "n_detections_on_ignored",
              *sorted({k for rows in runs.values() for r in rows for k in r
                       if k.startswith(TARGET_COUNT_PREFIX)}))
    bins = [k[7:] for k in next(iter(runs.values()))[0] if k.startswith("C_flux_")] \
        if any(runs.values()) else []
    lines = ["| method | fold | thresh | completeness | purity | F1 | matched / true | detections "
             "| false pos. (on hand-rejected candidates) | "
             + " | ".join(f"C, flux frac {b} (n)" for b in bins) + " |",
             "|---|---|---|---|---|---|---|---|---|" + "---|" * len(bins)]
    pooled = []
    for m in methods:
        total = dict.fromkeys(counts, 0)
        found = {b: [0, 0] for b in bins}  # matched, true per flux bin
        for label, rows in runs.items():
            r = next((r for r in rows if r["method"] == m), None)
            if r is None:
                continue
            for k in counts:
                total[k] += int(r.get(k) or 0)
            for b in bins:
                n = int(r[f"n_flux_{b}"])
                found[b][0] += 0 if n == 0 else round(r[f"C_flux_{b}"] * n)
                found[b][1] += n
            lines.append(f"| {m} | {label} | {r['thresh']:.2f} | {_fmt(r['completeness'])} | "
                         f"{_fmt(r['purity'])} | {_fmt(r['F1'])} | {r['n_matched']} / "
                         f"{r['n_true']} | {r['n_detections']} | {r.get('n_unmatched')} "
                         f"({r.get('n_unmatched_on_rejected')}) | "
                         + " | ".join(f"{_fmt(r[f'C_flux_{b}'])} ({r[f'n_flux_{b}']})"
                                      for b in bins) + " |")
        c = safe_ratio(total["n_matched"], total["n_true"])
        p = safe_ratio(total["n_matched"], total["n_detections"])
        row = {"method": m, "folds": list(runs), **total, "completeness": c, "purity": p,
               "F1": f1_score(c, p), **target_fractions(total),
               **{f"C_flux_{b}": safe_ratio(*found[b]) for b in bins},
               **{f"n_flux_{b}": found[b][1] for b in bins}}
        pooled.append(row)
        lines.append(f"| {m} | **pooled** | | **{_fmt(c)}** | **{_fmt(p)}** | {_fmt(row['F1'])} "
                     f"| {total['n_matched']} / {total['n_true']} | {total['n_detections']} | "
                     f"{total['n_unmatched']} ({total['n_unmatched_on_rejected']}) | "
                     + " | ".join(f"{_fmt(row[f'C_flux_{b}'])} ({found[b][1]})" for b in bins)
                     + " |")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "real_eval_folds.json").write_text(json.dumps(
        [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
          for k, v in r.items()} for r in pooled], indent=2))
    (output_dir / "real_eval_folds.md").write_text("\n".join(lines) + "\n")
    return pooled




# --- the paper's definition: giant clumps -----------------------------------------------------

#: Giant clumps as Popp et al. 2024 / Adams et al. 2022 define them: u-band flux fraction
#: >= 3 % of the host (and, for a looser table, >= 1 %), off-centre (beyond 1 PSF FWHM of
#: the galaxy centre: the bulge is not a clump).
PAPER_FLUX_ATTRIBUTE = "flux_frac_u"
PAPER_FLUX_LIMITS = (0.03, 0.01)
PAPER_CENTRE_FWHM = 1.0
#: Prefix of the giant-target counts in a row (summed over folds by :func:`pool_folds`).
TARGET_COUNT_PREFIX = "n_target_"


def paper_opts(limit: float, attribute: str = PAPER_FLUX_ATTRIBUTE,
               centre_fwhm: float = PAPER_CENTRE_FWHM) -> List[str]:
    """Config overrides making catalogue clumps below ``limit`` in ``attribute`` and those
    within ``centre_fwhm`` PSF FWHM of the centre ignore regions (completeness over the
    rest; a detection on an ignored clump is neither true nor false)."""
    return ["TEST.CLUMP_EVAL.IGNORE_BELOW", f"['{attribute}:{limit:g}']",
            "TEST.CLUMP_EVAL.IGNORE_CENTRE_FWHM", repr(float(centre_fwhm))]


@dataclass
class GiantTarget:
    """The issue's target: of the off-centre catalogue clumps at or above the flux limit,
    the fraction detected *and* flagged giant by the photometry of the detection, and of the
    detections flagged giant, the fraction on a catalogued clump (any depth).

    ``flag_pcts``: flag thresholds (per cent of the host, in the photometry's giant band:
    for the JPEGs the display-linearised B channel); each gives its own counts.
    ``photometry``: the photometry options (default: ``PhotometryOptions()``)."""

    flag_pcts: Sequence[float] = (3.0,)
    photometry: Optional[PhotometryOptions] = None
    #: With a value (e.g. 0.9), one more flag, :data:`CALIBRATED_FLAG`, whose threshold is
    #: chosen per fold on the *tuning* split (:func:`calibrated_flag_pct`): the display
    #: ratios read low and by an amount no one knows in advance, so the flag is calibrated
    #: on galaxies other than those it is scored on, as the score threshold is.
    calibrate_recall: Optional[float] = None
    #: Flags with a name instead of a fixed per-cent key ({name: per cent}); set per fold.
    named_flags: Dict[str, float] = field(default_factory=dict)
    #: With a value (e.g. 0.8), the target is also counted for the *giant catalogue* (key
    #: suffix :data:`SELECTED_SUFFIX`): the detections at a score threshold of its own, chosen
    #: on the tuning galaxies (scored as the F1 threshold is, cross-fitted where it is) as
    #: the lowest on :data:`GIANT_SCORE_GRID` at which at least this fraction of the
    #: detections with the selection flag (:data:`CALIBRATED_FLAG` if calibrated, else the
    #: first) lie on a catalogued clump. The flag, not the score, then does the selecting:
    #: a score threshold tuned for every catalogue clump is too strict for the bright ones.
    #: Also a second giant catalogue (key :data:`JOINT_KEY`) whose score and flag thresholds
    #: are chosen *together* on the tuning galaxies (:func:`_joint_giant_counts`).
    select_purity: Optional[float] = None
    #: Count the target on the catalogue a user gets (:func:`catalogue_predictions`: the
    #: method's ``INFERENCE`` post-processing, as ``tools/predict_catalog.py`` applies it)
    #: instead of the detector's raw output.
    as_catalogue: bool = False
    #: With a value (e.g. 0.8), also the target's *ceiling* (key :data:`CEILING_KEY`): the
    #: best (score, flag) pair chosen on the test split itself (:func:`giant_ceiling`), an
    #: upper bound on what any threshold choice can reach with this detector and flag.
    ceiling_purity: Optional[float] = None

    def flags(self) -> List[tuple]:
        """(key, per cent) of every flag: the fixed ones, then the named ones."""
        return [(_pct_key(p), float(p)) for p in self.flag_pcts] + list(self.named_flags.items())


#: The key of the cross-fitted flag in the counts and tables (``n_target_flagged_xfit``...).
CALIBRATED_FLAG = "xfit"
#: Suffix of a flag's counts at the giant catalogue's own score threshold.
SELECTED_SUFFIX = "_sel"
#: Score thresholds the giant catalogue's threshold is chosen from.
GIANT_SCORE_GRID = tuple(round(0.05 * k, 2) for k in range(1, 20))


def catalogue_predictions(predictions: Sequence[Dict], dataset_dicts: Sequence[Dict],
                          options: PostProcessConfig) -> List[Dict]:
    """The evaluator's predictions as ``tools/predict_catalog.py`` would list them, at every
    score (:func:`clump_d2.inference.postprocess_uncut` with ``options``: class-agnostic NMS,
    merging within a PSF FWHM, the bulge flag and, with ``drop_bulge``, no detection on the
    galaxy centre), each image's centre ``centre_x/centre_y`` and PSF FWHM ``psf_fwhm_px``
    from its record."""
    records = {d["image_id"]: d for d in dataset_dicts}
    out = []
    for p in predictions:
        rec = records[p["image_id"]]
        classes = p.get("classes", np.zeros(len(p["scores"]), int))
        det = postprocess_uncut(Detections(p["boxes"], p["scores"], classes), options,
                                centre_xy=galaxy_centre(rec), psf_fwhm_px=rec.get("psf_fwhm_px"))
        out.append({**p, "boxes": det.boxes, "scores": det.scores, "classes": det.classes})
    return out


def _pct_key(pct: float) -> str:
    return f"{float(pct):g}".replace(".", "p")


#: Key prefix of the catalogue's calibrated u-band giant flags among a target's named flags.
U_CALIBRATED_PREFIX = "ucal"


def calibrated_u_flags(pcts: Sequence[float], options: Optional[PhotometryOptions] = None
                       ) -> Dict[str, float]:
    """Named flags (:attr:`GiantTarget.named_flags`, keys ``ucal<p>``) that are the
    catalogue's own giant flags on PNG/JPEG input: ``is_giant_<p>pct`` = the u-band fraction
    predicted by ``PHOTOMETRY.DISPLAY_GIANT_CALIBRATION`` (``options``'; default the shipped
    one) >= p %, which without a colour term is display B ratio >= a fixed per cent.

    Raises:
        ValueError: no calibration, or one with a colour term (not a cut on the B ratio).
    """
    options = options or PhotometryOptions()
    cal = DisplayGiantCalibration.from_sequence(options.display_giant_calibration)
    if cal is None:
        raise ValueError("no PHOTOMETRY.DISPLAY_GIANT_CALIBRATION to count calibrated flags with")
    return {f"{U_CALIBRATED_PREFIX}{_pct_key(p)}": 100.0 * cal.display_threshold(p)
            for p in pcts}


def giant_band_ratios(record: Dict, centres: np.ndarray, box_side_px: np.ndarray,
                      options: PhotometryOptions) -> np.ndarray:
    """Clump/host flux ratio in the photometry's giant band at ``centres`` (N x 2, the
    record's crop frame) on the record's image: :func:`measure_image` with the record's
    ``psf_fwhm_px`` (else the boxes' median side / :data:`BOX_SIDE_PER_FWHM`) and centre
    ``centre_x/centre_y``. NaN where the photometry could not measure."""
    if len(centres) == 0:
        return np.zeros(0)
    fwhm = record.get("psf_fwhm_px") or float(np.median(box_side_px)) / BOX_SIDE_PER_FWHM
    image = record_photometry_image(record, options)
    centre = (float(record.get("centre_x", record["width"] / 2)),
              float(record.get("centre_y", record["height"] / 2)))
    phot = measure_image(image, centres, fwhm, centre, options)
    label = str(phot["giant_band"].iloc[0])
    # A calibrated display flag names its u-band estimate; the target's flags are cuts on the
    # ratio the estimate is made from, the display B (calibrated_u_flags converts).
    band = "B" if label == CALIBRATED_BAND_LABEL else label.split(" ")[0]
    return phot[f"flux_ratio_{band}"].to_numpy(np.float64)


def calibrated_flag_pct(dataset_dicts: Sequence[Dict], rule: IgnoreRule, recall: float,
                        options: Optional[PhotometryOptions] = None) -> float:
    """The giant flag's threshold (per cent, giant band) chosen on ``dataset_dicts``: the
    largest that flags at least ``recall`` of the catalogue clumps ``rule`` keeps (those at
    or above the flux limit, off-centre), each measured at its catalogue position (all of
    the image's clumps measured together, so each masks the others). Unmeasurable clumps
    count as unflagged. Raises ValueError when the split has no kept clump."""
    if not 0.0 < recall <= 1.0:
        raise ValueError(f"recall must be in (0, 1], got {recall}")
    options = options or PhotometryOptions()
    truth = truth_from_dicts(dataset_dicts, rule)
    kept = []
    for record in dataset_dicts:
        t = truth[record["image_id"]]
        if not (~t["ignore"]).any():
            continue
        boxes = t["boxes"]
        ratio = giant_band_ratios(record, (boxes[:, :2] + boxes[:, 2:]) / 2,
                                  boxes[:, 2] - boxes[:, 0], options)
        kept.extend(ratio[~t["ignore"]])
    if not kept:
        raise ValueError("no catalogue clump at or above the flux limit to calibrate the "
                         "giant flag on")
    ordered = np.sort(np.nan_to_num(np.asarray(kept), nan=-np.inf))[::-1]
    value = ordered[int(math.ceil(recall * len(ordered))) - 1]
    return 100.0 * float(max(value, 0.0))


def record_photometry_image(record: Dict, options: PhotometryOptions) -> PhotometryImage:
    """The record's image for photometry, cut to its ``crop`` (the frame of its boxes)."""
    image = load_photometry_image(record["file_name"], options.bands, record.get("band_files"),
                                  options.cube_bands, options.hdu, options.display_q,
                                  max_pixels=options.max_pixels)
    crop = record.get("crop")
    if crop:
        x0, y0, w, h = (int(v) for v in crop)
        if y0 + h > image.bands.shape[1] or x0 + w > image.bands.shape[2]:
            raise ValueError(f"{record['file_name']}: crop {crop} exceeds the image "
                             f"{image.bands.shape[1:]}")
        image = dataclasses.replace(image, bands=image.bands[:, y0:y0 + h, x0:x0 + w])
    return image


def giant_target(predictions: Sequence[Dict], dataset_dicts: Sequence[Dict],
                 score_thresh: float, criterion, rule: IgnoreRule,
                 target: GiantTarget) -> Dict[str, int]:
    """Counts of the giant-clump target at ``score_thresh``.

    * Target clumps: the catalogue clumps ``rule`` keeps (at or above the flux limit,
      off-centre). One is *detected and flagged* when the evaluator's matching (kept clumps
      first) pairs it with a detection whose photometry flags it giant.
    * Flagged detections: detections >= ``score_thresh`` flagged giant; one is *on a
      catalogued clump* when the one-to-one matching of all detections >= threshold to
      all catalogue clumps (any depth, central ones too) pairs it.

    Photometry: :func:`clump_d2.photometry.measure_image` at each detection's box centre on
    the record's image (its crop), PSF FWHM ``psf_fwhm_px`` of the record, centre
    ``centre_x/centre_y``. Returns ``n_target_clumps``, and per flag threshold ``p``:
    ``n_target_found_flagged_<p>``, ``n_target_flagged_<p>``,
    ``n_target_flagged_on_catalogue_<p>`` (and ``n_target_found`` without the flag).
    """
    options = target.photometry or PhotometryOptions()
    truth = truth_from_dicts(dataset_dicts, rule)
    plain = truth_from_dicts(dataset_dicts, IgnoreRule())
    records = {d["image_id"]: d for d in dataset_dicts}
    by_image = {}
    for p in predictions:
        by_image.setdefault(p["image_id"], p)
    flags = target.flags()
    keys = [k for k, _ in flags]
    out = {"n_target_clumps": 0, "n_target_found": 0}
    for k in keys:
        out.update({f"n_target_found_flagged_{k}": 0, f"n_target_flagged_{k}": 0,
                    f"n_target_flagged_on_catalogue_{k}": 0})
    for image_id, t in truth.items():
        out["n_target_clumps"] += int((~t["ignore"]).sum())
        p = by_image.get(image_id)
        if p is None:
            continue
        keep = p["scores"] >= score_thresh
        if not keep.any():
            continue
        boxes = p["boxes"][keep]
        ratio = giant_band_ratios(records[image_id], (boxes[:, :2] + boxes[:, 2:]) / 2,
                                  boxes[:, 2] - boxes[:, 0], options)
        # Matching on the kept detections only (indices into boxes).
        scores = p["scores"][keep]
        _, used, _ = match_masks_ignoring(t["boxes"], boxes, scores, -np.inf, criterion,
                                          t["ignore"])
        _, on_cat = match_masks(plain[image_id]["boxes"], boxes, scores, -np.inf, criterion)
        out["n_target_found"] += int(used.sum())
        for k, pct in flags:
            flagged = np.nan_to_num(ratio, nan=-np.inf) >= pct / 100.0
            out[f"n_target_found_flagged_{k}"] += int((used & flagged).sum())
            out[f"n_target_flagged_{k}"] += int(flagged.sum())
            out[f"n_target_flagged_on_catalogue_{k}"] += int((on_cat & flagged).sum())
    return out


def target_counts_by_threshold(predictions: Sequence[Dict], dataset_dicts: Sequence[Dict],
                               grid: Sequence[float], pcts: Sequence[float], criterion,
                               rule: IgnoreRule, options: Optional[PhotometryOptions] = None
                               ) -> Dict[tuple, tuple]:
    """{(score threshold, flag per cent): (target clumps detected and flagged, flagged
    detections, of which on a catalogued clump)} for every pair of ``grid`` x ``pcts``,
    counted as :func:`giant_target` counts them. For speed, each detection's photometry is
    measured once, with every detection above the lowest threshold in place
    (:func:`giant_target`, which measures with the kept detections only, gives the reported
    counts)."""
    options = options or PhotometryOptions()
    truth = truth_from_dicts(dataset_dicts, rule)
    plain = truth_from_dicts(dataset_dicts, IgnoreRule())
    records = {d["image_id"]: d for d in dataset_dicts}
    lowest = min(grid)
    out = {(float(t), float(pc)): [0, 0, 0] for t in grid for pc in pcts}
    seen = set()
    for p in predictions:
        image_id = p["image_id"]
        if image_id in seen or image_id not in plain:
            continue
        seen.add(image_id)
        cand = p["scores"] >= lowest
        if not cand.any():
            continue
        boxes, scores = p["boxes"][cand], p["scores"][cand]
        ratio = np.nan_to_num(giant_band_ratios(records[image_id],
                                                (boxes[:, :2] + boxes[:, 2:]) / 2,
                                                boxes[:, 2] - boxes[:, 0], options), nan=-np.inf)
        t_ = truth[image_id]
        for t in grid:
            keep = scores >= t
            if not keep.any():
                continue
            _, used, _ = match_masks_ignoring(t_["boxes"], boxes[keep], scores[keep], -np.inf,
                                              criterion, t_["ignore"])
            _, on_cat = match_masks(plain[image_id]["boxes"], boxes[keep], scores[keep],
                                    -np.inf, criterion)
            for pc in pcts:
                flagged = ratio[keep] >= pc / 100.0
                c = out[(float(t), float(pc))]
                c[0] += int((used & flagged).sum())
                c[1] += int(flagged.sum())
                c[2] += int((on_cat & flagged).sum())
    return {k: tuple(v) for k, v in out.items()}


def flagged_counts_by_threshold(predictions: Sequence[Dict], dataset_dicts: Sequence[Dict],
                                grid: Sequence[float], criterion, rule: IgnoreRule,
                                target: GiantTarget, flag_key: str) -> Dict[float, tuple]:
    """{threshold: (flagged detections, of which on a catalogued clump)} for each score
    threshold of ``grid``, with flag ``flag_key`` of ``target``
    (:func:`target_counts_by_threshold`)."""
    pct = dict(target.flags())[flag_key]
    return flag_counts(target_counts_by_threshold(predictions, dataset_dicts, grid, [pct],
                                                  criterion, rule, target.photometry), pct)


def flag_counts(counts: Dict[tuple, tuple], pct: float) -> Dict[float, tuple]:
    """{threshold: (flagged, on a catalogued clump)} of flag ``pct`` from
    :func:`target_counts_by_threshold` counts."""
    return {t: c[1:] for (t, p), c in counts.items() if p == float(pct)}


#: Flag thresholds (per cent) the ceiling (:func:`giant_ceiling`) searches, besides the
#: target's own flags.
CEILING_FLAG_PCTS = (0.1, 0.2, 0.27, 0.35, 0.5, 0.67, 0.8, 1.0, 1.2, 1.5, 2.0, 3.0)
#: Key of the ceiling's counts in the rows and tables (``n_target_found_flagged_ceiling``...).
CEILING_KEY = "ceiling"
#: Key of the giant catalogue whose score and flag are chosen together on the tuning split.
JOINT_KEY = "joint"


def giant_ceiling(counts: Dict[tuple, tuple], min_purity: float) -> Optional[tuple]:
    """The best the target can be on these counts (:func:`target_counts_by_threshold` of the
    *test* split itself): the (score, flag) pair with the most target clumps detected and
    flagged among those whose flagged detections lie on a catalogued clump for at least
    ``min_purity`` of them; ties to the higher purity, then the lower score and flag.
    Returns ((score, flag), (found_flagged, flagged, on_catalogue)) or None. Not a method:
    an upper bound on every threshold choice, to say what the detector's ranking allows."""
    ok = [(k, c) for k, c in counts.items() if c[1] and c[2] >= min_purity * c[1] - 1e-9]
    if not ok:
        return None
    return max(ok, key=lambda kc: (kc[1][0], kc[1][2] / kc[1][1], -kc[0][0], -kc[0][1]))


def giant_score_threshold(counts: Sequence[Dict[float, tuple]], min_purity: float
                          ) -> Optional[float]:
    """The lowest threshold at which the flagged detections, summed over ``counts``
    (:func:`flagged_counts_by_threshold` of each tuning run), lie on a catalogued clump for
    at least ``min_purity`` of them (None if at none)."""
    for t in sorted(counts[0]):
        flagged = sum(c[t][0] for c in counts)
        on = sum(c[t][1] for c in counts)
        if flagged and on >= min_purity * flagged - 1e-9:
            return t
    return None


def _selection_flag(target: GiantTarget) -> str:
    keys = [k for k, _ in target.flags()]
    return CALIBRATED_FLAG if CALIBRATED_FLAG in keys else keys[0]


def _fold_target(target: "GiantTarget", tune_dataset: str, rule: IgnoreRule) -> "GiantTarget":
    """``target`` for one fold: with ``calibrate_recall``, its :data:`CALIBRATED_FLAG`
    threshold chosen on ``tune_dataset`` under ``rule``."""
    if target.calibrate_recall is None:
        return target
    pct = calibrated_flag_pct(DatasetCatalog.get(tune_dataset), rule, target.calibrate_recall,
                              target.photometry)
    logger.info("giant flag calibrated on %s: display ratio >= %.2f %% flags %.0f %% of its "
                "kept catalogue clumps", tune_dataset, pct, 100 * target.calibrate_recall)
    return dataclasses.replace(target, named_flags={**target.named_flags,
                                                    CALIBRATED_FLAG: pct})


def target_fractions(counts: Dict) -> Dict[str, float]:
    """The target's two fractions per flag threshold from its counts: ``target_C_<p>``
    (detected and flagged / target clumps) and ``target_P_<p>`` (flagged on a catalogued
    clump / flagged); NaN where undefined."""
    out = {}
    for key in counts:
        if key.startswith("n_target_found_flagged_"):
            k = key[len("n_target_found_flagged_"):]
            out[f"target_C_{k}"] = safe_ratio(counts[key], counts.get("n_target_clumps", 0))
            out[f"target_P_{k}"] = safe_ratio(counts.get(f"n_target_flagged_on_catalogue_{k}", 0),
                                              counts.get(f"n_target_flagged_{k}", 0))
    return out


def evaluate_paper_definition(methods: Sequence[Method], dataset: str,
                              output_dir: str | os.PathLike, base_config: str,
                              folds: Sequence[tuple] = (("train", "test"), ("test", "train")),
                              limits: Sequence[float] = PAPER_FLUX_LIMITS,
                              target: Optional[GiantTarget] = None) -> List[Dict]:
    """The real-data table at the paper's definition: for each flux limit and each fold
    (tuning split, test split), :func:`evaluate_methods` with :func:`paper_opts` (so the
    threshold is chosen on the other fold under the same rule), pooled over the folds by
    :func:`pool_folds`; written to ``output_dir/paper_eval.{json,md}``.

    A model's ``weights`` and its ``threshold_from`` pairs may contain ``{tune}`` and
    ``{test}``, filled per fold (the model fine-tuned on the tuning split of that fold,
    e.g. ``output/realdata/finetune_on_{tune}/model_final.pth``).

    Returns:
        one pooled row per (limit, method), with ``flux_limit``.
    """
    output_dir = Path(output_dir)
    rows, fold_rows = [], []
    for limit in limits:
        sub = output_dir / f"{PAPER_FLUX_ATTRIBUTE}_ge_{limit:g}"
        dirs = {}
        for tune, test in folds:
            ms = [fold_method(m, tune, test, paper_opts(limit)) for m in methods]
            d = sub / f"{tune}_to_{test}"
            for r in evaluate_methods(ms, f"{dataset}_{tune}", f"{dataset}_{test}", d,
                                      base_config, target=target):
                fold_rows.append({"flux_limit": limit, "fold": f"{tune}→{test}", **r,
                                  **target_fractions(r)})
            dirs[f"{tune}→{test}"] = d
        for r in pool_folds(dirs, sub):
            rows.append({"flux_limit": limit, **r})
    write_paper_table(rows, fold_rows, output_dir, target)
    return rows


def fold_method(method: Method, tune: str, test: str, extra_opts: Sequence[str] = ()
                ) -> Method:
    """``method`` for one fold: ``{tune}``/``{test}`` in its weights and threshold sources
    filled, ``extra_opts`` appended to its config overrides."""
    def fill(text: str) -> str:
        return text.replace("{tune}", tune).replace("{test}", test)

    return dataclasses.replace(
        method, weights=fill(method.weights), opts=list(method.opts) + list(extra_opts),
        threshold_from=[(fill(w), fill(d)) for w, d in method.threshold_from])


def _flag_label(key: str) -> str:
    if key.endswith(SELECTED_SUFFIX):
        return (f"giant catalogue: its score threshold and the "
                f"{_flag_label(key[:-len(SELECTED_SUFFIX)])}")
    if key == CALIBRATED_FLAG:
        return "flag chosen on the other fold, per fold"
    if key.startswith(U_CALIBRATED_PREFIX):
        pct = key[len(U_CALIBRATED_PREFIX):].replace("p", ".")
        return (f"the catalogue's calibrated flag, predicted u-band fraction >= {pct} % "
                "(PHOTOMETRY.DISPLAY_GIANT_CALIBRATION)")
    if key == JOINT_KEY:
        return "giant catalogue: score and flag chosen together on the other fold"
    if key == CEILING_KEY:
        return ("ceiling: the best score and flag chosen on the test fold itself, an upper "
                "bound")
    return f"{key.replace('p', '.')} % flag"


def write_paper_table(rows: Sequence[Dict], fold_rows: Sequence[Dict],
                      output_dir: str | os.PathLike,
                      target: Optional[GiantTarget] = None) -> Dict[str, Path]:
    """``paper_eval.json`` (pooled and per-fold rows) and ``paper_eval.md`` (the docs
    table: per limit and method, each fold's threshold, C, P and the pooled C, P, F1, with
    the giant target where measured, and a line saying what it was counted on)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    def clean(r):
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in r.items()}

    paths = {"json": output_dir / "paper_eval.json", "md": output_dir / "paper_eval.md"}
    paths["json"].write_text(json.dumps({"pooled": [clean(r) for r in rows],
                                         "folds": [clean(r) for r in fold_rows]}, indent=2))
    target_keys = sorted({k[len("target_C_"):] for r in rows for k in r
                          if k.startswith("target_C_")})
    headers = ["u-band flux fraction >=", "method", "fold: thresh, C, P (matched / true, "
               "detections)", "pooled completeness", "pooled purity", "pooled F1",
               "ignored clumps (detections on them)",
               *(f"target ({_flag_label(p)}): detected+flagged / flagged on a catalogue "
                 f"clump" for p in target_keys)]
    table = []
    for r in rows:
        folds = [f for f in fold_rows if f["flux_limit"] == r["flux_limit"]
                 and f["method"] == r["method"]]
        fold_text = "; ".join(
            f"{f['fold']}: {f['thresh']:.2f}, {_fmt(f['completeness'])}, {_fmt(f['purity'])} "
            f"({f['n_matched']} / {f['n_true']}, {f['n_detections']})" for f in folds)
        cells = [f"{r['flux_limit']:g}", r["method"], fold_text, _fmt(r["completeness"]),
                 _fmt(r["purity"]), _fmt(r["F1"]),
                 f"{r.get('n_ignored', 0)} ({r.get('n_detections_on_ignored', 0)})"]
        for p in target_keys:
            per_fold = [_fmt(f[f"flag_pct_{p}"]) for f in folds if f"flag_pct_{p}" in f]
            score_key = "giant_thresh" if p.endswith(SELECTED_SUFFIX) else f"score_thresh_{p}"
            scores = [_fmt(f.get(score_key)) for f in folds] \
                if any(score_key in f for f in folds) else []
            cells.append(
                (f"score >= {' / '.join(scores)}, " if scores else "") +
                (f"flag >= {' / '.join(per_fold)} %: " if per_fold else "") +
                f"{_fmt(r.get(f'target_C_{p}'))} ({r.get(f'n_target_found_flagged_{p}', 0)} / "
                f"{r.get('n_target_clumps', 0)}) / {_fmt(r.get(f'target_P_{p}'))} "
                f"({r.get(f'n_target_flagged_on_catalogue_{p}', 0)} / "
                f"{r.get(f'n_target_flagged_{p}', 0)})")
        table.append(dict(zip(headers, cells)))
    text = markdown_table(table, headers)
    if target is not None and target_keys:
        text += ("\nGiant target counted on " + (
            "the catalogue a user gets (each method's INFERENCE post-processing: NMS, "
            "merging within a PSF FWHM, bulge rule)." if target.as_catalogue else
            "the detector's raw output (no catalogue post-processing).") + "\n")
    paths["md"].write_text(text)
    return paths
