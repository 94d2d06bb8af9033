"""The training configuration: typed sections with the paper's recipe as every default, read with OmegaConf.

A config file has up to six sections (``model``, ``data``, ``optim``, ``loss``, ``train``, ``validation``) and may
start from another recipe with ``base: <name or file>``; every key it omits takes the base's value or the default
below, which is the reference recipe (github.com/LitingLin/LoRAT, its ``config/LoRAT`` YAMLs). Unknown keys, values
of the wrong type and counts out of range are errors naming the key. ``key.path=value`` overrides (values parsed as
YAML, list items by index: ``data.datasets.0.root=/data/GOT-10k``) apply last. Path values may use ``$VAR``/``${VAR}``
and ``~``, expanded when the path is used (:func:`resolve_path`); an unset variable is then an error naming the key.
"""
from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..model.config import ModelConfig, get_config

PACKAGED_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


@dataclass
class DatasetEntry:
    """One training (or validation) source read by ``lorat_plugin.data.datasets.load_dataset``."""

    # "???" is OmegaConf's "must be set"
    name: str = "???"  # reader: got10k, lasot, trackingnet, coco, ... (a folder in GOT-10k layout: got10k)
    root: str = "???"
    split: str | None = None  # the reader's split ("train", "val", ...)
    weight: float = 1.0  # share of each epoch's samples, relative to the other entries
    # Keep only these sequences: one per line, a sequence name or a 0-based index into the split's list.txt order
    # (the format of GOT-10k's got10k_vot_train_split.txt, 7,086 indices).
    sequences_file: str | None = None


def _reference_datasets() -> list[DatasetEntry]:
    # The paper's four sources at equal weight; roots come from $LORAT_DATA unless overridden.
    return [
        DatasetEntry("got10k", "$LORAT_DATA/GOT-10k", "train",
                     sequences_file="$LORAT_DATA/GOT-10k/got10k_vot_train_split.txt"),
        DatasetEntry("lasot", "$LORAT_DATA/LaSOT", "train"),
        DatasetEntry("trackingnet", "$LORAT_DATA/TrackingNet", "train"),
        DatasetEntry("coco", "$LORAT_DATA/COCO", "train"),
    ]


def _model_config(section: Any) -> ModelConfig:
    try:
        base = get_config(section.variant) if section.variant else ModelConfig()
        return base.replace(**{k: v for k, v in dataclasses.asdict(section).items() if k in _ARCH and v is not None})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model: {e}") from e


_ARCH = typing.get_type_hints(ModelConfig)
# ``variant`` names the architecture; any ModelConfig field given here overrides it (``tuning``, ``lora_rank``,
# ``drop_path``, or a whole custom architecture with ``variant: null``). Null fields take the variant's value.
ModelSection = dataclasses.make_dataclass("ModelSection", [
    ("variant", str | None, "B-224"),
    ("backbone_weights", str | None, None),  # DINOv2 .pth, or a contents=full checkpoint of this package
    ("checkpoint", str | None, None),  # start the trainable tensors from this LoRAT checkpoint (else fresh)
    ("head_from", str | None, None),  # start only the head and token-type table from it; LoRA starts fresh
    *[(f.name, _ARCH[f.name] | None, None) for f in dataclasses.fields(ModelConfig)],
], namespace={"model_config": _model_config})


@dataclass
class DataSection:
    datasets: list[DatasetEntry] = field(default_factory=_reference_datasets)
    samples_per_epoch: int = 131072
    batch_size: int = 128  # global: samples per optimizer step over all processes and accumulation steps
    num_workers: int = 6  # DataLoader workers per process
    prefetch_factor: int = 2
    max_gap: int = 100  # search frame within +-max_gap frames of the template frame (visible frames only)
    scale_jitter: float = 0.25  # search crop: per-axis scale / exp(N(0,1) * scale_jitter)
    translation_jitter: float = 3.0  # search crop: shift up to +-0.5 * (w + h) * translation_jitter (crop pixels)
    min_object_size: float = 10.0  # search crop: the clipped target must keep both sides >= this (pixels)
    crop_attempts: int = 12  # jitter draws before the pair is resampled
    flip_probability: float = 0.5  # horizontal flip, template and search independently
    brightness: float = 0.4  # colour jitter factors uniform in [1 - v, 1 + v], per image, random order
    contrast: float = 0.4
    saturation: float = 0.4
    three_augment: bool = True  # DeiT-III: one of grayscale / solarize / blur on every pair, same for both images


