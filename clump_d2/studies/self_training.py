"""Self-training: pseudo-labels for the real hosts' own knots.

In the real-host training set (:mod:`clump_d2.sim.real_hosts`) a host's own compact knots (the
classical finder's peaks at S/N >= 6) are ignore regions: real clumps, but unlabelled, so the
network never learns from a real clump in a single-epoch image. Here a trained detector (with
its config's test-time augmentation) and the classical finder vote on each knot:

* ``positive``: a detection at score >= ``min_score`` lies within ``match_fwhm`` PSF FWHM of a
  knot of S/N >= ``min_snr`` (one detection confirms at most one knot: pairs are taken
  closest first), and the knot is at least ``bulge_fwhm`` FWHM from the host centre (the
  nucleus is not a clump);
* ``ignore``: every other knot (found by one method only, too faint, or the nucleus): it stays
  an ignore region, neither rewarded nor punished;
* optionally (``network_only_score``, default off) a detection at score >= that value that
  lies near no knot and off the nucleus is a ``positive`` of its own (``kind: "detection"``).

The hosts are prepared exactly as the dataset prepares them (:func:`clump_d2.sim.real_hosts.
prepare_host`: central crop, PSF, knots), and the file records those host parameters, so that
``tools/make_real_hosts.py --pseudo-labels FILE`` can check it was made for its knots
(:func:`clump_d2.sim.real_hosts.check_pseudo_labels`). The detector sees the host's original
RGB crop, as in the un-injected versions of the dataset.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from tqdm import tqdm

from clump_d2.convert.coco_writer import atomic_write_text
from clump_d2.data.image_io import unique_image_ids
from clump_d2.sim.real_hosts import (PSEUDO_LABEL_FORMAT, RealHostParams, host_images,
                                     prepare_host, prepare_params, splits_from_lists)
from clump_d2.studies.injection import Detector

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PseudoLabelParams:
    """The rule that turns a host's knots into pseudo-labels (see the module docstring)."""

    min_score: float = 0.5  # a detection confirms a knot at this score or above
    min_snr: float = 6.0  # knots below this S/N stay ignored (the dataset keeps S/N >= 6)
    match_fwhm: float = 1.0  # detection centre within this many PSF FWHM of the knot
    bulge_fwhm: float = 1.0  # knots (and detections) closer to the centre are the nucleus
    network_only_score: Optional[float] = None  # detections this sure need no knot (None: off)


def classify_knots(knots_xy: np.ndarray, knot_snr: np.ndarray, det_boxes: np.ndarray,
                   det_scores: np.ndarray, fwhm: float, centre: Sequence[float],
                   params: PseudoLabelParams) -> List[Dict]:
    """Label one host's knots from a detector's detections (the rule of the module docstring).

    Args:
        knots_xy: (K, 2) knot positions (px).
        knot_snr: (K,) their S/N in the classical finder.
        det_boxes: (N, 4) detections, XYXY; their centres are compared with the knots.
        det_scores: (N,) their scores.
        fwhm: the host's PSF FWHM (px), the unit of ``match_fwhm`` and ``bulge_fwhm``.
        centre: the host centre (x, y).
        params: the rule.

    Returns:
        One entry per knot, in the order given: ``{x, y, score, snr, label, kind: "knot",
        reason}``, ``score`` being the confirming detection's score (for an unconfirmed knot,
        the best score of any detection within the match radius, 0 if none) and ``reason``
        one of ``agreed``, ``bulge``, ``low_snr``, ``classical_only``; then the network-only
        positives (``kind: "detection"``, ``snr`` None, ``reason: "network_only"``).
    """
    knots = np.asarray(knots_xy, float).reshape(-1, 2)
    snr = np.asarray(knot_snr, float).reshape(-1)
    boxes = np.asarray(det_boxes, float).reshape(-1, 4)
    scores = np.asarray(det_scores, float).reshape(-1)
    det_xy = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)
    cx, cy = float(centre[0]), float(centre[1])
    radius = params.match_fwhm * fwhm
    dist = (np.hypot(knots[:, None, 0] - det_xy[None, :, 0], knots[:, None, 1] - det_xy[None, :, 1])
            if len(knots) and len(det_xy) else np.zeros((len(knots), len(det_xy))))
    in_bulge = np.hypot(knots[:, 0] - cx, knots[:, 1] - cy) < params.bulge_fwhm * fwhm
    eligible = ~in_bulge & (snr >= params.min_snr)
    # One-to-one, closest pairs first (ties: knot, then detection order): one detection between
    # two knots confirms only the nearer one.
    pairs = [(dist[k, d], k, d) for k in np.flatnonzero(eligible)
             for d in np.flatnonzero(scores >= params.min_score) if dist[k, d] <= radius]
    matched: Dict[int, int] = {}
    used = set()
    for _, k, d in sorted(pairs):
        if k not in matched and d not in used:
            matched[int(k)] = int(d)
            used.add(int(d))
    out = []
    for k in range(len(knots)):
        near = scores[dist[k] <= radius] if len(scores) else np.zeros(0)
        if k in matched:
            label, reason, score = "positive", "agreed", float(scores[matched[k]])
        else:
            label = "ignore"
            reason = ("bulge" if in_bulge[k] else "low_snr" if snr[k] < params.min_snr
                      else "classical_only")
            score = float(near.max()) if len(near) else 0.0
        out.append({"x": float(knots[k, 0]), "y": float(knots[k, 1]), "score": score,
                    "snr": float(snr[k]), "label": label, "kind": "knot", "reason": reason})
    if params.network_only_score is not None:
        taken: List[np.ndarray] = []
        for d in np.argsort(-scores, kind="stable"):
            if scores[d] < params.network_only_score:
                break
            x, y = det_xy[d]
            if (len(knots) and dist[:, d].min() <= radius) or \
                    math.hypot(x - cx, y - cy) < params.bulge_fwhm * fwhm:
                continue  # a knot's business (labelled or ignored above), or the nucleus
            if any(math.hypot(x - t[0], y - t[1]) <= radius for t in taken):
                continue  # the same source as a surer detection
            taken.append(det_xy[d])
            out.append({"x": float(x), "y": float(y), "score": float(scores[d]), "snr": None,
                        "label": "positive", "kind": "detection", "reason": "network_only"})
    return out


