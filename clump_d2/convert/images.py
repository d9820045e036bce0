"""Is an image file usable? Converters drop images that do not decode (0-byte, truncated, text
saved as .png) as counted drops, so that training never meets them."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from PIL import Image

from clump_d2.data.fits_io import FITS_SUFFIXES, read_fits_image


def image_problem(path: str | os.PathLike) -> Optional[str]:
    """None if ``path`` decodes completely; else why not (for the log).

    FITS files are read with astropy (header and data), other formats decoded with PIL.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        if path.name.lower().endswith(FITS_SUFFIXES):
            read_fits_image(path)
        else:
            with Image.open(path) as im:
                im.load()  # decodes every pixel: a truncated file fails here
    except Exception as e:  # PIL and astropy raise many types for a bad file; all mean "drop"
        return f"does not decode ({type(e).__name__}: {e})"
    return None
