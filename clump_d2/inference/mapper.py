"""The inference mapper: galaxy records -> model inputs, never raising.

A survey always holds a few broken files. The mapper catches the failure of each galaxy
and returns a record carrying the reason (``"error"``), so one bad image neither stops the
data-loader workers nor disappears from the catalogue. A FITS image whose WCS cannot give sky
positions (:func:`clump_d2.inference.sky.wcs_problem`) is searched as usual but loses its
sky route: the record gets the reason, naming the file, as its sky problem (status
``bad_sky``, no RA/Dec), never a crash of the run. Batches come from
:func:`clump_d2.data.build.build_batched_test_loader` (``sequential=True``: in input order).
"""
from __future__ import annotations

import logging
from typing import Dict, Optional

from astropy.io import fits

from clump_d2.data.image_io import band_file, is_fits
from clump_d2.data.mapper import ClumpDatasetMapper

from .catalogue import SKY_PROBLEM_KEY
from .inputs import SKY_KEYS
from .sky import wcs_problem

logger = logging.getLogger(__name__)


def fits_wcs_header(record: Dict, reference_band: str = "r", hdu: int = -1) -> Optional[str]:
    """The header (as a string) of the image HDU of a FITS record's image, or None if the
    image is not FITS. For one file per band, the ``reference_band``'s file (else the first)
    gives the header: the bands of a survey cutout share one pixel grid. ``hdu`` as
    ``INPUT.FITS.HDU`` (-1: the first HDU with an image)."""
    path = band_file(record["file_name"], record.get("band_files"), reference_band)
    if not is_fits(path):
        return None
    with fits.open(path, memmap=False) as hdul:
        if hdu >= 0:
            return hdul[hdu].header.tostring()
        for h in hdul:
            if getattr(h, "is_image", False) and h.header.get("NAXIS", 0) >= 2:
                return h.header.tostring()
    return None


class InferenceMapper:
    """Wraps :class:`ClumpDatasetMapper` (``is_train=False``: the test-time resize, the image
    formats it reads) so that it never raises.

    Output: the mapper's dict (``image``, ``height``, ``width`` + the record's keys) with
    ``wcs_header`` (FITS images), or ``{**record, "error": "<Type>: <message>"}`` on failure.
    """

    def __init__(self, base_mapper: ClumpDatasetMapper, reference_band: str = "r",
                 hdu: int = -1):
        self.base = base_mapper
        self.reference_band = reference_band
        self.hdu = hdu

    @classmethod
    def from_cfg(cls, cfg) -> "InferenceMapper":
        bands = list(cfg.INPUT.FITS.BANDS)
        return cls(ClumpDatasetMapper(cfg, is_train=False),
                   reference_band=bands[0] if bands else "r", hdu=int(cfg.INPUT.FITS.HDU))

    def __call__(self, record: Dict) -> Dict:
        try:
            out = self.base(record)  # first: its errors name the file
            header = fits_wcs_header(record, self.reference_band, self.hdu)
            problem = wcs_problem(header) if header is not None else None
            if problem is None:
                if header is not None:
                    out["wcs_header"] = header
                return out
            # Searched, but without RA/Dec: neither this WCS nor a table position (which the
            # image's own WCS was to override) can be trusted for it.
            path = band_file(record["file_name"], record.get("band_files"), self.reference_band)
            reason = f"{path}: {problem}"
            logger.warning("galaxy %s: no RA/Dec: %s", record.get("galaxy_id"), reason)
            for key in SKY_KEYS:
                out.pop(key, None)
            earlier = out.get(SKY_PROBLEM_KEY)
            out[SKY_PROBLEM_KEY] = f"{earlier}; {reason}" if earlier else reason
            return out
        except Exception as e:  # any failure of one galaxy: carried as its status, logged
            reason = f"{type(e).__name__}: {e}"
            logger.warning("galaxy %s unreadable: %s", record.get("galaxy_id"), reason)
            logger.debug("traceback of galaxy %s", record.get("galaxy_id"), exc_info=True)
            out = dict(record)
            out["error"] = reason
            return out