def resolve_hosts(host_dir: str | os.PathLike, names: Optional[Sequence[str]] = None
                  ) -> Dict[str, Path]:
    """{host id: file} of the hosts under ``host_dir`` (ids as the real-host dataset gives
    them, ``spiral/588017``), all of them or those ``names`` (ids or bare galaxy names, as in a
    dataset's ``hosts.json``) in sorted order; a name that is no host is an error."""
    root = Path(host_dir)
    by_id = unique_image_ids(host_images(root), root)
    if names is None:
        return dict(sorted(by_id.items()))
    ids = splits_from_lists(list(by_id), {"hosts": [str(n) for n in names]})["hosts"]
    return {hid: by_id[hid] for hid in ids}


def pseudo_label_hosts(hosts: Dict[str, Path], detector: Detector,
                       params: Optional[PseudoLabelParams] = None,
                       host_params: Optional[RealHostParams] = None,
                       detector_name: str = "", host_dir: str | os.PathLike = "",
                       show_progress: bool = True) -> Dict:
    """Pseudo-labels of real hosts: each host prepared as the real-host dataset prepares it
    (``host_params``, default :class:`RealHostParams` with the PSF measured on the whole
    image, as for ``datasets/gz2hosts1pc``), the detector run on its RGB crop, its knots
    labelled by :func:`classify_knots`.

    Args:
        hosts: {host id: file} (:func:`resolve_hosts`), labelled in this order.
        detector: :data:`clump_d2.studies.injection.Detector` (e.g. ``model_detector(cfg,
            as_catalogue=True)``: the config's TTA and the catalogue's post-processing); it
            gets the crop as float RGB and ``{"name", "psf_fwhm_px"}``.
        params: the labelling rule.
        host_params: how hosts are cropped and measured; must be the dataset's.
        detector_name, host_dir: recorded in the parameters (weights or config; the folder).

    Returns:
        The file's content: ``format``, ``parameters`` (the rule, ``detector``,
        ``host_params``), ``counts`` (hosts, knots, positives, ignored, network-only
        positives, skipped), ``hosts`` {host id: entries}, ``host_info`` {host id:
        {psf_fwhm_px, psf_source, centre}} and ``skipped`` (unreadable hosts, named).
    """
    params = params or PseudoLabelParams()
    host_params = host_params or RealHostParams(psf_full_image=True)
    labels, info, skipped = {}, {}, []
    for hid, path in tqdm(hosts.items(), desc="pseudo-labels", unit="host",
                          disable=not show_progress):
        try:
            prep = prepare_host(path, hid, host_params)
        except (OSError, ValueError) as e:  # as the dataset does: skipped, named
            logger.warning("host %s (%s) skipped: %s", hid, path, e)
            skipped.append({"host_id": hid, "file": os.fspath(path), "reason": str(e)})
            continue
        det = detector(prep.rgb.astype(np.float32), {"name": hid, "psf_fwhm_px": prep.fwhm})
        labels[hid] = classify_knots(prep.knots, prep.knot_snr, det["boxes"], det["scores"],
                                    prep.fwhm, prep.host["centre"], params)
        info[hid] = {"psf_fwhm_px": prep.fwhm, "psf_source": prep.psf_source,
                     "centre": [float(c) for c in prep.host["centre"]]}
    entries = [e for es in labels.values() for e in es]
    knots = [e for e in entries if e["kind"] == "knot"]
    counts = {"hosts": len(labels), "knots": len(knots),
              "positives": sum(e["label"] == "positive" for e in entries),
              "knot_positives": sum(e["label"] == "positive" for e in knots),
              "network_only_positives": len(entries) - len(knots),
              "ignored": sum(e["label"] == "ignore" for e in knots),
              "hosts_with_positives": sum(any(e["label"] == "positive" for e in es)
                                          for es in labels.values()),
              "skipped": len(skipped)}
    counts["ignored_by_reason"] = {r: sum(e["reason"] == r for e in knots)
                                   for r in ("classical_only", "low_snr", "bulge")}
    logger.info("pseudo-labels: %s", counts)
    return {"format": PSEUDO_LABEL_FORMAT,
            "parameters": {**asdict(params), "detector": detector_name,
                           "host_dir": os.fspath(host_dir),
                           "host_params": prepare_params(host_params)},
            "counts": counts, "hosts": labels, "host_info": info, "skipped": skipped}


def write_pseudo_labels(doc: Dict, path: str | os.PathLike) -> Path:
    """Write a :func:`pseudo_label_hosts` result to ``path`` (all or nothing)."""
    return atomic_write_text(path, json.dumps(doc, indent=1))
