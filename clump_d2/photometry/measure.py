"""Measure clumps: host segment, forced photometry in every band, flux ratios, giant flags.

:func:`measure_image` measures given positions on one loaded image; :func:`measure_clumps`
measures a table of clump positions (``galaxy_id``, ``x``, ``y`` in Detectron2's continuous
pixel coordinates, an image column or per-band FITS columns, ``psf_fwhm_px``) and returns
every input row, in order, with the photometry columns and a ``status``.

Columns (``<b>`` for each band; display images have bands ``R``, ``G``, ``B``):

=======================  ======================================================================
``flux_<b>``             clump flux (aperture-corrected), in ``flux_unit``
``flux_err_<b>``         its error from the sky noise, in ``flux_unit``
``flux_psf_<b>``         PSF-fit flux (Gaussian PSF, joint with the background), ``flux_unit``
``mag_<b>``              AB magnitude (NaN without a zero point or for flux <= 0), mag
``mag_err_<b>``          its error, mag
``host_flux_<b>``        host segment's flux, in ``flux_unit``
``flux_ratio_<b>``       clump / host flux (fraction, not per cent)
``colour_<a>_<b>``       ``mag_a - mag_b`` of neighbouring bands, mag
``photometry_kind``      ``fits_ab`` (zero points known), ``fits`` (stored units), ``display``
``flux_unit``            the flux unit (``stored units`` when the header names none)
``aperture_radius_px``   aperture radius, px; ``aperture_correction`` the encircled fraction
``in_host``              the position lies on the host's segment
``phot_flag_nan``        a NaN/inf pixel inside the aperture (fluxes NaN)
``phot_flag_partial``    the aperture crosses the image edge
``giant_band``           band of the flags (``"B (display)"`` for RGB channels; with the
                         display calibration ``"u (calibrated from display)"``)
``flux_ratio_u_est``     display input with ``display_giant_calibration``: the u-band
                         clump/host fraction predicted from the display ratios
                         (:mod:`clump_d2.photometry.calibration`); absent otherwise
``is_giant_<p>pct``      ``flux_ratio`` in ``giant_band`` >= p % (calibrated display input:
                         ``flux_ratio_u_est`` >= p %)
``status``               ``ok``, or why not: ``nan_in_aperture``, ``partial_aperture``,
                         ``no_host``, ``outside_host``, ``bad_position``, ``no_psf``,
                         ``error: <message naming the file>``
=======================  ======================================================================
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from clump_d2.data.image_io import DEFAULT_MAX_PIXELS
from clump_d2.data.tables import read_table
from clump_d2.photometry.apertures import (
    ApertureOptions,
    ab_magnitude,
    band_sky,
    colour_columns,
    flux_ratios,
    forced_photometry,
    host_fluxes,
)
from clump_d2.photometry.calibration import (
    CALIBRATED_BAND_LABEL,
    DEFAULT_DISPLAY_GIANT_CALIBRATION,
    U_ESTIMATE_COLUMN,
    DisplayGiantCalibration,
)
from clump_d2.photometry.flags import (
    DEFAULT_THRESHOLDS_PCT,
    flag_name,
    giant_band,
    giant_band_label,
    giant_flags,
)
from clump_d2.photometry.images import PhotometryImage, load_photometry_image
from clump_d2.photometry.io import write_table
from clump_d2.photometry.segmentation import HostSegment, detection_image, segment_host

logger = logging.getLogger(__name__)

#: Candidate names of the image column of a clump table.
IMAGE_COLUMNS = ("file_name", "image", "image_path", "path", "filename", "file")


@dataclass
class PhotometryOptions:
    """Everything photometry needs (the ``PHOTOMETRY.*`` and ``INPUT.FITS`` keys)."""

    aperture: ApertureOptions = field(default_factory=ApertureOptions)
    host_nsigma: float = 1.5
    host_npixels: int = 10
    host_deblend: bool = False
    host_deblend_contrast: float = 0.3
    detection_band: str = ""
    drop_outside_host: bool = False
    giant_band: str = ""
    giant_thresholds_pct: Tuple[float, ...] = DEFAULT_THRESHOLDS_PCT
    display_q: float = 10.0
    # PNG/JPEG only: (a, b[, c]) of the u-band calibration of the giant flags; (): raw B flags
    display_giant_calibration: Tuple[float, ...] = DEFAULT_DISPLAY_GIANT_CALIBRATION
    bands: Tuple[str, ...] = ()  # FITS bands to measure (empty: every plane of a cube)
    cube_bands: Tuple[str, ...] = ()
    hdu: int = -1
    max_pixels: int = DEFAULT_MAX_PIXELS  # INPUT.MAX_PIXELS: larger images are not read

    @classmethod
    def from_config(cls, cfg) -> "PhotometryOptions":
        p = cfg.PHOTOMETRY
        return cls(
            aperture=ApertureOptions(p.APERTURE_FWHM, tuple(p.ANNULUS_FWHM), p.MASK_FWHM,
                                     p.BACKGROUND),
            host_nsigma=p.HOST_NSIGMA, host_npixels=p.HOST_NPIXELS, host_deblend=p.HOST_DEBLEND,
            host_deblend_contrast=p.HOST_DEBLEND_CONTRAST, detection_band=p.DETECTION_BAND,
            drop_outside_host=p.DROP_OUTSIDE_HOST, giant_band=p.GIANT_BAND,
            giant_thresholds_pct=tuple(p.GIANT_THRESHOLDS_PCT), display_q=p.DISPLAY_Q,
            display_giant_calibration=tuple(p.DISPLAY_GIANT_CALIBRATION),
            bands=tuple(cfg.INPUT.FITS.BANDS), cube_bands=tuple(cfg.INPUT.FITS.CUBE_BANDS),
            hdu=cfg.INPUT.FITS.HDU, max_pixels=int(cfg.INPUT.MAX_PIXELS))


def display_calibration(options: PhotometryOptions, band_names: Sequence[str]
                        ) -> Optional[DisplayGiantCalibration]:
    """The u-band calibration of display flags, or None: none configured, ``giant_band`` set
    explicitly (the user asked for raw ratios in that band), or no ``B``/``R`` channel."""
    if options.giant_band or not {"B", "R"} <= set(band_names):
        return None
    return DisplayGiantCalibration.from_sequence(options.display_giant_calibration)


def host_segment_of(image: PhotometryImage, fwhm_px: float,
                    centre: Optional[Tuple[float, float]],
                    options: PhotometryOptions) -> HostSegment:
    """The host segment on the detection image (FITS: band sum or ``detection_band``;
    display: the linearised luminance, the mean of the channels)."""
    if image.display:
        det = np.asarray(image.bands, dtype=np.float64).mean(axis=0)
    else:
        det = detection_image(image.bands, image.band_names, options.detection_band)
    return segment_host(det, fwhm_px, centre, options.host_nsigma, options.host_npixels,
                        options.host_deblend, options.host_deblend_contrast)


def measure_image(image: PhotometryImage, xy: np.ndarray, fwhm_px, centre=None,
                  options: Optional[PhotometryOptions] = None,
                  segment: Optional[HostSegment] = None) -> pd.DataFrame:
    """Photometry columns (module docstring) for positions ``xy`` (N, 2) on one image.

    Args:
        image: the loaded image.
        xy: continuous pixel positions.
        fwhm_px: PSF FWHM in pixels, scalar or (N,).
        centre: galaxy centre (x, y) for the host segment; None: the image centre.
        options: photometry options.
        segment: a host segment computed before (else computed here).
    """
    o = options or PhotometryOptions()
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    n = len(xy)
    fwhm = np.broadcast_to(np.asarray(fwhm_px, dtype=np.float64), (n,)).copy()
    good = np.isfinite(xy).all(axis=1) & np.isfinite(fwhm) & (fwhm > 0)
    seg_fwhm = float(np.median(fwhm[good])) if good.any() else 4.0
    if segment is None:
        segment = host_segment_of(image, seg_fwhm, centre, o)
    sky, rms = band_sky(image.bands, segment.sky_pixels)
    phot = forced_photometry(image.bands - sky[:, None, None], np.where(good[:, None], xy, np.nan),
                             np.where(good, fwhm, 1.0), rms, o.aperture)
    host_flux, _ = host_fluxes(image.bands, segment.mask, sky, rms)
    ratios = flux_ratios(phot.flux, host_flux)
    names = list(image.band_names)
    cols: Dict[str, object] = {}
    mags = {}
    for c, b in enumerate(names):
        cols[f"flux_{b}"] = phot.flux[c]
        cols[f"flux_err_{b}"] = phot.flux_err[c]
        cols[f"flux_psf_{b}"] = phot.flux_psf[c]
        mag, mag_err = ab_magnitude(phot.flux[c], phot.flux_err[c], image.zero_points[c])
        cols[f"mag_{b}"], cols[f"mag_err_{b}"] = mag, mag_err
        mags[b] = mag
        cols[f"host_flux_{b}"] = np.full(n, host_flux[c])
        cols[f"flux_ratio_{b}"] = ratios[c]
    if not image.display and any(zp is not None for zp in image.zero_points):
        cols.update(colour_columns(mags, names))
    if image.display:
        kind = "display"
    elif all(zp is not None for zp in image.zero_points):
        kind = "fits_ab"
    else:
        kind = "fits"
    units = sorted(set(image.units))
    unit = units[0] if len(units) == 1 else "mixed (" + ", ".join(
        f"{b}: {u}" for b, u in zip(names, image.units)) + ")"
    cols["photometry_kind"] = [kind] * n
    cols["flux_unit"] = [unit] * n
    cols["aperture_radius_px"] = phot.radius_px
    cols["aperture_correction"] = phot.aperture_correction
    in_host = segment.contains(xy[:, 0], xy[:, 1])
    cols["in_host"] = in_host
    cols["phot_flag_nan"] = phot.nan_flag
    cols["phot_flag_partial"] = phot.partial_flag
    band = giant_band(names, o.giant_band, image.display)
    calibration = display_calibration(o, names) if image.display else None
    if calibration is not None:
        # Display ratios read ~0.4 dex below the paper's u-band fractions: flag the u-band
        # fraction predicted from them, so that the flags mean what the paper means.
        u_est = calibration.predict(ratios[names.index("B")], ratios[names.index("R")])
        cols[U_ESTIMATE_COLUMN] = u_est
        cols["giant_band"] = [CALIBRATED_BAND_LABEL] * n
        cols.update(giant_flags(u_est, o.giant_thresholds_pct))
    else:
        cols["giant_band"] = [giant_band_label(band, image.display)] * n
        cols.update(giant_flags(ratios[names.index(band)], o.giant_thresholds_pct))
    status = np.full(n, "ok", dtype=object)
    status[~in_host & o.drop_outside_host] = "outside_host"
    if not segment.found:
        status[:] = "no_host"
    status[phot.partial_flag] = "partial_aperture"
    status[phot.nan_flag] = "nan_in_aperture"
    status[~(np.isfinite(fwhm) & (fwhm > 0))] = "no_psf"
    status[~np.isfinite(xy).all(axis=1)] = "bad_position"
    cols["status"] = status
    df = pd.DataFrame(cols)
    bad = ~good
    if bad.any():  # no measurement for rows without a position or PSF
        for col in df.columns:
            if col.startswith(("flux_", "mag_", "colour_")):
                df.loc[bad, col] = np.nan
            elif col.startswith("is_giant_"):
                df.loc[bad, col] = False
    return df


def photometry_units(columns: Sequence[str], flux_unit: str) -> Dict[str, str]:
    """Unit of each photometry column (for a FITS header)."""
    units = {}
    for col in columns:
        if col.startswith(("flux_err_", "host_flux_")) or (
                col.startswith("flux_") and not col.startswith(("flux_ratio_", "flux_unit"))):
            units[col] = flux_unit
        elif col.startswith(("mag_", "colour_")):
            units[col] = "mag"
        elif col == "aperture_radius_px":
            units[col] = "pix"
    return units


def _numbers(column: pd.Series, source: str, name: str) -> np.ndarray:
    """``column`` as float64 (empty cells NaN); text is a ValueError naming the file, the
    1-based data row and the column (a bare "could not convert string to float" names none)."""
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    text = column.notna().to_numpy() & np.isnan(values)
    if text.any():
        row = int(np.flatnonzero(text)[0])
        raise ValueError(f"{source}: row {row + 1}, column {name!r}: {column.iloc[row]!r} is not "
                         f"a number ({int(text.sum())} such rows)")
    return values


def _find(columns: Sequence[str], wanted: Optional[str], candidates: Sequence[str],
          what: str, required: bool) -> Optional[str]:
    if wanted:
        if wanted not in columns:
            raise ValueError(f"clump table has no column {wanted!r} ({what}); columns: "
                             f"{list(columns)}")
        return wanted
    lower = {c.lower(): c for c in columns}
    for name in candidates:
        if name in lower:
            return lower[name]
    if required:
        raise ValueError(f"clump table: no {what} column (tried {list(candidates)})")
    return None


def measure_clumps(table: pd.DataFrame, options: Optional[PhotometryOptions] = None,
                   image_column: Optional[str] = None,
                   band_columns: Optional[Dict[str, str]] = None,
                   image_root: Optional[str | os.PathLike] = None,
                   psf_fwhm_px: float = 0.0, id_column: str = "galaxy_id",
                   x_column: str = "x", y_column: str = "y",
                   loader: Optional[Callable[[Dict], PhotometryImage]] = None,
                   on_error: str = "status", show_progress: bool = False,
                   source: str = "clump table") -> pd.DataFrame:
    """Measure every clump of ``table``; returns its rows, in order, with photometry columns.

    Args:
        table: one row per clump: ``id_column``, ``x_column``, ``y_column`` (continuous
            pixels), the image (``image_column``: a path or a FITS ``{band}`` template; or
            ``band_columns`` ``{band: column}`` of per-band FITS paths), optionally
            ``psf_fwhm_px`` and ``centre_x``/``centre_y`` (galaxy centre; default the image
            centre). Rows of one galaxy share one image.
        options: photometry options (bands, apertures, flags).
        image_root: folder of relative image paths.
        psf_fwhm_px: PSF FWHM (px) for rows without a ``psf_fwhm_px`` value (0: none).
        loader: ``record -> PhotometryImage`` instead of reading ``file_name`` / ``band_files``
            (a record has ``galaxy_id``, ``file_name``, ``band_files``).
        on_error: ``"status"`` (a row's ``status`` says ``error: ...``, naming the file) or
            ``"raise"``.
        show_progress: a tqdm bar over galaxies.
        source: what ``table`` was read from (its file), named in errors.

    Raises:
        ValueError: missing columns (naming them); text in the position columns (naming
            ``source``, the row and the column); with ``on_error="raise"``, image errors.
    """
    o = options or PhotometryOptions()
    if on_error not in ("status", "raise"):
        raise ValueError(f"on_error must be 'status' or 'raise', not {on_error!r}")
    cols = list(table.columns)
    for c in (id_column, x_column, y_column):
        _find(cols, c, (), c, True)
    image_col = None
    if not band_columns and loader is None:
        image_col = _find(cols, image_column, IMAGE_COLUMNS, "image", True)
    for band, c in (band_columns or {}).items():
        _find(cols, c, (), f"band {band} file", True)
    psf_col = "psf_fwhm_px" if "psf_fwhm_px" in cols else None
    root = os.fspath(image_root) if image_root else None

    def resolve(path) -> str:
        path = str(path).strip()
        return path if (root is None or os.path.isabs(path)) else os.path.join(root, path)

    table = table.reset_index(drop=True)
    xy = np.stack([_numbers(table[c], source, c) for c in (x_column, y_column)], axis=1)
    fwhm = (pd.to_numeric(table[psf_col], errors="coerce").to_numpy(dtype=np.float64)
            if psf_col else np.full(len(table), np.nan))
    fwhm = np.where(np.isfinite(fwhm) & (fwhm > 0), fwhm, psf_fwhm_px or np.nan)
    parts: List[pd.DataFrame] = []
    groups = table.groupby(table[id_column].astype(str), sort=False).indices
    iterator = groups.items()
    if show_progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(groups), desc="photometry", unit="galaxy")
    for galaxy_id, idx in iterator:
        first = table.iloc[idx[0]]
        record = {"galaxy_id": galaxy_id}
        if band_columns:
            record["band_files"] = {b: resolve(first[c]) for b, c in band_columns.items()}
            record["file_name"] = next(iter(record["band_files"].values()))
        elif image_col is not None:
            record["file_name"] = resolve(first[image_col])
        centre = None
        if "centre_x" in cols and "centre_y" in cols and np.isfinite(
                [first["centre_x"], first["centre_y"]]).all():
            centre = (float(first["centre_x"]), float(first["centre_y"]))
        try:
            if loader is not None:
                image = loader(record)
            else:
                image = load_photometry_image(
                    record["file_name"], o.bands, record.get("band_files"), o.cube_bands,
                    o.hdu, o.display_q, max_pixels=o.max_pixels)
            part = measure_image(image, xy[idx], fwhm[idx], centre, o)
        except (ValueError, FileNotFoundError, OSError) as e:
            if on_error == "raise":
                raise
            logger.warning("galaxy %s: %s", galaxy_id, e)
            part = pd.DataFrame({"status": [f"error: {e}"] * len(idx)})
        part.index = idx
        parts.append(part)
    measured = pd.concat(parts).sort_index() if parts else pd.DataFrame({"status": []})
    # Failed rows: flags False and texts "" rather than missing, so that every column keeps
    # one type (Parquet/FITS refuse mixed columns); numbers stay NaN.
    for p in o.giant_thresholds_pct:
        if flag_name(p) not in measured:
            measured[flag_name(p)] = False
    for col in measured.columns:
        values = measured[col].dropna()
        if len(values) and all(isinstance(v, (bool, np.bool_)) for v in values):
            measured[col] = measured[col].fillna(False).astype(bool)
        elif len(values) and all(isinstance(v, str) for v in values):
            measured[col] = measured[col].fillna("")
    out = table.drop(columns=[c for c in measured.columns if c in table.columns])
    return pd.concat([out, measured.reindex(out.index)], axis=1)


def measure_table_file(table_file: str | os.PathLike, output: str | os.PathLike,
                       options: Optional[PhotometryOptions] = None,
                       image_root: Optional[str | os.PathLike] = None, **kwargs) -> pd.DataFrame:
    """Read a clump table, :func:`measure_clumps` it, write the result (format by suffix; a
    FITS table carries the column units in its header). Relative image paths are taken from
    ``image_root``, default the table's folder; ``kwargs`` go to :func:`measure_clumps`."""
    table = read_table(table_file)
    root = image_root if image_root is not None else os.path.dirname(os.fspath(table_file))
    out = measure_clumps(table, options, image_root=root or None, show_progress=True,
                         source=os.fspath(table_file), **kwargs)
    units = [u for u in out.get("flux_unit", pd.Series(dtype=object)).dropna().unique()]
    write_table(out, output, photometry_units(out.columns, units[0] if len(units) == 1 else ""))
    return out
