"""The training configuration: typed sections with the paper's recipe as every default, read with OmegaConf.

A config file has up to six sections (``model``, ``data``, ``optim``, ``loss``, ``train``, ``validation``) and may
start from another recipe with ``base: <name or file>``; every key it omits takes the base's value or the default
below, which is the reference recipe (github.com/LitingLin/LoRAT, its ``config/LoRAT`` YAMLs). The sections are
OmegaConf structured configs: unknown keys and values of the wrong type are errors naming the key, and every count,
size and rate carries its allowed range beside its default (:func:`ranged`). ``key.path=value`` overrides
(OmegaConf's dot-list: values parsed as YAML, list items by index: ``data.datasets.0.root=/data/GOT-10k``) apply
last. Environment variables are OmegaConf's ``${oc.env:NAME}`` (or ``${oc.env:NAME,default}``), resolved when the
config is read; an unset one is an error naming the key.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..data.datasets.names import name_problem
from ..model.config import ModelConfig, get_config

PACKAGED_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


# Counts, sizes and rates: out of range they would train nothing, divide by zero or run backwards.
_RULES = {">= 1": lambda v: v >= 1, ">= 0": lambda v: v >= 0, "> 0": lambda v: v > 0,
          "in [0, 1]": lambda v: 0 <= v <= 1, "in [0, 1)": lambda v: 0 <= v < 1, "in (0, 1]": lambda v: 0 < v <= 1,
          "in [0, 2**64)": lambda v: 0 <= v < 2**64}


def ranged(default: Any, rule: str) -> Any:
    """A setting whose value must satisfy ``rule`` (one of ``_RULES``); :meth:`TrainConfig.validate` checks it."""
    if rule not in _RULES:
        raise ValueError(f"unknown range rule {rule!r}")
    return field(default=default, metadata={"rule": rule})


@dataclass
class DatasetEntry:
    """One training (or validation) source read by ``lorat_plugin.data.datasets.load_dataset``."""

    # "???" is OmegaConf's "must be set"
    name: str = "???"  # reader: got10k, lasot, trackingnet, coco, ... (a folder in GOT-10k layout: got10k)
    root: str = "???"
    split: str | None = None  # the reader's split ("train", "val", ...)
    weight: float = ranged(1.0, "> 0")  # share of each epoch's samples, relative to the other entries
    # Keep only these sequences: one per line, a sequence name or a 0-based index into the split's list.txt order
    # (the format of GOT-10k's got10k_vot_train_split.txt, 7,086 indices).
    sequences_file: str | None = None


def _reference_datasets() -> list[DatasetEntry]:
    # The paper's four sources at equal weight, under $LORAT_DATA unless overridden.
    return [
        DatasetEntry("got10k", "${oc.env:LORAT_DATA}/GOT-10k", "train",
                     sequences_file="${oc.env:LORAT_DATA}/GOT-10k/got10k_vot_train_split.txt"),
        DatasetEntry("lasot", "${oc.env:LORAT_DATA}/LaSOT", "train"),
        DatasetEntry("trackingnet", "${oc.env:LORAT_DATA}/TrackingNet", "train"),
        DatasetEntry("coco", "${oc.env:LORAT_DATA}/COCO", "train"),
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
    samples_per_epoch: int = ranged(131072, ">= 1")
    batch_size: int = ranged(128, ">= 1")  # global: samples per optimizer step over all processes and accumulation
    num_workers: int = ranged(6, ">= 0")  # DataLoader workers per process
    prefetch_factor: int = ranged(2, ">= 1")
    max_gap: int = ranged(100, ">= 1")  # search frame within +-max_gap frames of the template frame (visible only)
    scale_jitter: float = ranged(0.25, ">= 0")  # search crop: per-axis scale / exp(N(0,1) * scale_jitter)
    translation_jitter: float = ranged(3.0, ">= 0")  # search crop: shift up to +-0.5 * (w + h) * this (crop px)
    min_object_size: float = ranged(10.0, ">= 0")  # search crop: the clipped target keeps both sides >= this (px)
    crop_attempts: int = ranged(12, ">= 1")  # jitter draws before the pair is resampled
    flip_probability: float = ranged(0.5, "in [0, 1]")  # horizontal flip, template and search independently
    brightness: float = ranged(0.4, "in [0, 1)")  # colour jitter factors uniform in [1 - v, 1 + v], per image
    contrast: float = ranged(0.4, "in [0, 1)")
    saturation: float = ranged(0.4, "in [0, 1)")
    three_augment: bool = True  # DeiT-III: one of grayscale / solarize / blur on every pair, same for both images


@dataclass
class OptimSection:
    lr: float = ranged(1e-4, "> 0")
    weight_decay: float = ranged(0.1, ">= 0")  # 0 for 1-D parameters, norms and names containing "embed"
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = ranged(1e-8, "> 0")
    warmup_epochs: float = ranged(2.0, ">= 0")  # linear from warmup_lr to lr, per iteration, then cosine
    warmup_lr: float = ranged(1e-7, ">= 0")
    min_lr: float = ranged(1e-6, ">= 0")
    # Global L2 norm after unscaling; 0 disables (the full fine-tuning baseline uses 0.1).
    grad_clip: float = ranged(1.0, ">= 0")
    accumulation_steps: int = ranged(1, ">= 1")
    layer_decay: float | None = ranged(None, "in (0, 1]")  # full fine-tuning: 0.7 (B), 0.8 (L), 0.9 (g); null = off


@dataclass
class LossSection:
    cls_weight: float = ranged(1.0, ">= 0")
    box_weight: float = ranged(1.0, ">= 0")
    iou_aware: bool = True  # BCE target = IoU of the cell's box with GT at positive cells (False: hard 1)


@dataclass
class TrainSection:
    epochs: int = ranged(170, ">= 1")
    seed: int = ranged(42, "in [0, 2**64)")  # what torch.manual_seed accepts
    dtype: Literal["fp16", "bf16", "fp32"] = "fp16"  # autocast precision; fp16 adds a GradScaler
    device: str | None = None  # null: CUDA (the local rank's GPU) when available, else CPU
    compile: bool = False  # torch.compile the model (the reference does on Linux GPUs)
    # torch intra-op threads of each process (null: torch's choice, OMP_NUM_THREADS where set; torchrun sets 1). On a
    # CPU, tiny models step several times faster on one thread than on two (docs/training.md, the smoke run).
    threads: int | None = ranged(None, ">= 1")
    # Attention kernel: "default" lets PyTorch pick (fused flash / memory-efficient kernels); "math" is the plain
    # matmul-softmax-matmul, faster on CPUs for few tokens (docs/training.md has the measurements).
    attention: Literal["default", "math"] = "default"
    # Deterministic kernels (torch.use_deterministic_algorithms, cuDNN, cuBLAS workspace): bit-exact CUDA runs and
    # resumes; an op without a deterministic kernel then stops the run naming it. CPU runs are exact without it.
    deterministic: bool = False
    output: str | None = None  # run folder; --output overrides; default runs/<config name>
    checkpoint_every: int = ranged(10, ">= 1")  # epochs; the last epoch always writes one
    keep_checkpoints: int = ranged(5, ">= 1")  # periodic checkpoints kept (oldest deleted); never model.safetensors
    include_backbone: bool = False  # self-contained checkpoints (for backbones that are not a public file)
    state_every_steps: int = ranged(0, ">= 0")  # also write the resumable state every N steps (0: at epoch ends)
    log_every: int = ranged(10, ">= 1")  # steps between TensorBoard points / progress-bar updates


@dataclass
class ValidationSection:
    """Optional tracking evaluation at epoch ends through the evaluation harness (AO/SUC logged)."""

    dataset: DatasetEntry | None = None
    every: int = ranged(10, ">= 1")  # epochs; the last epoch always runs it when a dataset is set
    max_sequences: int | None = ranged(None, ">= 1")  # first N sequences only (quick checks)
    batch_size: int = ranged(32, ">= 1")  # sequences tracked at once


# A "$NAME" left in a value after OmegaConf resolved it: the shell's syntax, which configs no longer expand.
_SHELL_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class TrainConfig:
    # run name: TensorBoard, the default output folder, and the checkpoints' metadata (the model's identity carries
    # it); defaults to the config file's stem
    name: str = "lorat"
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
        # the default output folder is runs/<name>, and the name goes into checkpoints and tracker names
        problem = name_problem(self.name.strip())
        if problem is not None:
            raise ConfigError(f"name {self.name!r} {problem}; the run name must be one plain folder name")
        if not d.datasets:
            raise ConfigError("data.datasets is empty: name at least one training source")
        for key, value, rule in _settings(self):
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{key} must be a finite number, got {value}")
            if rule is not None and value is not None and not _RULES[rule](value):
                raise ConfigError(f"{key} must be {rule}, got {value}")
            if isinstance(value, str) and (shell := _SHELL_VARIABLE.search(value)):
                raise ConfigError(f"{key}: {value!r} names the environment variable {shell[1]} the shell's way; "
                                  f"in a config write ${{oc.env:{shell[1]}}}")
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
        """Every path-valued key usable now, so that a bad one fails before any work is done."""
        for key in ("model.backbone_weights", "model.checkpoint", "model.head_from", "train.output"):
            section, name = key.split(".")
            resolve_path(getattr(getattr(self, section), name), key)
        entries = [(f"data.datasets.{i}", e) for i, e in enumerate(self.data.datasets)]
        if self.validation.dataset is not None:
            entries.append(("validation.dataset", self.validation.dataset))
        for where, entry in entries:
            resolve_path(entry.root, f"{where}.root")
            resolve_path(entry.sequences_file, f"{where}.sequences_file")


def _settings(node: Any, prefix: str = "") -> typing.Iterator[tuple[str, Any, str | None]]:
    """(dotted key as a user types it, value, range rule or None) for every scalar setting under ``node``."""
    for f in dataclasses.fields(node):
        value, key = getattr(node, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            yield from _settings(value, key + ".")
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            for i, item in enumerate(value):
                yield from _settings(item, f"{key}.{i}.")
        else:
            yield key, value, f.metadata.get("rule")


# ---- reading ----------------------------------------------------------------------------------------------------

def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a recipe (or start from the defaults with ``path=None``), apply ``key.path=value`` overrides, resolve
    ``${oc.env:NAME}``, check every key, type and count. Errors are :class:`ConfigError` naming the key (and file)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    config = OmegaConf.structured(TrainConfig)
    if path is not None:
        path = resolve_config_path(path)
        layers = _recipe_layers(path)
        layers[-1][1].setdefault("name", path.stem)
        for source, layer in layers:
            try:
                config.merge_with(layer)
            except OmegaConfBaseException as e:
                raise ConfigError(f"{source}: {_describe(e, layer=layer)}") from None
    for item in overrides:
        key, has_value, text = item.partition("=")
        if not has_value or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key.path=value (e.g. optim.lr=2e-4)")
        try:
            _start_null_sections(config, key.strip())
            config.merge_with_dotlist([item])
        except OmegaConfBaseException as e:
            raise ConfigError(_describe(e, value=text)) from None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({str(e).splitlines()[0]})") from None
    try:
        result = OmegaConf.to_object(config)
    except OmegaConfBaseException as e:
        raise ConfigError(_describe(e)) from None
    result.validate()
    return result


_ABSENT = object()


def _start_null_sections(config: Any, key: str) -> None:
    """``validation.dataset.root=/g`` while ``validation.dataset`` is null: the section starts from its defaults
    (OmegaConf's dot-list does not create a structured node under a null one)."""
    from omegaconf import OmegaConf

    parts = key.split(".")
    for depth in range(1, len(parts)):
        prefix = ".".join(parts[:depth])
        if OmegaConf.select(config, prefix, default=_ABSENT) is None:
            OmegaConf.update(config, prefix, {}, merge=True)


def _recipe_layers(path: Path, depth: int = 0) -> list[tuple[Path, dict[str, Any]]]:
    """The recipe and the ones it names with ``base:`` (a file beside it or a shipped recipe), base first."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    base = raw.pop("base", None)
    if base is None:
        return [(path, raw)]
    if depth > 8:
        raise ConfigError(f"{path}: 'base:' recipes nest more than 8 deep (a cycle?)")
    beside = path.parent / f"{str(base).removesuffix('.yaml')}.yaml"
    return [*_recipe_layers(beside if beside.is_file() else resolve_config_path(str(base)), depth + 1), (path, raw)]


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


def _describe(error: Any, *, value: str | None = None, layer: dict[str, Any] | None = None) -> str:
    """One line naming the key, from an OmegaConf exception's class and attributes (``full_key``, ``key``,
    ``object_type``, ``child_node``). ``value`` is the text the user gave; ``layer`` the file's content."""
    from omegaconf import ListConfig
    from omegaconf.errors import (ConfigAttributeError, ConfigKeyError, InterpolationKeyError,
                                  InterpolationResolutionError, MissingMandatoryValue, ValidationError)

    # OmegaConf writes list items as "datasets[0]"; users type "datasets.0".
    key = str(error.full_key or "").replace("[", ".").replace("]", "")
    if layer is not None and "." not in key and error.key is not None:
        # Inside a list item read from a file, OmegaConf knows the key but not the item's path: find it in the file.
        key = _find_key(layer, error.key) or key
    if layer is not None and value is None:
        value = _value_at(layer, key)
    got = "" if value is None else f", got {value!r}"
    raw = None if error.child_node is None else str(error.child_node)
    if isinstance(error, (ConfigKeyError, ConfigAttributeError)):
        owner = error.object_type
        known = [f.name for f in dataclasses.fields(owner)] if dataclasses.is_dataclass(owner) else []
        close = difflib.get_close_matches(str(error.key), known, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        return f"unknown key {key}" + (f" ({hint}known: {', '.join(known)})" if known else "")
    if isinstance(error, MissingMandatoryValue):
        return f"{key} must be set"
    if isinstance(error, InterpolationKeyError):
        shell = _SHELL_VARIABLE.search(raw or "")
        name = shell[1] if shell and shell[1].isupper() else "NAME"  # "${LORAT_DATA}": an environment variable
        return (f"{key}: {raw!r} interpolates a key that does not exist; an environment variable is written "
                f"${{oc.env:{name}}}")
    if isinstance(error, InterpolationResolutionError) and raw is not None:
        # The value names the variables; the unset one is the one os.environ lacks.
        unset = [name.strip() for name in re.findall(r"\$\{oc\.env:([^,}]+)\}", raw) if name.strip() not in os.environ]
        if unset:
            return (f"{key}: environment variable {unset[0]} is not set ({raw}); set it, give a default "
                    f"(${{oc.env:{unset[0]},/path}}) or override the key, e.g. {key}=/path")
    if isinstance(error, ValidationError):
        parent, index = error.parent_node, error.key
        if isinstance(index, int) and isinstance(parent, ListConfig) and not -len(parent) <= index < len(parent):
            return f"{key}: there is no item {index} in a list of {len(parent)}"
        if isinstance(index, int) and typing.get_args(error.ref_type):  # an item of a typed list
            expected = _type_in_words(typing.get_args(error.ref_type)[0])
        else:
            expected = _expected_type(error.object_type, error.key)
        if expected is not None:
            return f"{key} must be {expected}{got}"
    message = str(error.msg or type(error).__name__).splitlines()[0]
    return f"{key}: {message}" if key else message


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _expected_type(owner: Any, name: Any) -> str | None:
    """What the field ``name`` of the dataclass ``owner`` accepts, in words."""
    if not dataclasses.is_dataclass(owner) or not isinstance(name, str):
        return None
    return _type_in_words(typing.get_type_hints(owner).get(name))


def _type_in_words(hint: Any) -> str | None:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        words = _type_in_words(inner[0]) if len(inner) == 1 else None
        return None if words is None else f"{words} or null"
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is list:
        return "a list"
    if dataclasses.is_dataclass(hint):
        return "a section of keys"
    return _TYPE_NAMES.get(hint)


def _find_key(node: Any, name: Any, path: str = "") -> str | None:
    """The dotted path of the first key ``name`` in a file's content."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    found = (f"{path}{key}" if key == name else _find_key(value, name, f"{path}{key}.") for key, value in items)
    return next((k for k in found if k), None)


def _value_at(node: Any, key: str) -> Any:
    """The value at a dotted path in a file's content, or None."""
    for part in key.split(".") if key else []:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return None if isinstance(node, (dict, list)) else node


def resolve_path(value: str | None, key: str) -> Path | None:
    """A path-valued key as a ``Path`` with ``~`` expanded; an empty value is an error naming the key."""
    if value is None:
        return None
    if not value.strip():
        raise ConfigError(f"{key} is empty: give a path, or null")
    return Path(value).expanduser()


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
