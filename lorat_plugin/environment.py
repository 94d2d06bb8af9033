"""How a run ran: the settings and the machine that a tracking speed and a result depend on, as one JSON-ready
dict. Written into an evaluation folder's ``run.json`` and logged by the got10k tracker and the TraX program.

Only torch, the standard library and package metadata are used, so every layer may call it.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
from typing import Any

import torch

# The packages whose versions change results or speed; an absent one is recorded as None.
PACKAGES = ("lorat-plugin", "torch", "timm", "onnxruntime")

# torch's names of the CPU features (torch.cpu.get_capabilities) that decide which kernels oneDNN and ATen pick,
# as they are usually written; the first ones matter most for bf16 and int8.
INSTRUCTION_SETS = {"amx_bf16": "AMX-BF16", "amx_int8": "AMX-INT8", "amx_fp16": "AMX-FP16",
                    "avx512_bf16": "AVX512-BF16", "avx512_fp16": "AVX512-FP16", "avx512_vnni": "AVX512-VNNI",
                    "avx_vnni": "AVX-VNNI", "avx512_f": "AVX512F", "avx2": "AVX2"}
# the same features through the probes of torch releases without get_capabilities
_PROBES = {"amx_bf16": "_is_amx_tile_supported", "amx_fp16": "_is_amx_fp16_supported",
           "avx512_bf16": "_is_avx512_bf16_supported", "avx512_vnni": "_is_vnni_supported",
           "avx512_f": "_is_avx512_supported", "avx2": "_is_avx2_supported"}


def run_environment(device: torch.device | str | None = None, *, batch_size: int | None = None,
                    world_size: int | None = None) -> dict[str, Any]:
    """``batch_size`` (sequences per tracker call), ``world_size`` (processes), ``threads`` (torch's intra-op
    threads in this process), ``device`` (CPU: model name, torch's vector-kernel level and the instruction sets
    torch reports; GPU: its name) and ``versions``. Deterministic within one process, so equal runs compare equal."""
    device = torch.device(device or "cpu")
    return {"batch_size": batch_size, "world_size": world_size, "threads": torch.get_num_threads(),
            "device": _device(device), "versions": package_versions()}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        versions[package] = None
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    versions["torch"] = torch.__version__  # with its build (e.g. +cpu, +cu130), which the metadata may lack
    return versions


def _device(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return {"type": "cuda", "name": torch.cuda.get_device_name(index), "cuda": torch.version.cuda}
    if device.type == "mps":
        return {"type": "mps", "name": f"Apple MPS ({platform.machine()})"}
    described: dict[str, Any] = {"type": "cpu", "name": cpu_name(), "capability": None,
                                 "instruction_sets": instruction_sets()}
    with contextlib.suppress(Exception):  # a build without ATen's CPU dispatch report
        described["capability"] = torch.backends.cpu.get_cpu_capability()
    cap = onednn_isa_cap()
    if cap:
        described["onednn_max_cpu_isa"] = cap
    return described


def onednn_isa_cap() -> str:
    """The instruction set oneDNN is held to, upper case (``ONEDNN_MAX_CPU_ISA``, or its older name
    ``DNNL_MAX_CPU_ISA`` where that is unset or empty; oneDNN docs, "CPU dispatcher control"); empty when neither is
    set: oneDNN then uses the best instruction set the CPU has."""
    return (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()


def cpu_name() -> str:
    """The CPU's model name: /proc/cpuinfo on Linux, else what the platform says."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def instruction_sets() -> list[str]:
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    supported: dict[str, bool] = {}
    with contextlib.suppress(Exception):  # a torch build without the cpuinfo report
        if capabilities is not None:
            supported = {k: bool(v) for k, v in capabilities().items() if isinstance(v, bool)}
        else:
            for feature, probe in _PROBES.items():
                function = getattr(torch.cpu, probe, None)
                supported[feature] = bool(function and function())
    return [name for feature, name in INSTRUCTION_SETS.items() if supported.get(feature)]


def format_environment(environment: dict[str, Any]) -> str:
    """One line: device, threads, batch, processes, versions (``-`` for an absent package)."""
    device = environment.get("device") or {}
    where = device.get("name") or "unknown device"
    if device.get("type") == "cpu":
        features = [device.get("capability"), *device.get("instruction_sets", [])]
        if device.get("onednn_max_cpu_isa"):
            features.append(f"ONEDNN_MAX_CPU_ISA={device['onednn_max_cpu_isa']}")
        where += f" ({', '.join(f for f in features if f)})" if any(features) else ""
    elif device.get("cuda"):
        where += f" (CUDA {device['cuda']})"
    parts = [where, f"{environment.get('threads', '?')} threads"]
    if environment.get("batch_size") is not None:
        parts.append(f"batch {environment['batch_size']}")
    if environment.get("world_size") is not None:
        processes = environment["world_size"]
        parts.append(f"{processes} process{'es' * (processes != 1)}")
    versions = environment.get("versions") or {}
    parts.append(" ".join(f"{name} {version or '-'}" for name, version in versions.items()))
    return ", ".join(parts)
