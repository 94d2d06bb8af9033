"""The one parser of device strings: the CLI's ``--device``, ``LORAT_DEVICE``, the training config's ``train.device``
and the Python API's ``device=`` all go through :func:`parse_device`, so a bad string is the same one-line error
everywhere (never a torch traceback).
"""
from __future__ import annotations

import torch


def available_devices() -> list[str]:
    """The device strings that work in this process: ``cpu``, then ``cuda:N`` per GPU, then ``mps``."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def best_device() -> torch.device:
    """CUDA if present, else Apple MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def parse_device(value: torch.device | str | None, *, setting: str = "device", here: bool = True) -> torch.device:
    """``value`` as a usable :class:`torch.device`: ``None`` or ``"auto"`` is :func:`best_device`; a string torch
    cannot parse (``toaster``, ``cuda:x``), a device type this process lacks, or a GPU index past the last one is a
    ``ValueError`` naming ``setting`` (e.g. ``--device``, ``train.device``) and the devices available here.
    ``here=False`` checks the spelling only: a setting recorded for another machine (a VOT workspace, a model
    spec) may name a GPU this one lacks."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return best_device()
    try:
        device = value if isinstance(value, torch.device) else torch.device(str(value).strip())
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(_unusable(setting, value, "is not a device")) from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(_unusable(setting, value, "is not a device LoRAT runs on"))
    if not here:
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(_unusable(setting, value, f"needs CUDA, which this torch {torch.__version__} "
                                                       "does not see"))
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(_unusable(setting, value, f"names GPU {device.index}, but there are "
                                                       f"{torch.cuda.device_count()}"))
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(_unusable(setting, value, "needs Apple MPS, which is not available"))
    return device


def _unusable(setting: str, value: object, why: str) -> str:
    return f"{setting} {str(value)!r} {why}: use one of {', '.join(available_devices())} (or auto)"
