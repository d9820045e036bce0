"""A sky catalogue of clumps (RA/Dec per clump) + a galaxy table -> clump boxes in pixels.

The form of ``gzh_s82_clumps/`` (Mehta et al. 2021): a clump catalogue with one row per clump
(its galaxy's id, ``clump_ra``, ``clump_dec``, fluxes, the PSF FWHM) and a galaxy table with
one row per galaxy (id, centre ``RA``/``DEC``, the pixel scale, the image file). Every
column name is an option (:class:`CatalogOptions`).

Sky -> pixel, per galaxy:

* the image is a FITS file with a celestial WCS: that WCS is used (always, when present);
* otherwise a gnomonic (TAN) projection centred on the galaxy's RA/Dec at the image centre
  ``(W/2, H/2)``, with pixel scale ``pixel_scale_factor x <pixel_scale_column>`` arcsec/px
  (Galaxy Zoo cutouts: ``0.02 x PETROR90_R``) or a constant ``pixel_scale``; north up and
  east left by default (``east_left`` / ``north_up`` / ``rotation_deg``, as in
  :mod:`clump_d2.data.sky`, which builds that WCS). For the GZH JPEGs this is
  the mapping of their SOURCE.md (``col = 212 - dx``, ``row = 212 - dy``) up to the half-pixel
  convention: here pixel ``i`` spans ``[i, i + 1)``, so the image centre is ``x = W/2``.

Every band with a clump flux column (``clump_flux_<b>``) gives the clump's
``flux_frac_<b>`` = clump flux / host flux (``gal_flux_<b>``), the quantity by which the
paper defines giant clumps (u band); a clump without a positive host flux has none (counted
as a note ``no_flux_frac_<b>``).

The box is a square of side 2.5 x PSF FWHM (``psf_fwhm_column`` in arcsec / pixel scale,
else ``psf_fwhm_arcsec``); the edge rule of :mod:`clump_d2.structures` applies. Clumps whose
galaxy is not in the table, whose image is missing or unreadable, whose image name leaves the
images folder (``../x.jpg``, absolute: ``unsafe_file_name``, naming row and name), or with
non-finite RA/Dec
are dropped and counted (``nan_coordinates``; RA outside [0, 360) or Dec outside [-90, 90]:
``impossible_coordinates``, each naming file, row and column); galaxies of the table without
clumps are kept as negatives. A galaxy whose centre RA/Dec is not a sky position (text, NaN,
RA outside [0, 360), |Dec| > 90: :func:`clump_d2.data.sky.sky_problem`, the check the
catalogue's inputs make) is dropped (``bad_centre``)
with its clumps (``galaxy_bad_centre``), and one without a positive pixel scale
(``bad_pixel_scale``) likewise: neither can be placed, so neither is a negative.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from astropy.wcs import WCS
from tqdm import tqdm

from clump_d2.structures import BOX_SIDE_PER_FWHM, fit_box_to_frame, square_box, xyxy_to_xywh
from .coco_writer import CocoBuilder, ConversionReport, is_safe_relative_name
from clump_d2.data.fits_io import read_fits_header
from clump_d2.data.image_io import band_file, is_fits, read_display_image
from clump_d2.data.sky import sky_problem, sky_to_pixel, tangent_wcs
from clump_d2.data.tables import read_table

logger = logging.getLogger(__name__)


@dataclass
class CatalogOptions:
    """Column names (defaults: the GZH Stripe 82 tables) and the pixel mapping."""

    clump_galaxy_column: str = "id"  # clump catalogue: id of the clump's galaxy
    clump_ra_column: str = "clump_ra"  # degrees
    clump_dec_column: str = "clump_dec"  # degrees
    clump_id_column: Optional[str] = "clump_id"  # kept on the annotation
    galaxy_id_column: str = "survey_id"  # galaxy table: id (join key)
    galaxy_ra_column: str = "RA"  # degrees, the image centre
    galaxy_dec_column: str = "DEC"
    pixel_scale_column: Optional[str] = "PETROR90_R"  # arcsec/px = factor x this column
    pixel_scale_factor: float = 0.02  # Galaxy Zoo cutouts: 0.02 x Petrosian R90
    pixel_scale: Optional[float] = None  # constant arcsec/px (used when no column is given)
    image_column: Optional[str] = None  # galaxy table column naming the image file
    image_template: str = "objID{galaxy_id:0>20}.jpg"  # used when image_column is None
    reference_band: str = "r"  # fills "{band}" in per-band FITS names, to read the WCS
    psf_fwhm_column: Optional[str] = "psf_fwhm_r"  # arcsec; clump catalogue or galaxy table
    psf_fwhm_arcsec: float = 1.4  # when the column is absent or not finite
    odd_column: Optional[str] = None  # truthy values -> odd_clump (default: all clump)
    flux_column: Optional[str] = "clump_flux_r"  # kept as "flux"
    host_flux_column: Optional[str] = "gal_flux_r"  # flux / host flux kept as "flux_fraction"
    keep_columns: Sequence[str] = ()  # more clump-catalogue columns copied verbatim
    # Per-band flux fractions kept as "flux_frac_<band>" = clump flux / host flux (the
    # paper's giant-clump definition uses the u band). Column names with "{band}"; the host
    # column is looked up in the clump catalogue, then in the galaxy table.
    band_flux_column: Optional[str] = "clump_flux_{band}"  # None: no per-band fractions
    band_host_flux_column: str = "gal_flux_{band}"
    # Bands to keep; None: every band whose clump column exists (the "{band}" part of each
    # clump-catalogue column matching band_flux_column, e.g. u, g, r, i, z for GZH S82).
    flux_bands: Optional[Sequence[str]] = None
    # Orientation of images without a WCS: the options of clump_d2.data.sky.
    east_left: bool = True  # RA increases to the left (the sky as seen)
    north_up: bool = True  # Dec increases upwards (towards row 0)
    rotation_deg: float = 0.0  # position angle of "up", degrees from north through east


def convert_catalog(clump_catalog: str | os.PathLike, galaxy_table: str | os.PathLike,
                    image_dir: str | os.PathLike, options: Optional[CatalogOptions] = None,
                    ) -> Tuple[CocoBuilder, ConversionReport]:
    """Place the clumps of a sky catalogue on their galaxies' images (see module docstring).

    Tallies: ``clumps`` (rows of the catalogue), ``galaxies`` (rows of the galaxy table),
    ``boxes`` (placed clumps through the edge rule; ``clumps`` kept = ``boxes`` read).
    """
    o = options or CatalogOptions()
    image_dir = Path(image_dir)
    if not image_dir.is_dir():  # a typo would drop every galaxy as missing_image
        raise FileNotFoundError(f"image folder {image_dir} does not exist")
    # The join keys as the files' exact text (a blank cell must not turn 19-digit ids float).
    clumps = read_table(clump_catalog, text_columns=[o.clump_galaxy_column])
    galaxies = read_table(galaxy_table, text_columns=[o.galaxy_id_column])
    _require(clumps, clump_catalog, [o.clump_galaxy_column, o.clump_ra_column,
                                     o.clump_dec_column])
    _require(galaxies, galaxy_table, [o.galaxy_id_column, o.galaxy_ra_column,
                                      o.galaxy_dec_column]
             + ([o.pixel_scale_column] if o.pixel_scale_column else [])
             + ([o.image_column] if o.image_column else []))
    report = ConversionReport("catalog", [clump_catalog, galaxy_table],
                              params={**asdict(o), "keep_columns": list(o.keep_columns),
                                      "image_dir": os.fspath(image_dir)})
    clump_t, gal_t, box_t = (report.tally(n) for n in ("clumps", "galaxies", "boxes"))
    bands = flux_fraction_bands(clumps.columns, o)
    report.info["flux_fraction_bands"] = list(bands)
    gal_ids = galaxies[o.galaxy_id_column].map(_as_key)
    blank = gal_ids[gal_ids == ""]
    if len(blank):
        raise ValueError(f"{galaxy_table}: row {int(blank.index[0]) + 1}, column "
                         f"{o.galaxy_id_column!r}: the galaxy id is empty; give every galaxy "
                         "an id")
    dup = gal_ids[gal_ids.duplicated(keep=False)]
    if len(dup):
        raise ValueError(f"{galaxy_table}: galaxy id {dup.iloc[0]} appears on rows "
                         f"{[int(i) + 1 for i in dup.index[:5]]}; each galaxy must appear once")
    gal_rows = {gid: row for gid, row in zip(gal_ids, galaxies.to_dict("records"))}
    gal_line = {gid: i + 1 for i, gid in enumerate(gal_ids)}  # 1-based row, for messages
    clump_rows: Dict[str, List[Tuple[int, Dict[str, Any]]]] = {}
    clump_t.add_read(len(clumps))
    for index, (gid, row) in enumerate(zip(clumps[o.clump_galaxy_column].map(_as_key),
                                           clumps.to_dict("records"))):
        if gid not in gal_rows:
            clump_t.drop("unknown_galaxy")
            logger.warning("%s: row %d: galaxy %s is not in %s; clump dropped", clump_catalog,
                           index + 1, gid, galaxy_table)
            continue
        clump_rows.setdefault(gid, []).append((index, row))
    coco = CocoBuilder(info={"description": f"clumps of {Path(clump_catalog).name} on the "
                             f"images of {Path(galaxy_table).name}"})
    gal_t.add_read(len(gal_rows))
    for image_id, gid in enumerate(tqdm(sorted(gal_rows), desc="placing clumps",
                                        disable=len(gal_rows) < 500), start=1):
        g = gal_rows[gid]
        rows = clump_rows.get(gid, [])
        where = f"{galaxy_table}: row {gal_line[gid]} (galaxy {gid})"
        ra0, dec0 = _float(g[o.galaxy_ra_column]), _float(g[o.galaxy_dec_column])
        problem = _position_problem(g, o.galaxy_ra_column, o.galaxy_dec_column)
        if problem:
            # Without its centre a galaxy cannot be placed: not a clump-free negative.
            gal_t.drop("bad_centre")
            clump_t.drop("galaxy_bad_centre", len(rows))
            logger.warning("%s: columns %r/%r = (%r, %r) are not a sky position (%s); galaxy "
                           "dropped with its %d clumps", where, o.galaxy_ra_column,
                           o.galaxy_dec_column, g[o.galaxy_ra_column], g[o.galaxy_dec_column],
                           problem, len(rows))
            continue
        try:
            file_name = (str(g[o.image_column]).strip() if o.image_column
                         else o.image_template.format(**{**_fmt(g), "galaxy_id": gid}))
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"{where}: image template {o.image_template!r} cannot be filled "
                             f"({type(e).__name__}: {e}); columns are {list(g)[:30]}") from e
        if not is_safe_relative_name(file_name):  # "../x.jpg", "/x.jpg": never read or placed
            gal_t.drop("unsafe_file_name")
            clump_t.drop("unsafe_file_name", len(rows))
            logger.warning("%s, column %r: image name %r leaves the images folder %s; dropped "
                           "with its %d clumps", where, o.image_column or "(image_template)",
                           file_name, image_dir, len(rows))
            continue
        try:
            width, height, wcs, source = _image_geometry(image_dir, file_name, g, o)
        except (OSError, ValueError) as e:
            reason = ("missing_image" if isinstance(e, FileNotFoundError) else "bad_pixel_scale"
                      if isinstance(e, _BadScale) else "unreadable_image")
            gal_t.drop(reason)
            clump_t.drop(reason, len(rows))
            logger.warning("%s: %s; dropped with its %d clumps", where, e, len(rows))
            continue
        scale = _pixel_scale_of(wcs) if source == "fits_wcs" else _scale(g, o)
        coco.add_image(image_id, file_name, width, height, galaxy_id=gid, ra=ra0, dec=dec0,
                       pixel_scale_arcsec=scale, wcs_source=source)
        gal_t.keep()
        for index, row in rows:
            ra, dec = _float(row[o.clump_ra_column]), _float(row[o.clump_dec_column])
            problem = _position_problem(row, o.clump_ra_column, o.clump_dec_column)
            if problem:  # text/NaN, or out of range (RA 400): never placed on an image
                reason = ("nan_coordinates" if not (math.isfinite(ra) and math.isfinite(dec))
                          else "impossible_coordinates")
                clump_t.drop(reason)
                logger.warning("%s: row %d: columns %r/%r = (%r, %r): %s; clump dropped "
                               "(%s)", clump_catalog, index + 1, o.clump_ra_column,
                               o.clump_dec_column, row[o.clump_ra_column],
                               row[o.clump_dec_column], problem, reason)
                continue
            clump_t.keep()
            box_t.add_read()
            x, y = (float(v) for v in sky_to_pixel(wcs, ra, dec))
            psf = _psf_arcsec(row, g, o)
            box = square_box(x, y, BOX_SIDE_PER_FWHM * psf / scale)
            fitted, status = fit_box_to_frame(box, width, height, frame="image")
            if fitted is None:
                box_t.drop(status)
                continue
            if status == "clipped":
                box_t.note("clipped")
            odd = bool(o.odd_column and _truthy(row.get(o.odd_column)))
            attrs = {"ra": ra, "dec": dec, "x": x, "y": y, "psf_fwhm_px": psf / scale,
                     "clipped": status == "clipped", "source_row": index}
            if o.clump_id_column and o.clump_id_column in row:
                attrs["clump_id"] = row[o.clump_id_column]
            if o.flux_column and o.flux_column in row:
                attrs["flux"] = _float(row[o.flux_column])
                host = row.get(o.host_flux_column) if o.host_flux_column else None
                host = host if host is not None else g.get(o.host_flux_column)
                if host is not None and _float(host) > 0:
                    attrs["flux_fraction"] = attrs["flux"] / _float(host)
            for band in bands:
                frac = band_flux_fraction(row, g, band, o)
                if math.isfinite(frac):
                    attrs[f"flux_frac_{band}"] = frac
                else:  # no usable host flux: the clump has no fraction (counted, not guessed)
                    box_t.note(f"no_flux_frac_{band}")
            for col in o.keep_columns:
                if col in row:
                    attrs[col] = row[col]
            coco.add_box(image_id, xyxy_to_xywh(fitted), "odd_clump" if odd else "clump",
                         **attrs)
            box_t.keep()
    report.check()
    return coco, report


def flux_fraction_bands(columns: Sequence[str], o: CatalogOptions) -> List[str]:
    """The bands of ``flux_frac_<band>``: ``o.flux_bands``, else every band whose clump flux
    column (``o.band_flux_column`` with ``{band}`` filled) is among ``columns``."""
    if not o.band_flux_column:
        return []
    if o.flux_bands is not None:
        return [str(b) for b in o.flux_bands]
    head, sep, tail = o.band_flux_column.partition("{band}")
    if not sep:
        raise ValueError(f"band_flux_column {o.band_flux_column!r} has no '{{band}}'")
    return [c[len(head):len(c) - len(tail)] for c in map(str, columns)
            if c.startswith(head) and c.endswith(tail) and len(c) > len(head) + len(tail)]


def band_flux_fraction(row: Dict[str, Any], g: Dict[str, Any], band: str,
                       o: CatalogOptions) -> float:
    """Clump flux / host flux in ``band`` (NaN when either is missing, not finite, or the
    host flux is not positive)."""
    clump = _float(row.get(o.band_flux_column.format(band=band)))
    host_col = o.band_host_flux_column.format(band=band)
    host = _float(row[host_col] if host_col in row else g.get(host_col))
    if not (math.isfinite(clump) and math.isfinite(host) and host > 0):
        return float("nan")
    return clump / host


def _image_geometry(image_dir: Path, file_name: str, g: Dict[str, Any], o: CatalogOptions):
    """(width, height, wcs, "fits_wcs" | "tangent") of a galaxy's image."""
    path = image_dir / band_file(file_name, None, o.reference_band)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} not found")
    if is_fits(path.name):
        header, shape = read_fits_header(path)
        height, width = shape[-2], shape[-1]
        wcs = WCS(header, naxis=2)
        if wcs.has_celestial:
            return width, height, wcs.celestial, "fits_wcs"
    else:
        try:
            # The network's reader decodes everything (a truncated file fails here, not in
            # training) and gives the size the network sees (EXIF orientation applied).
            height, width = read_display_image(path).shape[:2]
        except (OSError, ValueError) as e:
            raise ValueError(f"image {path} is unreadable ({e})") from e
    scale = _scale(g, o)
    wcs = tangent_wcs(float(g[o.galaxy_ra_column]), float(g[o.galaxy_dec_column]), scale,
                      width, height, north_up=o.north_up, east_left=o.east_left,
                      rotation_deg=float(o.rotation_deg))
    return width, height, wcs, "tangent"


