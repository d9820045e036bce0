"""What to run the detector on: a folder of images, a COCO JSON, or a galaxy catalogue.

Each input becomes a list of *galaxy records* (plain dicts, in a fixed order that does not
depend on the number of processes):

* ``galaxy_id`` (str, unique): the catalogue's id, the COCO image id, or the image path
  relative to the folder without its suffix;
* ``file_name``: the image (PNG/JPEG/FITS; a FITS name may be a per-band template containing
  ``{band}``), and optionally ``band_files`` ``{band: path}`` for one FITS file per band (the
  conventions of ``clump_d2.data.fits_io``);
* optional: ``ra``, ``dec`` (deg, of the reference pixel, by default the image centre),
  ``pixel_scale`` (arcsec/px), ``ref_x``/``ref_y`` (reference pixel), ``centre_x``/``centre_y``
  (galaxy centre for the bulge flag), ``psf_fwhm_px``, ``height``/``width``, ``image_id``.

Catalogue tables (CSV, Parquet, FITS) are read with ``clump_d2.data.tables.read_table``;
column names are options, with the common spellings found automatically.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from clump_d2.data.image_io import IMAGE_SUFFIXES, is_image_file, strip_image_suffix
from clump_d2.data.tables import TABLE_SUFFIXES, read_table

logger = logging.getLogger(__name__)

#: Record keys copied from COCO ``images`` entries and catalogue rows when present.
OPTIONAL_KEYS = ("ra", "dec", "pixel_scale", "ref_x", "ref_y", "centre_x", "centre_y",
                 "psf_fwhm_px", "height", "width")


def records_from_folder(folder: str | os.PathLike) -> List[Dict]:
    """Every image under ``folder`` (recursively), sorted by relative path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"input folder {folder} does not exist")
    paths = sorted(p for p in folder.rglob("*")
                   if p.is_file() and is_image_file(p.name))
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {folder}")
    return [{"galaxy_id": strip_image_suffix(p.relative_to(folder).as_posix()),
             "file_name": str(p)} for p in paths]


def default_image_root(json_file: Path) -> Path:
    """Image root of a COCO JSON: ``<dataset>/images`` for the ``<dataset>/annotations/x.json``
    layout of ``clump_d2.data.datasets.builtin``, else the JSON's folder."""
    candidate = json_file.parent.parent / "images"
    if json_file.parent.name == "annotations" and candidate.is_dir():
        return candidate
    return json_file.parent


def records_from_coco(json_file: str | os.PathLike,
                      image_root: Optional[str | os.PathLike] = None) -> List[Dict]:
    """The ``images`` of a COCO JSON in file order; annotations are ignored (use
    ``tools/visualize.py`` or the evaluator to compare with them)."""
    json_file = Path(json_file)
    coco = json.loads(json_file.read_text())
    root = Path(image_root) if image_root is not None else default_image_root(json_file)
    records = []
    for image in coco["images"]:
        record = {"galaxy_id": str(image["id"]), "image_id": image["id"],
                  "file_name": str(root / image["file_name"])}
        record.update({k: image[k] for k in OPTIONAL_KEYS if k in image})
        records.append(record)
    return records


@dataclass
class CatalogueColumns:
    """Column names of a galaxy catalogue; None means "find it" among ``_CANDIDATES``.

    Attributes:
        id: galaxy id.
        image: image path (PNG/JPEG/FITS, or a FITS template with ``{band}``).
        band_files: ``{band: column}`` for one FITS file per band (instead of ``image``).
        ra, dec: degrees, of the image centre (or of ``ref_x``/``ref_y`` if present).
        pixel_scale: arcsec per pixel (multiplied by ``pixel_scale_factor``).
        psf_fwhm_px: PSF FWHM in pixels (merging and bulge radius).
        image_root: folder of relative image paths (default: the catalogue's folder).
    """

    id: Optional[str] = None
    image: Optional[str] = None
    band_files: Dict[str, str] = field(default_factory=dict)
    ra: Optional[str] = None
    dec: Optional[str] = None
    pixel_scale: Optional[str] = None
    pixel_scale_factor: float = 1.0
    psf_fwhm_px: Optional[str] = None
    image_root: Optional[str] = None


_CANDIDATES = {
    "id": ("galaxy_id", "id", "objid", "survey_id", "image_id", "name"),
    "image": ("file_name", "image", "image_path", "path", "filename", "file"),
    "ra": ("ra", "ra_deg", "raj2000"),
    "dec": ("dec", "dec_deg", "dej2000", "decj2000"),
    "pixel_scale": ("pixel_scale", "pixscale", "pixel_scale_arcsec"),
    "psf_fwhm_px": ("psf_fwhm_px",),
}


