"""The training configuration: plain YAML, strict keys, the paper's recipe as every default.

A config file has up to six sections (``model``, ``data``, ``optim``, ``loss``, ``train``, ``validation``); every key
it omits takes the default below, which is the reference recipe (lorat-spec §2-3). Unknown keys are errors that
name the key and list the valid ones. ``key.path=value`` overrides (values parsed as YAML, list items by index:
``data.datasets.0.root=/data/GOT-10k``) apply before validation. Path values may use ``$VAR``/``${VAR}`` and ``~``,
expanded when the path is used (:func:`resolve_path`); an unset variable is then an error naming the key.
"""
from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..model import ModelConfig, get_config

PACKAGED_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


@dataclass
class DatasetEntry:
    """One training (or validation) source read by ``lorat_plugin.data.datasets.load_dataset``."""

    name: str  # reader: got10k, lasot, trackingnet, coco, ... (a folder in GOT-10k layout: got10k)
    root: str
    split: str | None = None  # the reader's split ("train", "val", ...)
    weight: float = 1.0  # share of each epoch's samples, relative to the other entries
    # Keep only these sequences: one per line, a sequence name or a 0-based index into the split's list.txt order
    # (the format of GOT-10k's got10k_vot_train_split.txt, 7,086 indices).
    sequences_file: str | None = None


def _reference_datasets() -> list[DatasetEntry]:
    # The paper's four sources at equal weight (spec §3.1); roots come from $LORAT_DATA unless overridden.
    return [
        DatasetEntry("got10k", "${LORAT_DATA}/GOT-10k", "train",
                     sequences_file="${LORAT_DATA}/GOT-10k/got10k_vot_train_split.txt"),
        DatasetEntry("lasot", "${LORAT_DATA}/LaSOT", "train"),
        DatasetEntry("trackingnet", "${LORAT_DATA}/TrackingNet", "train"),
        DatasetEntry("coco", "${LORAT_DATA}/COCO", "train"),
    ]


@dataclass
class ModelSection:
    """``variant`` names the architecture; any :class:`ModelConfig` field given here overrides it (``tuning``,
    ``lora_rank``, ``drop_path``, or a whole custom architecture with ``variant: null``)."""

    variant: str | None = "B-224"
    backbone_weights: str | None = None  # DINOv2 .pth, or a contents=full checkpoint of this package
    checkpoint: str | None = None  # start the trainable tensors from this LoRAT checkpoint (else fresh)
    head_from: str | None = None  # start only the head and token-type table from this checkpoint; LoRA starts fresh
    fields: dict[str, Any] = field(default_factory=dict)

    def model_config(self) -> ModelConfig:
        base = get_config(self.variant) if self.variant else ModelConfig()
        try:
            return base.replace(**self.fields)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"model: {e}") from e


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
    # matmul-softmax-matmul: on CPUs 24 % faster per step at the demo's 80 tokens, 22 % slower at S-224's 320.
    attention: Literal["default", "math"] = "default"
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
        fields_ = data["model"].pop("fields")
        data["model"].update(fields_)
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def steps_per_epoch(self) -> int:
        return self.data.samples_per_epoch // self.data.batch_size

    def validate(self, world_size: int = 1) -> None:
        d, o, t = self.data, self.optim, self.train
        if not d.datasets:
            raise ConfigError("data.datasets is empty: name at least one training source")
        for i, entry in enumerate(d.datasets):
            if entry.weight <= 0:
                raise ConfigError(f"data.datasets.{i}.weight must be positive, got {entry.weight}")
        if d.samples_per_epoch < d.batch_size:
            raise ConfigError(f"data.samples_per_epoch ({d.samples_per_epoch}) is smaller than one batch "
                              f"({d.batch_size})")
        if d.samples_per_epoch % d.batch_size:
            raise ConfigError(f"data.samples_per_epoch ({d.samples_per_epoch}) must be a multiple of data.batch_size "
                              f"({d.batch_size})")
        per_step = world_size * o.accumulation_steps
        if d.batch_size % per_step:
            raise ConfigError(f"data.batch_size {d.batch_size} is not divisible by processes x accumulation steps = "
                              f"{world_size} x {o.accumulation_steps}: the global batch must split evenly")
        for key in ("max_gap", "crop_attempts", "num_workers", "prefetch_factor"):
            if getattr(d, key) < (0 if key == "num_workers" else 1):
                raise ConfigError(f"data.{key} must be positive, got {getattr(d, key)}")
        if not 0 <= d.flip_probability <= 1:
            raise ConfigError(f"data.flip_probability must be in [0, 1], got {d.flip_probability}")
        for key in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(d, key) < 1:
                raise ConfigError(f"data.{key} must be in [0, 1), got {getattr(d, key)}")
        if len(o.betas) != 2:
            raise ConfigError(f"optim.betas must hold two numbers, got {o.betas}")
        if o.accumulation_steps < 1 or t.epochs < 1 or t.checkpoint_every < 1 or t.keep_checkpoints < 1:
            raise ConfigError("optim.accumulation_steps, train.epochs, train.checkpoint_every and "
                              "train.keep_checkpoints must be >= 1")
        if o.layer_decay is not None and not 0 < o.layer_decay <= 1:
            raise ConfigError(f"optim.layer_decay must be in (0, 1], got {o.layer_decay}")
        if t.dtype not in ("fp16", "bf16", "fp32"):
            raise ConfigError(f"train.dtype must be fp16, bf16 or fp32, got {t.dtype!r}")
        self.model.model_config()

    def check_paths(self) -> None:
        """Expand every path-valued key now, so that an unset variable fails before any work is done."""
        resolve_path(self.model.backbone_weights, "model.backbone_weights")
        resolve_path(self.model.checkpoint, "model.checkpoint")
        resolve_path(self.model.head_from, "model.head_from")
        resolve_path(self.train.output, "train.output")
        entries = [(f"data.datasets.{i}", e) for i, e in enumerate(self.data.datasets)]
        if self.validation.dataset is not None:
            entries.append(("validation.dataset", self.validation.dataset))
        for where, entry in entries:
            resolve_path(entry.root, f"{where}.root")
            resolve_path(entry.sequences_file, f"{where}.sequences_file")


