"""Training and test sets on real host galaxies: simulated clumps injected into real images.

The calibrated simulation's clump population (Clump Scout depth: r-band flux 3-15 % of the
host, log-uniform; 1-9 clumps per clumpy galaxy with Clump Scout's frequencies; 27.6 % red
"odd" clumps; :meth:`SyntheticParams.sdss` / :class:`SdssRealism`) is injected into real galaxy
images (e.g. ``gz2_sdss_1400``: single-epoch SDSS cut-outs of the Galaxy Zoo 2 kind) in linear
space, with each image's own PSF and noise (:mod:`clump_d2.sim.inject`), several times per host
with different clumps, split by host galaxy so that no host is in two splits.

**PSF.** Measured from the image's compact sources (:func:`clump_d2.data.psf.estimate_psf_fwhm`);
where none qualify, drawn log-uniform in ``psf_fallback_px`` (SDSS seeing in these cut-outs) and
recorded as such (``psf_source``: ``"stars"`` or ``"prior"``).

**Colours.** Relative to the host's own colour, as the simulation's clumps are to its discs:
``clump``: g-r and r-i from the simulation's clump colours minus its disc colours (bluer),
``odd_clump``: from its odd-clump colours (redder); drawn per clump from their scatter.

**Ignore regions.** A real host carries its own compact knots: real, unlabelled clumps. The
classical finder's peaks on the *original* image at S/N >= ``ignore_snr`` become annotations
with ``iscrowd: 1`` (``ignore_reason: "host_knot"``), boxes of the usual 2.5 x FWHM side;
injections keep ``sep_fwhm`` away from them. Training with ``IgnoreRegionRPN`` /
``IgnoreRegionROIHeads`` neither rewards nor punishes detections there, and the evaluator
ignores them the same way (``TEST.CLUMP_EVAL``: crowd annotations are ignore regions).

**Pseudo-labels** (self-training, :mod:`clump_d2.studies.self_training`). A pseudo-label file
(:func:`load_pseudo_labels`) marks some of a host's knots ``positive`` (a detector and the
classical finder agree on them): in every version of that host they become ``clump`` labels
(``source: "pseudo_label"``) instead of ignore regions, the other knots stay ignore regions,
and injected clumps still avoid every knot, so they are the same as without the file. Only
hosts of the ``train`` split may appear in the file: validation and test hosts stay as they
are, and a file naming one is refused (:class:`PseudoLabelError`).

**Negatives.** ``empty_fraction`` of the versions get no clump: real hosts with only their own
knots (ignored) are the negatives.

**Reading.** Hosts are read by the package's one display reader
(:func:`clump_d2.data.image_io.read_display_image`): a 16-bit host is scaled to the 8-bit range
(not clipped), and a host whose declared size is over ``max_pixels``, smaller than the crop,
truncated or undecodable is skipped, named in the log and in the split's ``skipped_hosts``.
Two files giving one host id (``4000.png`` and ``4000.jpg``) are an error naming both.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from clump_d2.baselines.classical import ClassicalParams, find_clumps
from clump_d2.convert.coco_writer import atomic_write_text
from clump_d2.data.files import read_json
from clump_d2.data.image_io import (COLOUR_SUFFIXES, DEFAULT_MAX_PIXELS, read_display_image,
                                    unique_image_ids)
from clump_d2.data.datasets.builtin import check_split_name
from clump_d2.data.psf import SDSS_SEEING_FWHM_PX_RANGE, estimate_psf_fwhm
from clump_d2.data.stretch import DisplayStretch
from clump_d2.sim.inject import choose_positions, host_properties, inject
from clump_d2.sim.synthetic import SdssRealism
from clump_d2.structures import CATEGORIES, clump_box_xywh_in_frame

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = COLOUR_SUFFIXES  # host images: colour cut-outs (data.image_io)
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
#: Category id of a pseudo-labelled knot: a real clump of the ordinary kind.
_CLUMP_ID = next(c["id"] for c in CATEGORIES if c["name"] == "clump")


@dataclass
class RealHostParams:
    """How clumps are injected into real hosts (see the module docstring)."""

    crop_size: int = 200  # central crop of each image (px; GZ2 cut-outs: R90 ~ 50 px)
    versions_per_host: int = 3  # injected versions of each host (different clumps)
    empty_fraction: float = 0.25  # versions without any clump (real negatives)
    # Clump population: Clump Scout depth, from the calibrated simulation.
    clump_frac: Tuple[float, float] = (0.03, 0.15)  # r flux / host r flux, log-uniform
    clump_count_probs: Tuple[float, ...] = SdssRealism().clump_count_probs
    odd_fraction: float = 0.276
    radius_r50: Tuple[float, float] = (0.3, 2.0)  # radius range, x host R50
    # Clump FWHM / PSF FWHM, log-uniform: (1, 1) point-like clumps (datasets before this
    # option); real knots and catalogued clumps are wider than the PSF (docs/real_clumps.md).
    width_psf: Tuple[float, float] = (1.0, 1.0)
    sep_fwhm: float = 2.0  # minimum distance between clumps / to host knots, x FWHM
    bulge_fwhm: float = 1.5  # minimum distance to the centre, x FWHM
    ignore_snr: float = 6.0  # host peaks at or above this S/N become ignore regions
    psf_min_snr: float = 15.0  # S/N of the compact sources the PSF is measured on
    # Measure the PSF on the whole image instead of the crop: about half of the 424 px GZ2
    # cut-outs hold a qualifying compact source, under 5 % of their 200 px crops. False
    # keeps datasets written before this option reproducible; the injection study uses True.
    psf_full_image: bool = False
    psf_fallback_px: Tuple[float, float] = SDSS_SEEING_FWHM_PX_RANGE
    q: float = 10.0  # softening of the display stretch that is inverted
    ref_channel: int = 1  # channel of the flux fraction (G = SDSS r)
    seed: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger host images are skipped before decoding


def _relative_colours(realism: SdssRealism) -> Dict[str, Tuple[Tuple[float, float],
                                                             Tuple[float, float]]]:
    """(mean, std) of (g-r, r-i) relative to the disc, per class."""
    return {
        "clump": ((realism.clump_gr[0] - realism.disc_gr[0], realism.clump_gr[1]),
                  (realism.clump_ri[0] - realism.disc_ri[0], realism.clump_ri[1])),
        "odd_clump": ((realism.odd_gr[0] - realism.disc_gr[0], realism.odd_gr[1]),
                      (realism.odd_ri[0] - realism.disc_ri[0], realism.odd_ri[1])),
    }


def colour_factors(d_gr: float, d_ri: float) -> np.ndarray:
    """(R, G, B) = (i, r, g) flux factors of a clump whose colours differ from its host's by
    ``d_gr`` = delta(g - r) and ``d_ri`` = delta(r - i) magnitudes (r fixed at 1)."""
    g = 10 ** (-0.4 * d_gr)
    i = 10 ** (0.4 * d_ri)
    return np.array([i, 1.0, g])


def host_images(folder: str | os.PathLike) -> List[Path]:
    """Image files under ``folder`` (recursively; class sub-folders allowed), sorted."""
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no JPEG/PNG images under {folder}")
    return files


def split_hosts(ids: Sequence[str], fractions: Dict[str, float], seed: int = 0
                ) -> Dict[str, List[str]]:
    """Deterministic split of host ids by a seeded permutation; every host in one split."""
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    order = sorted(ids)
    np.random.default_rng(seed).shuffle(order)
    out, start = {}, 0
    names = list(fractions)
    for k, name in enumerate(names):
        end = len(order) if k == len(names) - 1 else start + int(round(fractions[name] * len(order)))
        out[name] = sorted(order[start:end])
        start = end
    return out


def splits_from_lists(ids: Sequence[str], lists: Dict[str, Sequence[str]]
                      ) -> Dict[str, List[str]]:
    """Host ids per split from given lists of galaxy names (a host's id ``spiral/588017`` or its
    name ``588017``), e.g. a pretraining run's ``split.json`` so that the detector's test hosts
    are galaxies the pretrained encoder never saw. Hosts in no list are left out; a host in two
    lists, or a listed name that is no host, is an error."""
    by_name: Dict[str, str] = {}
    for hid in ids:
        by_name[hid] = hid
        by_name.setdefault(Path(hid).name, hid)
    out: Dict[str, List[str]] = {}
    seen: Dict[str, str] = {}
    for split, names in lists.items():
        out[split] = []
        for name in names:
            hid = by_name.get(str(name))
            if hid is None:
                raise ValueError(f"split {split!r} names {name!r}, which is not a host image")
            if hid in seen:
                raise ValueError(f"host {hid} is in both {seen[hid]!r} and {split!r}")
            seen[hid] = split
            out[split].append(hid)
        out[split].sort()
    return out


def _host_rng(seed: int, hid: str, stream: int) -> np.random.Generator:
    """Generator of one host's stream (0: its measurement, 1 + k: its version k)."""
    return np.random.default_rng([seed, zlib.crc32(hid.encode()), stream])


