"""The LoRAT network: a DINOv2 ViT (timm blocks) run one-stream over template + search tokens, and an MLP head."""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from timm.layers import GluMlp, Mlp, PatchEmbed
from timm.models.vision_transformer import Block
from torch import nn

from .config import ModelConfig
from .lora import attach_lora, lora_layers, merge_lora, strip_lora, unmerge_lora


class NetworkOutput(NamedTuple):
    """What the network returns, in the one form the engine's backends, the ONNX file and the training loss share."""

    score_map: torch.Tensor  # B x h x w score logits, float32
    boxes: torch.Tensor      # B x h x w x 4, normalised x1 y1 x2 y2 in search-crop units, float32


class MlpHead(nn.Module):
    """Three Linear layers with GELU between them (the reference's ``Mlp(num_layers=3)``). The hidden layers run
    at their weights' precision; the output layer's input is cast to its own weights' (float32 in a low-precision
    copy, so the outputs are not rounded to 8 mantissa bits)."""

    def __init__(self, dim: int, out_dim: int, **factory) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(dim, dim, **factory), nn.Linear(dim, dim, **factory),
                                     nn.Linear(dim, out_dim, **factory)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, output = self.layers
        x = x.to(hidden[0].weight.dtype)
        for layer in hidden:
            x = F.gelu(layer(x))
        return output(x.to(output.weight.dtype))

    def low_precision_modules(self) -> list[nn.Module]:
        return list(self.layers[:-1])


class AnchorFreeHead(nn.Module):
    """Per search token: a score logit and an (l, t, r, b) box measured from the token's cell centre."""

    def __init__(self, dim: int, grid: int, **factory) -> None:
        super().__init__()
        self.grid = grid
        self.cls_mlp = MlpHead(dim, 1, **factory)
        self.reg_mlp = MlpHead(dim, 4, **factory)
        centres = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        self.register_buffer("cell_centres", torch.stack((cx, cy), dim=-1), persistent=False)  # H x W x 2

    def forward(self, x: torch.Tensor) -> NetworkOutput:
        b = x.shape[0]
        score_map = self.cls_mlp(x).float().view(b, self.grid, self.grid)
        lt, rb = self.reg_mlp(x).float().view(b, self.grid, self.grid, 4).sigmoid().chunk(2, dim=-1)
        centres = self.cell_centres.to(lt.device)
        return NetworkOutput(score_map, torch.cat((centres - lt, centres + rb), dim=-1))

    def low_precision_modules(self) -> list[nn.Module]:
        """The hidden layers: rounding them costs little, rounding the output layers moves boxes (docs/speed.md)."""
        return self.cls_mlp.low_precision_modules() + self.reg_mlp.low_precision_modules()


def _ffn_layer(config: ModelConfig):
    if config.ffn == "swiglu":
        # timm's packed SwiGLU: fc1 = DINOv2's w12 (gate and up fused), fc2 = w3, silu(first half) * second half.
        return lambda in_features, hidden_features, act_layer, norm_layer, bias, drop, **factory: GluMlp(
            in_features, 2 * config.ffn_hidden, act_layer=nn.SiLU, gate_last=False, bias=bias, drop=drop, **factory)
    return Mlp


