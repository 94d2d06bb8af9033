"""The procedural demo benchmark: the shipped test split's parameters and ground-truth digests
(``assets/demo_benchmark.json``, docs/demo.md says how to record them again) and generating it."""
from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from ..data.sequence import Sequence
from .procedural import make_benchmark
from .procedural.layouts import groundtruth_digest

log = logging.getLogger(__name__)

def asset_path(name: str) -> Path:
    return Path(str(resources.files("lorat_plugin") / "assets" / name))


def demo_benchmark_spec() -> dict[str, Any]:
    """Parameters of the shipped test split, its per-sequence ground-truth digests and the sequence to render."""
    path = asset_path("demo_benchmark.json")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from this installation (it describes the demo benchmark)")
    return json.loads(path.read_text(encoding="utf-8"))


def prepare_demo_benchmark(root: str | Path, changes: dict[str, Any] | None = None,
                           progress: Callable[[int, int, str], None] | None = None) -> list[Sequence]:
    """Generate (or reuse) the shipped test split under ``root`` and read it back (GOT-10k layout, with each
    sequence's challenges). ``changes`` overrides its parameters (``seed``, ``sequences``, ``frames``, ``size``). The shipped split's ground
    truth is checked against the recorded digests: on a mismatch the metrics are not the documented ones."""
    from ..data.datasets import load_dataset

    spec = demo_benchmark_spec()
    p = {**spec["parameters"], **{k: v for k, v in (changes or {}).items() if v is not None}}
    unknown = sorted(set(p) - set(spec["parameters"]))
    if unknown:
        raise ValueError(f"unknown demo benchmark parameters {unknown}")
    bench = make_benchmark(root, split=p["split"], sequences=p["sequences"], frames=p["frames"],
                           size=tuple(p["size"]), seed=p["seed"], layout=p["layout"], progress=progress)
    same = all(p[k] == spec["parameters"][k] for k in ("split", "frames", "size", "seed", "layout"))
    expected = spec.get("sequence_sha256", []) if same else []
    differing = [f.name for f, digest in zip(bench.folders, expected) if groundtruth_digest([f]) != digest]
    if differing:
        log.warning("the generated benchmark differs from the shipped one in %d sequence(s) (e.g. %s): the numbers "
                    "will not match docs/demo.md exactly (scikit-image or OpenCV version?)", len(differing),
                    differing[0])
    # the procedural reader: the GOT-10k reader's sequences plus each one's challenges, for the per-challenge scores
    return load_dataset("procedural", bench.root, split=p["split"])
