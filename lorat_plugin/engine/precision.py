"""The precision policy: the precision the network runs at when none is asked for, and the names of precisions.

When none is asked for (:func:`default_precision`): fp16 on CUDA (the reference's), bf16 on x86 CPUs that multiply
bf16 natively (AVX512-BF16 or AMX, oneDNN not held below it), fp32 elsewhere (Apple MPS, other CPUs); fp32 on CUDA
runs with TF32 off. int8 is never a default; on CPUs with AMX it is slower than bf16 and says so once
(:func:`int8_cost_on_amx`).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import platform
from typing import Iterator

import torch

from ..environment import onednn_isa_cap

log = logging.getLogger(__name__)

_ALIASES = {"float32": "fp32", "float": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}


# oneDNN instruction-set caps (its ONEDNN_MAX_CPU_ISA) below AVX-512
_ONEDNN_ISAS_BELOW_AVX512 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2"}
# ... below the first with native bf16 products
_ONEDNN_ISAS_WITHOUT_BF16 = _ONEDNN_ISAS_BELOW_AVX512 | {"AVX512_CORE", "AVX512_CORE_VNNI"}
# ... and those below the first with AMX
_ONEDNN_ISAS_WITHOUT_AMX = _ONEDNN_ISAS_WITHOUT_BF16 | {"AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512"}
# What int8 cost on a CPU with AMX, as docs/speed.md ("CPU int8", "int8 on AMX") records it with its command.
INT8_ON_AMX = "0.81x the frames/s of the bf16 default (B-224, batch 1, a 2-core Xeon with AMX)"


def cpu_has_native_bf16() -> bool:
    """x86 CPUs with AVX512-BF16 or AMX (Intel Cooper Lake+, AMD Zen 4+): bf16 products beat fp32 (else emulated).
    Not when ``ONEDNN_MAX_CPU_ISA`` holds oneDNN (oneDNN docs, "CPU dispatcher control") below AVX512-BF16."""
    if onednn_isa_cap() in _ONEDNN_ISAS_WITHOUT_BF16:
        return False
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    with contextlib.suppress(RuntimeError):  # a torch build without the probes' backend
        return any(probe is not None and probe() for probe in probes)
    return False


def onednn_runs_avx512() -> bool:
    """True when oneDNN's kernels run AVX-512 code: the CPU has AVX512F (as torch reports it) and
    ``ONEDNN_MAX_CPU_ISA`` does not hold oneDNN below it. Where they do not, oneDNN's GELU as a linear kernel writes
    is slower than ATen's (int8's ``fc1``, docs/speed.md)."""
    from ..environment import instruction_sets

    return onednn_isa_cap() not in _ONEDNN_ISAS_BELOW_AVX512 and "AVX512F" in instruction_sets()


def int8_cost_on_amx() -> str | None:
    """The one warning line for int8 on a CPU whose oneDNN uses AMX (``amx_int8`` / ``amx_bf16`` among
    :func:`lorat_plugin.environment.instruction_sets`, ``ONEDNN_MAX_CPU_ISA`` not below AMX), where int8 is slower
    than the bf16 default; ``None`` elsewhere (without AMX int8 is the faster of the two)."""
    from ..environment import instruction_sets

    if onednn_isa_cap() in _ONEDNN_ISAS_WITHOUT_AMX or not {"AMX-INT8", "AMX-BF16"} & set(instruction_sets()):
        return None
    return (f"int8 is slower than the bf16 default on CPUs with AMX: measured {INT8_ON_AMX}, docs/speed.md "
            "'int8 on AMX' (lorat benchmark --variant B-224 --dtype int8 --compare bf16 --model-only "
            "--batch-sizes 1); leave --dtype unset for bf16")


@functools.cache
def _warn_int8_cost() -> None:
    """Logs :func:`int8_cost_on_amx` once per process (the precision is resolved more than once per run)."""
    line = int8_cost_on_amx()
    if line is not None:
        log.warning(line)


def default_precision(device: torch.device | str) -> torch.dtype:
    """The precision that runs when none is asked for (the rule in the module docstring)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and platform.machine().lower() in ("x86_64", "amd64") and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def resolve_precision(dtype: torch.dtype | str | None, device: torch.device | str) -> torch.dtype:
    """``dtype`` (a precision of the backend table, ``lorat_plugin.engine.backends.BACKENDS``: ``fp32``, ``bf16``,
    ``fp16``, ``int8``; an alias such as ``half``; or a torch dtype) as a torch dtype, checked against the device
    types its row runs on; ``None``: :func:`default_precision` of ``device``."""
    from .backends import BACKENDS

    if dtype is None:
        return default_precision(device)
    name = precision_name(dtype) if isinstance(dtype, torch.dtype) else str(dtype).lower().replace("torch.", "")
    row = BACKENDS.get(_ALIASES.get(name, name))
    if row is None:
        raise ValueError(f"unknown inference precision {dtype!r}: use {', '.join(BACKENDS)}")
    device_type = torch.device(device).type
    if device_type not in row.devices:
        hint = "use fp16 or bf16 there" if device_type != "cpu" else "use fp32 or bf16"
        raise ValueError(f"{row.precision} runs on {' and '.join(row.devices)} only, not on {device}: {hint}")
    if row.precision == "int8":
        _warn_int8_cost()
    return row.dtype


def precision_name(dtype: torch.dtype) -> str:
    """The short name (``fp32``, ``bf16``, ...) of a precision, as results and logs record it."""
    from .backends import BACKENDS

    for row in BACKENDS.values():
        if row.dtype == dtype:
            return row.precision
    raise ValueError(f"{dtype} is not an inference precision: use {', '.join(BACKENDS)}")


@contextlib.contextmanager
def full_fp32(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """For fp32 on CUDA, TF32 off inside the block (flags restored after): Ampere and later GPUs run cuDNN
    convolutions, the patch embedding among them, in TF32 by default, so fp32 would not be the exact path."""
    if device.type != "cuda" or dtype != torch.float32:
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved

