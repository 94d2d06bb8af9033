"""Which model the user means: the one policy behind every entry point (CLI verbs, ``LoRATTracker``, the TraX
program, ``lorat vot-workspace``), and the model's identity in results.

:meth:`ModelSpec.resolve` settles the model from arguments, then the :data:`ENV` variables (read here only; they let
toolkits that start the tracker as a process, like VOT's ``trackers.ini``, name weights), then the shipped demo model.
Nothing is downloaded. ``LORAT_WEIGHTS_DIR`` holds DINOv2 files and released checkpoints under their usual names
(``dinov2_vitb14_pretrain.pth``, ``base.bin``, ...) or ``<variant>.safetensors``. The rules:

* Arguments naming a model (variant, checkpoint, backbone) replace all three model variables, so one model is never
  pieced together from two places; weights folder, device and precision each fall back to their variable.
* Nothing named and no weights folder: the demo model. A weights folder without a variant: the one variant it holds
  (several: an error listing them; none: an error saying what was expected).
* A missing file or folder is a ``FileNotFoundError`` "<what> not found: <path>", whoever asks.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import torch

from ..devices import parse_device
from .config import (DINOV2_FILES, RELEASED_CHECKPOINTS, VARIANTS, backbone_size, canonical_variant, dinov2_hint,
                     get_config)

DEMO = "demo"
# ModelSpec field -> the environment variable it falls back to.
ENV = {"variant": "LORAT_VARIANT", "backbone_weights": "LORAT_BACKBONE_WEIGHTS", "checkpoint": "LORAT_CHECKPOINT",
       "weights_dir": "LORAT_WEIGHTS_DIR", "device": "LORAT_DEVICE", "dtype": "LORAT_DTYPE"}
PATH_VARIABLES = (ENV["backbone_weights"], ENV["checkpoint"], ENV["weights_dir"])
RELEASES_URL = "https://github.com/LitingLin/LoRAT"
PathArg = str | os.PathLike | None


def demo_checkpoint() -> Path:
    """The small demo model shipped inside the package (trained on the procedural benchmark; see docs/demo.md)."""
    path = Path(str(resources.files("lorat_plugin") / "assets" / "demo_model.safetensors"))
    if not path.is_file():
        raise FileNotFoundError(f"demo model not found: {path} (missing from this installation); reinstall the "
                                "package, or rebuild the model as docs/demo.md says (`lorat train --config demo`)")
    return path


def _existing(path: PathArg, what: str, *, folder: bool = False, hint: str = "") -> Path | None:
    """``path`` made absolute, or the one "not found" error every entry point gives."""
    if path is None:
        return None
    path = Path(path).expanduser().absolute()
    if not (path.is_dir() if folder else path.is_file()):
        raise FileNotFoundError(f"{what} not found: {path}" + (f". Get it from {hint}." if hint else ""))
    return path


def _checkpoints_in(folder: Path) -> dict[str, Path]:
    """variant -> its checkpoint in ``folder`` (a ``<variant>.safetensors`` before the released file)."""
    found = {v: next((folder / n for n in (f"{v}.safetensors", RELEASED_CHECKPOINTS.get(v))
                      if n and (folder / n).is_file()), None) for v in VARIANTS}
    return {v: path for v, path in found.items() if path is not None}


def _variant_held_by(folder: Path) -> str:
    found = _checkpoints_in(folder)
    if len(found) == 1:
        return next(iter(found))
    if found:
        listed = ", ".join(f"{v} ({p.name})" for v, p in found.items())
        raise ValueError(f"{folder} holds checkpoints of several variants: {listed}; choose one with --variant "
                         f"or {ENV['variant']}")
    released = ", ".join(RELEASED_CHECKPOINTS.values())
    raise FileNotFoundError(f"no LoRAT checkpoint in {folder}: expected one released checkpoint ({released}; linked "
                            f"from {RELEASES_URL}) or one <variant>.safetensors written by `lorat train`")


def _header(checkpoint: Path) -> dict[str, str]:
    """The safetensors metadata of a checkpoint (read from the header only); empty for other files."""
    from safetensors import safe_open

    try:
        with safe_open(str(checkpoint), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception:  # noqa: BLE001 -- not safetensors: a released or torch.save file, read (and checked) later
        return {}


def _holds_backbone(checkpoint: Path) -> bool:
    """Whether a checkpoint written by ``save_checkpoint`` carries its own backbone."""
    return _header(checkpoint).get("contents") == "full"


def recorded_run(checkpoint: Path | None) -> str | None:
    """The training run that wrote ``checkpoint`` (the ``run`` entry ``lorat train`` records in the metadata: the
    config's ``name``), or None for files without one (released checkpoints, DINOv2 files, ONNX)."""
    if checkpoint is None:
        return None
    return _header(checkpoint).get("run", "").strip() or None


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model: existing absolute paths, the variant (canonical, ``"demo"``, or ``None``: the config stored
    in the checkpoint), the folder the files came from, and the device/dtype asked for (``None``: engine defaults)."""

    variant: str | None = None
    checkpoint: Path | None = None
    backbone_weights: Path | None = None
    weights_dir: Path | None = None
    device: str | None = None
    dtype: str | None = None

    @classmethod
    def resolve(cls, variant: str | None = None, *, checkpoint: PathArg = None, backbone_weights: PathArg = None,
                weights_dir: PathArg = None, device: str | None = None, dtype: str | None = None,
                env: Mapping[str, str] | None = None, random_weights: bool = False) -> "ModelSpec":
        """Apply the module's rules; ``env`` defaults to ``os.environ`` (empty variables count as unset).
        ``random_weights``: a variant named without weights is that variant randomly initialised (timing only)."""
        env = os.environ if env is None else env

        def from_env(field: str) -> str | None:
            return (env.get(ENV[field]) or "").strip() or None

        if not (variant or checkpoint or backbone_weights):
            variant, checkpoint, backbone_weights = (from_env(f) for f in ("variant", "checkpoint", "backbone_weights"))
        folder = _existing(weights_dir or from_env("weights_dir"), "weights folder", folder=True)
        if device is None and from_env("device") is not None:
            device = from_env("device")
            # spelled right before any weights load; whether this machine has it is the engine's check (a spec may
            # be written for another machine, as a VOT workspace's is)
            parse_device(device, setting=ENV["device"], here=False)
        elif device is not None:
            parse_device(device, setting="--device", here=False)
        runtime = dict(weights_dir=folder, device=device, dtype=dtype or from_env("dtype"))
        checkpoint = _existing(checkpoint, "LoRAT checkpoint", hint=RELEASES_URL)
        backbone = _existing(backbone_weights, "DINOv2 backbone file")
        if str(variant).lower() == DEMO or not (variant or checkpoint or backbone or folder):
            return cls(variant=DEMO, checkpoint=demo_checkpoint(), **runtime)
        if variant is None and checkpoint is None and backbone is None:
            variant = _variant_held_by(folder)
        elif variant is not None:
            variant = canonical_variant(variant) or variant  # unknown names raise here, listing the known ones
        elif checkpoint is not None:  # a released file says its variant by its name; others carry their config
            variant = next((v for v, name in RELEASED_CHECKPOINTS.items() if name == checkpoint.name), None)
        if folder is not None and variant is not None:
            if checkpoint is None:
                checkpoint = _checkpoints_in(folder).get(variant)
                if checkpoint is None:
                    released = RELEASED_CHECKPOINTS.get(variant)
                    raise FileNotFoundError(
                        f"no checkpoint for {variant} in {folder}: expected " + (f"{released} (released LoRAT weights"
                        f", linked from {RELEASES_URL}) or " if released else "") + f"{variant}.safetensors (written "
                        "by `lorat train`)" + ("" if released else f"; {variant} has no released checkpoint"))
            size = backbone_size(get_config(variant))
            if backbone is None and size is not None and not _holds_backbone(checkpoint):
                # released checkpoints (and `lorat train`'s LoRA ones) hold only the trainable tensors
                backbone = _existing(folder / DINOV2_FILES[size], "DINOv2 backbone file",
                                     hint=dinov2_hint(get_config(variant)))
        if checkpoint is None and backbone is None and not random_weights:
            raise ValueError(f"variant {variant} needs weights: a DINOv2 backbone file ("
                             f"{dinov2_hint(get_config(variant))}) and a LoRAT checkpoint, or a folder holding both "
                             f"(--weights-dir / {ENV['weights_dir']})")
        return cls(variant=variant, checkpoint=checkpoint, backbone_weights=backbone, **runtime)

    @classmethod
    def from_args(cls, args: argparse.Namespace, **options: Any) -> "ModelSpec":
        """The spec of a CLI verb's model arguments (``commands/common.add_model_arguments``); ``options`` go to
        :meth:`resolve`."""
        return cls.resolve(getattr(args, "variant", None), **options, **{
            f: getattr(args, f, None) for f in ("checkpoint", "backbone_weights", "weights_dir", "device", "dtype")})

    @property
    def is_demo(self) -> bool:
        return self.variant == DEMO

    @property
    def files(self) -> list[Path]:
        return [p for p in (self.backbone_weights, self.checkpoint) if p is not None]

    def load(self, *, merge: bool = True) -> torch.nn.Module:
        """The network on the CPU as stored, merged for inference by default (the engine places and casts it)."""
        from .build import build_model

        return build_model(None if self.is_demo else self.variant, backbone_weights=self.backbone_weights,
                           checkpoint=self.checkpoint, merge=merge)

    def describe(self) -> str:
        if self.is_demo:
            return "the shipped demo model (not LoRAT's published accuracy)"
        return f"{self.variant or 'the checkpoint config'}: " + ", ".join(str(p) for p in self.files)

    def identity(self, precision: str) -> dict[str, Any]:
        """What a results folder records about the model (no absolute path: the same files give the same identity
        wherever they lie): ``{"name", "variant", "weights", "files", "precision"}``, ``weights`` a short SHA-256 of
        the files' bytes, ``precision`` what actually runs (``precision_name(engine.dtype)``), ``name`` the default
        tracker name ``LoRAT-<label>-<8 hex of weights>-<precision>``. The label is the variant, then the run that
        trained the checkpoint (:func:`recorded_run`; left out where it repeats the variant), else the checkpoint's
        file stem: ``LoRAT-B-224-…``, ``LoRAT-B-224-mine-…``, ``LoRAT-smoke-…`` (a custom architecture trained by a
        run named smoke, whatever its file is called), ``LoRAT-base-…``."""
        digest = hashlib.sha256("".join(file_digest(p) for p in self.files).encode()).hexdigest()[:12]
        run = recorded_run(self.checkpoint)
        if self.variant is None:
            label = run or self.checkpoint.stem  # type: ignore[union-attr]  # resolve() leaves one of them
        elif run is None or run.lower() == self.variant.lower():
            label = self.variant
        else:
            label = f"{self.variant}-{run}"
        return make_identity(label, self.variant, digest, [p.name for p in self.files], precision)


def model_identity(precision: str, *, spec: ModelSpec | None = None, model: torch.nn.Module | None = None,
                   exported: Path | None = None) -> dict[str, Any]:
    """The identity of the model that runs, for every entry point: a resolved ``spec`` names its files
    (:meth:`ModelSpec.identity`); an ``exported`` file (ONNX) is its own weights; a ``model`` built in memory is
    named by its config's variant (``model`` when it is none of the known ones) and a hash of its tensors.
    ``precision`` is what actually runs (``precision_name(engine.dtype)``)."""
    if spec is not None:
        return spec.identity(precision)
    if exported is not None:
        exported = Path(exported)
        return make_identity(exported.stem, None, file_digest(exported)[:12], [exported.name], precision)
    if model is None:
        raise ValueError("model_identity needs a spec, an exported file or a model")
    config = getattr(model, "config", None)
    variant = canonical_variant(config) if config is not None else None
    return make_identity(variant or "model", variant, state_digest(model), [], precision)


def make_identity(label: str, variant: str | None, digest: str, files: list[str], precision: str) -> dict[str, Any]:
    """The identity dict itself (:func:`model_identity` chooses its parts)."""
    return {"name": f"LoRAT-{label}-{digest[:8]}-{precision}", "variant": variant, "weights": digest,
            "files": files, "precision": precision}


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, cached per (path, size, mtime) for this process."""
    stat = path.stat()
    return _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.cache
def _digest(path: str, size: int, mtime_ns: int) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        # read in chunks (hashlib.file_digest would do this, but needs Python 3.11; setup.py allows 3.10)
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def state_digest(model: torch.nn.Module) -> str:
    """Short SHA-256 over a built model's tensors (names and bytes): the weights part of its identity."""
    sha = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        sha.update(name.encode())
        sha.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()[:12]


def load_model(variant: str | None = None, *, backbone_weights: PathArg = None, checkpoint: PathArg = None,
               weights_dir: PathArg = None, merge: bool = True) -> torch.nn.Module:
    """The model a user means (:meth:`ModelSpec.resolve`), built on the CPU; merged for inference by default."""
    return ModelSpec.resolve(variant, backbone_weights=backbone_weights, checkpoint=checkpoint,
                             weights_dir=weights_dir).load(merge=merge)
