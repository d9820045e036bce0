"""Injection-recovery: completeness of a detector on real images, measured the way
astronomers do it.

For each image, synthetic clumps of known flux are added, the detector is run, and a clump
counts as recovered if a detection at score >= the operating threshold matches its box
(side 2.5 x PSF FWHM) under the evaluator's rule (:func:`~clump_d2.evaluation.matching.
match_boxes`: one-to-one, IoU >= 0.5 by default). Only the injected clumps are truth here:
detections of the galaxy's own clumps are neither rewarded nor penalised.

**Linear space.** Flux adds linearly, so clumps are added in flux units:

* FITS bands are fluxes already: the clump is added to each band, then the bands are
  stretched for the network exactly as the data loader does (``INPUT.FITS``).
* 8-bit PNG/JPEG colour images are first *linearised* by inverting a Lupton et al. (2004)
  colour-preserving asinh stretch with softening ``Q`` (:class:`~clump_d2.data.stretch.DisplayStretch`): if ``c_k`` are the
  channel values / 255 and ``m`` their mean, the stretch sets ``m = asinh(Q I) / Q`` for the
  linear intensity ``I``, so ``I = sinh(Q m) / Q`` and each linear channel is
  ``x_k = c_k I / m``. This is exact for our SDSS-preset simulations (Q = 10,
  :class:`~clump_d2.sim.synthetic.SdssRealism`) and a documented approximation for real
  survey JPEGs, whose exact stretch (and JPEG compression) is not known: Q = 10 is the
  softening that reproduced the GZH Stripe 82 crops' dynamic range. Saturated (255) and
  clipped (0) pixels cannot be inverted exactly; they are few on the discs where clumps go.
  After injection the stretch is re-applied and the image rounded to 8 bits.

**Flux fraction.** ``flux_frac`` = clump flux / host flux in the reference channel
(``ref_channel``, default 1: G = SDSS r, as Clump Scout and the Mehta et al. catalogue define
it). The host flux is the sky-subtracted linear flux inside the galaxy's segment (the
connected region of the smoothed image above 2 sky sigma that holds the centre; the same
segment the classical baseline uses). The clump's colour is the host's colour times
``colour`` (default bluer than the disc, as real clumps are).

**Noise.** The injected clump is a noiseless PSF model (Gaussian of the image's PSF FWHM) on
top of the image's own noise: SDSS images are sky-noise dominated at the clumps' surface
brightness, so the clump gets the S/N it would have had in that image. (Its own photon noise
is neglected; it matters only for clumps far brighter than the sky.)

**Positions.** Radius (in units of the host's half-light radius R50, measured in the same
segment) uniform in ``radius_r50``, angle uniform; at least ``bulge_fwhm`` PSF FWHM from the
centre, ``sep_fwhm`` from each other, from the galaxy's known clumps (if given) and from the
detector's own detections on the original image (so a pre-existing detection cannot be
mistaken for a recovery); fully inside the image.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from clump_d2.baselines import find_clumps
from clump_d2.data.tables import markdown_table
from clump_d2.sim.inject import choose_positions, host_properties, inject
from clump_d2.sim.real_hosts import RealHostParams, prepare_host
from clump_d2.engine import build_model_for_inference
from clump_d2.evaluation.matching import MatchCriterion, match_boxes
from clump_d2.evaluation.metrics import wilson_interval
from clump_d2.evaluation.selection import selection_table, write_selection_function
from clump_d2.inference.postprocess import Detections, PostProcessConfig, postprocess_uncut
from clump_d2.modeling.runtime import wrap_for_inference
from clump_d2.structures import clump_box_xyxy

logger = logging.getLogger(__name__)

#: A detector: (image (H, W, C) float in network units, record) -> {"boxes" XYXY, "scores"}.
Detector = Callable[[np.ndarray, Dict], Dict[str, np.ndarray]]


@dataclass
class InjectionConfig:
    """What to inject and how recovery is judged (see module docstring)."""

    flux_fractions: Sequence[float] = (0.01, 0.02, 0.03, 0.05, 0.1, 0.2)
    radius_r50: Tuple[float, float] = (0.3, 2.0)  # radius range, x host R50
    per_image: int = 3  # clumps injected at once per trial
    trials: int = 2  # trials per image and flux fraction
    colour: Tuple[float, float, float] = (0.85, 1.0, 1.25)  # x host colour (R, G, B): bluer
    ref_channel: int = 1  # channel defining the flux fraction (G = SDSS r)
    sep_fwhm: float = 2.5  # min distance to other clumps / injections / detections, x FWHM
    bulge_fwhm: float = 1.5  # min distance to the centre, x FWHM
    score_thresh: float = 0.5  # operating point (from_config: TEST.CLUMP_EVAL.SCORE_THRESH)
    #: More score thresholds at which each trial is also judged (recovered and false counts
    #: per trial in ``trial_rows[...]["sweep"]``): the trade-off curve, one detection pass.
    sweep_threshs: Tuple[float, ...] = ()
    avoid_score: float = 0.3  # original detections above this are avoided
    q: float = 10.0  # Lupton softening of the display model (PNG/JPEG)
    seed: int = 0
    match: MatchCriterion = field(default_factory=MatchCriterion)

    @classmethod
    def from_config(cls, cfg, **kwargs) -> "InjectionConfig":
        """Recovery judged as the evaluator judges detections: at the operating point
        ``TEST.CLUMP_EVAL.SCORE_THRESH`` with ``MatchCriterion.from_config(cfg)``; ``kwargs``
        set the injection itself."""
        return cls(score_thresh=float(cfg.TEST.CLUMP_EVAL.SCORE_THRESH),
                   match=MatchCriterion.from_config(cfg), **kwargs)


def _choose_positions(rng, n, host, fwhm, shape, avoid_xy, cfg: InjectionConfig):
    return choose_positions(rng, n, host["centre"], host["r50"], fwhm, shape, avoid_xy,
                            cfg.radius_r50, cfg.bulge_fwhm, cfg.sep_fwhm)


def run_injection(images: Sequence[Dict], detector: Detector, cfg: InjectionConfig,
                  to_network: Callable[[np.ndarray, Dict], np.ndarray],
                  show_progress: bool = True,
                  trial_rows: Optional[List[Dict]] = None) -> List[Dict]:
    """Inject, detect, match. Returns one row per injected clump.

    Args:
        images: dicts with ``linear`` (H, W, C) float (the linear image), ``psf_fwhm_px``,
            ``name``, optional ``known_xy`` (the galaxy's own clumps, avoided), ``ignore_xy``
            (the host's own knots: avoided, and detections on them are not false) and
            ``group`` (e.g. the host class, copied to the rows).
        detector: see :data:`Detector`.
        cfg: the injection settings.
        to_network: linear image (+ the dict) -> detector input (display stretch for
            PNG/JPEG, the FITS stretch for FITS).
        trial_rows: if given, one dict per trial is appended: ``n_false``, the detections at
            the operating point that match no injected clump and whose centre lies in no
            ignore box (a 2.5 x FWHM box around each ``ignore_xy`` and ``known_xy``) -- the
            false detections per galaxy outside injected clumps and ignore regions; with
            ``cfg.sweep_threshs``, ``sweep``: ``[threshold, n_recovered, n_false]`` at each.
    """
    rng = np.random.default_rng(cfg.seed)
    rows = []
    total = len(images) * len(cfg.flux_fractions) * cfg.trials
    bar = tqdm(total=total, desc="injection-recovery", unit="trial", disable=not show_progress)
    for im in images:
        linear, fwhm = im["linear"], float(im["psf_fwhm_px"])
        host = host_properties(linear, fwhm)
        base = detector(to_network(linear, im), im)
        keep = np.asarray(base["scores"]) >= cfg.avoid_score
        det_xy = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
                  for b in np.asarray(base["boxes"]).reshape(-1, 4)[keep]]
        own = [tuple(p) for p in im.get("known_xy", [])] + [tuple(p)
                                                            for p in im.get("ignore_xy", [])]
        avoid = det_xy + own
        ignore_boxes = np.array([clump_box_xyxy(x, y, fwhm) for x, y in own]).reshape(-1, 4)
        group = im.get("group", "")
        host_colour = host["flux"] / max(host["flux"][cfg.ref_channel], 1e-12)
        for frac in cfg.flux_fractions:
            for trial in range(cfg.trials):
                pos = _choose_positions(rng, cfg.per_image, host, fwhm, linear.shape[:2],
                                        avoid, cfg)
                bar.update(1)
                if not pos:
                    continue
                ref_flux = frac * host["flux"][cfg.ref_channel]
                fluxes = [ref_flux * host_colour * np.asarray(cfg.colour) / cfg.colour[
                    cfg.ref_channel] for _ in pos]
                injected = inject(linear, [(x, y) for x, y, _ in pos], fluxes, fwhm)
                out = detector(to_network(injected, im), im)
                boxes = np.asarray(out["boxes"]).reshape(-1, 4)
                scores = np.asarray(out["scores"]).reshape(-1)
                true_boxes = [clump_box_xyxy(x, y, fwhm) for x, y, _ in pos]
                sel, pairs = _judge(true_boxes, boxes, scores, cfg.score_thresh, cfg.match)
                found = {t: float(scores[sel][d]) for t, d in pairs}
                if trial_rows is not None:
                    trial_rows.append({
                        "image": im["name"], "group": group, "trial": trial,
                        "flux_frac": float(frac), "n_injected": len(pos),
                        "n_false": _count_false(boxes[sel], {d for _, d in pairs},
                                                ignore_boxes),
                        "n_unmatched": int(sel.sum()) - len(pairs)})
                    if cfg.sweep_threshs:
                        sweep = []
                        for t in cfg.sweep_threshs:
                            sel_t, pairs_t = _judge(true_boxes, boxes, scores, t, cfg.match)
                            sweep.append([float(t), len(pairs_t), _count_false(
                                boxes[sel_t], {d for _, d in pairs_t}, ignore_boxes)])
                        trial_rows[-1]["sweep"] = sweep
                for k, (x, y, u) in enumerate(pos):
                    rows.append({"image": im["name"], "group": group, "trial": trial,
                                 "flux_frac": float(frac),
                                 "x": float(x), "y": float(y),
                                 "distance_px": float(math.hypot(x - host["centre"][0],
                                                                 y - host["centre"][1])),
                                 "distance_r50": float(u), "r50_px": host["r50"],
                                 "psf_fwhm_px": fwhm, "recovered": k in found,
                                 "score": found.get(k, float("nan"))})
    bar.close()
    return rows


def _judge(true_boxes, boxes: np.ndarray, scores: np.ndarray, thresh: float, criterion):
    """(mask of the detections at score >= ``thresh``, their one-to-one (true, detection)
    pairs, detection indices into the masked detections)."""
    sel = scores >= thresh
    return sel, match_boxes(true_boxes, boxes[sel], det_scores=scores[sel], criterion=criterion)


def _count_false(boxes: np.ndarray, matched: set, ignore_boxes: np.ndarray) -> int:
    """Detections (rows of ``boxes``) neither in ``matched`` nor centred in an ignore box."""
    n = 0
    for d, b in enumerate(boxes):
        if d in matched:
            continue
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        inside = ((ignore_boxes[:, 0] <= cx) & (cx <= ignore_boxes[:, 2])
                  & (ignore_boxes[:, 1] <= cy) & (cy <= ignore_boxes[:, 3]))
        n += int(not inside.any())
    return n


def recovered_fraction(k: int, n: int) -> Dict:
    """``k`` of ``n`` injected clumps recovered: counts, fraction and Wilson 68 % interval
    (NaN when nothing was injected)."""
    lo, hi = wilson_interval(k, n) if n else (float("nan"), float("nan"))
    return {"n": n, "recovered": k, "fraction": k / n if n else float("nan"),
            "low": lo, "high": hi}


def summarise(rows: Sequence[Dict], flux_fractions: Sequence[float],
              radius_edges: Sequence[float]) -> Dict:
    """Recovered fraction (with counts and Wilson 68 % intervals) per flux fraction, per
    radius bin (x R50), and per (flux fraction, radius bin)."""
    def stats(sel):
        return recovered_fraction(int(sum(r["recovered"] for r in sel)), len(sel))

    out = {"n_injected": len(rows), "by_flux_frac": [], "by_radius": [], "by_both": []}
    for f in flux_fractions:
        out["by_flux_frac"].append({"flux_frac": float(f),
                                    **stats([r for r in rows if r["flux_frac"] == f])})
    for lo, hi in zip(radius_edges[:-1], radius_edges[1:]):
        sel = [r for r in rows if lo <= r["distance_r50"] < hi]
        out["by_radius"].append({"r50_low": lo, "r50_high": hi, **stats(sel)})
        for f in flux_fractions:
            out["by_both"].append({"flux_frac": float(f), "r50_low": lo, "r50_high": hi,
                                   **stats([r for r in sel if r["flux_frac"] == f])})
    return out


def write_outputs(rows: Sequence[Dict], summary: Dict, cfg: InjectionConfig,
                  output_dir: str | os.PathLike, title: str = "",
                  band: str = "r") -> Dict[str, Path]:
    """``injections.csv`` (one row per clump), ``injection_summary.json``,
    ``injection_recovery.png`` (recovered fraction vs flux fraction and vs radius) and the
    detector's selection function, ``selection_function.csv`` / ``.json``
    (:func:`clump_d2.evaluation.selection.selection_table`: per flux fraction x radius bin of
    ``summary`` x host group; ``band``: the band of ``cfg.ref_channel``, r for SDSS gri)."""
    import matplotlib  # here: the headless backend must be chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "injections.csv", "json": out / "injection_summary.json",
             "png": out / "injection_recovery.png"}
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["image"])
        w.writeheader()
        w.writerows(rows)
    settings = {k: v for k, v in asdict(cfg).items() if k != "match"}
    settings["match"] = cfg.match.describe()
    paths["json"].write_text(json.dumps({"settings": settings, **summary}, indent=2,
                                        default=lambda o: None))
    edges = ([b["r50_low"] for b in summary["by_radius"]] + [summary["by_radius"][-1]["r50_high"]]
             if summary["by_radius"] else list(cfg.radius_r50))
    table = selection_table(rows, cfg.flux_fractions, edges, band, cfg.score_thresh)
    sf_paths = write_selection_function(table, out, {
        **settings, "band": band, "radius_edges": edges, "title": title,
        "n_injected": len(rows)})
    paths.update({"selection_csv": sf_paths["csv"], "selection_json": sf_paths["json"]})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    bf = summary["by_flux_frac"]
    x = [b["flux_frac"] for b in bf]
    y = np.array([b["fraction"] for b in bf])
    err = np.clip(np.nan_to_num(np.array([[b["fraction"] - b["low"], b["high"] - b["fraction"]]
                                          for b in bf]).T.reshape(2, -1)), 0, None)
    axes[0].errorbar(x, y, yerr=err, marker="o", capsize=3)
    for xi, b in zip(x, bf):
        axes[0].annotate(f"{b['recovered']}/{b['n']}", (xi, b["fraction"]), fontsize=7,
                         textcoords="offset points", xytext=(0, 6), ha="center")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("injected clump flux / host flux (r)")
    axes[0].set_ylabel(f"recovered fraction (score >= {cfg.score_thresh:.2f})")
    axes[0].set_ylim(-0.05, 1.1)
    axes[0].grid(alpha=0.3)
    fr = sorted({b["flux_frac"] for b in summary["by_both"]})
    for f in fr:
        sel = [b for b in summary["by_both"] if b["flux_frac"] == f]
        xc = [(b["r50_low"] + b["r50_high"]) / 2 for b in sel]
        axes[1].plot(xc, [b["fraction"] for b in sel], marker="o", label=f"{f:g}")
    br = summary["by_radius"]
    axes[1].plot([(b["r50_low"] + b["r50_high"]) / 2 for b in br], [b["fraction"] for b in br],
                 "k--", lw=2, label="all")
    axes[1].set_xlabel("distance from centre / host R50")
    axes[1].set_ylim(-0.05, 1.1)
    axes[1].grid(alpha=0.3)
    axes[1].legend(title="flux frac", fontsize=7)
    fig.suptitle(title or f"injection-recovery ({summary['n_injected']} clumps)")
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=80)
    plt.close(fig)
    return paths


# --- inputs and detectors ----------------------------------------------------------------------

def model_detector(cfg, model=None, as_catalogue: bool = False) -> Detector:
    """A Detectron2 model as a :data:`Detector`, built and wrapped as every evaluation does
    (:func:`clump_d2.engine.build_model_for_inference` unless given, then autocast and
    test-time augmentation per ``TEST.AMP`` / ``TEST.DIHEDRAL_TTA``); channels are
    reordered to ``INPUT.FORMAT`` (inputs are RGB). It returns every detection above
    ``MODEL.ROI_HEADS.SCORE_THRESH_TEST``; :func:`run_injection` applies the operating
    threshold (:meth:`InjectionConfig.from_config`).

    ``as_catalogue``: the detections as ``tools/predict_catalog.py`` lists them, after the
    catalogue's post-processing (:func:`clump_d2.inference.postprocess` with ``cfg.INFERENCE``:
    class-agnostic NMS, merging within a PSF FWHM, and with ``INFERENCE.DROP_BULGE`` no
    detection within ``INFERENCE.BULGE_FWHM`` x FWHM of the galaxy centre, the image
    centre of a cut-out; :func:`clump_d2.inference.postprocess_uncut`). The score cut is left
    to :func:`run_injection`."""
    model = wrap_for_inference(build_model_for_inference(cfg) if model is None else model, cfg)
    bgr = cfg.INPUT.FORMAT == "BGR"
    post = PostProcessConfig.from_cfg(cfg) if as_catalogue else None

    def detect(image: np.ndarray, im: Dict) -> Dict[str, np.ndarray]:
        arr = image[:, :, ::-1] if bgr and image.shape[2] == 3 else image
        tensor = torch.as_tensor(np.ascontiguousarray(arr.transpose(2, 0, 1)),
                                 dtype=torch.float32)
        with torch.no_grad():
            inst = model([{"image": tensor, "height": arr.shape[0],
                           "width": arr.shape[1]}])[0]["instances"].to("cpu")
        boxes, scores = inst.pred_boxes.tensor.numpy(), inst.scores.numpy()
        if post is not None:
            det = postprocess_uncut(Detections(boxes, scores, inst.pred_classes.numpy()),
                                    post, centre_xy=(arr.shape[1] / 2.0, arr.shape[0] / 2.0),
                                    psf_fwhm_px=im.get("psf_fwhm_px"))
            boxes, scores = det.boxes, det.scores
        return {"boxes": boxes, "scores": scores}

    return detect


def baseline_detector(params=None) -> Detector:
    """The classical finder (:mod:`clump_d2.baselines`) as a :data:`Detector`."""
    def detect(image: np.ndarray, im: Dict) -> Dict[str, np.ndarray]:
        return find_clumps(image, float(im["psf_fwhm_px"]), params)

    return detect


def prepare_host_images(files: Sequence[str | os.PathLike], crop_size: int = 200,
                        psf_fixed_px: Optional[float] = None, ignore_snr: float = 6.0,
                        q: float = 10.0, group_by: Optional[str] = None, seed: int = 0,
                        show_progress: bool = True) -> List[Dict]:
    """Real host images (PNG/JPEG) prepared as the real-host dataset prepares them
    (:func:`clump_d2.sim.real_hosts.prepare_host`), as :func:`run_injection` inputs.

    Each image: the central ``crop_size`` crop, linearised with the display stretch (``q``);
    the PSF FWHM estimated from the compact sources of the whole image (not just the crop:
    :func:`clump_d2.data.psf.estimate_psf_fwhm`), and where none qualify either
    ``psf_fixed_px`` or, if that is None, a draw log-uniform over SDSS's seeing range
    (:data:`~clump_d2.data.psf.SDSS_SEEING_FWHM_PX_RANGE`, seeded by the image: over a
    sample this marginalises over the seeing); the host's own knots (classical peaks at
    S/N >= ``ignore_snr``) as ``ignore_xy``. ``group_by="parent"``: ``group`` is the image's
    parent folder name (e.g. spiral / non_spiral). Images smaller than the crop are an error
    naming the file.
    """
    params = RealHostParams(crop_size=crop_size, ignore_snr=ignore_snr, q=q, seed=seed,
                            psf_full_image=True)
    if psf_fixed_px is not None:
        params.psf_fallback_px = (float(psf_fixed_px), float(psf_fixed_px))
    out = []
    for f in tqdm(list(files), desc="hosts", unit="image", disable=not show_progress):
        path = Path(f)
        group = path.parent.name if group_by == "parent" else ""
        try:
            prep = prepare_host(path, f"{path.parent.name}/{path.stem}", params)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e
        out.append({"name": os.fspath(path), "linear": prep.linear, "psf_fwhm_px": prep.fwhm,
                    "psf_source": prep.psf_source, "ignore_xy": [tuple(p) for p in prep.knots],
                    "group": group})
    return out


def summarise_groups(rows: Sequence[Dict], trial_rows: Sequence[Dict],
                     flux_fractions: Sequence[float],
                     score_thresh: Optional[float] = None) -> List[Dict]:
    """Per group (and "all"): recovered fraction per flux fraction (Wilson 68 % interval) and
    false detections per galaxy image (mean ``n_false`` over trials); ``score_thresh``, the
    detector's operating point, is carried into each entry for the table."""
    groups = sorted({r.get("group", "") for r in rows} | {t.get("group", "") for t in
                                                         trial_rows})
    out = []
    for g in (["all"] + [g for g in groups if g] if len(groups) > 1 or groups != [""]
              else ["all"]):
        sel = [r for r in rows if g == "all" or r.get("group", "") == g]
        tsel = [t for t in trial_rows if g == "all" or t.get("group", "") == g]
        entry = {"group": g, "n_images": len({r["image"] for r in tsel}),
                 "score_thresh": score_thresh,
                 "false_per_galaxy": (float(np.mean([t["n_false"] for t in tsel]))
                                      if tsel else float("nan")),
                 "unmatched_per_galaxy": (float(np.mean([t["n_unmatched"] for t in tsel]))
                                          if tsel else float("nan")), "by_flux_frac": []}
        for f in flux_fractions:
            fs = [r for r in sel if r["flux_frac"] == f]
            entry["by_flux_frac"].append({"flux_frac": float(f), **recovered_fraction(
                int(sum(r["recovered"] for r in fs)), len(fs))})
        out.append(entry)
    return out


