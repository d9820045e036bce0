"""Batch prediction over a galaxy catalogue of any size -> a clump catalogue.

Work plan. The galaxies (in input order) are cut into shards of ``INFERENCE.SHARD_SIZE``.
Shards depend only on the input, never on the number of processes, and each shard is run
in fixed batches in input order, so every galaxy meets the same batch whatever the number of
processes: the catalogue is the same from 1 or N processes. The unfinished shards are dealt
round-robin to the processes; each finished shard is written atomically to
``<output>.shards/shard_NNNNNN.parquet``. A re-run of the same command skips the shards
already written (a ``manifest.json`` guards against resuming with another input, config or
model: the input by content, every galaxy record as read and the input file's bytes, so a
table edited under the same name is refused, naming what changed), and the main process
merges all shards into the catalogue once all exist.

Photometry (``PHOTOMETRY.ENABLED``, default on): every detection is measured on the image the
model saw (:mod:`clump_d2.photometry`: FITS bands in their flux units with the headers' zero
points; PNG/JPEG as display photometry after undoing the stretch), with the host segment of
its galaxy (``in_host``; ``PHOTOMETRY.DROP_OUTSIDE_HOST`` drops detections off the host, the
paper's rule, counted in ``galaxy_n_outside_host``) and the giant flags. A galaxy whose
photometry fails keeps its detections, each with ``phot_status`` ``error: <reason>``.

Selection function: with photometry, every clump also gets the host's half-light radius
(``host_r50_px``) and its distance from the centre in it (``distance_r50``); with
``INFERENCE.SELECTION_FUNCTION`` (:mod:`clump_d2.evaluation.selection`), ``p_detect``, the
detector's completeness at the clump's flux fraction and distance, for correcting counts.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from detectron2.data import MetadataCatalog
from detectron2.utils import comm
from tqdm import tqdm

from clump_d2 import model_zoo
from clump_d2.data.build import build_batched_test_loader
from clump_d2.data.files import naming_path
from clump_d2.engine.defaults import build_config
from clump_d2.data.tables import table_format, write_table
from clump_d2.engine.evaluate import build_model_for_inference
from clump_d2.evaluation.selection import (ALL_HOSTS, SelectionFunction,
                                           resolve_selection_function)
from clump_d2.modeling.runtime import wrap_for_inference
from clump_d2.photometry import (PhotometryImage, PhotometryOptions, load_photometry_image,
                                 measure_image)
from clump_d2.photometry.host_shape import host_r50
from clump_d2.photometry.measure import host_segment_of
from clump_d2.photometry.io import write_table as write_table_with_units
from clump_d2.structures import CLUMP_CLASSES

from .crop import with_centre_crops
from .catalogue import (
    STATUS_BAD_SKY,
    STATUS_FAILED,
    STATUS_NO_CLUMPS,
    STATUS_OK,
    STATUS_UNREADABLE,
    column_units,
    conform,
    galaxy_rows,
    galaxy_table,
    rows_to_frame,
)
from .inputs import CatalogueColumns, load_records
from .launch import set_cpu_threads, setup_inference_logging
from .mapper import InferenceMapper
from .postprocess import Detections, PostProcessConfig, estimate_fwhm, postprocess
from .sky import build_sky_transform
from .visualize import catalogue_contact_sheet

logger = logging.getLogger(__name__)

MANIFEST_VERSION = 2  # 2: inputs by content (every record, the input file's bytes)
# Config keys that change how fast a catalogue is made, not what it holds.
_SPEED_ONLY_KEYS = ("DATALOADER.NUM_WORKERS", "OUTPUT_DIR", "MODEL.DEVICE")


def build_inference_model(cfg):
    """The model as the catalogue calls it: :func:`clump_d2.engine.build_model_for_inference`
    (eval mode, ``MODEL.WEIGHTS`` loaded, channels-last per ``MODEL.CHANNELS_LAST``) wrapped
    for ``TEST.AMP`` / ``TEST.DIHEDRAL_TTA`` as evaluation wraps it."""
    return wrap_for_inference(build_model_for_inference(cfg), cfg)


def dataset_class_names(cfg) -> List[str]:
    """Class names of the first test/train dataset registered with ``thing_classes``, else
    :data:`~clump_d2.structures.CLUMP_CLASSES`."""
    for name in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN):
        classes = MetadataCatalog.get(name).get("thing_classes", None)
        if classes:
            return list(classes)
    return list(CLUMP_CLASSES)


def galaxy_centre(record: Dict):
    """Galaxy centre (continuous px) for the bulge flag: ``centre_x``/``centre_y`` of the
    input if given, else the image centre."""
    if record.get("centre_x") is not None and record.get("centre_y") is not None:
        return float(record["centre_x"]), float(record["centre_y"])
    if record.get("width") and record.get("height"):
        return record["width"] / 2.0, record["height"] / 2.0
    return None


def load_image_for_photometry(record: Dict, options: PhotometryOptions) -> PhotometryImage:
    """The image of ``record`` as photometry reads it (the file the mapper read: FITS bands
    ``INPUT.FITS.BANDS`` in flux units, or the PNG/JPEG linearised), cut to the record's
    ``crop`` as the mapper cuts it, so detections and apertures share pixel coordinates."""
    image = load_photometry_image(record["file_name"], options.bands, record.get("band_files"),
                                  options.cube_bands, options.hdu, options.display_q,
                                  max_pixels=options.max_pixels)
    return image.cropped(record.get("crop"))


#: PSF FWHM (px) of the host segmentation when neither the galaxy (``psf_fwhm_px``) nor
#: ``INFERENCE.PSF_FWHM_PX`` gives one: the median Clump Scout box (16.6 px) / 2.5. The
#: segment is made before the detections exist (in the loader), so their boxes cannot say.
SEGMENT_FWHM_FALLBACK_PX = 6.6


class PhotometryMapper:
    """Wraps the inference mapper: also reads the image for photometry and segments its host,
    so that this detection-independent half of the photometry runs in the data-loader workers
    (``DATALOADER.NUM_WORKERS``) while the model runs. Adds ``photometry`` = (image, host
    segment) to the mapped dict, or ``photometry_error`` (the reason) when that fails; never
    raises (the model still runs on the galaxy)."""

    def __init__(self, base, options: PhotometryOptions, psf_fwhm_px: float = 0.0):
        self.base = base
        self.options = options
        self.psf_fwhm_px = psf_fwhm_px

    def segment_fwhm(self, record: Dict) -> float:
        psf = record.get("psf_fwhm_px")
        if psf is not None and np.isfinite(psf) and psf > 0:
            return float(psf)
        return self.psf_fwhm_px if self.psf_fwhm_px > 0 else SEGMENT_FWHM_FALLBACK_PX

    def __call__(self, record: Dict) -> Dict:
        out = self.base(record)
        if "error" in out:
            return out
        try:
            image = load_image_for_photometry(record, self.options)
            segment = host_segment_of(image, self.segment_fwhm(record), galaxy_centre(record),
                                      self.options)
            out["photometry"] = (image, segment)
        except Exception as e:  # noqa: BLE001  (one galaxy's photometry: its rows say why)
            out["photometry_error"] = f"{type(e).__name__}: {e}"
            logger.warning("photometry of galaxy %s failed: %s", record.get("galaxy_id"),
                           out["photometry_error"],
                           exc_info=not isinstance(e, (ValueError, OSError)))
        return out


class CataloguePredictor:
    """Runs a model over galaxy records and turns its outputs into catalogue rows.

    Args:
        cfg: the config (``INFERENCE`` and ``PHOTOMETRY`` keys, the test-time mapper,
            ``DATALOADER.NUM_WORKERS``).
        model: anything called like Detectron2's ``GeneralizedRCNN`` in eval mode (list of
            input dicts -> list of ``{"instances": Instances}``); default: built from ``cfg``.
        class_names: class names by contiguous id; default: from the config's datasets.
    """

    def __init__(self, cfg, model=None, class_names: Optional[Sequence[str]] = None,
                 mapper=None):
        self.cfg = cfg
        self.model = model if model is not None else build_inference_model(cfg)
        self.class_names = list(class_names) if class_names else dataset_class_names(cfg)
        self.options = PostProcessConfig.from_cfg(cfg)
        self.photometry = (PhotometryOptions.from_config(cfg) if cfg.PHOTOMETRY.ENABLED
                           else None)
        self.mapper = mapper if mapper is not None else InferenceMapper.from_cfg(cfg)
        if self.photometry is not None:
            # photutils takes seconds to import: paid here, not in the first galaxy's time
            import photutils.segmentation  # noqa: F401

            self.mapper = PhotometryMapper(self.mapper, self.photometry,
                                           self.options.psf_fwhm_px)
        self.selection = load_selection_function(cfg)
        if self.selection is not None and self.photometry is None:
            logger.warning("INFERENCE.SELECTION_FUNCTION needs the clumps' photometry "
                           "(PHOTOMETRY.ENABLED False): p_detect stays NaN")
        self._warned: set = set()
        self.batch_size = int(cfg.INFERENCE.BATCH_SIZE)
        self.num_workers = int(cfg.DATALOADER.NUM_WORKERS)
        sky = cfg.INFERENCE.SKY
        self.sky_options = dict(north_up=sky.NORTH_UP, east_left=sky.EAST_LEFT,
                                rotation_deg=sky.ROTATION_DEG)

    def _forward(self, inputs: List[Dict]) -> List:
        """Model outputs for ``inputs``, or the exception per galaxy when the model fails:
        a failing batch is retried one galaxy at a time, so only the culprit fails."""
        if not inputs:
            return []
        try:
            return list(self.model(inputs))
        except Exception as e:  # noqa: BLE001  (isolated below, then reported per galaxy)
            if len(inputs) == 1:
                logger.warning("model failed on galaxy %s: %s: %s", inputs[0].get("galaxy_id"),
                               type(e).__name__, e, exc_info=True)
                return [e]
            logger.warning("model failed on a batch of %d (%s); retrying one by one",
                           len(inputs), e)
            return [out for item in inputs for out in self._forward([item])]

    def rows_for(self, item: Dict, output) -> List[Dict]:
        """Catalogue rows of one mapped record and its model output (or exception)."""
        record = {k: v for k, v in item.items()
                  if k not in ("image", "photometry", "photometry_error")}
        if "error" in item:
            return galaxy_rows(record, f"{STATUS_UNREADABLE}: {item['error']}")
        if isinstance(output, Exception):
            return galaxy_rows(record, f"{STATUS_FAILED}: {type(output).__name__}: {output}")
        try:
            return self._searched_rows(record, output, item)
        except Exception as e:  # noqa: BLE001  (one galaxy's rows: its status names the file)
            logger.warning("galaxy %s (%s) failed after the model: %s: %s",
                           record.get("galaxy_id"), record.get("file_name"), type(e).__name__, e,
                           exc_info=True)
            return galaxy_rows(record, f"{STATUS_FAILED}: {record.get('file_name')}: "
                                       f"{type(e).__name__}: {e}")

    def _searched_rows(self, record: Dict, output, item: Dict) -> List[Dict]:
        """Rows of a galaxy the model ran on: post-processing, photometry, sky positions."""
        instances = output["instances"].to("cpu")
        det = Detections(instances.pred_boxes.tensor.numpy(), instances.scores.numpy(),
                         instances.pred_classes.numpy())
        det = postprocess(det, self.options, centre_xy=galaxy_centre(record),
                          psf_fwhm_px=record.get("psf_fwhm_px"))
        phot, n_outside = None, 0
        if self.photometry is not None and len(det):
            det, phot, n_outside = self.measure(record, det, item)
        sky = build_sky_transform(record, record.get("width"), record.get("height"),
                                  item.get("wcs_header"), **self.sky_options)
        status = STATUS_OK if len(det) else STATUS_NO_CLUMPS
        return galaxy_rows(record, status, det, self.class_names, sky, phot, n_outside)

    def measure(self, record: Dict, det: Detections, item: Dict):
        """Photometry of one galaxy's detections (``item``: the mapped dict, with the image
        and host segment from :class:`PhotometryMapper`).

        Returns:
            (detections kept, their photometry rows, number dropped off the host). With
            ``PHOTOMETRY.DROP_OUTSIDE_HOST`` the detections off the host segment are dropped
            (none when no host segment was found: the rule needs one; ``phot_status`` then
            says ``no_host``).
        """
        o = self.photometry
        psf = record.get("psf_fwhm_px")
        if psf is None or not np.isfinite(psf) or psf <= 0:
            psf = self.options.psf_fwhm_px if self.options.psf_fwhm_px > 0 else None
        reason = item.get("photometry_error")
        if reason is None:
            try:
                image, segment = item["photometry"]
                fwhm = estimate_fwhm(det, psf)
                phot = measure_image(image, det.centres, fwhm, galaxy_centre(record), o,
                                     segment=segment)
                self.add_selection_columns(phot, record, det, image, segment, fwhm)
            except Exception as e:  # noqa: BLE001  (one galaxy's photometry: its rows say why)
                reason = f"{type(e).__name__}: {e}"
                logger.warning("photometry of galaxy %s failed: %s", record.get("galaxy_id"),
                               reason, exc_info=True)
        if reason is not None:
            return det, pd.DataFrame({"status": [f"error: {reason}"] * len(det)}), 0
        if not o.drop_outside_host:
            return det, phot, 0
        keep = phot["in_host"].to_numpy(bool) | (phot["status"] == "no_host").to_numpy()
        if keep.all():
            return det, phot, 0
        phot = phot[keep].reset_index(drop=True)
        phot["status"] = phot["status"].replace("outside_host", "ok")
        return det.select(np.flatnonzero(keep)), phot, int((~keep).sum())

    def add_selection_columns(self, phot: pd.DataFrame, record: Dict, det: Detections,
                              image: PhotometryImage, segment, fwhm: np.ndarray) -> None:
        """Adds ``host_r50_px``, ``distance_r50`` and (with a selection function) ``p_detect``
        to one galaxy's photometry rows ``phot`` (one per detection of ``det``)."""
        r50 = host_r50(image, segment, self.photometry.detection_band)
        good = fwhm[np.isfinite(fwhm) & (fwhm > 0)]
        if np.isfinite(r50) and len(good):
            # As the injections scale their distances: R50 no smaller than the PSF FWHM.
            r50 = max(r50, float(np.median(good)))
        centres = det.centres
        distance = np.hypot(centres[:, 0] - segment.centre[0],
                            centres[:, 1] - segment.centre[1]) / r50
        phot["host_r50_px"] = r50
        phot["distance_r50"] = distance
        if self.selection is None:
            return
        sf = self.selection
        column = sf.ratio_column(image.band_names, image.display)
        if column is None or column not in phot:
            self._warn_once(f"no flux ratio in band {sf.band!r} among the bands "
                            f"{list(image.band_names)} (the selection function's band): "
                            "p_detect NaN")
            phot["p_detect"] = np.nan
            return
        group = str(record.get("host_class") or ALL_HOSTS)
        if group not in sf.groups:
            self._warn_once(f"host class {group!r} is not a group of {sf.source} "
                            f"({sf.groups}): its clumps use all hosts")
        phot["p_detect"] = sf.p_detect(phot[column].to_numpy(np.float64), distance, group)

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            logger.warning(message)

    def predict(self, records: Sequence[Dict], progress: Optional[tqdm] = None) -> List[Dict]:
        """Catalogue rows of ``records`` (every record gets at least one row), in order."""
        rows: List[Dict] = []
        loader = build_batched_test_loader(records, self.mapper, self.batch_size,
                                           self.num_workers, sequential=True)
        with torch.inference_mode():
            for batch in loader:
                good = [item for item in batch if "error" not in item]
                outputs = iter(self._forward(good))
                for item in batch:
                    rows.extend(self.rows_for(item, None if "error" in item else next(outputs)))
                if progress is not None:
                    progress.update(len(batch))
        return rows


