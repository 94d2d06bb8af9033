"""The layer contract of docs/architecture.md ("Layers"), checked on the source of every module.

Every import statement of every module is read with ``ast`` -- inside functions too, relative ones resolved,
``importlib.import_module`` calls included -- so a module whose optional toolkit is missing here is checked like
any other. On top of the layer rules, some layers may load only a few third-party packages: geometry is
numpy/torch only (no timm), and the modules a training DataLoader worker imports load neither the network nor timm.
A fresh interpreter confirms the facts a user can observe.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Source folders and the package each is installed as (setup.py installs trackers/ and evaluation/ inside the plugin).
SOURCE_FOLDERS = {"lorat_plugin": REPO / "lorat_plugin", "lorat_plugin.trackers": REPO / "trackers",
                  "lorat_plugin.evaluation": REPO / "evaluation"}

# Module prefix -> layer (the longest matching prefix wins).
LAYER_OF_PREFIX = {
    "lorat_plugin": "root",  # the package itself: the version, and the model API re-exported on first use
    "lorat_plugin.files": "files",
    "lorat_plugin.geometry": "geometry",
    "lorat_plugin.devices": "devices",
    "lorat_plugin.distributed": "distributed",
    "lorat_plugin.process": "process",
    "lorat_plugin.lazy": "lazy",
    "lorat_plugin.environment": "environment",  # how a run ran: every layer records it
    "lorat_plugin.palette": "palette",  # one run's colours and frame numbers: evaluation, demo, trackers alike
    "lorat_plugin.model": "model",
    "lorat_plugin.data": "data",
    "lorat_plugin.engine": "engine",
    "lorat_plugin.train": "train",
    "lorat_plugin.evaluation": "evaluation",
    "lorat_plugin.trackers": "trackers",
    "lorat_plugin.speed": "speed",
    "lorat_plugin.commands": "applications",
    "lorat_plugin.cli": "applications",
    "lorat_plugin.demo": "applications",
    "lorat_plugin.app": "applications",  # `lorat app`: the web page over the engine and the evaluation records
}
LOWEST = {"files", "geometry", "devices", "distributed", "lazy", "environment", "process", "palette"}
# Layer -> the other layers its modules may import (any package may name the root package for its version).
MAY_IMPORT: dict[str, set[str]] = {
    "files": set(),
    "geometry": set(),
    "devices": set(),
    "distributed": {"devices"},
    "lazy": set(),
    "environment": set(),
    "palette": set(),
    "process": set(),  # process-wide tuning (glibc allocator, torch's thread count)
    "root": {"lazy"},
    "model": LOWEST,
    "data": LOWEST,
    "engine": LOWEST | {"model", "data"},
    "train": LOWEST | {"model", "data"},
    "evaluation": LOWEST | {"model", "data"},  # runs any object with initialize/track: no engine
    "trackers": LOWEST | {"model", "data", "engine"},
    "speed": LOWEST | {"model", "data", "engine"},
    "applications": set(LAYER_OF_PREFIX.values()),
}
# Modules a layer may not import although their layer is allowed.
NEVER: dict[str, tuple[str, ...]] = {
    "engine": ("lorat_plugin.data.datasets",),  # frames (data.sequence), never a benchmark reader
}
# Layer -> the only third-party packages (top-level names) its modules may import anywhere.
THIRD_PARTY_ONLY: dict[str, set[str]] = {
    "files": set(),
    "geometry": {"numpy", "torch"},
    "devices": {"torch"},
    "distributed": {"torch"},
    "lazy": set(),
    "environment": {"torch"},
    "process": {"torch"},  # only inside choose_threads: the CLI imports process before torch loads
    "palette": set(),  # the standard library only
}
# What a DataLoader worker imports: the pair dataset and everything it unpickles into.
WORKER_MODULES = ("lorat_plugin.train.loader", "lorat_plugin.train.pairs", "lorat_plugin.train.source",
                  "lorat_plugin.train.augment", "lorat_plugin.train.labels", "lorat_plugin.train.config")
WORKER_MAY_NOT_LOAD = ("lorat_plugin.model.network", "lorat_plugin.model.build", "lorat_plugin.model.weights",
                       "timm")


@dataclass(frozen=True)
class Import:
    target: str  # absolute module name (for ``from X import name``: X.name when that is a module, else X)
    line: int
    at_import_time: bool  # False inside a function body: it runs only when the function is called


def module_names() -> dict[str, Path]:
    """Every module of the installed package, by its import name."""
    names = {}
    for package, folder in SOURCE_FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            names[".".join([package, *parts])] = path
    return names


def imports_of(source: str, module: str, is_package: bool, known: set[str] | frozenset[str] = frozenset()
               ) -> list[Import]:
    """Every import in ``source``, with relative names resolved against ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []

    def resolve(name: str, level: int) -> str:
        if not level:
            return name
        base = package.split(".")
        base = base[:len(base) - (level - 1)]
        return ".".join(base + ([name] if name else []))

    def visit(node: ast.AST, at_import_time: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, node.lineno, at_import_time) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = resolve(node.module or "", node.level)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.append(Import(child if child in known else base, node.lineno, at_import_time))
        elif isinstance(node, ast.Call) and _is_import_module(node.func) and node.args:
            target = _literal_prefix(node.args[0])
            if target is not None:
                level = len(target) - len(target.lstrip("."))
                found.append(Import(resolve(target[level:], level), node.lineno, at_import_time))
        inside_function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, at_import_time and not inside_function)

    visit(ast.parse(source), True)
    return found