class HostTooSmall(ValueError):
    """An image smaller than the crop."""


def _crop(rgb: np.ndarray, size: int) -> Tuple[np.ndarray, Tuple[int, int]]:
    h, w = rgb.shape[:2]
    if h < size or w < size:
        raise HostTooSmall(f"image of {w}x{h} px is smaller than the {size} px crop")
    y0, x0 = (h - size) // 2, (w - size) // 2
    return rgb[y0:y0 + size, x0:x0 + size], (x0, y0)


@dataclass
class PreparedHost:
    """A host's crop in linear space with what injection needs."""

    hid: str
    rgb: np.ndarray  # (S, S, 3) uint8, the original crop
    linear: np.ndarray
    fwhm: float
    psf_source: str
    host: Dict
    knots: np.ndarray  # (K, 2) positions of the host's own knots (ignore regions)
    knot_snr: np.ndarray
    crop_origin: Tuple[int, int] = (0, 0)
    extra: Dict = field(default_factory=dict)


def prepare_host(path: Path, hid: str, params: RealHostParams) -> PreparedHost:
    """Read, crop, linearise and measure one host (PSF, segment, its own knots).

    Raises:
        ValueError: naming the file, for an image the reader refuses (over
            ``params.max_pixels``, truncated, floating point), or :class:`HostTooSmall`.
        OSError: for a file Pillow cannot decode.
    """
    full = read_display_image(path, "RGB", params.max_pixels)
    if full.dtype != np.uint8:  # a 16-bit host, scaled to 0..255: its nearest 8-bit version
        full = np.clip(np.rint(full), 0, 255).astype(np.uint8)
    rgb, origin = _crop(full, params.crop_size)
    rng = _host_rng(params.seed, hid, 0)
    psf = estimate_psf_fwhm(full if params.psf_full_image else rgb, min_snr=params.psf_min_snr)
    if psf.ok:
        fwhm, source = psf.fwhm_px, "stars"
    else:
        lo, hi = params.psf_fallback_px
        fwhm, source = float(math.exp(rng.uniform(math.log(lo), math.log(hi)))), "prior"
    linear = DisplayStretch(params.q).linearise(rgb, rng)
    host = host_properties(linear, fwhm)
    found = find_clumps(rgb.astype(np.float32), fwhm, ClassicalParams())
    keep = found["snr"] >= params.ignore_snr
    return PreparedHost(hid, rgb, linear, fwhm, source, host, found["xy"][keep],
                        found["snr"][keep], origin)