def load_selection_function(cfg) -> Optional[SelectionFunction]:
    """The table of ``INFERENCE.SELECTION_FUNCTION`` (None when ""); a warning when it was
    measured at another score threshold than the catalogue's."""
    path = resolve_selection_function(cfg.INFERENCE.SELECTION_FUNCTION)
    if path is None:
        return None
    sf = SelectionFunction.read(path)
    thresh = float(cfg.TEST.CLUMP_EVAL.SCORE_THRESH)
    if np.isfinite(sf.score_thresh) and abs(sf.score_thresh - thresh) > 1e-6:
        logger.warning("selection function %s was measured at score >= %g, this catalogue "
                       "keeps score >= %g: p_detect is the completeness at another operating "
                       "point", path, sf.score_thresh, thresh)
    return sf


# --- shards, resuming, merging ---------------------------------------------------------------


def shard_dir_for(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".shards")


def shard_path(shard_dir: Path, index: int) -> Path:
    return shard_dir / f"shard_{index:06d}.parquet"


def _weights_identity(weights: str) -> Dict:
    zoo = model_zoo.zoo_identity(weights)  # a zoo model: the sha256 its card names
    if zoo is not None:
        return zoo
    if weights and os.path.isfile(weights):
        st = os.stat(weights)
        return {"path": os.path.abspath(weights), "size": st.st_size, "mtime": int(st.st_mtime)}
    return {"path": weights}