class LoRAT(nn.Module):
    """``forward(z, x, z_feat_mask)``: template images B x 3 x Hz x Wz, search images B x 3 x Hx x Wx and the
    template foreground mask B x hz x wz (1 = token on the target) give ``score_map`` (B x h x w logits) and
    ``boxes`` (B x h x w x 4, normalised x1 y1 x2 y2 in search-crop units)."""

    def __init__(self, config: ModelConfig, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.config = config
        dim, grid = config.embed_dim, config.search_grid
        self.patch_embed = PatchEmbed(img_size=None, patch_size=config.patch_size, embed_dim=dim,
                                      strict_img_size=False, **factory)
        # One spatial grid shared by both images; the template takes its top-left corner (slicing, not resizing).
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, dim, **factory))
        # Rows: 0 template background, 1 template foreground, 2 search region.
        self.token_type_embed = nn.Parameter(torch.zeros(3, dim, **factory))
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList([
            Block(dim, config.num_heads, mlp_ratio=config.mlp_ratio, qkv_bias=True, init_values=config.layer_scale_init,
                  drop_path=config.drop_path, norm_layer=norm, mlp_layer=_ffn_layer(config), **factory)
            for _ in range(config.depth)])
        self.norm = norm(dim, **factory)
        self.head = AnchorFreeHead(dim, grid, **factory)
        # the precision the blocks compute in; a low-precision inference copy sets it (float32 while training,
        # where autocast decides)
        self.compute_dtype: torch.dtype = torch.float32
        self.reset_parameters()

    def group_matcher(self, coarse: bool = False) -> dict:
        """Layers for timm's layer-wise rate decay: the patch embedding, each block, then everything else."""
        return {"stem": r"^patch_embed", "blocks": r"^blocks\.(\d+)"}

    def reset_parameters(self) -> None:
        if self.pos_embed.is_meta:
            return
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.token_type_embed, std=0.02)
        for layer in self.head.modules():
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)

    def forward(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor) -> NetworkOutput:
        # The precision boundary (see low_precision_modules): images go in at the patch embedding's precision, the
        # token sums and the final norm run in float32, the blocks at compute_dtype; all casts are no-ops in fp32.
        g, t = self.config.search_grid, self.config.template_grid
        embed_dtype = self.patch_embed.proj.weight.dtype
        pos = self.pos_embed.view(1, g, g, -1)
        z = (self.patch_embed(z.to(embed_dtype)).float() + pos[:, :t, :t].flatten(1, 2)
             + self.token_type_embed[z_feat_mask.flatten(1).long()])
        x = self.patch_embed(x.to(embed_dtype)).float() + self.pos_embed + self.token_type_embed[2]
        tokens = torch.cat((z, x), dim=1).to(self.compute_dtype)
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(self.norm(tokens.float())[:, z.shape[1]:])

    def low_precision_modules(self) -> list[nn.Module]:
        """The modules whose weights may be stored in bf16/fp16 (or run as int8) for inference: the patch embedding,
        the blocks and what the head names (``head.low_precision_modules()``; a head without it stays float32).
        Everything else, the embedding tables, the final norm and the head's output layers, stays float32; the
        forward pass casts at these boundaries, so a copy with these modules cast (and ``compute_dtype`` set to
        the blocks' precision) runs without hooks (``lorat_plugin.engine.cast.cast_model``)."""
        head = getattr(self.head, "low_precision_modules", None)
        return [self.patch_embed, self.blocks, *(head() if head is not None else [])]

    def get_sample_data(self, batch_size: int = 1, device: torch.device | str | None = None,
                        dtype: torch.dtype | None = None, *, seed: int = 0
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Example ``(z, x, z_feat_mask)`` for export and timing (as the reference's ``get_sample_data``): normal
        noise images and a template mask with the target in the middle; on the model's device, float32 by default."""
        config, t = self.config, self.config.template_grid
        generator = torch.Generator().manual_seed(seed)
        z = torch.randn(batch_size, 3, config.template_size, config.template_size, generator=generator)
        x = torch.randn(batch_size, 3, config.search_size, config.search_size, generator=generator)
        mask = torch.zeros(batch_size, t, t, dtype=torch.long)
        mask[:, t // 4:t - t // 4, t // 4:t - t // 4] = 1
        device = self.pos_embed.device if device is None else device
        return z.to(device, dtype or z.dtype), x.to(device, dtype or x.dtype), mask.to(device)

    # ---- LoRA ---------------------------------------------------------------------------------------------------
    @property
    def has_lora(self) -> bool:
        return any(True for _ in lora_layers(self))

    def attach_lora(self, rank: int, alpha: float) -> None:
        # LoRAT's trainable set: adapters, token-type table and head; everything pre-trained stays frozen.
        for name, p in self.named_parameters():
            p.requires_grad = "lora_" in name or name == "token_type_embed" or name.startswith("head.")
        attach_lora(self.blocks, rank, alpha)

    def merge_lora(self) -> None:
        """Fold every adapter into its frozen weight, or none (a NaN/inf result is an error naming the layer)."""
        merge_lora(self)

    def unmerge_lora(self) -> None:
        unmerge_lora(self)

    def strip_lora(self) -> None:
        """Merge and remove the adapters for good: the inference graph is the plain ViT."""
        strip_lora(self)