@dataclass
class OptimSection:
    lr: float = 1e-4
    weight_decay: float = 0.1  # 0 for 1-D parameters, norms and names containing "embed" (token_type_embed)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    warmup_epochs: float = 2.0  # linear from warmup_lr to lr, per iteration, then cosine
    warmup_lr: float = 1e-7
    min_lr: float = 1e-6
    grad_clip: float = 1.0  # global L2 norm after unscaling; 0 disables (the full fine-tuning baseline uses 0.1)
    accumulation_steps: int = 1
    layer_decay: float | None = None  # full fine-tuning baseline: 0.7 (B), 0.8 (L), 0.9 (g); null = off


@dataclass
class LossSection:
    cls_weight: float = 1.0
    box_weight: float = 1.0
    iou_aware: bool = True  # BCE target = IoU of the cell's box with GT at positive cells (False: hard 1)


@dataclass
class TrainSection:
    epochs: int = 170
    seed: int = 42
    dtype: Literal["fp16", "bf16", "fp32"] = "fp16"  # autocast precision; fp16 adds a GradScaler
    device: str | None = None  # null: CUDA (the local rank's GPU) when available, else CPU
    compile: bool = False  # torch.compile the model (the reference does on Linux GPUs)
    # Attention kernel: "default" lets PyTorch pick (fused flash / memory-efficient kernels); "math" is the plain
    # matmul-softmax-matmul, faster on CPUs for few tokens (docs/training.md has the measurements).
    attention: Literal["default", "math"] = "default"
    # Deterministic kernels (torch.use_deterministic_algorithms, cuDNN, cuBLAS workspace): bit-exact CUDA runs and
    # resumes; an op without a deterministic kernel then stops the run naming it. CPU runs are exact without it.
    deterministic: bool = False
    output: str | None = None  # run folder; --output overrides; default runs/<config name>
    checkpoint_every: int = 10  # epochs; the last epoch always writes one
    keep_checkpoints: int = 5  # periodic checkpoints kept (oldest deleted); model.safetensors is never deleted
    include_backbone: bool = False  # self-contained checkpoints (for backbones that are not a public file)
    state_every_steps: int = 0  # also write the resumable state every N steps (0: at epoch ends only)
    log_every: int = 10  # steps between TensorBoard points / progress-bar updates


@dataclass
class ValidationSection:
    """Optional tracking evaluation at epoch ends through the evaluation harness (AO/SUC logged)."""

    dataset: DatasetEntry | None = None
    every: int = 10  # epochs; the last epoch always runs it when a dataset is set
    max_sequences: int | None = None  # first N sequences only (quick checks)
    batch_size: int = 32  # sequences tracked at once


# Counts, sizes and rates: out of range they would train nothing, divide by zero or run backwards.
_RULES = {">= 1": lambda v: v >= 1, ">= 0": lambda v: v >= 0, "> 0": lambda v: v > 0,
          "in [0, 1]": lambda v: 0 <= v <= 1, "in [0, 1)": lambda v: 0 <= v < 1, "in (0, 1]": lambda v: 0 < v <= 1}
_RANGES = {
    "data": {"samples_per_epoch": ">= 1", "batch_size": ">= 1", "num_workers": ">= 0", "prefetch_factor": ">= 1",
             "max_gap": ">= 1", "crop_attempts": ">= 1", "scale_jitter": ">= 0", "translation_jitter": ">= 0",
             "min_object_size": ">= 0", "flip_probability": "in [0, 1]", "brightness": "in [0, 1)",
             "contrast": "in [0, 1)", "saturation": "in [0, 1)"},
    "optim": {"lr": "> 0", "weight_decay": ">= 0", "eps": "> 0", "warmup_epochs": ">= 0", "warmup_lr": ">= 0",
              "min_lr": ">= 0", "accumulation_steps": ">= 1", "layer_decay": "in (0, 1]"},
    "loss": {"cls_weight": ">= 0", "box_weight": ">= 0"},
    "train": {"epochs": ">= 1", "checkpoint_every": ">= 1", "keep_checkpoints": ">= 1", "state_every_steps": ">= 0",
              "log_every": ">= 1"},
    "validation": {"every": ">= 1", "batch_size": ">= 1", "max_sequences": ">= 1"},
}