def _width(rng: np.random.Generator, width_psf: Tuple[float, float]) -> float:
    """A clump's FWHM in PSF FWHMs, log-uniform; (1, 1) draws nothing, so that datasets made
    before ``width_psf`` keep their random stream and images."""
    lo, hi = width_psf
    if lo == hi == 1.0:
        return 1.0
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def inject_version(prep: PreparedHost, version: int, params: RealHostParams,
                   colours=None, extra_avoid: Sequence[Tuple[float, float]] = ()
                   ) -> Tuple[np.ndarray, List[Dict]]:
    """One injected version of a host: (RGB uint8 image, clump dicts with x, y, category,
    flux_frac and per-channel flux factors). No clump with probability ``empty_fraction``.
    Clumps avoid the host's knots and the positions ``extra_avoid`` (e.g. network-only
    pseudo-labels, which are labels of their own)."""
    rng = _host_rng(params.seed, prep.hid, 1 + version)
    colours = colours or _relative_colours(SdssRealism())
    if rng.uniform() < params.empty_fraction:
        return prep.rgb.copy(), []
    probs = np.asarray(params.clump_count_probs, float)
    n = 1 + int(rng.choice(len(probs), p=probs / probs.sum()))
    avoid = [tuple(p) for p in prep.knots] + [tuple(p) for p in extra_avoid]
    pos = choose_positions(rng, n, prep.host["centre"], prep.host["r50"], prep.fwhm,
                           prep.linear.shape[:2], avoid, params.radius_r50, params.bulge_fwhm,
                           params.sep_fwhm)
    host_flux = prep.host["flux"]
    host_colour = host_flux / max(float(host_flux[params.ref_channel]), 1e-12)
    clumps, fluxes = [], []
    lo, hi = params.clump_frac
    for x, y, u in pos:
        odd = rng.uniform() < params.odd_fraction
        (gr_mean, gr_std), (ri_mean, ri_std) = colours["odd_clump" if odd else "clump"]
        factors = colour_factors(rng.normal(gr_mean, gr_std), rng.normal(ri_mean, ri_std))
        frac = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        flux = frac * float(host_flux[params.ref_channel]) * host_colour * factors
        fluxes.append(flux)
        clumps.append({"x": float(x), "y": float(y), "odd": bool(odd), "flux_frac": frac,
                       "distance_r50": float(u), "colour_factors": factors.tolist(),
                       "fwhm_px": prep.fwhm * _width(rng, params.width_psf)})
    if not clumps:
        return prep.rgb.copy(), []
    injected = inject(prep.linear, [(c["x"], c["y"]) for c in clumps], fluxes,
                      [c["fwhm_px"] for c in clumps])
    return DisplayStretch(params.q).display(injected), clumps


