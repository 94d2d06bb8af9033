"""lorat-plugin: the LoRAT tracker (Lin et al., ECCV 2024) for the single-object tracking toolkits.

The model API is re-exported here on first use, so importing a light sub-package (``lorat_plugin.geometry``,
``lorat_plugin.files``, a DataLoader worker's ``lorat_plugin.train`` modules) does not load timm and the network.
"""
from __future__ import annotations

from .lazy import exports_on_first_use

__version__ = "0.1.0"
__all__ = ["ModelConfig", "VARIANTS", "build_model", "get_config", "list_variants", "save_checkpoint",
           "WeightsError", "__version__"]
__getattr__, __dir__ = exports_on_first_use(__name__, {name: "model" for name in __all__ if name != "__version__"})
