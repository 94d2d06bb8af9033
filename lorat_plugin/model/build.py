"""One builder for training, merged inference, every device and dtype."""
from __future__ import annotations

import logging
import os

import torch

from .config import ModelConfig, dinov2_hint, get_config
from .network import LoRAT
from .weights import WeightsError, WeightsFile, load_backbone, load_trainable, read_weights

log = logging.getLogger(__name__)

PathLike = str | os.PathLike

# Fields that change the architecture: a checkpoint's config must agree on them with the one asked for.
_ARCH_FIELDS = ("embed_dim", "depth", "num_heads", "ffn", "patch_size", "mlp_ratio", "template_size", "search_size",
                "tuning")


def build_model(config: str | ModelConfig | None = None, *, backbone_weights: PathLike | None = None,
                checkpoint: PathLike | None = None, merge: bool = False, device: torch.device | str | None = None,
                dtype: torch.dtype | None = None) -> LoRAT:
    """Build a LoRAT network.

    Args:
        config: a variant name (``"B-224"``, see :data:`VARIANTS`), a :class:`ModelConfig`, or ``None`` to take the
            config stored in ``checkpoint`` (files written by this package carry it).
        backbone_weights: a DINOv2 file (Meta's ``dinov2_vit*14_pretrain.pth`` or timm's safetensors).
        checkpoint: LoRAT tensors -- a released checkpoint (``base.bin``, ... ) or one written by
            :func:`save_checkpoint`. Released checkpoints carry no LoRA alpha; alpha = rank is assumed, as the
            reference does.
        merge: fold the adapters into the frozen weights and drop them (inference; zero LoRA overhead).
        device, dtype: where the finished model lives. ``device="meta"`` builds the structure only.

    Without weights, the backbone is randomly initialised (tests, training from scratch).
    """
    ckpt = read_weights(checkpoint, what="LoRAT checkpoint") if checkpoint is not None else None
    if ckpt is not None and (not ckpt.is_lorat_checkpoint or ckpt.raw_state_dict_hint):
        hint = (": it looks like a DINOv2 backbone, pass it as backbone_weights, not as checkpoint"
                if ckpt.is_backbone else ckpt.raw_state_dict_hint)
        raise WeightsError(f"{ckpt.path} is not a LoRAT checkpoint (no token_type_embed / head tensors){hint}")
    config = _resolve_config(config, ckpt)
    meta = str(device) == "meta"  # the structure only: no file is loaded into it
    model = LoRAT(config, device="meta" if meta else None)
    if backbone_weights is not None and not meta:
        load_backbone(model, read_weights(backbone_weights, what="DINOv2 backbone file", hint=dinov2_hint(config)))
    elif ckpt is not None and not meta:
        if not ckpt.is_backbone:
            raise WeightsError(f"{ckpt.path} holds only the trainable LoRAT tensors: pass backbone_weights= "
                               f"{dinov2_hint(config)}")
        load_backbone(model, ckpt)
    if config.tuning == "lora":
        model.attach_lora(config.lora_rank, config.lora_alpha)
    else:
        model.requires_grad_(True)
    if ckpt is not None and not meta:
        load_trainable(model, ckpt)
    if merge:
        model.strip_lora()
        model.requires_grad_(False).eval()
    return model.to(device=device, dtype=dtype)


def _resolve_config(config: str | ModelConfig | None, ckpt: WeightsFile | None) -> ModelConfig:
    stored = ckpt.config if ckpt is not None else None
    if config is None:
        if stored is None:
            raise ValueError("no model config: name a variant (e.g. 'B-224') or pass a checkpoint written by "
                             "lorat-plugin, which stores its config")
        return stored
    config = get_config(config)
    if ckpt is None:
        return config
    if stored is not None:
        diffs = [f"{f}: file {getattr(stored, f)!r} vs asked {getattr(config, f)!r}" for f in _ARCH_FIELDS
                 if getattr(stored, f) != getattr(config, f)]
        if diffs:
            raise WeightsError(f"{ckpt.path} was saved for a different model ({'; '.join(diffs)}); omit the variant "
                               "to use the file's own config")
        return config.replace(lora_rank=stored.lora_rank, lora_alpha=stored.lora_alpha)
    # A released checkpoint: rank from the tensors, alpha = rank (the reference merges with scale 1).
    rank = ckpt.lora_rank
    if rank is None:
        if config.tuning == "lora":
            raise WeightsError(f"{ckpt.path} holds no LoRA tensors (*.lora.A/B); it is not a LoRAT LoRA checkpoint")
        return config
    alpha = ckpt.lora_alpha if ckpt.lora_alpha is not None else float(rank)
    if (rank, alpha) != (config.lora_rank, config.lora_alpha):
        log.info("%s: LoRA rank %d, alpha %g (from the file) instead of the config's %d/%g", ckpt.path, rank, alpha,
                 config.lora_rank, config.lora_alpha)
    name = ckpt.path.name
    if "378" in name and config.search_size != 378 or "224" in name and config.search_size != 224:
        log.warning("%s looks like a %s checkpoint but the model is built for a %d px search region", ckpt.path,
                    "378" if "378" in name else "224", config.search_size)
    return config.replace(lora_rank=rank, lora_alpha=alpha)


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Trainable and total parameter counts (``total`` includes adapters when attached)."""
    params = list(model.parameters())
    return {"trainable": sum(p.numel() for p in params if p.requires_grad),
            "total": sum(p.numel() for p in params)}
