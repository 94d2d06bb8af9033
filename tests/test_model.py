"""The LoRAT network: reference parity, LoRA merge, parameter counts, weight files and their error paths."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lorat_plugin import ModelConfig, WeightsError, build_model, save_checkpoint
from lorat_plugin.model import VARIANTS, count_parameters, get_config
from lorat_plugin.model.lora import LoRALinear
from lorat_plugin.model.weights import read_weights, trainable_to_reference

from conftest import NETWORK_FIXTURES



def _inputs(config: ModelConfig, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, 3, config.template_size, config.template_size, generator=g)
    x = torch.randn(batch, 3, config.search_size, config.search_size, generator=g)
    mask = (torch.rand(batch, config.template_grid, config.template_grid, generator=g) > 0.5).long()
    return z, x, mask


# ---- parity with the reference implementation ---------------------------------------------------------------------

@pytest.mark.parametrize("merge", [False, True], ids=["unmerged", "merged"])
@pytest.mark.parametrize("fixture", NETWORK_FIXTURES)
def test_reference_parity(fixture: str, merge: bool, reference_case) -> None:
    """Widths S and B, 2-4 blocks, the 224 and 378 geometries, the MLP and SwiGLU FFNs (tests/fixtures/README.md)."""
    case = reference_case(fixture)
    model = build_model(case.config, backbone_weights=case.backbone, checkpoint=case.checkpoint, merge=merge).eval()
    io = case.inputs
    # The reference's own inference graph merges the adapters when it loads a checkpoint: compare like with like.
    expected = {key: case.expected[f"{key}_merged" if merge else key] for key in ("score_map", "boxes")}
    with torch.no_grad():
        out = model(io["z"], io["x"], io["z_feat_mask"])
    assert out.score_map.shape == expected["score_map"].shape and out.boxes.shape == expected["boxes"].shape
    torch.testing.assert_close(out.score_map, expected["score_map"], atol=1e-4, rtol=0)
    torch.testing.assert_close(out.boxes, expected["boxes"], atol=1e-4, rtol=0)


# ---- variants and parameter counts (meta device: no memory) -------------------------------------------------------

# (trainable, total with adapters, merged) in millions, from the spec's table (B/L/g match the paper's).
SPEC_COUNTS = {"S-224": (5.90, 27.5, 22.2), "B-224": (12.99, 98.7, 88.1), "B-378": (12.99, 99.1, 88.5),
               "L-224": (32.52, 335.7, 307.4), "L-378": (32.52, 336.2, 307.9), "g-224": (80.23, 1215.0, 1144.2),
               "g-378": (80.23, 1215.7, 1145.0)}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_parameter_counts(variant: str) -> None:
    trainable, total, merged = SPEC_COUNTS[variant]
    counts = count_parameters(build_model(variant, device="meta"))
    assert round(counts["trainable"] / 1e6, 2) == pytest.approx(trainable, abs=0.01)
    assert round(counts["total"] / 1e6, 1) == pytest.approx(total, abs=0.1)
    assert count_parameters(build_model(variant, device="meta", merge=True))["total"] / 1e6 == pytest.approx(
        merged, abs=0.1)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_geometry(variant: str) -> None:
    c = get_config(variant)
    assert c.search_grid == (16 if c.search_size == 224 else 27)
    assert c.template_grid == (8 if c.template_size == 112 else 14)
    assert c.search_area_factor == (4.0 if c.search_size == 224 else 5.0) and c.template_area_factor == 2.0
    assert (c.ffn == "swiglu") == variant.startswith("g")
    if c.ffn == "swiglu":
        assert c.ffn_hidden == 4096


def test_variant_names_are_forgiving() -> None:
    assert get_config("b224") == get_config("B-224") == get_config("B_224")
    with pytest.raises(KeyError, match="known variants"):
        get_config("B-999")


# ---- LoRA ---------------------------------------------------------------------------------------------------------

def test_lora_linear_matches_separate_adapters() -> None:
    """A fused qkv with three chunk adapters equals three linears each with its own adapter (the reference's form)."""
    torch.manual_seed(0)
    base = torch.nn.Linear(8, 24)
    layer = LoRALinear(base, rank=3, alpha=6, chunks=3)
    x = torch.randn(5, 8)
    a = layer.lora_A.view(3, 3, 8)
    parts = [x @ base.weight[i * 8:(i + 1) * 8].T + base.bias[i * 8:(i + 1) * 8] + (x @ a[i].T @ layer.lora_B[i].T) * 2
             for i in range(3)]
    torch.testing.assert_close(layer(x), torch.cat(parts, dim=-1))


def test_merge_unmerge_round_trip(tiny_backbone: Path, tiny_config) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config, backbone_weights=tiny_backbone).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    z, x, mask = _inputs(tiny_config)
    with torch.no_grad():
        ref = model(z, x, mask)
        model.merge_lora()
        merged = model(z, x, mask)
        model.unmerge_lora()
        back = model(z, x, mask)
    for key in ("score_map", "boxes"):
        torch.testing.assert_close(getattr(merged, key), getattr(ref, key), atol=1e-5, rtol=0)
        torch.testing.assert_close(getattr(back, key), getattr(ref, key), atol=1e-6, rtol=0)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], atol=1e-6, rtol=0)


