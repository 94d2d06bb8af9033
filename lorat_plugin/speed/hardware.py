"""What machine a speed measurement ran on: CPU model, usable cores and the flags that matter for bf16, the GPU,
and the software versions."""
from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
from typing import Any

import torch

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16", "amx_tile")


def hardware_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """The CPU (model name, logical cores usable here, bf16/AMX flags), torch's thread count, the GPU when
    ``device`` is one, and the software versions that matter for speed."""
    device = torch.device(device)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    flags = set((_cpuinfo("flags") or "").split())
    cpu = _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown CPU"
    info: dict[str, Any] = {"cpu": cpu, "cpu_cores": cores, "cpu_flags": [f for f in CPU_FLAGS if f in flags],
                            "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
                            "os": platform.platform(terse=True), "python": platform.python_version()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = f"{props.name} ({props.total_memory / 2**30:.0f} GiB, compute {props.major}.{props.minor})"
        info["cuda"] = torch.version.cuda
    elif device.type == "mps":
        info["gpu"] = "Apple MPS"
    info["versions"] = {"torch": torch.__version__}
    for package in ("timm", "numpy", "onnxruntime", "onnx"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            info["versions"][package] = importlib.metadata.version(package)
    return info


def _cpuinfo(field: str) -> str | None:
    """The first ``field`` line of /proc/cpuinfo (Linux only)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith(field)), None)
    except OSError:
        return None


def describe_hardware(info: dict[str, Any]) -> str:
    lines = [f"CPU: {info['cpu']}, {info['cpu_cores']} logical cores usable, torch threads {info['torch_threads']}"
             + (f", flags {' '.join(info['cpu_flags'])}" if info["cpu_flags"] else "")]
    if "gpu" in info:
        lines.append(f"GPU: {info['gpu']}" + (f", CUDA {info['cuda']}" if info.get("cuda") else ""))
    lines.append("software: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
                 + f", Python {info['python']}, {info['os']}")
    return "\n".join(lines)
