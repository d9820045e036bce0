"""Clump photometry: host segmentation, forced photometry in every band, giant flags.

Layer: above ``data`` and ``structures``, below ``evaluation``; imports only those (and
``config``). Entry point: :func:`~clump_d2.photometry.measure.measure_clumps`.
"""
from clump_d2.photometry.flags import flag_name, giant_flags  # noqa: F401
from clump_d2.photometry.images import PhotometryImage, load_photometry_image  # noqa: F401
from clump_d2.photometry.measure import (  # noqa: F401
    PhotometryOptions,
    measure_clumps,
    measure_image,
    photometry_units,
)

__all__ = ["PhotometryImage", "PhotometryOptions", "flag_name", "giant_flags",
           "load_photometry_image", "measure_clumps", "measure_image", "photometry_units"]
