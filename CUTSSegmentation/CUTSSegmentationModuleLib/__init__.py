"""The Python parts of the CUTSSegmentation module beside its module file (as in SlicerNNUnet's Lib package).

- `logic`: the module logic without Slicer's application (console API, background jobs);
- `controller`: the panel's state and actions without Qt;
- `dependencies`: installing the engine's packages after the user agreed (torch via the PyTorch extension);
- `reloading`: what Slicer's Reload must forget;
- `sample_data`: the module's volume in Slicer's Sample Data module;
- `parameters` (Slicer's parameter node wrapper) and `panel` (Qt) are imported by the module file only.

Named apart from the engine, `CUTSSegmentationLib`, which is installed beside it.
"""

from .controller import (
    PanelController,
    PanelState,
    default_input_volume,
    is_input_volume,
)
from .dependencies import DependencyError, DependencyInstaller
from .logic import SegmentationLogic
from .reloading import forget_packages
from .sample_data import register_sample_data

__all__ = [
    "DependencyError",
    "DependencyInstaller",
    "PanelController",
    "PanelState",
    "SegmentationLogic",
    "default_input_volume",
    "forget_packages",
    "is_input_volume",
    "register_sample_data",
]