def _is_import_module(func: ast.expr) -> bool:
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in ("import_module", "__import__")


def _literal_prefix(arg: ast.expr) -> str | None:
    """``"a.b"`` -> ``a.b``; ``f"a.b.{x}"`` -> ``a.b`` (the package the computed module lives in)."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        prefix = str(arg.values[0].value)
        return prefix[:len(prefix) - len(prefix.lstrip("."))] + prefix.lstrip(".").rpartition(".")[0]
    return None


@lru_cache(maxsize=1)
def all_imports() -> dict[str, list[Import]]:
    names = module_names()
    known = frozenset(names)
    return {name: imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", known)
            for name, path in names.items()}


def layer_of(module: str) -> str | None:
    matches = [prefix for prefix in LAYER_OF_PREFIX if module == prefix or module.startswith(prefix + ".")]
    return LAYER_OF_PREFIX[max(matches, key=len)] if matches else None


def internal(target: str) -> bool:
    return target == "lorat_plugin" or target.startswith("lorat_plugin.")


def loaded_at_import(module: str) -> set[str]:
    """The package's modules and the third-party names that importing ``module`` loads (parent packages count:
    importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first)."""
    imports, names = all_imports(), module_names()
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        for candidate in [*parents, name]:
            if candidate in seen:
                continue
            seen.add(candidate)
            if candidate in names:
                todo += [i.target for i in imports[candidate] if i.at_import_time]
    return seen


def test_every_module_belongs_to_a_layer_and_every_layer_has_modules() -> None:
    names = module_names()
    assert {"lorat_plugin.trackers.got10k", "lorat_plugin.evaluation.runner", "lorat_plugin.demo.procedural",
            "lorat_plugin.data.datasets", "lorat_plugin.process"} <= set(names)
    assert not [name for name in names if layer_of(name) is None]
    assert {layer_of(name) for name in names} == set(MAY_IMPORT)


def test_the_reader_sees_function_level_relative_and_computed_imports() -> None:
    source = ("import numpy\n"
              "from . import augment\n"
              "from ..model.config import ModelConfig\n"
              "def load():\n"
              "    from ..engine import TrackingEngine\n"
              "    import importlib\n"
              "    return importlib.import_module(f'lorat_plugin.commands.{name}')\n"
              "class Lazy:\n"
              "    from ..data import Sequence\n")
    found = imports_of(source, "lorat_plugin.train.pairs", False, {"lorat_plugin.train.augment"})
    assert [(i.target, i.line, i.at_import_time) for i in found] == [
        ("numpy", 1, True), ("lorat_plugin.train.augment", 2, True), ("lorat_plugin.model.config", 3, True),
        ("lorat_plugin.engine", 5, False), ("importlib", 6, False), ("lorat_plugin.commands", 7, False),
        ("lorat_plugin.data", 9, True)]
    # In a package's __init__, "." is the package itself.
    assert imports_of("from .config import X", "lorat_plugin.model", True)[0].target == "lorat_plugin.model.config"
    assert imports_of("import_module('.model', __name__)", "lorat_plugin", True)[0].target == "lorat_plugin.model"


@pytest.mark.parametrize("layer", list(MAY_IMPORT))
def test_layer_imports_only_the_layers_below_it(layer: str) -> None:
    wrong = []
    for module, imports in all_imports().items():
        if layer_of(module) != layer:
            continue
        for found in imports:
            target_layer = layer_of(found.target) if internal(found.target) else None
            if target_layer is None or target_layer == layer or found.target == "lorat_plugin":
                continue
            if target_layer not in MAY_IMPORT[layer] or found.target.startswith(NEVER.get(layer, ("-",))):
                wrong.append(f"{module}:{found.line} imports {found.target} ({target_layer})")
    assert not wrong, f"{layer} may import only {sorted(MAY_IMPORT[layer])}:\n" + "\n".join(wrong)


@pytest.mark.parametrize("layer", list(THIRD_PARTY_ONLY))
def test_lowest_layers_import_few_third_party_packages(layer: str) -> None:
    allowed = THIRD_PARTY_ONLY[layer] | set(sys.stdlib_module_names) | {"__future__"}
    wrong = [f"{module}:{found.line} imports {found.target}"
             for module, imports in all_imports().items() if layer_of(module) == layer
             for found in imports if not internal(found.target) and found.target.split(".")[0] not in allowed]
    assert not wrong, f"{layer} may import only {sorted(THIRD_PARTY_ONLY[layer])} and the standard library:\n" + \
        "\n".join(wrong)


def test_process_loads_torch_only_when_it_chooses_threads() -> None:
    # the CLI tunes the process (lorat_plugin.cli imports process) before anything loads torch
    assert "torch" not in loaded_at_import("lorat_plugin.process")
    assert [found.at_import_time for found in all_imports()["lorat_plugin.process"]
            if found.target.split(".")[0] == "torch"] == [False]


@pytest.mark.parametrize("module", WORKER_MODULES)
def test_dataloader_worker_modules_load_neither_the_network_nor_timm(module: str) -> None:
    loaded = loaded_at_import(module)
    assert "lorat_plugin.train.pairs" in loaded_at_import("lorat_plugin.train.loader")  # the closure follows imports
    wrong = sorted(name for name in loaded if name.startswith(WORKER_MAY_NOT_LOAD))
    assert not wrong, f"importing {module} loads {wrong}"


def test_training_loads_the_config_library_only_when_reading_a_config() -> None:
    # benchmarks/gpu_check.py imports the training step on machines with only the core dependencies.
    wrong = [f"{module}:{found.line}" for module, imports in all_imports().items()
             for found in imports if found.at_import_time and found.target.split(".")[0] == "omegaconf"]
    assert not wrong, f"modules that load OmegaConf when imported: {wrong}"


# What a user can observe in a fresh interpreter: (modules imported, module prefixes that must stay unloaded).
RUNTIME_FACTS = [
    (("lorat_plugin.geometry",), ("timm", "lorat_plugin.model", "lorat_plugin.engine", "lorat_plugin.train")),
    (("lorat_plugin.train.pairs", "lorat_plugin.train.loader"), ("lorat_plugin.model.network", "timm",
                                                                  "lorat_plugin.engine")),
    (("lorat_plugin.train", "lorat_plugin.train.step", "lorat_plugin.train.trainer"),
     ("omegaconf", "lorat_plugin.engine", "lorat_plugin.evaluation", "lorat_plugin.trackers", "evaluation",
      "trackers")),
]


@pytest.mark.parametrize("modules, unloaded", RUNTIME_FACTS, ids=[", ".join(m) for m, _ in RUNTIME_FACTS])
def test_importing_loads_nothing_it_should_not(modules: tuple[str, ...], unloaded: tuple[str, ...]) -> None:
    code = (f"import sys, {', '.join(modules)}; "
            f"print(sorted(p for p in {unloaded!r} if any(m == p or m.startswith(p + '.') for m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", f"importing {modules} loads {done.stdout.strip()}"