def _write_table_and_json(paths: Dict[str, Path], header: List[str], table: List[List[str]],
                          command: str, machine: str, payload: Dict) -> None:
    """``paths["md"]``: the table, under "Written by `command` on machine." when a command is
    given; ``paths["json"]``: the command, the machine and ``payload``."""
    lines = [f"Written by `{command}`" + (f" on {machine}." if machine else "."), ""] \
        if command else []
    lines.append(markdown_table([dict(zip(header, r)) for r in table], header).rstrip("\n"))
    paths["md"].write_text("\n".join(lines) + "\n")
    paths["json"].write_text(json.dumps({"command": command, "machine": machine, **payload},
                                        indent=2))


def _panels(plt, n: int):
    """A row of ``n`` recovered-fraction panels (figure, 1 x n axes)."""
    return plt.subplots(1, n, figsize=(4.2 * n, 3.8), squeeze=False)


def _finish_panel(ax, xlabel: str, title: str, ymax: float) -> None:
    """Labels, the recovered-fraction range (-0.05 to ``ymax``), grid and legend of a panel."""
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.set_ylim(-0.05, ymax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)


def _save_panels(plt, fig, axes, path: Path) -> None:
    axes[0][0].set_ylabel("recovered fraction")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_group_comparison(results: Dict[str, List[Dict]], output_dir: str | os.PathLike,
                           command: str = "", machine: str = "") -> Dict[str, Path]:
    """``injection_table.md`` / ``.json`` and ``injection_by_group.png``: per detector and
    host group, the recovered fraction at each flux fraction and the false detections per
    galaxy (``results``: detector name -> :func:`summarise_groups` output)."""
    import matplotlib  # here: the headless backend must be chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "injection_table.md", "json": out / "injection_table.json",
             "png": out / "injection_by_group.png"}
    fracs = [b["flux_frac"] for b in next(iter(results.values()))[0]["by_flux_frac"]]
    header = (["detector", "score >=", "hosts", "images"]
              + [f"recovered at {f:g}" for f in fracs]
              + ["false det. / galaxy", "unmatched det. / galaxy (incl. ignore regions)"])
    table = []
    for name, groups in results.items():
        for g in groups:
            thresh = g.get("score_thresh")
            table.append([name, "" if thresh is None else f"{thresh:.2f}", g["group"],
                          str(g["n_images"])]
                         + [f"{b['fraction']:.3f} ({b['recovered']}/{b['n']})"
                            for b in g["by_flux_frac"]]
                         + [f"{g['false_per_galaxy']:.2f}", f"{g['unmatched_per_galaxy']:.2f}"])
    _write_table_and_json(paths, header, table, command, machine, {"results": results})
    names = list(results)
    group_names = [g["group"] for g in results[names[0]]]
    fig, axes = _panels(plt, len(group_names))
    for ax, gname in zip(axes[0], group_names):
        for name in names:
            g = next(x for x in results[name] if x["group"] == gname)
            bf = g["by_flux_frac"]
            y = np.array([b["fraction"] for b in bf])
            err = np.clip(np.nan_to_num(np.array([[b["fraction"] - b["low"],
                                                   b["high"] - b["fraction"]] for b in bf]).T),
                          0, None)
            ax.errorbar(fracs, y, yerr=err, marker="o", capsize=3,
                        label=f"{name} ({g['false_per_galaxy']:.2f} false/gal.)")
        ax.set_xscale("log")
        _finish_panel(ax, "injected clump flux / host flux (r)", f"hosts: {gname}", 1.1)
    _save_panels(plt, fig, axes, paths["png"])
    return paths


