"""Model configuration and the registry of named LoRAT variants."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

PATCH_SIZE = 14


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a LoRAT network and to feed it.

    Sizes are in pixels of the square template / search crops; the token grids are ``size // patch_size``.
    The crop area factors belong here (not to the tracker) because a checkpoint is only right with the
    geometry it was trained with: the 378 variants use a search factor of 5, the 224 ones 4.
    """

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    ffn: Literal["mlp", "swiglu"] = "mlp"
    patch_size: int = PATCH_SIZE
    mlp_ratio: float = 4.0
    template_size: int = 112
    search_size: int = 224
    template_area_factor: float = 2.0
    search_area_factor: float = 4.0
    pretrain_grid: int = 37  # DINOv2 is trained at 518 px: a 37x37 position grid (+ cls)
    tuning: Literal["lora", "full"] = "lora"  # "full": no adapters, every weight trainable (the paper's baseline)
    lora_rank: int = 64
    lora_alpha: float = 64.0
    drop_path: float = 0.0
    layer_scale_init: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("embed_dim", "depth", "num_heads", "patch_size", "pretrain_grid", "mlp_ratio",
                     "template_area_factor", "search_area_factor"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.drop_path < 1:
            raise ValueError(f"drop_path must be in [0, 1), got {self.drop_path}")
        if self.ffn not in ("mlp", "swiglu"):
            raise ValueError(f"ffn must be 'mlp' or 'swiglu', got {self.ffn!r}")
        if self.tuning not in ("lora", "full"):
            raise ValueError(f"tuning must be 'lora' or 'full', got {self.tuning!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        for name in ("template_size", "search_size"):
            size = getattr(self, name)
            if size <= 0 or size % self.patch_size:
                raise ValueError(f"{name}={size} must be a positive multiple of the patch size {self.patch_size}")
        if self.template_size > self.search_size:
            raise ValueError("the template grid is sliced from the search grid, so template_size <= search_size")
        if self.tuning == "lora" and self.lora_rank <= 0:
            raise ValueError(f"lora_rank must be positive, got {self.lora_rank}")

    @property
    def template_grid(self) -> int:
        return self.template_size // self.patch_size

    @property
    def search_grid(self) -> int:
        return self.search_size // self.patch_size

    @property
    def tokens(self) -> int:
        """Template plus search tokens: the rows one frame sends through every block."""
        return self.template_grid ** 2 + self.search_grid ** 2

    @property
    def ffn_hidden(self) -> int:
        """Hidden width of one FFN branch; DINOv2's SwiGLU rule rounds 2/3 of the MLP width up to a multiple of 8."""
        hidden = int(self.embed_dim * self.mlp_ratio)
        if self.ffn == "swiglu":
            hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        return hidden

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        data = json.loads(text)
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {unknown}: the file was written by a newer lorat-plugin")
        return cls(**data)


_VIT_SIZES = {
    # name: (embed_dim, depth, heads, ffn, drop_path) -- DINOv2 ViT-S/B/L/g(iant2), drop path of the reference configs
    "S": (384, 12, 6, "mlp", 0.0),
    "B": (768, 12, 12, "mlp", 0.0),
    "L": (1024, 24, 16, "mlp", 0.1),
    "g": (1536, 40, 24, "swiglu", 0.4),
}
_RESOLUTIONS = {
    # name: (template_size, search_size, search_area_factor)
    "224": (112, 224, 4.0),
    "378": (196, 378, 5.0),
}

# Meta's file name for each size (dinov2_vits14_pretrain.pth ...); dinov2_hint says where users get it.
DINOV2_FILES = {size: f"dinov2_vit{size.lower()}14_pretrain.pth" for size in _VIT_SIZES}
# File names of the released LoRAT weights (Google Drive folder linked from github.com/LitingLin/LoRAT).
RELEASED_CHECKPOINTS = {
    "B-224": "base.bin", "B-378": "base-378.bin", "L-224": "large.bin", "L-378": "large-378.bin",
    "g-224": "giant.bin", "g-378": "giant-378.bin",
}


def _variant(size: str, resolution: str) -> ModelConfig:
    dim, depth, heads, ffn, drop_path = _VIT_SIZES[size]
    template, search, factor = _RESOLUTIONS[resolution]
    return ModelConfig(embed_dim=dim, depth=depth, num_heads=heads, ffn=ffn, drop_path=drop_path,
                       template_size=template, search_size=search, search_area_factor=factor)


VARIANTS: dict[str, ModelConfig] = {
    f"{size}-{res}": _variant(size, res)
    for size, res in (("S", "224"), ("B", "224"), ("B", "378"), ("L", "224"), ("L", "378"), ("g", "224"), ("g", "378"))
}


def list_variants() -> list[str]:
    return list(VARIANTS)


class UnknownVariantError(KeyError, ValueError):
    """A variant name not in :data:`VARIANTS`: a ``KeyError`` (a registry lookup) that is also a ``ValueError``
    (bad user input, which the CLI reports in one line)."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


def get_config(variant: str | ModelConfig) -> ModelConfig:
    if isinstance(variant, ModelConfig):
        return variant
    names = {k.lower().replace("-", ""): k for k in VARIANTS}  # "B-224", "b224", "B_224" ...
    match = names.get(variant.lower().replace("-", "").replace("_", ""))
    if match:
        return VARIANTS[match]
    raise UnknownVariantError(f"unknown LoRAT variant {variant!r}; known variants: {', '.join(VARIANTS)}")


def backbone_size(config: ModelConfig) -> str | None:
    """"S", "B", "L" or "g" when the config has a DINOv2 backbone's width and depth."""
    return next((size for size, (dim, depth, *_rest) in _VIT_SIZES.items()
                 if (dim, depth) == (config.embed_dim, config.depth)), None)


def canonical_variant(variant: str | ModelConfig) -> str | None:
    config = get_config(variant)
    return next((name for name, c in VARIANTS.items() if c == config), None)


def dinov2_hint(config: ModelConfig) -> str:
    """Where to get the DINOv2 backbone file that matches a config (for error messages)."""
    size = backbone_size(config)
    if size is None:
        return "the backbone weights this model was trained from"
    file = DINOV2_FILES[size]
    return f"{file} from https://dl.fbaipublicfiles.com/dinov2/{file.split('_pretrain')[0]}/{file}"