@dataclass
class TrainConfig:
    name: str = "lorat"  # run name (TensorBoard, default output folder); defaults to the config file's stem
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: LossSection = field(default_factory=LossSection)
    train: TrainSection = field(default_factory=TrainSection)
    validation: ValidationSection = field(default_factory=ValidationSection)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["model"] = {k: v for k, v in data["model"].items() if k not in _ARCH or v is not None}
        return data

    def validate(self, world_size: int = 1) -> None:
        """Every count, size and rate in range; the global batch splits over processes and accumulation."""
        d, o = self.data, self.optim
        if not d.datasets:
            raise ConfigError("data.datasets is empty: name at least one training source")
        checks = [(f"data.datasets.{i}.weight", e.weight, "> 0") for i, e in enumerate(d.datasets)] + [
            (f"{section}.{key}", getattr(getattr(self, section), key), rule)
            for section, rules in _RANGES.items() for key, rule in rules.items()]
        for key, value, rule in checks:
            if value is not None and not _RULES[rule](value):
                raise ConfigError(f"{key} must be {rule}, got {value}")
        if d.samples_per_epoch < d.batch_size or d.samples_per_epoch % d.batch_size:
            raise ConfigError(f"data.samples_per_epoch ({d.samples_per_epoch}) must be a multiple of data.batch_size "
                              f"({d.batch_size})")
        if d.batch_size % (world_size * o.accumulation_steps):
            raise ConfigError(f"data.batch_size {d.batch_size} is not divisible by processes x accumulation steps = "
                              f"{world_size} x {o.accumulation_steps}: the global batch must split evenly")
        if len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
            raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {o.betas}")
        self.model.model_config()

    def check_paths(self) -> None:
        """Expand every path-valued key now, so that an unset variable fails before any work is done."""
        for key in ("model.backbone_weights", "model.checkpoint", "model.head_from", "train.output"):
            section, name = key.split(".")
            resolve_path(getattr(getattr(self, section), name), key)
        entries = [(f"data.datasets.{i}", e) for i, e in enumerate(self.data.datasets)]
        if self.validation.dataset is not None:
            entries.append(("validation.dataset", self.validation.dataset))
        for where, entry in entries:
            resolve_path(entry.root, f"{where}.root")
            resolve_path(entry.sequences_file, f"{where}.sequences_file")


# ---- reading ----------------------------------------------------------------------------------------------------

def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a recipe (or start from the defaults with ``path=None``), apply ``key.path=value`` overrides, check
    every key, type and count. Errors are :class:`ConfigError` naming the key (or file)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    layers: list[dict[str, Any]] = []
    if path is not None:
        path = resolve_config_path(path)
        layers = _recipe_layers(path)
        layers[-1].setdefault("name", path.stem)
    try:
        config = OmegaConf.structured(TrainConfig)
        for layer in layers:
            config = OmegaConf.merge(config, _escape(layer))
        for item in overrides:
            _apply_override(config, item)
        result = OmegaConf.to_object(config)
    except OmegaConfBaseException as e:
        raise ConfigError(_describe(e, layers)) from None
    result.validate()
    return result