def inputs_identity(records: Sequence[Dict],
                    source: Optional[str | os.PathLike] = None) -> Dict:
    """What the galaxies of a run were: for every record key (id, image, RA/Dec, pixel scale,
    PSF, centre, a bad-sky reason, ...) the sha256 of its values over all records in order
    (so that a change is named by key), and the sha256 of the input file's bytes when the
    input is a file (a table or COCO JSON; a folder is described by its records)."""
    keys = sorted({k for r in records for k in r})
    fields = {k: hashlib.sha256() for k in keys}
    for record in records:
        for key in keys:
            fields[key].update(json.dumps(record.get(key), sort_keys=True,
                                          default=str).encode() + b"\n")
    identity: Dict = {"fields_sha256": {k: h.hexdigest() for k, h in fields.items()}}
    if source is not None and os.path.isfile(source):
        digest = hashlib.sha256()
        with open(source, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        identity["source"] = {"path": os.path.abspath(source), "sha256": digest.hexdigest()}
    return identity


def run_fingerprint(cfg, records: Sequence[Dict], model_tag: str = "",
                    source: Optional[str | os.PathLike] = None) -> Dict:
    """What a set of shards was made from: the inputs (:func:`inputs_identity`: every record
    as read, and the input file's bytes), the config (less the keys that only change speed),
    the weights file, ``model_tag`` (for models not built from cfg), and the selection
    function's bytes when ``INFERENCE.SELECTION_FUNCTION`` names one."""
    cfg = cfg.clone()
    cfg.defrost()
    for key in _SPEED_ONLY_KEYS:
        *parents, leaf = key.split(".")
        node = cfg
        for part in parents:
            node = node[part]
        node[leaf] = None
    fingerprint = {
        "version": MANIFEST_VERSION,
        "n_galaxies": len(records),
        "shard_size": int(cfg.INFERENCE.SHARD_SIZE),
        "inputs": inputs_identity(records, source),
        "config_sha256": hashlib.sha256(cfg.dump().encode()).hexdigest(),
        "weights": _weights_identity(cfg.MODEL.WEIGHTS),
        "model_tag": model_tag,
    }
    table = resolve_selection_function(cfg.INFERENCE.SELECTION_FUNCTION)
    if table is not None:  # its content: a zoo entry packaged again keeps its name
        fingerprint["selection_function_sha256"] = hashlib.sha256(table.read_bytes()).hexdigest()
    return fingerprint


def describe_change(old: Dict, new: Dict) -> List[str]:
    """What differs between two run fingerprints, in words (the input file, which record
    keys, the config, ...)."""
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key):
            continue
        if key != "inputs" or not isinstance(old.get(key), dict):
            out.append(key)
            continue
        was, now = old["inputs"], new["inputs"]
        if was.get("source") != now.get("source"):
            path = (now.get("source") or was.get("source") or {}).get("path", "")
            out.append(f"input file {path} (content)")
        fields = sorted(k for k in set(was.get("fields_sha256", {})) | set(
            now.get("fields_sha256", {})) if was.get("fields_sha256", {}).get(k)
            != now.get("fields_sha256", {}).get(k))
        if fields:
            out.append(f"galaxy values ({', '.join(fields)})")
    return out


