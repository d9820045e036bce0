"""clump_d2: find giant star-forming clumps in galaxy images with Detectron2.

Importing the package first fills the gaps of detectron2 0.6 on today's stack
(``clump_d2.compat``), so import it before any detectron2 module.
"""
from clump_d2 import compat as _compat

_compat.apply()

__version__ = "0.1.0"