def test_merged_model_is_the_plain_vit(tiny_checkpoint: Path) -> None:
    model = build_model(checkpoint=tiny_checkpoint, merge=True)
    assert not model.has_lora and not any(p.requires_grad for p in model.parameters())
    assert all(type(m) is torch.nn.Linear for name, m in model.blocks.named_modules() if "qkv" in name)


def test_trainable_set_is_lora_token_types_and_head(tiny_config) -> None:
    model = build_model(tiny_config)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters()
                         if "lora_" in n or n == "token_type_embed" or n.startswith("head.")}
    # six adapted linears per block, as the reference counts them: q, k, v, proj, fc1, fc2
    assert sum(k.endswith(".lora.A") for k in trainable_to_reference(model)) == 6 * tiny_config.depth
    full = build_model(tiny_config.replace(tuning="full"))
    assert not full.has_lora and all(p.requires_grad for p in full.parameters())


def test_gradients_reach_only_trainable_parameters(tiny_config) -> None:
    model = build_model(tiny_config)
    out = model(*_inputs(tiny_config))
    (out.score_map.sum() + out.boxes.sum()).backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name


# ---- weight files ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ffn", ["mlp", "swiglu"])
@pytest.mark.parametrize("layout", ["meta", "timm"])
def test_backbone_layouts_load_identically(tmp_path: Path, ffn: str, layout: str, tiny_config, dinov2_writer) -> None:
    config = tiny_config.replace(ffn=ffn)
    meta = dinov2_writer(tmp_path / "meta.pth", config, layout="meta", seed=3)
    other = dinov2_writer(tmp_path / f"{layout}.bin", config, layout=layout, seed=3)
    a = build_model(config.replace(tuning="full"), backbone_weights=meta)  # no adapters: compare the backbone alone
    b = build_model(config.replace(tuning="full"), backbone_weights=other)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb
        if not ka.startswith(("head.", "token_type")):
            torch.testing.assert_close(va, vb)


