"""Is an image file usable? Converters drop images that do not decode (0-byte, truncated, text
saved as .png) or that the network's reader refuses (a floating-point TIFF; a declared size over
:data:`~clump_d2.data.image_io.DEFAULT_MAX_PIXELS` or under ``MIN_IMAGE_SIDE``, refused before
decoding) as counted drops (``undecodable_image``), so that training never meets them. 16-bit
PNGs are usable: the reader scales them (:mod:`clump_d2.data.image_io`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from clump_d2.data.fits_io import read_fits_image
from clump_d2.data.image_io import ImageSizeError, is_fits, read_display_image


def image_problem(path: str | os.PathLike) -> Optional[str]:
    """None if ``path`` decodes completely; else why not (for the log).

    FITS files are read with astropy (header and data), other formats decoded by the display
    reader the network uses (:func:`clump_d2.data.image_io.read_display_image`).
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        if is_fits(path.name):
            read_fits_image(path)
        else:
            read_display_image(path)  # decodes every pixel: a truncated file fails here
    except ImageSizeError as e:  # refused from its header, never decoded: says why itself
        return str(e)
    except Exception as e:  # PIL and astropy raise many types for a bad file; all mean "drop"
        return f"does not decode ({type(e).__name__}: {e})"
    return None
