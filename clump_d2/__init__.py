"""clump_d2: find giant star-forming clumps in galaxy images with Detectron2.

Importing the package first fills the gaps of detectron2 0.6 on today's stack
(``clump_d2.compat``), then registers everything a config can name, as importing a
Detectron2 project does: the Zoobot/timm backbones in ``BACKBONE_REGISTRY`` and the clump
datasets under ``$CLUMP_D2_DATASETS``. Import it before any detectron2 module.
"""
from clump_d2 import compat as _compat

_compat.apply()

from clump_d2 import data, modeling  # noqa: E402,F401  (registration on import)
from clump_d2.config import add_clump_config  # noqa: E402

__version__ = "0.1.0"
__all__ = ["add_clump_config", "__version__"]
