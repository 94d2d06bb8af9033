"""Adapters from the LoRAT engine to the toolkits (installed as ``lorat_plugin.trackers``).

Names are imported on first use, so a toolkit that is not installed only matters to the adapter that needs it
(``LoRATTracker`` needs ``got10k``: ``pip install 'lorat-plugin[got10k]'``).
"""
from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule that defines it
_LAZY = {name: "got10k" for name in ("LoRATTracker", "OfflineExperimentOTB", "OfflineExperimentTColor128")} | {
    name: "baselines" for name in ("OpenCVTracker", "StaticBoxTracker", "BatchAdapter", "baseline")}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


__all__ = list(_LAZY)