# --- pseudo-labels (self-training) -------------------------------------------------------------

#: Format tag of a pseudo-label file (written by :mod:`clump_d2.studies.self_training`).
PSEUDO_LABEL_FORMAT = "clump_d2 pseudo-labels v1"
#: The :class:`RealHostParams` fields that decide a host's crop, PSF and knots
#: (:func:`prepare_host`): a pseudo-label file fits a dataset only where they agree.
PREPARE_FIELDS = ("crop_size", "psf_full_image", "psf_min_snr", "psf_fallback_px", "q", "seed",
                  "ignore_snr")
#: The only split whose hosts may carry pseudo-labels.
PSEUDO_LABEL_SPLIT = "train"
#: How far (px) a file's knot may lie from the host's knot it names: the same computation gives
#: the same float, so anything more is another image or other host parameters.
KNOT_TOLERANCE_PX = 0.01
LABELS = ("positive", "ignore")
KINDS = ("knot", "detection")


class PseudoLabelError(ValueError):
    """A pseudo-label file that is malformed, made for other hosts or host parameters, or that
    names hosts of a split which must stay untouched (validation, test)."""


def prepare_params(params: RealHostParams) -> Dict:
    """The :data:`PREPARE_FIELDS` of ``params`` as JSON values (tuples as lists)."""
    return json.loads(json.dumps({k: getattr(params, k) for k in PREPARE_FIELDS}))


@dataclass
class PseudoLabels:
    """A pseudo-label file as read by :func:`load_pseudo_labels`."""

    path: str
    sha256: str
    parameters: Dict  # the labelling rule's settings, the detector, ``host_params``
    counts: Dict
    hosts: Dict[str, List[Dict]]  # host id -> entries {x, y, score, snr, label, kind, reason}
    host_info: Dict[str, Dict] = field(default_factory=dict)  # host id -> {psf_fwhm_px, ...}

    def positives(self, hid: str) -> List[Dict]:
        """The entries of host ``hid`` labelled ``positive`` (none for a host not in the file)."""
        return [e for e in self.hosts.get(hid, []) if e["label"] == "positive"]

    def record(self) -> Dict:
        """What a dataset records of the file: its path, sha256, counts and parameters."""
        return {"file": self.path, "sha256": self.sha256, "counts": self.counts,
                "parameters": self.parameters}