def _prepare_shard_dir(shard_dir: Path, fingerprint: Dict, overwrite: bool) -> Optional[str]:
    """Create or check ``shard_dir``; returns an error message instead of raising, so that the
    main process can share it with the others before everyone stops."""
    manifest = shard_dir / "manifest.json"
    if overwrite and shard_dir.exists():
        shutil.rmtree(shard_dir)
    if manifest.exists():
        old = json.loads(manifest.read_text())
        if old != fingerprint:
            changed = describe_change(old, fingerprint)
            return (f"{shard_dir} holds shards of another run (different {'; '.join(changed)})"
                    "; its shards would mix with this run's rows. Use --overwrite to start "
                    "again, or another --output")
        return None
    with naming_path(manifest):
        shard_dir.mkdir(parents=True, exist_ok=True)
        tmp = manifest.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(fingerprint, indent=2))
        os.replace(tmp, manifest)
    return None


def _shards(records: Sequence[Dict], size: int) -> List[Sequence[Dict]]:
    size = max(1, int(size))
    return [records[i:i + size] for i in range(0, len(records), size)]


def merge_shards(shard_dir: Path, n_shards: int) -> pd.DataFrame:
    """The catalogue: all shards concatenated in shard order."""
    frames = [pd.read_parquet(shard_path(shard_dir, k)) for k in range(n_shards)]
    # Shards may differ in their band columns (e.g. one without any clump): one schema.
    return conform(pd.concat(frames, ignore_index=True)) if frames else rows_to_frame([])