def _recipe_layers(path: Path, depth: int = 0) -> list[dict[str, Any]]:
    """The recipe and the ones it names with ``base:`` (a file beside it or a shipped recipe), base first."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    base = raw.pop("base", None)
    if base is None:
        return [raw]
    if depth > 8:
        raise ConfigError(f"{path}: 'base:' recipes nest more than 8 deep (a cycle?)")
    beside = path.parent / f"{str(base).removesuffix('.yaml')}.yaml"
    return [*_recipe_layers(beside if beside.is_file() else resolve_config_path(str(base)), depth + 1), raw]


def resolve_config_path(path: str | os.PathLike) -> Path:
    """A YAML file, or the name of a shipped recipe (``--config B-224`` works in any installation)."""
    path = Path(path)
    if path.is_file():
        return path
    shipped = PACKAGED_CONFIGS / f"{path.name.removesuffix('.yaml')}.yaml"
    if str(path.parent) in (".", "configs") and shipped.is_file():  # "B-224" or a checkout's "configs/B-224.yaml"
        return shipped
    raise FileNotFoundError(f"training config not found: {path} (a YAML file, or one of the shipped recipes: "
                            f"{', '.join(sorted(p.stem for p in PACKAGED_CONFIGS.glob('*.yaml')))})")


def _escape(value: Any) -> Any:
    # "${VAR}" in paths is an environment variable for resolve_path, not an OmegaConf interpolation.
    if isinstance(value, str):
        return value.replace("${", "\\${")
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    return value


def _apply_override(config: Any, item: str) -> None:
    """``a.b.c=value`` (value parsed as YAML; list items by index) onto the OmegaConf config."""
    from omegaconf import ListConfig, OmegaConf

    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {item!r} is not of the form key.path=value (e.g. optim.lr=2e-4)")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: the value is not valid YAML: {e}") from e
    parts = key.split(".")
    for depth in range(1, len(parts)):
        prefix, child = ".".join(parts[:depth]), parts[depth]
        node = OmegaConf.select(config, prefix)
        if isinstance(node, ListConfig) and not (child.lstrip("-").isdigit() and -len(node) <= int(child) < len(node)):
            raise ConfigError(f"{prefix}.{child}: {child!r} is not an index of a list of {len(node)} items")
        if node is None:  # a null section (validation.dataset) starts empty
            OmegaConf.update(config, prefix, {}, merge=True)
    OmegaConf.update(config, key, _escape(value), merge=True)


_TYPE_NAMES = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false", "String": "a string"}


def _describe(error: Exception, layers: list[dict[str, Any]]) -> str:
    """One line naming the key, from an OmegaConf error."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, ValidationError

    key = str(getattr(error, "full_key", "") or "")
    message = str(getattr(error, "msg", error)).splitlines()[0]
    if isinstance(error, (ConfigKeyError, ConfigAttributeError)):
        name = message.split("'")[1] if message.count("'") >= 2 else key
        found = (_find_key(layer, name) for layer in reversed(layers))
        key = key if "." in key else next((k for k in found if k), key)
        owner = getattr(error, "object_type", None)
        known = [f.name for f in dataclasses.fields(owner)] if dataclasses.is_dataclass(owner) else []
        return f"unknown key {key}" + (f" (known: {', '.join(known)})" if known else "")
    if isinstance(error, MissingMandatoryValue):
        return f"{key} must be set"
    if isinstance(error, ValidationError):
        match = re.match(r"Value '(.*)' of type '\w+' could not be converted to (\w+)", message)
        if match:
            return f"{key} must be {_TYPE_NAMES.get(match[2], match[2])}, got {match[1]!r}"
        return f"{key}: {message[0].lower()}{message[1:]}"
    return f"{key}: {message}" if key else message


def _find_key(node: Any, name: str, path: str = "") -> str | None:
    # OmegaConf names an unknown key inside a list item without its path; find it in what was read.
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    found = (f"{path}{key}" if key == name else _find_key(value, name, f"{path}{key}.") for key, value in items)
    return next((k for k in found if k), None)


def resolve_path(value: str | None, key: str) -> Path | None:
    """Expand ``~`` and environment variables in a path-valued key; an unset variable is an error naming the key."""
    if value is None:
        return None
    expanded = os.path.expanduser(os.path.expandvars(value))
    missing = re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expanded)
    if missing:
        raise ConfigError(f"{key}: environment variable {missing[0]} is not set (value {value!r}); set it or "
                          f"override the key, e.g. {key}=/path")
    return Path(expanded)


def config_differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two ``TrainConfig.to_dict()`` results."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        name = f"{prefix}{key}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_differences(va, vb, name + ".")
        elif va != vb:
            out.append(f"{name}: {va!r} -> {vb!r}")
    return out
