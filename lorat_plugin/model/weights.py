"""Reading and writing weights: DINOv2 backbones, released LoRAT checkpoints and this package's own files.

All loads are from local paths. Key layouts:

* DINOv2, Meta's ``dinov2_vit*14_pretrain.pth`` or timm's ``vit_*_patch14_dinov2`` files: ``pos_embed``
  (1 x 1370 x D, cls first), ``patch_embed.proj.*``, ``blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.*,
  ls2.gamma}``, ``norm.*``. ViT-g's SwiGLU FFN is ``mlp.w12``/``mlp.w3`` (Meta) or ``mlp.fc1``/``mlp.fc2`` (timm).
* LoRAT checkpoints (the reference's and the released ``*.bin`` files, which are safetensors): the trainable tensors
  only -- ``blocks.N.attn.qkv.{q,k,v}.lora.{A,B}``, ``blocks.N.attn.proj.lora.*``, ``blocks.N.mlp.{fc1,fc2 | w12,w3}
  .lora.*``, ``token_type_embed``, ``head.{cls,reg}_mlp.layers.{0,1,2}.*``. LoRA alpha is not stored: alpha = rank.
* This package's checkpoints: the same tensor layout in a safetensors file whose metadata carries the
  :class:`ModelConfig` and the LoRA alpha, so one file rebuilds the model. ``contents=full`` files also hold the
  backbone (for models not built on a DINOv2 file, such as the demo model, and for full fine-tuning).
"""
from __future__ import annotations

import json
import math
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from timm.layers import resample_abs_pos_embed

from ..files import atomic_path
from .config import ModelConfig
from .lora import LoRALinear, lora_layers

FORMAT_NAME = "lorat-plugin"
FORMAT_VERSION = "1"


class WeightsError(ValueError):
    """A weights file that cannot be used as asked: says which file, which tensor and what was expected."""


@dataclass
class WeightsFile:
    path: Path
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> ModelConfig | None:
        text = self.metadata.get("config")
        try:
            return ModelConfig.from_json(text) if text else None
        except (ValueError, TypeError) as e:  # JSONDecodeError is a ValueError
            raise WeightsError(f"{self.path}: its 'config' metadata is not a model config ({e})") from None

    @property
    def raw_state_dict_hint(self) -> str:
        """Advice for a ``torch.save(model.state_dict())`` of a model with adapters, which fits no role as is."""
        if not any(".lora_A" in k or k.endswith(".base.weight") for k in self.tensors):
            return ""
        return ("; it is a raw state_dict() of a LoRAT model with adapters: write it with "
                "lorat_plugin.save_checkpoint(model, path, include_backbone=True) and pass that file as the checkpoint")

    @property
    def is_lorat_checkpoint(self) -> bool:
        return any(_is_head_key(k) for k in self.tensors)

    @property
    def is_backbone(self) -> bool:
        return any(re.match(r"blocks\.\d+\.attn\.qkv\.weight$", k) for k in self.tensors)

    @property
    def lora_rank(self) -> int | None:
        return next((int(t.shape[0]) for key, t in self.tensors.items() if key.endswith(".lora.A")), None)

    @property
    def lora_alpha(self) -> float | None:
        return float(self.metadata["lora_alpha"]) if "lora_alpha" in self.metadata else None


# ---- reading ----------------------------------------------------------------------------------------------------