def write_catalogue(catalogue: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the catalogue (format by suffix); a FITS catalogue carries each column's unit
    (``TUNITn``; flux columns only when all rows share one ``flux_unit``)."""
    units = catalogue.loc[catalogue["flux_unit"] != "", "flux_unit"].unique()
    return write_table_with_units(catalogue, path,
                                  column_units(catalogue.columns,
                                               str(units[0]) if len(units) == 1 else ""))


def output_paths(output: str | os.PathLike) -> Dict[str, Path]:
    """The catalogue, the galaxy table (``<stem>_galaxies.<ext>``) and the summary JSON."""
    output = Path(output)
    suffix = output.suffix
    return {"catalogue": output,
            "galaxies": output.with_name(f"{output.stem}_galaxies{suffix}"),
            "summary": output.with_name(f"{output.stem}_summary.json")}


def summarise(catalogue: pd.DataFrame) -> Dict:
    """Counts of galaxies by status and of clumps."""
    galaxies = catalogue.drop_duplicates("galaxy_id")
    status = galaxies["galaxy_status"].astype(str)
    clumps = catalogue[catalogue["clump_id"] > 0]
    measured = clumps[clumps["phot_status"] != ""]
    giants = {f"clumps_{c[3:]}": int(clumps[c].sum()) for c in catalogue.columns
              if c.startswith("is_giant_")}
    return {
        "galaxies": int(len(galaxies)),
        "ok": int((status == STATUS_OK).sum()),
        "no_clumps": int((status == STATUS_NO_CLUMPS).sum()),
        "unreadable": int(status.str.startswith(STATUS_UNREADABLE).sum()),
        "failed": int(status.str.startswith(STATUS_FAILED).sum()),
        # searched, but no RA/Dec: impossible sky values in the input (named in the status)
        "bad_sky": int(status.str.startswith(STATUS_BAD_SKY).sum()),
        "clumps": int(len(clumps)),
        "clumps_on_centre": int(clumps["on_centre"].sum()),
        "clumps_measured": int(len(measured)),
        "clumps_photometry_ok": int((measured["phot_status"] == "ok").sum()),
        "clumps_in_host": int(measured["in_host"].sum()),
        "clumps_dropped_outside_host": int(galaxies["galaxy_n_outside_host"].sum()),
        **giants,
    }


@dataclass
class RunResult:
    """What :func:`run_catalogue` did (on the main process; ``complete`` on all)."""

    complete: bool
    summary: Dict
    paths: Dict[str, Path]
    #: The records as searched (with their INFERENCE.CENTRE_CROP crops).
    records: List[Dict] = field(default_factory=list)


def run_catalogue(cfg, records: Sequence[Dict], output: str | os.PathLike, *, model=None,
                  model_tag: str = "", overwrite: bool = False,
                  source: Optional[str | os.PathLike] = None,
                  max_shards: Optional[int] = None,
                  on_shard_done: Optional[Callable[[int], None]] = None,
                  progress: bool = True) -> RunResult:
    """Predict clumps for ``records`` and write the catalogue to ``output``; in every process
    of a distributed run (each takes its share of the shards).

    Args:
        cfg: frozen config.
        records: galaxy records (:mod:`clump_d2.inference.inputs`), identical in all processes.
        output: catalogue path (``.parquet``, ``.csv`` or ``.fits``).
        model: a model to use instead of building one from ``cfg``; give ``model_tag`` to
            tell runs with different such models apart when resuming.
        overwrite: discard the shards of an earlier run instead of resuming it.
        source: the input file the records were read from (its bytes join the records in
            the manifest: resuming after the file changed is refused).
        max_shards: run at most this many shards per process, then stop (no merge unless
            all shards are done); for time-limited jobs.
        on_shard_done: called with the shard index after each shard is written.
        progress: show a tqdm bar (main process).

    Returns:
        RunResult; the catalogue is written only when all shards exist.
    """
    start = time.perf_counter()
    output = Path(output)
    table_format(output)  # fail early on an unknown format
    bands = list(cfg.INPUT.FITS.BANDS)
    records = with_centre_crops(records, int(cfg.INFERENCE.CENTRE_CROP),
                                bands[0] if bands else "r")
    paths = output_paths(output)
    shard_dir = shard_dir_for(output)
    shards = _shards(list(records), cfg.INFERENCE.SHARD_SIZE)

    error = None
    if comm.is_main_process():
        fingerprint = run_fingerprint(cfg, records, model_tag, source)
        error = _prepare_shard_dir(shard_dir, fingerprint, overwrite)
    error = comm.all_gather(error)[0]
    if error:
        raise RuntimeError(error)
    todo = None
    if comm.is_main_process():
        todo = [k for k in range(len(shards)) if not shard_path(shard_dir, k).exists()]
    # One list for all: each process scanning the folder itself could see a shard finish
    # in between and deal the rest differently, leaving shards to nobody.
    todo = comm.all_gather(todo)[0]
    mine = todo[comm.get_rank()::comm.get_world_size()]
    if max_shards is not None:
        mine = mine[:max_shards]
    logger.info("%d galaxies in %d shards: %d done earlier, %d to run (%d in this process)",
                len(records), len(shards), len(shards) - len(todo), len(todo), len(mine))

    n_mine = sum(len(shards[k]) for k in mine)
    seconds = 0.0
    if mine:
        predictor = CataloguePredictor(cfg, model=model)
        bar = tqdm(total=n_mine, unit=" galaxies", desc=f"clumps (process {comm.get_rank()})",
                   disable=not (progress and comm.is_main_process()), dynamic_ncols=True)
        t0 = time.perf_counter()
        for k in mine:
            rows = predictor.predict(shards[k], progress=bar)
            write_table(rows_to_frame(rows), shard_path(shard_dir, k), "parquet")
            if on_shard_done is not None:
                on_shard_done(k)
        seconds = time.perf_counter() - t0
        bar.close()
    done = comm.all_gather((n_mine, len(mine), seconds))
    comm.synchronize()

    complete = all(shard_path(shard_dir, k).exists() for k in range(len(shards)))
    summary: Dict = {}
    if comm.is_main_process():
        n_run = sum(d[0] for d in done)
        busiest = max(d[2] for d in done)
        summary = {"shards": len(shards), "shards_done_earlier": len(shards) - len(todo),
                   "shards_run": sum(d[1] for d in done), "processes": comm.get_world_size(),
                   "galaxies_run": n_run, "inference_seconds": round(busiest, 3),
                   "galaxies_per_second": round(n_run / busiest, 3) if busiest > 0 else None}
        if complete:
            catalogue = merge_shards(shard_dir, len(shards))
            write_catalogue(catalogue, paths["catalogue"])
            write_table(galaxy_table(catalogue), paths["galaxies"])
            summary.update(summarise(catalogue))
        summary["complete"] = complete
        summary["seconds"] = round(time.perf_counter() - start, 3)
        tmp = paths["summary"].with_suffix(".json.tmp")
        with naming_path(paths["summary"]):
            tmp.write_text(json.dumps(summary, indent=2))
            os.replace(tmp, paths["summary"])
        _log_summary(summary, paths)
    return RunResult(complete, summary, paths, records)


def _log_summary(summary: Dict, paths: Dict[str, Path]) -> None:
    rate = summary.get("galaxies_per_second")
    logger.info("ran %d galaxies (%d shards, %d done earlier) in %.1f s on %d process(es)%s",
                summary["galaxies_run"], summary["shards_run"], summary["shards_done_earlier"],
                summary["seconds"], summary["processes"],
                f", {rate:.2f} galaxies/s" if rate else "")
    if summary["complete"]:
        logger.info("catalogue %s: %d galaxies (%d ok, %d no_clumps, %d unreadable, %d failed),"
                    " %d clumps (%d on the galaxy centre); galaxies: %s", paths["catalogue"],
                    summary["galaxies"], summary["ok"], summary["no_clumps"],
                    summary["unreadable"], summary["failed"], summary["clumps"],
                    summary["clumps_on_centre"], paths["galaxies"])
    else:
        logger.info("not all shards are done yet: run the same command again to resume")


# --- the command line's body ---------------------------------------------------------------


@dataclass
class CatalogueJob:
    """What ``tools/predict_catalog.py`` asks for (picklable: sent to every process).

    Attributes:
        config_file: config YAML ("" for the defaults).
        opts: config overrides, KEY VALUE pairs.
        input: folder of images, COCO ``.json``, or catalogue table (:func:`load_records`).
        output: catalogue path (.parquet, .csv, .fits); "" -> ``OUTPUT_DIR/clumps.parquet``.
        columns: catalogue column names (None: found automatically).
        image_root: folder of relative image paths.
        overwrite, max_shards, progress: as :func:`run_catalogue`.
        verbose: debug logging (tracebacks of unreadable images).
        contact_sheet: also draw the catalogue's galaxies (the first 64) with their clumps
            to this image file (.png/.jpg); "" for none.
    """

    config_file: str
    opts: List[str]
    input: str
    output: str = ""
    columns: Optional[CatalogueColumns] = None
    image_root: Optional[str] = None
    overwrite: bool = False
    max_shards: Optional[int] = None
    progress: bool = True
    verbose: bool = False
    contact_sheet: str = ""


def catalogue_main(job: CatalogueJob) -> Optional[Dict]:
    """One process's part of a :class:`CatalogueJob` (run it in every process with
    :func:`clump_d2.inference.launch.launch_inference`); returns the summary (main process)."""
    setup_inference_logging(job.verbose)
    cfg = build_config(job.config_file, job.opts)
    if cfg.MODEL.DEVICE == "cpu":
        set_cpu_threads(cfg.INFERENCE.CPU_THREADS)
    records = load_records(job.input, image_root=job.image_root, columns=job.columns)
    output = job.output or os.path.join(cfg.OUTPUT_DIR, "clumps.parquet")
    result = run_catalogue(cfg, records, output, overwrite=job.overwrite, source=job.input,
                           max_shards=job.max_shards, progress=job.progress)
    if job.contact_sheet and result.complete and comm.is_main_process():
        sheet = catalogue_contact_sheet(result.records, result.paths["catalogue"],
                                        job.contact_sheet,
                                        class_names=dataset_class_names(cfg),
                                        max_pixels=int(cfg.INPUT.MAX_PIXELS))
        result.summary["contact_sheet"] = str(sheet)
    return result.summary if comm.is_main_process() else None