# ---- reading ----------------------------------------------------------------------------------------------------

def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML file (or start from the defaults with ``path=None``), apply ``key=value`` overrides, check
    every key, expand variables in paths."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = resolve_config_path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
        raw.setdefault("name", path.stem)
    for item in overrides:
        apply_override(raw, item)
    config = from_dict(raw)
    config.validate()
    return config


def packaged_configs() -> list[str]:
    """Names of the recipes shipped in ``lorat_plugin/configs`` (``B-224``, ``demo``, ...)."""
    return sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml"))


def resolve_config_path(path: str | os.PathLike) -> Path:
    """A YAML file, or the name of a shipped recipe (``--config B-224`` works in any installation)."""
    path = Path(path)
    if path.is_file():
        return path
    shipped = PACKAGED_CONFIGS / f"{path.name.removesuffix('.yaml')}.yaml"
    if str(path.parent) in (".", "configs") and shipped.is_file():  # "B-224" or a checkout's "configs/B-224.yaml"
        return shipped
    raise FileNotFoundError(f"training config not found: {path} (a YAML file, or one of the shipped recipes: "
                            f"{', '.join(packaged_configs())})")


def apply_override(raw: dict[str, Any], item: str) -> None:
    """``a.b.c=value`` into the nested dict (value parsed as YAML, so numbers/bools/lists/null work)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form key.path=value (e.g. optim.lr=2e-4)")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: the value is not valid YAML: {e}") from e
    parts = key.strip().split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        node = _child(node, part, ".".join(parts[:depth + 1]))
    last = parts[-1]
    if isinstance(node, list):
        node[_index(node, last, key)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"override {item!r}: {'.'.join(parts[:-1])} is a value, not a section")


def _child(node: Any, part: str, where: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, where)]
    if not isinstance(node, dict):
        raise ConfigError(f"{where}: cannot descend into a value")
    if part not in node or node[part] is None:
        # Overriding one item of the (default) dataset list starts from the reference list.
        node[part] = [dataclasses.asdict(e) for e in _reference_datasets()] if part == "datasets" else {}
    return node[part]


def _index(node: list, part: str, where: str) -> int:
    if not re.fullmatch(r"-?\d+", part) or not -len(node) <= int(part) < len(node):
        raise ConfigError(f"{where}: {part!r} is not an index of a list of {len(node)} items")
    return int(part)


def from_dict(raw: dict[str, Any]) -> TrainConfig:
    raw = dict(raw)
    model_raw = raw.pop("model", None) or {}
    if not isinstance(model_raw, dict):
        raise ConfigError(f"model must be a mapping, got {model_raw!r}")
    model_keys = {"variant", "backbone_weights", "checkpoint", "head_from"}
    arch_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(model_raw) - model_keys - arch_fields)
    if unknown:
        raise ConfigError(f"unknown key(s) model.{', model.'.join(unknown)}; valid: {', '.join(sorted(model_keys))} "
                          f"and the ModelConfig fields {', '.join(sorted(arch_fields))}")
    arch_hints = typing.get_type_hints(ModelConfig)
    model = ModelSection(**{k: _coerce(str | None, v, f"model.{k}") for k, v in model_raw.items() if k in model_keys},
                         fields={k: _coerce(arch_hints[k], v, f"model.{k}") for k, v in model_raw.items()
                                 if k in arch_fields})
    config = _build(TrainConfig, raw, "")
    config.model = model
    return config


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown key(s) {', '.join(prefix + k for k in unknown)}; valid keys"
                          f"{' of ' + where if where else ''}: {', '.join(sorted(known))}")
    values = {}
    for name, value in raw.items():
        key = f"{where}.{name}" if where else name
        values[name] = _coerce(hints[name], value, key)
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{key} must not be null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} has the wrong type")
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{key} must be one of {', '.join(map(str, typing.get_args(hint)))}, got {value!r}")
        return value
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_coerce(item, v, f"{key}.{i}") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return str(value)
    return value


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