def _scale(g: Dict[str, Any], o: CatalogOptions) -> float:
    if o.pixel_scale_column:
        scale = o.pixel_scale_factor * _float(g[o.pixel_scale_column])
    elif o.pixel_scale:
        scale = float(o.pixel_scale)
    else:
        raise ValueError("a pixel scale is needed: give pixel_scale_column or pixel_scale")
    if not (math.isfinite(scale) and scale > 0):
        raise _BadScale(f"pixel scale {scale} arcsec/px (column {o.pixel_scale_column!r}) is "
                        "not positive")
    return scale


class _BadScale(ValueError):
    """A galaxy's pixel scale is not a positive number."""


def _pixel_scale_of(wcs: WCS) -> float:
    from astropy.wcs.utils import proj_plane_pixel_scales

    return float(np.mean(proj_plane_pixel_scales(wcs)) * 3600.0)


def _psf_arcsec(row: Dict[str, Any], g: Dict[str, Any], o: CatalogOptions) -> float:
    col = o.psf_fwhm_column
    for source in (row, g):
        if col and col in source and math.isfinite(_float(source[col])) and _float(
                source[col]) > 0:
            return _float(source[col])
    return o.psf_fwhm_arcsec


def _position_problem(row: Dict[str, Any], ra_column: str, dec_column: str) -> Optional[str]:
    """Why ``row``'s RA/Dec is not a sky position (the one check of
    :func:`clump_d2.data.sky.sky_problem`, naming the column), or None."""
    problem = sky_problem({"ra": row[ra_column], "dec": row[dec_column]},
                          {"ra": ra_column, "dec": dec_column})
    if problem is None and not (math.isfinite(_float(row[ra_column]))
                                and math.isfinite(_float(row[dec_column]))):
        problem = f"columns {ra_column!r} and {dec_column!r} are empty"
    return problem


def _require(df, path, columns) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; columns are "
                         f"{list(df.columns)[:30]}...")


def _fmt(g: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in g.items() if isinstance(k, str) and k.isidentifier()}


def _as_key(v) -> str:
    """Ids as text ("" for a missing one), without a spurious ``.0`` from a float column."""
    if v is None or v is pd.NA or (isinstance(v, (float, np.floating)) and math.isnan(v)):
        return ""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (bytes, np.bytes_)):
        return v.decode().strip()
    return str(v).strip()


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _truthy(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "odd", "odd_clump")
    try:
        return bool(v) and not (isinstance(v, float) and math.isnan(v))
    except (TypeError, ValueError):
        return False
