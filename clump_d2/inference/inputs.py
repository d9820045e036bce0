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
  (galaxy centre for the bulge flag), ``psf_fwhm_px``, ``height``/``width``, ``image_id``,
  ``host_class`` (text, e.g. spiral: the host group of the selection function's ``p_detect``).

Catalogue tables (CSV, Parquet, FITS) are read with ``clump_d2.data.tables.read_table``;
column names are options, with the common spellings found automatically.

Impossible sky values (RA outside [0, 360), Dec outside [-90, 90], a pixel scale that is not
> 0, text where a number belongs, or one of RA/Dec/pixel scale empty while the others are
given) do not stop a run and never give RA/Dec: the galaxy's record loses its ``ra``/``dec``/
``pixel_scale`` and gets :data:`SKY_PROBLEM_KEY` (the reason, naming file, row and column);
the catalogue lists the galaxy, searched as usual, with status ``bad_sky: <reason>`` and
no RA/Dec (as an unreadable image is listed with ``unreadable: <reason>``). Ids repeated
within an input (a folder holding ``x.png`` and ``x.jpg``, a catalogue repeating an id) are
an error naming both files or rows.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from clump_d2.data.files import read_json
from clump_d2.data.image_io import IMAGE_SUFFIXES, is_image_file, unique_image_ids
from clump_d2.data.sky import sky_problem  # noqa: F401  (one check, shared with convert)
from clump_d2.data.tables import TABLE_SUFFIXES, read_table

from .catalogue import SKY_PROBLEM_KEY

logger = logging.getLogger(__name__)

#: Record keys copied from COCO ``images`` entries and catalogue rows when present.
OPTIONAL_KEYS = ("ra", "dec", "pixel_scale", "ref_x", "ref_y", "centre_x", "centre_y",
                 "psf_fwhm_px", "height", "width", "host_class")
#: The record keys of the centre + pixel-scale sky route, dropped from a bad-sky record.
SKY_KEYS = ("ra", "dec", "pixel_scale")
def _apply_sky_check(record: Dict, values: Dict[str, Any], names: Dict[str, str],
                     where: str) -> None:
    """Set the record's sky keys from ``values`` or, if they are impossible, mark it."""
    problem = sky_problem(values, names)
    if problem is None:
        for key in SKY_KEYS:
            if key in values and _value(values[key]) is not None:
                record[key] = float(values[key])
        return
    for key in SKY_KEYS:
        record.pop(key, None)
    record[SKY_PROBLEM_KEY] = f"{where}, {problem}"


def records_from_folder(folder: str | os.PathLike) -> List[Dict]:
    """Every image under ``folder`` (recursively), sorted by relative path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"input folder {folder} does not exist")
    paths = sorted(p for p in folder.rglob("*")
                   if p.is_file() and is_image_file(p.name))
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {folder}")
    # x.png and x.jpg: which one is the galaxy? An error naming both (one check, shared with
    # the real-host builder).
    return [{"galaxy_id": galaxy_id, "file_name": str(p)}
            for galaxy_id, p in unique_image_ids(paths, folder).items()]


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
    coco = read_json(json_file, "COCO file")  # a truncated file: named, with line and column
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise ValueError(f"{json_file}: not a COCO file (no 'images' list)")
    root = Path(image_root) if image_root is not None else default_image_root(json_file)
    records = []
    for index, image in enumerate(coco["images"]):
        record = {"galaxy_id": str(image["id"]), "image_id": image["id"],
                  "file_name": str(root / image["file_name"])}
        record.update({k: image[k] for k in OPTIONAL_KEYS if k in image and k not in SKY_KEYS})
        _apply_sky_check(record, {k: image[k] for k in SKY_KEYS if k in image}, {},
                         f"{json_file} images[{index}] (id {image['id']})")
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
    """One record per catalogue row, in row order. Ids are the id column's exact text
    (19-digit integers and ``007`` survive; a blank cell elsewhere in the column changes none).

    Raises:
        ValueError: naming the file, for missing columns or repeated ids; naming the file,
            row and column for an empty id.
    """
    table_file = Path(table_file)
    columns = columns or CatalogueColumns()
    # Ids as the exact text of the file: read as numbers, an integer id column with a blank
    # cell turns float and 19-digit ids change.
    df = read_table(table_file, text_columns=(lambda c: c == columns.id) if columns.id else
                    (lambda c: c.lower() in _CANDIDATES["id"]))
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

    def number(row, col, where) -> float:
        try:
            return float(row[col])
        except (TypeError, ValueError):
            raise ValueError(f"catalogue {table_file} {where}, column {col!r}: {row[col]!r} "
                             "is not a number") from None

    sky_cols = {k: c for k, c in (("ra", ra_col), ("dec", dec_col), ("pixel_scale", scale_col))
                if c is not None}
    records, seen = [], {}
    for index, row in enumerate(df.to_dict("records")):
        raw_id = _value(row[id_col])
        if raw_id is None or not str(raw_id).strip():  # no id: the row cannot be told apart
            raise ValueError(f"catalogue {table_file} row {index + 1}, column {id_col!r}: the "
                             "galaxy id is empty; give every galaxy an id")
        galaxy_id = str(raw_id).strip()
        where = f"row {index + 1} (galaxy {galaxy_id})"  # 1-based data row, header excluded
        if galaxy_id in seen:
            raise ValueError(f"catalogue {table_file}: galaxy id {galaxy_id!r} repeats (rows "
                             f"{seen[galaxy_id]} and {index + 1}, column {id_col!r})")
        seen[galaxy_id] = index + 1
        record = {"galaxy_id": galaxy_id}
        if columns.band_files:
            band_files = {b: resolve(row[c]) for b, c in columns.band_files.items()}
            record["band_files"] = band_files
            record["file_name"] = next(iter(band_files.values()))
        else:
            record["file_name"] = resolve(row[image_col]) if _value(row[image_col]) else ""
        sky = {k: row[c] for k, c in sky_cols.items()}
        if "pixel_scale" in sky and sky_problem({"pixel_scale": sky["pixel_scale"]}) is None:
            sky["pixel_scale"] = float(sky["pixel_scale"]) * columns.pixel_scale_factor
        _apply_sky_check(record, sky, sky_cols, f"catalogue {table_file} {where}")
        if psf_col is not None and _value(row[psf_col]) is not None:
            record["psf_fwhm_px"] = number(row, psf_col, where)
        for key in ("ref_x", "ref_y", "centre_x", "centre_y"):
            if key in row and _value(row[key]) is not None:
                record[key] = number(row, key, where)
        # The host class (e.g. spiral / non_spiral) picks the selection function's host group.
        if "host_class" in row and _value(row["host_class"]) is not None:
            record["host_class"] = str(row["host_class"]).strip()
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
    first: Dict[str, Dict] = {}
    for r in records:
        if r["galaxy_id"] in first:
            raise ValueError(f"input {source}: galaxy id {r['galaxy_id']!r} repeats ("
                             f"{first[r['galaxy_id']].get('file_name')} and {r.get('file_name')})")
        first[r["galaxy_id"]] = r
    bad_sky = [r for r in records if SKY_PROBLEM_KEY in r]
    for r in bad_sky[:5]:
        logger.warning("impossible sky values, no RA/Dec for galaxy %s: %s", r["galaxy_id"],
                       r[SKY_PROBLEM_KEY])
    if bad_sky:
        logger.warning("%d of %d galaxies of %s have impossible sky values: listed with status "
                       "bad_sky and no RA/Dec", len(bad_sky), len(records), source)
    logger.info("%d galaxies from %s", len(records), source)
    return records