def test_pos_embed_is_the_bicubic_search_grid_and_template_slices_it(tiny_backbone: Path, tiny_config) -> None:
    model = build_model(tiny_config, backbone_weights=tiny_backbone)
    source = torch.load(tiny_backbone)["pos_embed"][:, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(source, size=(4, 4), mode="bicubic", align_corners=False)
    torch.testing.assert_close(model.pos_embed, expected.permute(0, 2, 3, 1).reshape(1, 16, -1))
    assert not model.pos_embed.requires_grad


@pytest.mark.parametrize("ffn", ["mlp", "swiglu"])
def test_own_checkpoint_round_trip(tmp_path: Path, ffn: str, tiny_config, dinov2_writer) -> None:
    config = tiny_config.replace(ffn=ffn)
    backbone = dinov2_writer(tmp_path / "b.pth", config)
    torch.manual_seed(5)
    model = build_model(config, backbone_weights=backbone).eval()
    trainable = save_checkpoint(model, tmp_path / "trainable.safetensors")
    full = save_checkpoint(model, tmp_path / "full.safetensors", include_backbone=True)
    inputs = _inputs(config)
    with torch.no_grad():
        ref = model(*inputs)
        for rebuilt in (build_model(backbone_weights=backbone, checkpoint=trainable),
                        build_model(checkpoint=full), build_model(checkpoint=full, merge=True)):
            assert rebuilt.config == config
            out = rebuilt.eval()(*inputs)
            torch.testing.assert_close(out.score_map, ref.score_map, atol=1e-5, rtol=0)
    keys = load_file(str(trainable)).keys()
    mlp = ("w12", "w3") if ffn == "swiglu" else ("fc1", "fc2")
    assert {f"blocks.0.attn.qkv.{t}.lora.A" for t in "qkv"} <= keys
    assert {f"blocks.1.mlp.{n}.lora.B" for n in mlp} <= keys and "blocks.0.attn.qkv.weight" not in keys


def test_released_checkpoint_assumes_alpha_equals_rank(tmp_path: Path, tiny_backbone: Path, tiny_config) -> None:
    """Released checkpoints store no alpha: the reference merges them with scale 1, and so do we."""
    torch.manual_seed(2)
    model = build_model(tiny_config.replace(lora_alpha=4.0), backbone_weights=tiny_backbone)  # scale 1
    released = tmp_path / "base.bin"
    save_file({k: v.contiguous() for k, v in trainable_to_reference(model).items()}, str(released))
    loaded = build_model(tiny_config, backbone_weights=tiny_backbone, checkpoint=released)  # tiny_config asks alpha 8
    assert loaded.config.lora_alpha == loaded.config.lora_rank == 4
    inputs = _inputs(tiny_config)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(*inputs).boxes, model.eval()(*inputs).boxes)


# ---- error paths: clear messages, never a half-loaded model ----------------------------------------------------------

def test_missing_files_name_the_file_and_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.pth.*dinov2_vitb14_pretrain\.pth from https://"):
        build_model("B-224", backbone_weights=tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="LoRAT checkpoint not found"):
        build_model("B-224", checkpoint=tmp_path / "base.bin")


def test_truncated_and_corrupt_files(tmp_path: Path, tiny_checkpoint: Path, tiny_backbone: Path, tiny_config) -> None:
    data = tiny_checkpoint.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated"):
        build_model(checkpoint=tmp_path / "cut.safetensors")
    raw = tiny_backbone.read_bytes()
    (tmp_path / "cut.pth").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(WeightsError, match="cut.pth"):
        build_model(tiny_config, backbone_weights=tmp_path / "cut.pth")
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(WeightsError, match="empty"):
        read_weights(tmp_path / "empty.bin")


def test_wrong_variant_names_the_tensor_and_the_file_s_model(tmp_path: Path, tiny_backbone: Path, tiny_config) -> None:
    model = build_model(tiny_config.replace(embed_dim=48, num_heads=2))
    wide = tmp_path / "wide.bin"
    save_file({k: v.contiguous() for k, v in trainable_to_reference(model).items()}, str(wide))
    with pytest.raises(WeightsError, match=r"has shape .*expects .*width 48"):
        build_model(tiny_config, backbone_weights=tiny_backbone, checkpoint=wide)