#: The default threshold grid of a sweep (``tools/inject_recover.py --sweep``).
DEFAULT_SWEEP = tuple(round(0.05 * k, 2) for k in range(1, 20))


def summarise_sweep(trial_rows: Sequence[Dict], flux_fractions: Sequence[float]) -> List[Dict]:
    """Per sweep threshold (``trial_rows[...]["sweep"]``, see :func:`run_injection`): the
    recovered fraction at each flux fraction (summed over trials, Wilson 68 % interval) and
    the false detections per galaxy image (mean over all trials, as :func:`summarise_groups`)."""
    with_sweep = [t for t in trial_rows if t.get("sweep")]
    if not with_sweep:
        return []
    threshs = [s[0] for s in with_sweep[0]["sweep"]]
    out = []
    for i, thresh in enumerate(threshs):
        entry = {"thresh": thresh, "n_trials": len(with_sweep),
                 "false_per_galaxy": float(np.mean([t["sweep"][i][2] for t in with_sweep])),
                 "by_flux_frac": []}
        for f in flux_fractions:
            ts = [t for t in with_sweep if t["flux_frac"] == f]
            entry["by_flux_frac"].append({"flux_frac": float(f), **recovered_fraction(
                int(sum(t["sweep"][i][1] for t in ts)), int(sum(t["n_injected"] for t in ts)))})
        out.append(entry)
    return out


