"""The inference mapper and loader: galaxy records -> model inputs, in batches, never raising.

A survey always holds a few broken files. The mapper catches the failure of each galaxy
and returns a record carrying the reason (``"error"``), so one bad image neither stops the
data-loader workers nor disappears from the catalogue.

Detectron2 0.6's ``build_detection_test_loader`` always uses a batch size of 1. To run the
model on batches, each dataset item is a *chunk* of up to ``batch_size`` galaxy records,
mapped by :class:`ChunkMapper` (so the loader workers still do all reading and resizing) and
flattened back into one batch by :func:`flatten_chunks`.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional, Sequence

import torch
from detectron2.data import build_detection_test_loader
from torch.utils.data import SequentialSampler

from clump_d2.data.fits_io import is_fits
from clump_d2.data.mapper import ClumpDatasetMapper

logger = logging.getLogger(__name__)

def fits_wcs_header(record: Dict, reference_band: str = "r", hdu: int = -1) -> Optional[str]:
    """The header (as a string) of the image HDU of a FITS record's image, or None if the
    image is not FITS. For one file per band, the ``reference_band``'s file (else the first)
    gives the header: the bands of a survey cutout share one pixel grid. ``hdu`` as
    ``INPUT.FITS.HDU`` (-1: the first HDU with an image)."""
    from astropy.io import fits

    band_files = record.get("band_files") or {}
    if band_files:
        path = band_files.get(reference_band, next(iter(band_files.values())))
    else:
        path = os.fspath(record["file_name"])
        if "{band}" in path:
            path = path.format(band=reference_band)
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
            if header is not None:
                out["wcs_header"] = header
            return out
        except Exception as e:  # any failure of one galaxy: carried as its status, logged
            reason = f"{type(e).__name__}: {e}"
            logger.warning("galaxy %s unreadable: %s", record.get("galaxy_id"), reason)
            logger.debug("traceback of galaxy %s", record.get("galaxy_id"), exc_info=True)
            out = dict(record)
            out["error"] = reason
            return out


class ChunkMapper:
    """Maps a chunk (list) of records with ``mapper``; picklable for loader workers."""

    def __init__(self, mapper):
        self.mapper = mapper

    def __call__(self, chunk: Sequence[Dict]) -> List[Dict]:
        return [self.mapper(record) for record in chunk]


def flatten_chunks(batch: Sequence[Sequence[Dict]]) -> List[Dict]:
    """``collate_fn``: the loader's batch (one chunk) -> one flat list of mapped records."""
    return [item for chunk in batch for item in chunk]


def chunk(records: Sequence[Dict], size: int) -> List[List[Dict]]:
    size = max(1, int(size))
    return [list(records[i:i + size]) for i in range(0, len(records), size)]


def build_inference_loader(records: Sequence[Dict], mapper, batch_size: int,
                           num_workers: int = 0) -> torch.utils.data.DataLoader:
    """A Detectron2 test loader over ``records`` yielding lists of up to ``batch_size`` mapped
    records, in order.

    The sampler is sequential on purpose: ``InferenceSampler`` (the default) would split the
    records across processes, but here the records are one shard, already assigned to this
    process.
    """
    chunks = chunk(records, batch_size)
    return build_detection_test_loader(
        chunks, mapper=ChunkMapper(mapper), sampler=SequentialSampler(chunks),
        num_workers=num_workers, collate_fn=flatten_chunks,
    )