def load_pseudo_labels(path: str | os.PathLike) -> PseudoLabels:
    """Read and check a pseudo-label file (format :data:`PSEUDO_LABEL_FORMAT`).

    Raises:
        FileNotFoundError: naming the file.
        PseudoLabelError: invalid JSON (file, line, column), another format, or an entry
            without finite ``x``/``y`` or with an unknown ``label`` / ``kind`` (naming the host).
    """
    path = Path(path)
    try:
        data = read_json(path, "pseudo-label file")
    except ValueError as e:
        raise PseudoLabelError(str(e)) from e
    if not isinstance(data, dict) or data.get("format") != PSEUDO_LABEL_FORMAT:
        raise PseudoLabelError(f"{path}: not a pseudo-label file (no \"format\": "
                               f"\"{PSEUDO_LABEL_FORMAT}\"; made by tools/self_train.py label)")
    hosts = data.get("hosts")
    if not isinstance(hosts, dict):
        raise PseudoLabelError(f"{path}: \"hosts\" is not an object of host id -> entries")
    for hid, entries in hosts.items():
        for e in entries if isinstance(entries, list) else [None]:
            ok = (isinstance(e, dict) and e.get("label") in LABELS and e.get("kind") in KINDS
                  and all(isinstance(e.get(k), (int, float)) and math.isfinite(e[k])
                          for k in ("x", "y")))
            if not ok:
                raise PseudoLabelError(f"{path}: host {hid}: bad entry {e!r} (needs finite x, y, "
                                       f"label in {LABELS}, kind in {KINDS})")
    return PseudoLabels(os.fspath(path), hashlib.sha256(path.read_bytes()).hexdigest(),
                        data.get("parameters", {}), data.get("counts", {}), hosts,
                        data.get("host_info", {}))


def check_pseudo_labels(labels: PseudoLabels, splits: Dict[str, Sequence[str]],
                        params: RealHostParams) -> None:
    """Refuse a pseudo-label file that does not fit this dataset.

    Raises:
        PseudoLabelError: the file names hosts of a split other than
            :data:`PSEUDO_LABEL_SPLIT` (named, so that validation and test hosts never learn
            from labels); its host parameters differ from ``params`` in a
            :data:`PREPARE_FIELDS` field (its knots would not be this dataset's); or none of
            its hosts is a train host.
    """
    for split, hids in splits.items():
        if split == PSEUDO_LABEL_SPLIT:
            continue
        bad = sorted(set(hids) & set(labels.hosts))
        if bad:
            shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
            raise PseudoLabelError(
                f"{labels.path} labels {len(bad)} host(s) of split {split!r}: {shown}. Only "
                f"{PSEUDO_LABEL_SPLIT!r} hosts may get pseudo-labels, so that validation and "
                "held-out tests stay untouched: label only the train hosts (tools/self_train.py "
                "label --ids-from <dataset>/hosts.json:train)")
    theirs = labels.parameters.get("host_params")
    if not isinstance(theirs, dict):
        raise PseudoLabelError(f"{labels.path}: no parameters.host_params (the host "
                               "parameters the knots were found with)")
    ours = prepare_params(params)
    diff = [f"{k}: file {theirs.get(k)!r}, dataset {v!r}" for k, v in ours.items()
            if theirs.get(k) != v]
    if diff:
        raise PseudoLabelError(f"{labels.path}: made with other host parameters than this "
                               f"dataset ({'; '.join(diff)}): its knots are not this dataset's; "
                               "label the hosts with the dataset's settings")
    train = set(splits.get(PSEUDO_LABEL_SPLIT, ()))
    n_in = len(train & set(labels.hosts))
    if labels.hosts and not n_in:
        raise PseudoLabelError(f"{labels.path}: none of its {len(labels.hosts)} hosts is a "
                               f"{PSEUDO_LABEL_SPLIT!r} host of this dataset (other images?)")
    if n_in < len(labels.hosts):
        logger.warning("%s: %d of its %d hosts are in no split of this dataset (ignored)",
                       labels.path, len(labels.hosts) - n_in, len(labels.hosts))


def _host_pseudo_labels(prep: PreparedHost, labels: PseudoLabels, path: str
                        ) -> Tuple[Dict[int, Dict], List[Dict]]:
    """A host's positives: ({index into ``prep.knots``: entry}, network-only entries)."""
    info = labels.host_info.get(prep.hid, {})
    if "psf_fwhm_px" in info and abs(float(info["psf_fwhm_px"]) - prep.fwhm) > 1e-6:
        raise PseudoLabelError(f"{path}: host {prep.hid}: PSF FWHM {info['psf_fwhm_px']} px in the "
                               f"file, {prep.fwhm} px here (another image?)")
    knots, extra = {}, []
    for e in labels.positives(prep.hid):
        if e["kind"] == "detection":
            extra.append(e)
            continue
        d = (np.hypot(prep.knots[:, 0] - e["x"], prep.knots[:, 1] - e["y"]) if len(prep.knots)
             else np.array([np.inf]))
        k = int(np.argmin(d))
        if d[k] > KNOT_TOLERANCE_PX:
            raise PseudoLabelError(f"{path}: host {prep.hid}: the knot at ({e['x']}, {e['y']}) is "
                                   f"none of the host's knots (nearest {d[k]:.3g} px away): the "
                                   "file was made from other images or host parameters")
        knots[k] = e
    return knots, extra


