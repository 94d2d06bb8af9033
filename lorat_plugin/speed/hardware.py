"""What machine a speed measurement ran on: CPU model, usable cores and the flags that matter for bf16, the GPU,
and the software versions."""
from __future__ import annotations

import platform
from typing import Any

import torch

from ..environment import cpu_name, instruction_sets, package_versions
from ..process import usable_cpus


def hardware_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """The CPU (model name, logical cores usable here, the instruction sets torch reports), torch's thread count,
    the GPU when ``device`` is one, and the software versions that matter for speed
    (:mod:`lorat_plugin.environment`, what ``run.json`` records)."""
    device = torch.device(device)
    info: dict[str, Any] = {"cpu": cpu_name(), "cpu_cores": usable_cpus(), "cpu_flags": instruction_sets(),
                            "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
                            "os": platform.platform(terse=True), "python": platform.python_version()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = f"{props.name} ({props.total_memory / 2**30:.0f} GiB, compute {props.major}.{props.minor})"
        info["cuda"] = torch.version.cuda
    elif device.type == "mps":
        info["gpu"] = "Apple MPS"
    info["versions"] = {name: version for name, version in package_versions().items() if version is not None}
    return info


def describe_hardware(info: dict[str, Any]) -> str:
    lines = [f"CPU: {info['cpu']}, {info['cpu_cores']} logical cores usable, torch threads {info['torch_threads']}"
             + (f", flags {' '.join(info['cpu_flags'])}" if info["cpu_flags"] else "")]
    if "gpu" in info:
        lines.append(f"GPU: {info['gpu']}" + (f", CUDA {info['cuda']}" if info.get("cuda") else ""))
    lines.append("software: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
                 + f", Python {info['python']}, {info['os']}")
    return "\n".join(lines)
