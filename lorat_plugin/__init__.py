"""lorat-plugin: the LoRAT tracker (Lin et al., ECCV 2024) for the single-object tracking toolkits.

The model API is re-exported here on first use, so importing a light sub-package (``lorat_plugin.geometry``,
``lorat_plugin.files``, a DataLoader worker's ``lorat_plugin.train`` modules) does not load timm and the network.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["ModelConfig", "VARIANTS", "build_model", "get_config", "list_variants", "save_checkpoint",
           "WeightsError", "__version__"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(".model", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
