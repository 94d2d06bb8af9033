"""Dependencies point one way (docs/architecture.md): importing any module of a layer loads no layer above it."""
from __future__ import annotations

import json
import subprocess
import sys
from functools import lru_cache

import pytest

APPLICATION = ("lorat_plugin.commands", "lorat_plugin.cli", "lorat_plugin.demo")
UPPER = ("lorat_plugin.evaluation", "lorat_plugin.trackers", "lorat_plugin.speed", *APPLICATION)
# layer -> what no module of it may load, directly or through what it imports
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "lorat_plugin.files": ("lorat_plugin.",),
    "lorat_plugin.geometry": ("lorat_plugin.model", "lorat_plugin.data", "lorat_plugin.engine", "lorat_plugin.train",
                              *UPPER),
    "lorat_plugin.model": ("lorat_plugin.data", "lorat_plugin.engine", "lorat_plugin.train", *UPPER),
    "lorat_plugin.data": ("lorat_plugin.model", "lorat_plugin.engine", "lorat_plugin.train", *UPPER),
    "lorat_plugin.engine": ("lorat_plugin.data.datasets", "lorat_plugin.train", *UPPER),
    "lorat_plugin.train": ("lorat_plugin.engine", *UPPER),
    "lorat_plugin.evaluation": ("lorat_plugin.engine", "lorat_plugin.train", "lorat_plugin.trackers",
                                "lorat_plugin.speed", *APPLICATION),
    "lorat_plugin.trackers": ("lorat_plugin.train", "lorat_plugin.evaluation", "lorat_plugin.speed", *APPLICATION),
    "lorat_plugin.speed": ("lorat_plugin.train", "lorat_plugin.evaluation", "lorat_plugin.trackers", *APPLICATION),
}

# One fresh interpreter imports every module of every layer, forgetting lorat_plugin's modules before each.
PROBE = r"""
import importlib, json, pkgutil, sys
layers = json.loads(sys.argv[1])
found = {}
for layer in layers:
    try:
        package = importlib.import_module(layer)
    except ImportError as e:
        found[layer] = {"layer": layer, "error": str(e)}
        continue
    names = [layer] + [i.name for i in pkgutil.walk_packages(getattr(package, "__path__", []), layer + ".")]
    for name in names:
        for loaded in [m for m in sys.modules if m.startswith("lorat_plugin.")]:
            del sys.modules[loaded]
        try:
            importlib.import_module(name)
        except ImportError as e:  # an optional toolkit (got10k, vot, cv2 ...) that this installation lacks
            found[name] = {"layer": layer, "error": str(e)}
            continue
        found[name] = {"layer": layer, "loaded": sorted(m for m in sys.modules if m.startswith("lorat_plugin."))}
print(json.dumps(found))
"""


@lru_cache(maxsize=1)
def probe() -> dict[str, dict]:
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(FORBIDDEN))], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_layer_has_modules() -> None:
    layers = {info["layer"] for info in probe().values()}
    assert layers == set(FORBIDDEN)


@pytest.mark.parametrize("layer", list(FORBIDDEN))
def test_layer_loads_no_higher_layer(layer: str) -> None:
    wrong = {}
    for name, info in probe().items():
        if info["layer"] != layer or "loaded" not in info:
            continue
        bad = [m for m in info["loaded"] if m.startswith(FORBIDDEN[layer]) and not m.startswith(layer)]
        if bad:
            wrong[name] = bad
    assert not wrong, f"modules of {layer} load higher layers: {wrong}"


def test_modules_import_or_name_a_missing_toolkit() -> None:
    broken = {name: info["error"] for name, info in probe().items()
              if "error" in info and "lorat_plugin" in info["error"]}
    assert not broken, f"modules that fail to import for a reason other than an optional toolkit: {broken}"