def _pseudo_annotation(e: Dict, fwhm: float, size: int) -> Optional[Dict]:
    """A positive pseudo-label as a COCO annotation (without ids): a ``clump`` label."""
    box = clump_box_xywh_in_frame(float(e["x"]), float(e["y"]), fwhm, size, size)
    if box is None:
        return None
    return {"bbox": box, "area": box[2] * box[3], "iscrowd": 0, "category_id": _CLUMP_ID,
            "source": "pseudo_label", "pseudo_label_reason": e.get("reason", ""),
            "score": e.get("score"), "snr": e.get("snr"), "x": float(e["x"]),
            "y": float(e["y"]), "psf_fwhm_px": fwhm}


def make_real_host_dataset(host_dir: str | os.PathLike, out_dir: str | os.PathLike,
                           fractions: Optional[Dict[str, float]] = None,
                           params: Optional[RealHostParams] = None,
                           limit: Optional[int] = None,
                           show_progress: bool = True,
                           host_lists: Optional[Dict[str, Sequence[str]]] = None,
                           pseudo_labels: "str | os.PathLike | PseudoLabels | None" = None
                           ) -> Dict[str, Path]:
    """Write ``out_dir/images/<split>/*.png`` and ``out_dir/annotations/<split>.json`` (COCO,
    registered as ``<folder name>_<split>``) of injected real hosts; returns {split: json}.

    Args:
        host_dir: folder of host images (class sub-folders allowed; e.g.
            ``gz2_sdss_1400/jpegs``). Read only.
        out_dir: the dataset folder.
        fractions: split fractions by host (default train 0.7 / val 0.1 / test 0.2).
        params: injection settings (default :class:`RealHostParams`).
        limit: use only the first ``limit`` hosts in sorted order (small runs, tests).
        host_lists: {split: galaxy names} instead of ``fractions`` (:func:`splits_from_lists`).
        pseudo_labels: a pseudo-label file (or one read by :func:`load_pseudo_labels`): the
            knots it marks ``positive`` on train hosts become ``clump`` labels with ``source:
            "pseudo_label"`` in every version of the host (its network-only positives too,
            which injections then avoid); checked by :func:`check_pseudo_labels` before
            anything is written. Each split's ``info.pseudo_labels`` records the file's path,
            sha256, counts and parameters, and the labels this split got.

    Every image record carries ``host_id``, ``host_class`` (its sub-folder), ``version``,
    ``psf_fwhm_px``, ``psf_source``, ``centre_x/centre_y``, ``r50_px``, the original file and
    crop; every clump ``flux_frac`` (r), ``distance_r50``, ``x``, ``y``; every host knot is an
    ``iscrowd`` annotation with its ``snr``. Each split's JSON is written last and atomically.
    """
    params = params or RealHostParams()
    fractions = fractions or {"train": 0.7, "val": 0.1, "test": 0.2}
    root, out_dir = Path(host_dir), Path(out_dir)
    files = host_images(root)[:limit]
    # A host's id: its path under the root without suffix (spiral/588017), one file per id.
    by_id = unique_image_ids(files, root)
    for name in (host_lists if host_lists is not None else fractions):
        check_split_name(name)  # a file name under out_dir: "../../x" must not leave it
    splits = (splits_from_lists(list(by_id), host_lists) if host_lists is not None
              else split_hosts(list(by_id), fractions, params.seed))
    if pseudo_labels is not None and not isinstance(pseudo_labels, PseudoLabels):
        pseudo_labels = load_pseudo_labels(pseudo_labels)
    if pseudo_labels is not None:  # refused before any file is written
        check_pseudo_labels(pseudo_labels, splits, params)
    colours = _relative_colours(SdssRealism())
    written = {}
    for split, hids in splits.items():
        images, annotations, skipped = [], [], []
        n_pseudo = 0
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
        code = SPLIT_CODES.get(split, 9)
        bar = tqdm(hids, desc=f"real hosts {split}", unit="host", disable=not show_progress)
        for k, hid in enumerate(bar):
            path = by_id[hid]
            try:
                prep = prepare_host(path, hid, params)
            except (OSError, ValueError) as e:  # unreadable, too large or small: skipped, named
                logger.warning("host %s (%s) skipped: %s", hid, path, e)
                skipped.append({"host_id": hid, "file": str(path), "reason": str(e)})
                continue
            pos_knots, pos_extra = ({}, []) if (pseudo_labels is None
                                                or split != PSEUDO_LABEL_SPLIT) \
                else _host_pseudo_labels(prep, pseudo_labels, pseudo_labels.path)
            for version in range(params.versions_per_host):
                rgb, clumps = inject_version(prep, version, params, colours,
                                             [(e["x"], e["y"]) for e in pos_extra])
                image_id = code * 10_000_000 + k * 100 + version + 1
                file_name = f"{split}/{hid.replace('/', '__')}_v{version}.png"
                Image.fromarray(rgb).save(out_dir / "images" / file_name)
                cx, cy = prep.host["centre"]
                images.append({
                    "id": image_id, "file_name": file_name, "width": params.crop_size,
                    "height": params.crop_size, "host_id": hid,
                    "host_class": Path(hid).parent.name or "", "version": version,
                    "psf_fwhm_px": prep.fwhm, "psf_source": prep.psf_source,
                    "centre_x": cx, "centre_y": cy, "r50_px": float(prep.host["r50"]),
                    "source_file": str(path), "source_crop": [*prep.crop_origin,
                                                             params.crop_size, params.crop_size]})
                for c in clumps:
                    box = clump_box_xywh_in_frame(c["x"], c["y"], prep.fwhm, params.crop_size,
                                                  params.crop_size)
                    if box is None:
                        continue
                    annotations.append({
                        "id": len(annotations) + 1, "image_id": image_id, "bbox": box,
                        "area": box[2] * box[3], "iscrowd": 0,
                        "category_id": 2 if c["odd"] else 1, "flux_frac": c["flux_frac"],
                        "distance_r50": c["distance_r50"], "x": c["x"], "y": c["y"],
                        "psf_fwhm_px": prep.fwhm, "clump_fwhm_px": c["fwhm_px"]})
                for i, ((x, y), snr) in enumerate(zip(prep.knots, prep.knot_snr)):
                    if i in pos_knots:  # agreed by the detector and the finder: a real clump
                        ann = _pseudo_annotation(pos_knots[i], prep.fwhm, params.crop_size)
                        if ann is not None:
                            annotations.append({"id": len(annotations) + 1,
                                                "image_id": image_id, **ann})
                            n_pseudo += 1
                        continue
                    box = clump_box_xywh_in_frame(float(x), float(y), prep.fwhm,
                                                  params.crop_size, params.crop_size)
                    if box is None:
                        continue
                    annotations.append({
                        "id": len(annotations) + 1, "image_id": image_id, "bbox": box,
                        "area": box[2] * box[3], "iscrowd": 1, "category_id": 1,
                        "ignore_reason": "host_knot", "snr": float(snr),
                        "x": float(x), "y": float(y), "psf_fwhm_px": prep.fwhm})
                for e in pos_extra:  # network-only positives, if the file has any
                    ann = _pseudo_annotation(e, prep.fwhm, params.crop_size)
                    if ann is not None:
                        annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                            **ann})
                        n_pseudo += 1
        coco = {"info": {"description": "simulated clumps injected into real host galaxies",
                         "hosts": str(root), "split": split, "generator": __name__,
                         "params": asdict(params), "skipped_hosts": skipped},
                "images": images, "annotations": annotations, "categories": CATEGORIES}
        if pseudo_labels is not None:
            coco["info"]["pseudo_labels"] = {**pseudo_labels.record(),
                                             "labels_in_split": n_pseudo}
        json_path = atomic_write_text(out_dir / "annotations" / f"{split}.json",
                                      json.dumps(coco))
        n_clumps = sum(not a["iscrowd"] for a in annotations)
        logger.info("%s: %d hosts (%d skipped), %d images, %d clumps (%d pseudo-labels), "
                    "%d ignore regions -> %s", split, len(hids), len(skipped), len(images),
                    n_clumps, n_pseudo, len(annotations) - n_clumps, json_path)
        written[split] = json_path
    return written