def test_missing_and_unexpected_keys(tmp_path: Path, tiny_backbone: Path, tiny_config) -> None:
    tensors = trainable_to_reference(build_model(tiny_config))
    partial = {k: v.contiguous() for k, v in tensors.items() if not k.startswith("blocks.1.")}
    save_file(partial, str(tmp_path / "partial.bin"))
    with pytest.raises(WeightsError, match=r"missing tensors: blocks\.1\."):
        build_model(tiny_config, backbone_weights=tiny_backbone, checkpoint=tmp_path / "partial.bin")
    extra = dict(tensors, **{"blocks.9.attn.proj.lora.A": torch.zeros(4, 32)})
    save_file({k: v.contiguous() for k, v in extra.items()}, str(tmp_path / "extra.bin"))
    with pytest.raises(WeightsError, match=r"unexpected tensors: blocks\.9"):
        build_model(tiny_config, backbone_weights=tiny_backbone, checkpoint=tmp_path / "extra.bin")


def test_files_passed_in_the_wrong_role(tmp_path, tiny_backbone, tiny_checkpoint, tiny_config) -> None:
    with pytest.raises(WeightsError, match="looks like a DINOv2 backbone"):
        build_model(tiny_config, backbone_weights=tiny_backbone, checkpoint=tiny_backbone)
    trainable = tmp_path / "t.safetensors"
    save_checkpoint(build_model(tiny_config), trainable)
    with pytest.raises(WeightsError, match="LoRAT checkpoint"):
        build_model(tiny_config, backbone_weights=trainable)
    with pytest.raises(WeightsError, match="only the trainable.*backbone_weights"):
        build_model(checkpoint=trainable)


def test_register_backbones_and_nan_tensors_are_refused(tmp_path: Path, tiny_backbone: Path, tiny_config) -> None:
    state = torch.load(tiny_backbone)
    torch.save(dict(state, register_tokens=torch.zeros(1, 4, 32)), tmp_path / "reg.pth")
    with pytest.raises(WeightsError, match="with registers"):
        build_model(tiny_config, backbone_weights=tmp_path / "reg.pth")
    state["blocks.0.attn.proj.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(WeightsError, match=r"blocks\.0\.attn\.proj\.weight contains NaN"):
        build_model(tiny_config, backbone_weights=tmp_path / "nan.pth")


def test_checkpoint_config_must_match_the_variant_asked_for(tiny_checkpoint: Path) -> None:
    with pytest.raises(WeightsError, match="different model.*embed_dim"):
        build_model("B-224", checkpoint=tiny_checkpoint)


def test_a_raw_state_dict_gets_advice_that_works(tmp_path: Path, tiny_backbone: Path, tiny_config) -> None:
    model = build_model(tiny_config, backbone_weights=tiny_backbone)
    torch.save(model.state_dict(), tmp_path / "raw.pth")
    for role in ({"backbone_weights": tmp_path / "raw.pth"}, {"checkpoint": tmp_path / "raw.pth"}):
        with pytest.raises(WeightsError, match=r"raw state_dict\(\).*save_checkpoint\(model, path, include_backbone"):
            build_model(tiny_config, **role)
    fixed = save_checkpoint(model, tmp_path / "fixed.safetensors", include_backbone=True)  # the advice, followed
    torch.testing.assert_close(build_model(checkpoint=fixed).state_dict(), model.state_dict())


def test_garbage_config_metadata_names_the_file(tmp_path: Path, tiny_config) -> None:
    path = save_checkpoint(build_model(tiny_config), tmp_path / "ok.safetensors")
    tensors, meta = load_file(str(path)), read_weights(path).metadata
    for garbage in ("{not json", '["a list"]', '{"embed_dim": "wide"}'):
        save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={**meta, "config": garbage})
        with pytest.raises(WeightsError, match=r"bad\.safetensors: its 'config' metadata"):
            build_model(checkpoint=tmp_path / "bad.safetensors")


def test_reading_leaves_no_file_open_and_writing_keeps_the_umask(tmp_path, tiny_checkpoint, tiny_config) -> None:
    import os
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        read_weights(tiny_checkpoint)
        import gc
        gc.collect()
    old = os.umask(0o022)
    try:
        path = save_checkpoint(build_model(tiny_config), tmp_path / "shared.safetensors")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
