"""Completeness, purity and F1 over score thresholds, per class, and binned by attributes.

Pure functions on numpy arrays; :class:`~clump_d2.evaluation.ClumpEvaluator` only feeds
them and writes their results. Conventions:

* A detection is kept at threshold ``t`` if its score is >= ``t``.
* Counts are arrays ``(..., 3)`` of ``[n_true, n_det, n_matched]``, summed over images
  *before* any ratio is taken (so every clump and every detection weighs the same).
* Scope 0 is class-agnostic (all true clumps against all detections, so a clump found as
  the wrong class is found); scope ``1 + c`` matches true clumps of class ``c`` only against
  detections of class ``c``.
* Undefined ratios (no true clumps, or no detections) are NaN, never 0 or 1.
* Ignore regions (``ignore``, a boolean mask over the true clumps: ``iscrowd`` clumps and the
  evaluator's ignore rule): the kept detections are matched to the kept (not ignored) true
  clumps first, with the optimal one-to-one matching of :func:`assign`; the detections left
  over are then matched, the same way, to the ignored clumps. A detection matched to an
  ignored clump counts as neither true nor false (it leaves ``n_det``, as a COCO crowd
  region); ``n_true`` counts the kept clumps only. So a detection on an ignored clump changes
  neither completeness nor purity, and one that could match both a kept and an ignored clump
  goes to the kept one.
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .matching import MatchCriterion, as_boxes, assign, f1_score, safe_ratio

N_TRUE, N_DET, N_MATCHED = 0, 1, 2


def _ignore_mask(ignore, n: int) -> np.ndarray:
    """The ignore mask as a boolean array of length n (None: nothing ignored)."""
    if ignore is None:
        return np.zeros(n, dtype=bool)
    ignore = np.asarray(ignore, dtype=bool).reshape(-1)
    if len(ignore) != n:
        raise ValueError(f"ignore mask has {len(ignore)} entries for {n} true clumps")
    return ignore


def match_ignoring(admissible: np.ndarray, quality: np.ndarray, true_boxes, det_boxes,
                   det_scores, ignore, t_idx=None, d_idx=None):
    """Two-stage matching on precomputed (admissible, quality) matrices: detections ``d_idx``
    to the kept clumps of ``t_idx`` first, the remaining detections to its ignored clumps.

    Args:
        admissible, quality: (n_true, n_det) matrices of ``MatchCriterion.quality``.
        true_boxes, det_boxes, det_scores: all boxes and scores of the image.
        ignore: (n_true,) boolean mask of the ignored clumps.
        t_idx, d_idx: the true clumps / detections taking part (default: all).

    Returns:
        (kept_pairs, ignored_pairs): sorted lists of (true_index, det_index), indices into
        the full arrays.
    """
    true_boxes, det_boxes = as_boxes(true_boxes), as_boxes(det_boxes)
    det_scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    t_idx = np.arange(len(true_boxes)) if t_idx is None else np.asarray(t_idx, dtype=np.int64)
    d_idx = np.arange(len(det_boxes)) if d_idx is None else np.asarray(d_idx, dtype=np.int64)
    ignore = _ignore_mask(ignore, len(true_boxes))

    def stage(ts, ds):
        if len(ts) == 0 or len(ds) == 0:
            return []
        return [(int(ts[t]), int(ds[d])) for t, d in assign(
            admissible[np.ix_(ts, ds)], quality[np.ix_(ts, ds)], true_boxes[ts],
            det_boxes[ds], det_scores[ds])]

    kept = stage(t_idx[~ignore[t_idx]], d_idx)
    used = {d for _, d in kept}
    rest = np.asarray([d for d in d_idx if int(d) not in used], dtype=np.int64)
    return sorted(kept), sorted(stage(t_idx[ignore[t_idx]], rest))


def sweep_image(true_boxes, true_classes, det_boxes, det_scores, det_classes,
                thresholds: Sequence[float], criterion: MatchCriterion,
                num_classes: int, ignore=None) -> np.ndarray:
    """Counts of one image at every score threshold, class-agnostic and per class.

    The detections kept at each threshold are matched afresh (not a subset of one matching
    at the lowest threshold), so every point of the curve is an optimal matching. With
    ``ignore`` (boolean mask over the true clumps) the two-stage rule of the module
    docstring applies: ``n_true`` counts the kept clumps, ``n_det`` leaves out the
    detections matched to ignored clumps (per scope: in a class scope, detections of that
    class on ignored clumps of that class).

    Returns:
        int array (len(thresholds), 1 + num_classes, 3) of [n_true, n_det, n_matched].
    """
    true_boxes, det_boxes = as_boxes(true_boxes), as_boxes(det_boxes)
    true_classes = np.asarray(true_classes, dtype=np.int64).reshape(-1)
    det_classes = np.asarray(det_classes, dtype=np.int64).reshape(-1)
    det_scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    ignore = _ignore_mask(ignore, len(true_boxes))
    counts = np.zeros((len(thresholds), 1 + num_classes, 3), dtype=np.int64)
    if len(true_boxes) and len(det_boxes):
        admissible, quality = criterion.quality(true_boxes, det_boxes)
    scopes = [(np.ones(len(true_boxes), bool), np.ones(len(det_boxes), bool))]
    scopes += [(true_classes == c, det_classes == c) for c in range(num_classes)]
    for s, (t_mask, d_mask) in enumerate(scopes):
        counts[:, s, N_TRUE] = (t_mask & ~ignore).sum()
        t_idx = np.flatnonzero(t_mask)
        # Detections of this scope by decreasing score: threshold t keeps a prefix of them.
        d_idx = np.flatnonzero(d_mask)
        d_idx = d_idx[np.argsort(-det_scores[d_idx], kind="stable")]
        n_kept = (det_scores[d_idx][None, :] >= thresholds[:, None]).sum(axis=1)
        counts[:, s, N_DET] = n_kept
        if len(t_idx) == 0:
            continue
        # k kept detections -> (matched to kept clumps, matched to ignored clumps)
        cache: Dict[int, Tuple[int, int]] = {0: (0, 0)}
        for i, k in enumerate(n_kept):
            if k not in cache:
                kept_pairs, ignored_pairs = match_ignoring(
                    admissible, quality, true_boxes, det_boxes, det_scores, ignore,
                    t_idx, d_idx[:k])
                cache[k] = (len(kept_pairs), len(ignored_pairs))
            counts[i, s, N_MATCHED] = cache[k][0]
            counts[i, s, N_DET] -= cache[k][1]
    return counts


def match_masks_ignoring(true_boxes, det_boxes, det_scores, score_thresh: float,
                         criterion: MatchCriterion, ignore=None):
    """Class-agnostic two-stage matching (module docstring) of the detections with score >=
    thresh.

    Returns:
        (found, used, on_ignored): ``found`` (n_true,) true clumps matched (kept or ignored
        ones), ``used`` (n_det,) detections matched to a kept clump (the true positives),
        ``on_ignored`` (n_det,) detections matched to an ignored clump (neither true nor
        false). Detections below the threshold are in neither.
    """
    true_boxes, det_boxes = as_boxes(true_boxes), as_boxes(det_boxes)
    det_scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    ignore = _ignore_mask(ignore, len(true_boxes))
    found = np.zeros(len(true_boxes), dtype=bool)
    used = np.zeros(len(det_boxes), dtype=bool)
    on_ignored = np.zeros(len(det_boxes), dtype=bool)
    keep = np.flatnonzero(det_scores >= score_thresh)
    if len(true_boxes) == 0 or len(keep) == 0:
        return found, used, on_ignored
    admissible, quality = criterion.quality(true_boxes, det_boxes)
    kept_pairs, ignored_pairs = match_ignoring(admissible, quality, true_boxes, det_boxes,
                                               det_scores, ignore, None, keep)
    for t, d in kept_pairs:
        found[t], used[d] = True, True
    for t, d in ignored_pairs:
        found[t], on_ignored[d] = True, True
    return found, used, on_ignored


def match_masks(true_boxes, det_boxes, det_scores, score_thresh: float,
                criterion: MatchCriterion, ignore=None):
    """Class-agnostic one-to-one matching of the detections with score >= thresh: (which true
    clumps are matched, which detections are; detections below the threshold are not).

    With ``ignore``: (kept clumps matched, detections matched to kept clumps) of
    :func:`match_masks_ignoring`."""
    found, used, _ = match_masks_ignoring(true_boxes, det_boxes, det_scores, score_thresh,
                                          criterion, ignore)
    return found & ~_ignore_mask(ignore, len(found)), used


def matched_true_mask(true_boxes, det_boxes, det_scores, score_thresh: float,
                      criterion: MatchCriterion, ignore=None) -> np.ndarray:
    """Class-agnostic: which (kept) true clumps are matched by detections with score >=
    thresh."""
    return match_masks(true_boxes, det_boxes, det_scores, score_thresh, criterion, ignore)[0]


def ratios(counts: np.ndarray) -> Dict[str, np.ndarray]:
    """Completeness, purity and F1 (NaN where undefined) from counts (..., 3)."""
    counts = np.asarray(counts, dtype=np.float64)
    n_true, n_det, n_matched = counts[..., N_TRUE], counts[..., N_DET], counts[..., N_MATCHED]
    with np.errstate(invalid="ignore", divide="ignore"):
        completeness = np.where(n_true > 0, n_matched / np.where(n_true > 0, n_true, 1), np.nan)
        purity = np.where(n_det > 0, n_matched / np.where(n_det > 0, n_det, 1), np.nan)
    f1 = np.vectorize(f1_score, otypes=[np.float64])(completeness, purity)
    return {"completeness": completeness, "purity": purity, "F1": f1.reshape(completeness.shape)}


def equal_point(thresholds, completeness, purity) -> Tuple[float, float]:
    """The lowest score threshold where completeness = purity, and their common value.

    Linear interpolation between the two grid thresholds where ``completeness - purity``
    changes sign (grid points with an undefined purity are skipped, and so are those with
    completeness = purity = 0: detections of which none matches are no break-even point, and
    a detector purer than complete at every useful threshold would otherwise report 0).

    Returns:
        (threshold, value), or (NaN, NaN) if the curves do not cross on the grid.
    """
    t = np.asarray(thresholds, dtype=np.float64)
    c = np.asarray(completeness, dtype=np.float64)
    p = np.asarray(purity, dtype=np.float64)
    valid = np.flatnonzero(~(np.isnan(c) | np.isnan(p) | ((c == 0) & (p == 0))))
    for a, b in zip(valid[:-1], valid[1:]):
        da, db = c[a] - p[a], c[b] - p[b]
        if da == 0:
            return float(t[a]), float(c[a])
        if da * db < 0:
            f = da / (da - db)
            return float(t[a] + f * (t[b] - t[a])), float(c[a] + f * (c[b] - c[a]))
    if len(valid) and c[valid[-1]] == p[valid[-1]]:
        return float(t[valid[-1]]), float(c[valid[-1]])
    return float("nan"), float("nan")


def f1_peak(thresholds, f1) -> Tuple[float, float]:
    """(threshold, F1) where F1 is highest on the grid (the lowest such threshold);
    (NaN, NaN) if F1 is undefined everywhere."""
    f1 = np.asarray(f1, dtype=np.float64)
    if np.all(np.isnan(f1)):
        return float("nan"), float("nan")
    i = int(np.nanargmax(f1))
    return float(np.asarray(thresholds, dtype=np.float64)[i]), float(f1[i])


def wilson_interval(k: int, n: int, z: float = 1.0) -> Tuple[float, float]:
    """Wilson score interval of a binomial fraction k / n (z = 1: about 68 %)."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The interval always holds p; at k = n (or 0) rounding can leave its end 1e-16 on the
    # wrong side, and a plot's error bar (p - lo, hi - p) must not be negative.
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def quantile_edges(values, num_bins: int) -> np.ndarray:
    """Bin edges with about equal numbers of finite values per bin (duplicates merged)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return np.zeros(0)
    edges = np.unique(np.quantile(values, np.linspace(0, 1, max(1, num_bins) + 1)))
    if len(edges) == 1:  # all values equal: one bin around them
        edges = np.array([edges[0], edges[0]])
    return edges


def bin_completeness(values, matched, edges) -> List[Dict]:
    """Completeness per bin of an attribute of the true clumps.

    Bins are ``[edges[i], edges[i + 1])``, the last one closed; values outside the edges or
    not finite (attribute missing) are left out.

    Returns:
        one dict per bin: lo, hi, n_true, n_matched, completeness (NaN for an empty bin),
        and its Wilson 68 % interval ci_lo, ci_hi.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    matched = np.asarray(matched, dtype=bool).reshape(-1)
    edges = np.asarray(edges, dtype=np.float64)
    rows = []
    for i in range(len(edges) - 1):
        lo, hi = edges[i], edges[i + 1]
        last = i == len(edges) - 2
        inside = (values >= lo) & ((values <= hi) if last else (values < hi))
        n, k = int(inside.sum()), int(matched[inside].sum())
        ci_lo, ci_hi = wilson_interval(k, n)
        rows.append({"lo": float(lo), "hi": float(hi), "n_true": n, "n_matched": k,
                     "completeness": safe_ratio(k, n), "ci_lo": ci_lo, "ci_hi": ci_hi})
    return rows