def is_operating(entry: Dict, sweep: Dict) -> bool:
    """Whether a :func:`summarise_sweep` entry is at the detector's operating threshold
    (``sweep["operating"]``, which the tool puts on the grid)."""
    return sweep.get("operating") is not None and abs(entry["thresh"] - sweep["operating"]) < 1e-9


def write_sweep(sweeps: Dict[str, Dict], output_dir: str | os.PathLike, command: str = "",
                machine: str = "") -> Dict[str, Path]:
    """``injection_sweep.md`` / ``.json`` and ``injection_sweep.png``: per detector, the
    recovered fraction at each flux fraction against the false detections per galaxy, one
    point per score threshold (``sweeps``: detector name -> ``{"operating": its operating
    threshold, "sweep": summarise_sweep(...)}``); the operating point is marked."""
    import matplotlib  # here: the headless backend must be chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "injection_sweep.md", "json": out / "injection_sweep.json",
             "png": out / "injection_sweep.png"}
    first = next(iter(sweeps.values()))["sweep"]
    fracs = [b["flux_frac"] for b in first[0]["by_flux_frac"]] if first else []
    header = (["detector", "score >=", "operating point"]
              + [f"recovered at {f:g}" for f in fracs] + ["false det. / galaxy"])
    table = []
    for name, sw in sweeps.items():
        for e in sw["sweep"]:
            table.append([name, f"{e['thresh']:.2f}", "yes" if is_operating(e, sw) else "",
                          *(f"{b['fraction']:.3f} ({b['recovered']}/{b['n']})"
                            for b in e["by_flux_frac"]), f"{e['false_per_galaxy']:.3f}"])
    _write_table_and_json(paths, header, table, command, machine, {"sweeps": sweeps})
    fig, axes = _panels(plt, max(len(fracs), 1))
    for ax, (j, f) in zip(axes[0], enumerate(fracs)):
        for name, sw in sweeps.items():
            xs = [e["false_per_galaxy"] for e in sw["sweep"]]
            ys = [e["by_flux_frac"][j]["fraction"] for e in sw["sweep"]]
            line, = ax.plot(xs, ys, marker=".", label=name)
            for e, x, y in zip(sw["sweep"], xs, ys):
                if is_operating(e, sw):
                    ax.plot([x], [y], marker="*", markersize=12, color=line.get_color())
                    ax.annotate(f"{e['thresh']:.2f}", (x, y), fontsize=7,
                                xytext=(4, -10), textcoords="offset points")
        ax.set_xscale("symlog", linthresh=0.01)
        _finish_panel(ax, "false detections per galaxy", f"injected at {f:g} of the host", 1.05)
    fig.suptitle("one point per score threshold; * = the detector's operating point",
                 fontsize=9)
    _save_panels(plt, fig, axes, paths["png"])
    return paths


def threshold_within_false_rate(sweep: Sequence[Dict], max_false_per_galaxy: float
                                ) -> Optional[Dict]:
    """The entry of a :func:`summarise_sweep` result at the lowest score threshold whose false
    detections per galaxy do not exceed ``max_false_per_galaxy`` (None if no threshold does):
    the most complete operating point that is no noisier than a reference (e.g. the classical
    baseline at its own operating point on the same hosts)."""
    ok = [e for e in sweep if e["false_per_galaxy"] <= max_false_per_galaxy + 1e-12]
    return min(ok, key=lambda e: e["thresh"]) if ok else None
