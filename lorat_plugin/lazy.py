"""Re-exports loaded on first use (PEP 562), so that importing a package does not load all of its modules."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def exports_on_first_use(package: str, origins: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's module-level ``__getattr__`` and ``__dir__`` for ``origins`` (name -> the submodule that defines
    it): ``package.name`` imports that submodule when it is first asked for."""

    def __getattr__(name: str) -> Any:
        if name in origins:
            return getattr(importlib.import_module(f".{origins[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(origins))

    return __getattr__, __dir__