def read_weights(path: str | os.PathLike, *, what: str = "weights file", hint: str = "") -> WeightsFile:
    """Read a safetensors (released LoRAT ``.bin`` files are safetensors) or ``torch.save`` file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}." + (f" Get it from {hint}." if hint else ""))
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        raise WeightsError(f"{what} {path} is empty or truncated ({path.stat().st_size} bytes)")
    if head[8:9] == b"{":  # safetensors: 8-byte header length, then a JSON header
        return _read_safetensors(path, what, int.from_bytes(head[:8], "little"))
    if head[:2] == b"PK" or head[:1] == b"\x80":  # a torch.save zip archive or a legacy pickle
        return WeightsFile(path, _read_torch(path, what))
    raise WeightsError(f"{what} {path} is neither a safetensors nor a torch.save file")


def _read_safetensors(path: Path, what: str, header_len: int) -> WeightsFile:
    from safetensors import SafetensorError, safe_open

    if header_len <= 0 or header_len + 8 > path.stat().st_size:
        raise WeightsError(f"{what} {path} is neither a safetensors nor a torch file, or it is truncated "
                           f"(header says {header_len} bytes, file has {path.stat().st_size})")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, RuntimeError) as e:
        raise WeightsError(f"{what} {path} is truncated or corrupt: {e}") from e
    return WeightsFile(path, tensors, metadata)


def _read_torch(path: Path, what: str) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise WeightsError(f"{what} {path} is truncated or corrupt: {e}") from e
    except Exception as e:  # weights_only refuses arbitrary pickles: say so rather than loading them
        raise WeightsError(f"{what} {path} is not a plain state dict of tensors ({type(e).__name__}: {e})") from e
    for key in ("model", "state_dict", "module"):  # common training-checkpoint wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{what} {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


# ---- DINOv2 backbone --------------------------------------------------------------------------------------------

_BACKBONE_PREFIXES = ("patch_embed.", "blocks.", "norm.", "pos_embed")


def _is_head_key(key: str) -> bool:
    """The head and the token-type table: trained in every tuning mode, named alike in every file layout."""
    return key == "token_type_embed" or key.startswith("head.")


def _is_backbone_key(key: str) -> bool:
    return key.startswith(_BACKBONE_PREFIXES) and ".lora." not in key and ".lora_" not in key


def resize_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """Drop the cls entry and resize a square position grid bicubically to ``grid x grid`` (explicit output size,
    no DINOv2 0.1 offset, no antialiasing), as LoRAT builds its shared grid."""
    n, dim = pos_embed.shape[-2:]
    prefix = 0 if math.isqrt(n) ** 2 == n else 1
    if math.isqrt(n - prefix) ** 2 != n - prefix:
        raise WeightsError(f"pos_embed with {n} entries is neither a square grid nor a square grid + cls")
    resized = resample_abs_pos_embed(pos_embed.reshape(1, n, dim), [grid, grid], num_prefix_tokens=prefix,
                                     interpolation="bicubic", antialias=False)
    return resized[:, prefix:]


def backbone_state_dict(weights: WeightsFile, config: ModelConfig) -> dict[str, torch.Tensor]:
    """Map a DINOv2 file (Meta or timm layout) -- or the backbone part of a full checkpoint -- onto model keys."""
    if any(k in weights.tensors for k in ("register_tokens", "reg_token")):
        raise WeightsError(f"{weights.path} is a DINOv2 checkpoint *with registers*; LoRAT is built on the plain "
                           "ones (dinov2_vit*14_pretrain.pth, not *_reg4_pretrain.pth)")
    if not weights.is_backbone:
        kind = ("a LoRAT checkpoint (pass it as checkpoint=)" if weights.is_lorat_checkpoint and
                not weights.raw_state_dict_hint else "not a ViT backbone")
        raise WeightsError(f"{weights.path} holds no backbone weights (no blocks.N.attn.qkv.weight): it is {kind}"
                           f"{weights.raw_state_dict_hint}")
    out = {}
    for key, tensor in weights.tensors.items():
        if not _is_backbone_key(key):
            continue  # cls_token, mask_token, LoRA, head ...
        key = key.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")
        if key == "pos_embed":
            tensor = resize_pos_embed(tensor, config.search_grid)
        out[key] = tensor
    return out


# ---- LoRAT trainable tensors <-> the reference key layout ------------------------------------------------------

def trainable_to_reference(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's non-backbone tensors (LoRA, token types, head) in the reference's key layout."""
    swiglu = model.config.ffn == "swiglu"
    out: dict[str, torch.Tensor] = {}
    for path, layer in lora_layers(model):
        if layer.merged:
            raise WeightsError("cannot save a merged model's adapters: call unmerge_lora() first")
        ref = path.replace(".mlp.fc1", ".mlp.w12").replace(".mlp.fc2", ".mlp.w3") if swiglu else path
        a = layer.lora_A.view(layer.chunks, layer.rank, -1)
        for c, name in enumerate((".q", ".k", ".v") if layer.chunks == 3 else ("",)):
            out[f"{ref}{name}.lora.A"] = a[c]
            out[f"{ref}{name}.lora.B"] = layer.lora_B[c]
    out.update({key: tensor for key, tensor in model.state_dict().items() if _is_head_key(key)})
    return out


def load_trainable(model: torch.nn.Module, weights: WeightsFile) -> None:
    """Load LoRA/token-type/head tensors given in the reference layout (strict on names and shapes)."""
    tensors = {k: v for k, v in weights.tensors.items() if not _is_backbone_key(k)}
    _copy_into(model, trainable_to_reference(model), tensors, weights, "checkpoint")


def load_head(model: torch.nn.Module, weights: WeightsFile) -> None:
    """Load only the head and the token-type table (e.g. to warm-start from a full fine-tuning stage)."""
    own = {k: v for k, v in model.state_dict().items() if _is_head_key(k)}
    _copy_into(model, own, weights.tensors, weights, "head", extra_ok=True)


def load_backbone(model: torch.nn.Module, weights: WeightsFile) -> None:
    """Load backbone tensors into a model that has no adapters attached yet (strict on names and shapes)."""
    if any(True for _ in lora_layers(model)):
        raise RuntimeError("load the backbone before attaching LoRA")
    own = {k: v for k, v in model.state_dict().items() if _is_backbone_key(k)}
    _copy_into(model, own, backbone_state_dict(weights, model.config), weights, "backbone")