def _find_column(columns: Sequence[str], wanted: Optional[str], key: str, required: bool,
                 table: Path) -> Optional[str]:
    if wanted:
        if wanted not in columns:
            raise ValueError(f"catalogue {table} has no column {wanted!r} ({key}); its columns "
                             f"are {list(columns)}")
        return wanted
    lower = {c.lower(): c for c in columns}
    for name in _CANDIDATES[key]:
        if name in lower:
            return lower[name]
    if required:
        raise ValueError(f"catalogue {table}: no {key} column found (tried "
                         f"{_CANDIDATES[key]}); name it with --{key.replace('_', '-')}-column")
    return None


def _value(v):
    """numpy/pandas scalars -> Python; missing -> None."""
    if v is None:
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def records_from_catalogue(table_file: str | os.PathLike,
                           columns: Optional[CatalogueColumns] = None) -> List[Dict]:
    """One record per catalogue row, in row order.

    Raises:
        ValueError: naming the file, for missing columns or repeated ids.
    """
    table_file = Path(table_file)
    columns = columns or CatalogueColumns()
    df = read_table(table_file)
    cols = list(df.columns)
    id_col = _find_column(cols, columns.id, "id", True, table_file)
    image_col = None
    if not columns.band_files:
        image_col = _find_column(cols, columns.image, "image", True, table_file)
    for band, col in columns.band_files.items():
        _find_column(cols, col, f"band {band} file", True, table_file)
    ra_col = _find_column(cols, columns.ra, "ra", False, table_file)
    dec_col = _find_column(cols, columns.dec, "dec", False, table_file)
    scale_col = _find_column(cols, columns.pixel_scale, "pixel_scale", False, table_file)
    psf_col = _find_column(cols, columns.psf_fwhm_px, "psf_fwhm_px", False, table_file)
    root = Path(columns.image_root) if columns.image_root else table_file.parent

    def resolve(path) -> str:
        path = str(path).strip()
        return path if os.path.isabs(path) else str(root / path)

    records, seen = [], set()
    for row in df.to_dict("records"):
        galaxy_id = str(_value(row[id_col]))
        if galaxy_id in seen:
            raise ValueError(f"catalogue {table_file}: galaxy id {galaxy_id!r} repeats")
        seen.add(galaxy_id)
        record = {"galaxy_id": galaxy_id}
        if columns.band_files:
            band_files = {b: resolve(row[c]) for b, c in columns.band_files.items()}
            record["band_files"] = band_files
            record["file_name"] = next(iter(band_files.values()))
        else:
            record["file_name"] = resolve(row[image_col]) if _value(row[image_col]) else ""
        for key, col in (("ra", ra_col), ("dec", dec_col), ("psf_fwhm_px", psf_col)):
            if col is not None and _value(row[col]) is not None:
                record[key] = float(row[col])
        if scale_col is not None and _value(row[scale_col]) is not None:
            record["pixel_scale"] = float(row[scale_col]) * columns.pixel_scale_factor
        for key in ("ref_x", "ref_y", "centre_x", "centre_y"):
            if key in row and _value(row[key]) is not None:
                record[key] = float(row[key])
        records.append(record)
    if not records:
        raise ValueError(f"catalogue {table_file} has no rows")
    return records


def load_records(source: str | os.PathLike, image_root: Optional[str] = None,
                 columns: Optional[CatalogueColumns] = None) -> List[Dict]:
    """Galaxy records of ``source``: a folder of images, a COCO ``.json``, or a catalogue table
    (``.csv``/``.tsv``/``.parquet``/FITS table).

    Raises:
        ValueError: duplicated galaxy ids, or an input of unknown kind.
    """
    source = Path(source)
    if source.is_dir():
        records = records_from_folder(source)
    elif source.suffix.lower() == ".json":
        records = records_from_coco(source, image_root)
    elif source.name.lower().endswith(TABLE_SUFFIXES):
        if columns is None:
            columns = CatalogueColumns(image_root=image_root)
        elif image_root and not columns.image_root:
            columns.image_root = image_root
        records = records_from_catalogue(source, columns)
    else:
        raise ValueError(f"input {source}: expected a folder of images, a COCO .json or a "
                         f"catalogue ({', '.join(TABLE_SUFFIXES)})")
    ids = [r["galaxy_id"] for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError(f"input {source}: galaxy ids are not unique")
    logger.info("%d galaxies from %s", len(records), source)
    return records
