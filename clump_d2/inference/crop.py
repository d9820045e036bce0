"""The central part of each image the catalogue searches (``INFERENCE.CENTRE_CROP``).

Galaxy Zoo cut-outs are scaled to the galaxy (0.02 x R90 arcsec per pixel: a 424 px image spans
~8.5 R90, the galaxy its central ~100 px), and the paper's detector, like the real-host models
here, sees only the central 200 px. Searching the whole image costs ~4.5x the pixels for sky,
stars and neighbours. A record gets ``crop = [x0, y0, size, size]`` (the mapper, photometry,
sky coordinates and pictures all honour it) when its image is larger than ``size`` on both
sides; its size is read from the file's header, never its pixels.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Tuple

from astropy.io import fits
from PIL import Image

from clump_d2.data.image_io import band_file, is_fits

logger = logging.getLogger(__name__)


def declared_size(record: Dict, reference_band: str = "r") -> Optional[Tuple[int, int]]:
    """(width, height) a record's image declares in its header (FITS: the first image HDU of
    the reference band's file), or None when the file cannot be opened (the mapper then
    reports it as unreadable, naming why)."""
    path = band_file(record["file_name"], record.get("band_files"), reference_band)
    try:
        if is_fits(path):
            with fits.open(path, memmap=True) as hdul:
                for hdu in hdul:
                    if getattr(hdu, "is_image", False) and hdu.header.get("NAXIS", 0) >= 2:
                        return int(hdu.header["NAXIS1"]), int(hdu.header["NAXIS2"])
            return None
        with Image.open(path) as im:  # lazy: only the header is read
            return im.size
    except (OSError, ValueError, KeyError):
        return None


def centre_crop(width: int, height: int, size: int) -> Optional[List[int]]:
    """``[x0, y0, size, size]`` of the central ``size`` px square, or None when the image is
    not larger than ``size`` on both sides. The corner rounds down, so an odd margin leaves the
    extra pixel on the right / bottom."""
    if size <= 0 or width <= size or height <= size:
        return None
    return [(width - size) // 2, (height - size) // 2, int(size), int(size)]


def with_centre_crops(records: Sequence[Dict], size: int, reference_band: str = "r"
                      ) -> List[Dict]:
    """``records`` with the centre crop of ``size`` px set on each record that has no crop of
    its own and whose image is larger (new dicts; the input is not changed). ``size`` 0:
    the records as they are."""
    if size <= 0:
        return list(records)
    out, n_cropped = [], 0
    for record in records:
        crop = None
        if not record.get("crop"):
            dims = declared_size(record, reference_band)
            crop = centre_crop(*dims, size) if dims else None
        if crop:
            n_cropped += 1
            out.append(dict(record, crop=crop))
        else:
            out.append(record)
    logger.info("INFERENCE.CENTRE_CROP %d: %d of %d galaxies searched in their central %d px",
                size, n_cropped, len(out), size)
    return out