def _copy_into(model: torch.nn.Module, own: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor],
               weights: WeightsFile, what: str, extra_ok: bool = False) -> None:
    """Copy the file's tensors into ``own`` (the model's tensors, or views of them), strict on names and shapes."""
    missing = sorted(set(own) - set(tensors))
    unexpected = [] if extra_ok else sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise WeightsError(_describe_mismatch(weights, model.config, missing, unexpected, what))
    for key, view in own.items():
        if tensors[key].shape != view.shape:
            raise WeightsError(f"{weights.path}: {what} tensor {key} has shape {tuple(tensors[key].shape)}, the "
                               f"model expects {tuple(view.shape)}{_guess_variant(weights)}")
    for key in own:
        if tensors[key].is_floating_point() and not torch.isfinite(tensors[key]).all():
            raise WeightsError(f"{weights.path}: tensor {key} contains NaN or Inf values; the file is corrupt")
    with torch.no_grad():
        for key, view in own.items():
            view.copy_(tensors[key])


def _describe_mismatch(weights: WeightsFile, config: ModelConfig, missing: list[str], unexpected: list[str],
                       what: str) -> str:
    def show(keys: list[str]) -> str:
        return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")

    lines = [f"{weights.path} does not fit the model (depth {config.depth}, width {config.embed_dim}, "
             f"ffn {config.ffn}, tuning {config.tuning}) as a {what}:"]
    if missing:
        lines.append(f"  missing tensors: {show(missing)}")
    if unexpected:
        lines.append(f"  unexpected tensors: {show(unexpected)}")
    if what == "checkpoint" and not weights.is_lorat_checkpoint and weights.is_backbone:
        lines.append("  this file looks like a DINOv2 backbone: pass it as backbone_weights, not as checkpoint")
    return "\n".join(lines) + _guess_variant(weights)


def _guess_variant(weights: WeightsFile) -> str:
    """A hint naming the architecture the file was made for, read off its tensor shapes."""
    t = weights.tensors
    width = next((v.shape[-1] for k, v in t.items() if k in ("token_type_embed", "norm.weight")), None)
    depth = 1 + max((int(m.group(1)) for k in t if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
    if width is None or depth <= 0:
        return ""
    from .config import VARIANTS
    names = sorted({n.split("-")[0] for n, c in VARIANTS.items() if (c.embed_dim, c.depth) == (width, depth)})
    family = f" (a ViT-{'/'.join(names)} variant)" if names else ""
    return f"; the file was made for a model of width {width} and depth {depth}{family}"


# ---- this package's checkpoint format ----------------------------------------------------------------------------

def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike, *, include_backbone: bool | None = None,
                    extra_metadata: dict[str, str] | None = None) -> Path:
    """Write the model's tensors (reference layout) plus its config and LoRA alpha to one safetensors file,
    atomically. By default only the trainable tensors are written; the backbone is included for full fine-tuning
    or when ``include_backbone`` is set (for models whose backbone is not a published DINOv2 file)."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    config: ModelConfig = model.config
    if include_backbone is None:
        include_backbone = config.tuning == "full"
    tensors = trainable_to_reference(model)  # refuses a merged model
    if include_backbone:
        for key, tensor in model.state_dict().items():
            key = key.replace(".base.", ".")  # the frozen weight inside a LoRA wrapper is the plain linear's
            if _is_backbone_key(key):
                tensors[key] = tensor
    metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "config": config.to_json(),
                "lora_alpha": repr(config.lora_alpha), "contents": "full" if include_backbone else "trainable"}
    metadata.update(extra_metadata or {})
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    except SafetensorError as e:  # a failed write (a full disk ...) is not an OSError there
        raise OSError(f"cannot write {path}: {e}") from e
    return path


def describe(weights: WeightsFile) -> str:
    """One line about a weights file, for logs and `lorat info`."""
    kinds = []
    if weights.is_backbone:
        kinds.append("backbone")
    if weights.is_lorat_checkpoint:
        kinds.append(f"LoRAT trainable tensors (LoRA rank {weights.lora_rank})" if weights.lora_rank else
                     "LoRAT head and token types")
    meta = f", config {json.loads(weights.metadata['config'])}" if "config" in weights.metadata else ""
    return f"{weights.path}: {' + '.join(kinds) or 'unrecognised'}, {len(weights.tensors)} tensors{meta}"


__all__ = ["WeightsError", "WeightsFile", "read_weights", "load_backbone", "load_trainable", "save_checkpoint",
           "trainable_to_reference", "backbone_state_dict", "resize_pos_embed", "describe", "LoRALinear"]
