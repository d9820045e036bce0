"""The on-disk layout of a clump dataset, as ``clump_d2.data.datasets.builtin`` registers it::

    <root>/<name>/annotations/<split>.json          COCO JSON -> dataset "<name>_<split>"
    <root>/<name>/annotations/<split>.report.json   what the converter read/kept/dropped
    <root>/<name>/images/<file_name>                images (links to, or copies of, the source)

Guarantees (what a kill, a full disk or hostile input data cannot do):

* **a dataset's splits change as one unit** (:func:`write_dataset`): the new
  ``annotations/`` is built in a hidden staging folder (``.annotations.staging``) and
  swapped in by two renames, so registration sees either every old split or every new one;
  a run killed between the two renames is repaired by the next run (``.annotations.old``
  is put back);
* **images change with their annotations**: :func:`write_dataset` places the images too,
  under a journal (``.images.journal.json``, written before the first image is touched):
  every image it replaces is first moved to ``.images.replaced/``, every new one is listed.
  The new ``annotations/`` carries the journal's token (``annotations/.conversion``); a run
  killed before the annotations were swapped in leaves the old token, and the repair puts
  the replaced images back and removes the new ones (new images never sit under old
  annotations); killed after the swap, the repair only deletes the journal and the backups;
* **every verb repairs first**: :func:`recover_dataset` (both repairs) runs at the start of
  every ``tools/convert_clumpscout.py`` verb (``split`` too, before it reads its input) and
  of :func:`write_dataset`;
* **no stale splits**: splits made by ``split`` from a split that is now rewritten (or
  re-split) are removed, so re-splitting into fewer splits leaves no old ``test.json``;
* **names never leave the dataset**: :func:`place_images` refuses file names that are
  absolute, contain ``..`` or resolve outside ``<name>/images``.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from tqdm import tqdm

from clump_d2.data.datasets.builtin import check_split_name

from .coco_writer import (CocoBuilder, ConversionReport, atomic_write_text, coco_json_text,
                          default_report_path, fsync_dir, is_safe_relative_name, write_coco)

logger = logging.getLogger(__name__)

LINK_MODES = ("symlink", "copy", "none")


def annotation_path(dataset_dir: str | os.PathLike, split: str) -> Path:
    return Path(dataset_dir) / "annotations" / f"{split}.json"


ANNOTATIONS = "annotations"
_STAGING = ".annotations.staging"  # hidden: the registration glob */annotations/ skips it
_OLD = ".annotations.old"
_JOURNAL = ".images.journal.json"  # images placed by a write_dataset not yet swapped in
_REPLACED = ".images.replaced"  # the images it replaced, until the swap is done
_TOKEN = ".conversion"  # in annotations/: the journal token of the run that wrote them


def write_split(dataset_dir: str | os.PathLike, split: str, coco: Dict | CocoBuilder,
                report: Optional[ConversionReport] = None) -> Path:
    """Write ``annotations/<split>.json`` and its ``.report.json`` under ``dataset_dir``
    (each file atomically). To write several splits as one unit, use :func:`write_dataset`.
    """
    return write_coco(coco, annotation_path(dataset_dir, split), report)


def write_dataset(dataset_dir: str | os.PathLike,
                  splits: Dict[str, Tuple[Dict | CocoBuilder, Optional[ConversionReport]]],
                  images_from: Optional[str | os.PathLike] = None, link: str = "symlink",
                  ) -> Dict[str, Path]:
    """Write the splits of one conversion, and place their images, as one unit: all of them,
    or (if killed) none, once the next run (or :func:`recover_dataset`) has repaired.

    The splits already in ``annotations/`` that are not rewritten are kept, except those a
    ``split`` run derived from a split rewritten now or from the same input (stale: they
    would share galaxies with the new splits); they are removed and logged.

    Args:
        dataset_dir: ``<root>/<name>``.
        splits: split name -> (COCO dict or builder, report or None). A ``split`` report
            names its input split in ``report.info["derived_from"]``.
        images_from: folder of the source images, placed under ``images/`` (``link``:
            symlink or copy, :func:`place_images`) under the journal of the module docstring;
            None: no images placed.
        link: one of :data:`LINK_MODES`.

    Returns:
        split name -> final JSON path.
    """
    dataset_dir = Path(dataset_dir)
    for name in splits:
        check_split_name(name)
    recover_dataset(dataset_dir)
    live, staging = dataset_dir / ANNOTATIONS, dataset_dir / _STAGING
    stale = stale_splits(dataset_dir, splits)
    for name in stale:
        logger.warning("%s: removing split %r: it was split from data rewritten now",
                       dataset_dir, name)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    # Keep the splits not rewritten (hard links: files are never changed in place).
    replaced = {f"{n}.json" for n in list(splits) + stale} | {
        f"{n}.report.json" for n in list(splits) + stale}
    if live.is_dir():
        for f in sorted(live.iterdir()):
            if f.is_file() and f.name not in replaced and not f.name.startswith("."):
                _link_or_copy(f, staging / f.name)
    out = {}
    for name, (_, report) in splits.items():
        if report is not None:
            report.check()
            report.info.setdefault("outputs", []).append(os.fspath(annotation_path(
                dataset_dir, name)))
        out[name] = annotation_path(dataset_dir, name)
    for name, (coco, report) in splits.items():
        coco = coco.to_dict() if isinstance(coco, CocoBuilder) else coco
        atomic_write_text(staging / f"{name}.json", coco_json_text(coco))
        if report is not None:
            atomic_write_text(default_report_path(staging / f"{name}.json"),
                              json.dumps(report.as_dict(), indent=2))
        logger.info("wrote %s: %d images, %d boxes", out[name], len(coco["images"]),
                    len(coco["annotations"]))
    token = secrets.token_hex(8)
    atomic_write_text(staging / _TOKEN, token)
    if images_from is not None and link != "none":
        images = [im for coco, _ in splits.values()
                  for im in (coco.images if isinstance(coco, CocoBuilder) else coco["images"])]
        place_images({"images": images}, images_from, dataset_dir, link, journal_token=token)
    _swap_in(dataset_dir, staging)
    _finish_journal(dataset_dir)  # the swap is done: the replaced images are not needed
    return out


def recover_dataset(dataset_dir: str | os.PathLike) -> None:
    """Finish or undo what a killed :func:`write_dataset` left: put ``.annotations.old`` back
    if ``annotations/`` is missing; then, if an image journal is left, keep the placed images
    when the annotations carry its token (the swap was done) or put the replaced images back
    (it was not); delete leftovers. Safe to run at any time, and again if killed."""
    dataset_dir = Path(dataset_dir)
    live, old, staging = (dataset_dir / n for n in (ANNOTATIONS, _OLD, _STAGING))
    if old.is_dir() and not live.exists():
        logger.warning("%s: restoring the annotations of an interrupted conversion", old)
        os.rename(old, live)
        fsync_dir(dataset_dir)
    journal = dataset_dir / _JOURNAL
    if journal.exists():
        try:
            entries = json.loads(journal.read_text())
        except ValueError:  # never half-written (atomic); unreadable: nothing to trust
            entries = None
        swapped = entries is not None and _token(live) == entries.get("token")
        if entries is not None and not swapped:
            _roll_back_images(dataset_dir, entries)
    _finish_journal(dataset_dir)  # also backups left by a kill after the journal was deleted
    if old.exists():
        shutil.rmtree(old)
    if staging.exists():
        shutil.rmtree(staging)


def _token(annotations: Path) -> Optional[str]:
    try:
        return (annotations / _TOKEN).read_text().strip()
    except OSError:
        return None


def _roll_back_images(dataset_dir: Path, entries: Dict) -> None:
    """Undo the image placement of an interrupted run (idempotent: a kill in here is repaired
    by the next call)."""
    target, backup = dataset_dir / "images", dataset_dir / _REPLACED
    n = 0
    for name, existed in entries.get("placed", []):
        if not is_safe_relative_name(name):
            continue
        dst, saved = target / name, backup / name
        if os.path.lexists(saved):
            if os.path.lexists(dst):
                dst.unlink()
            os.replace(saved, dst)
            n += 1
        elif not existed and os.path.lexists(dst):
            dst.unlink()
            n += 1
    logger.warning("%s: undid the image placement of an interrupted conversion (%d images "
                   "restored or removed): the images match the annotations again", dataset_dir,
                   n)


def _finish_journal(dataset_dir: Path) -> None:
    journal, backup = dataset_dir / _JOURNAL, dataset_dir / _REPLACED
    if journal.exists():
        journal.unlink()
        fsync_dir(dataset_dir)
    if backup.exists():
        shutil.rmtree(backup)


def stale_splits(dataset_dir: str | os.PathLike, new: Iterable[str] | Dict) -> List[str]:
    """Existing splits, not among ``new``, that a ``split`` run derived from a split in ``new``
    or from the input that the new ``split`` reports name."""
    live = Path(dataset_dir) / ANNOTATIONS
    new_reports = new.values() if isinstance(new, dict) else ()
    new = set(new)
    inputs = set(new)
    for item in new_reports:
        report = item[1] if isinstance(item, tuple) else None
        if report is not None and report.command == "split" and report.info.get("derived_from"):
            inputs.add(report.info["derived_from"])
    out = []
    if not live.is_dir():
        return out
    for json_file in sorted(live.glob("*.json")):
        if json_file.name.endswith(".report.json") or json_file.stem in new:
            continue
        source = _derived_from(json_file)
        if source is not None and source in inputs:
            out.append(json_file.stem)
    return out


def _derived_from(json_file: Path) -> Optional[str]:
    """The split a ``split`` run made ``json_file`` from (None: not made by ``split``)."""
    try:
        report = json.loads(default_report_path(json_file).read_text())
    except (OSError, ValueError):
        return None
    if report.get("command") != "split":
        return None
    if report.get("derived_from"):
        return str(report["derived_from"])
    sources = report.get("sources") or []  # reports written before "derived_from"
    return Path(sources[0]).stem if sources and Path(sources[0]).parent.name == ANNOTATIONS \
        else None


def _swap_in(dataset_dir: Path, staging: Path) -> None:
    live, old = dataset_dir / ANNOTATIONS, dataset_dir / _OLD
    fsync_dir(staging)
    if live.exists():
        os.rename(live, old)
    os.rename(staging, live)  # a kill between the renames: recover_dataset restores ``old``
    fsync_dir(dataset_dir)
    if old.exists():
        shutil.rmtree(old)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # file systems without hard links
        shutil.copy2(src, dst)


def place_images(coco: Dict | CocoBuilder, source_dir: str | os.PathLike,
                 dataset_dir: str | os.PathLike, mode: str = "symlink",
                 journal_token: Optional[str] = None) -> int:
    """Make ``<dataset_dir>/images/<file_name>`` for every image of ``coco`` from
    ``source_dir`` (symlink, copy, or nothing). Returns the number of files placed.

    Per-band FITS names (``{band}`` or ``band_files``) are placed band by band. With
    ``journal_token`` (as :func:`write_dataset` calls it), every change is journalled first
    and each replaced image kept in ``.images.replaced/`` (module docstring), so that
    :func:`recover_dataset` can undo the placement if the annotations never follow.

    Raises:
        FileNotFoundError: naming the first source file that does not exist.
        ValueError: for a name that would leave ``source_dir`` or ``<dataset_dir>/images``
            (absolute, ``..``, or through a symlinked folder): input data never gets to
            replace or delete a file outside the dataset.
    """
    if mode not in LINK_MODES:
        raise ValueError(f"link mode {mode!r} not in {LINK_MODES}")
    if mode == "none":
        return 0
    images = coco.images if isinstance(coco, CocoBuilder) else coco["images"]
    source_dir, target_dir = Path(source_dir).resolve(), Path(dataset_dir) / "images"
    target_dir.mkdir(parents=True, exist_ok=True)
    target_real = target_dir.resolve()
    names = []
    for im in images:
        if isinstance(im.get("band_files"), dict):
            names.extend(im["band_files"].values())
        else:
            names.append(im["file_name"])
    plan = []  # (name, whether an image of that name is there now), checked before any change
    for name in sorted(set(names)):
        if not is_safe_relative_name(name):
            raise ValueError(f"image name {name!r} (from the annotations) is not a relative "
                             f"path inside {target_dir}; refusing to place it")
        src, dst = source_dir / name, target_dir / name
        if not src.exists():
            raise FileNotFoundError(f"image {src} (listed in the annotations) does not exist")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not _inside(dst.parent.resolve(), target_real):
            raise ValueError(f"image name {name!r} leads outside {target_dir} (through a "
                             "symlinked folder); refusing to place it")
        there = os.path.lexists(dst)
        if not (there and dst.resolve() == src.resolve()):
            plan.append((name, there))
    backup = Path(dataset_dir) / _REPLACED
    if journal_token is not None and plan:
        atomic_write_text(Path(dataset_dir) / _JOURNAL,
                          json.dumps({"token": journal_token, "placed": plan}))
    n = 0
    for name, there in tqdm(plan, desc=f"{mode} images", disable=len(plan) < 2000):
        src, dst = source_dir / name, target_dir / name
        if there:
            if journal_token is not None:  # kept until the new annotations are in place
                (backup / name).parent.mkdir(parents=True, exist_ok=True)
                os.replace(dst, backup / name)
            else:
                dst.unlink()
        if mode == "symlink":
            dst.symlink_to(src)
        else:
            shutil.copy2(src, dst)
        n += 1
    logger.info("%s %d images into %s", "linked" if mode == "symlink" else "copied", n,
                target_dir)
    return n


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents
