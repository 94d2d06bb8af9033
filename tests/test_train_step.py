"""One training step: the reference's loss and gradients (fixture), the GradScaler path, the step API."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lorat_plugin.model import build_model
from lorat_plugin.model.weights import trainable_to_reference
from lorat_plugin.train.config import LossSection, OptimSection, load_config
from lorat_plugin.train.labels import normalized_box, positive_cells
from lorat_plugin.train.loss import tracking_loss
from lorat_plugin.train.optim import build_optimizer
from lorat_plugin.train.state import restore_scaler
from lorat_plugin.train.step import TrainStep, build_train_step, synthetic_batch


def test_one_step_reproduces_the_reference_loss_and_gradients(reference_fixture, parity_config) -> None:
    parity, expected_dir = reference_fixture("reference-parity-s224"), reference_fixture("reference-train-step-s224")
    expected = json.loads((expected_dir / "reference_loss.json").read_text())
    model = build_model(parity_config, backbone_weights=parity / "dinov2_backbone.pth",
                        checkpoint=parity / "lorat_checkpoint.safetensors").train()
    io = load_file(str(parity / "io.safetensors"))
    size, grid = parity_config.search_size, parity_config.search_grid
    boxes = [np.asarray(b, dtype=np.float64) for b in expected["search_boxes_xyxy_crop_px"]]
    positive = torch.stack([torch.from_numpy(positive_cells(b, size, grid)) for b in boxes])
    for mask, cells in zip(positive, expected["positive_cells"], strict=True):
        assert mask.flatten().nonzero().flatten().tolist() == cells

    out = model(io["z"], io["x"], io["z_feat_mask"])
    loss, parts = tracking_loss(out.score_map, out.boxes, positive,
                                torch.stack([torch.from_numpy(normalized_box(b, size)) for b in boxes]))
    loss.backward()
    for ours, key in ((loss.detach(), "loss"), (parts["cls"], "cls_loss"), (parts["box"], "box_loss"),
                      (parts["num_positive"], "num_positive")):
        assert ours.item() == pytest.approx(expected[key], rel=1e-5), key

    # The gradients in the reference's key layout: the same mapping as the trainable tensors themselves.
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(p.grad)
    grads = trainable_to_reference(model)
    reference = load_file(str(expected_dir / "reference_grads.safetensors"))
    assert sorted(grads) == sorted(reference)
    for key, grad in grads.items():
        torch.testing.assert_close(grad, reference[key], rtol=1e-4, atol=1e-4 * reference[key].abs().max().item(),
                                   msg=lambda m, key=key: f"{key}: {m}")


def test_fp16_step_with_an_enabled_grad_scaler_on_the_cpu(tiny_config) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config).train()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    step = TrainStep(model, model, build_optimizer(model, OptimSection()), amp=torch.float16,
                     device=torch.device("cpu"), grad_clip=1.0, loss=LossSection(), scaler=scaler)
    before = [p.detach().clone() for p in step.params]
    report = step.run(synthetic_batch(tiny_config, 2))
    assert scaler.is_enabled() and not report.skipped and math.isfinite(report.loss)
    assert report.loss_scale == 2.0 ** 10
    assert any(not torch.equal(a, p) for a, p in zip(before, step.params))

    # An overflowing step is skipped: weights untouched, the scale halves, the report says so.
    scaler.update(2.0 ** 30)
    with torch.no_grad():
        model.head.cls_mlp.layers[-1].bias.fill_(3e4)  # fp16 logits near the top of its range
    before = [p.detach().clone() for p in step.params]
    report = step.run(synthetic_batch(tiny_config, 2))
    assert report.skipped and report.loss_scale == 2.0 ** 29
    assert all(torch.equal(a, p) for a, p in zip(before, step.params))


def test_fp16_resumes_from_a_bf16_state(tiny_config) -> None:
    bf16 = torch.amp.GradScaler("cpu", enabled=False)
    fp16 = torch.amp.GradScaler("cpu", init_scale=512.0)
    restore_scaler(fp16, bf16.state_dict())  # empty: the fp16 run starts at its own scale
    assert fp16.get_scale() == 512.0
    restore_scaler(bf16, fp16.state_dict())  # and an fp16 state resumed in bf16 is dropped
    assert not bf16.is_enabled()
    resumed = torch.amp.GradScaler("cpu")
    restore_scaler(resumed, {**fp16.state_dict(), "scale": 64.0})
    assert resumed.get_scale() == 64.0


def test_build_train_step_runs_lora_and_full_tuning(tiny_config) -> None:
    batch = synthetic_batch(tiny_config, 2)
    assert batch["z"].dtype == torch.uint8 and batch["positive"].any(dim=(1, 2)).all()
    lora = build_train_step(tiny_config, tuning="lora", dtype="bf16", device="cpu")
    full = build_train_step(tiny_config, tuning="full", dtype="fp32", device="cpu")
    assert len(full.params) > len(lora.params)
    for step in (lora, full):
        report = step.run(batch)
        assert math.isfinite(report.loss) and report.grad_norm > 0 and report.loss_scale is None


def test_torchrun_processes_take_their_local_rank_s_gpu(monkeypatch) -> None:
    from lorat_plugin import distributed

    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.local_device(None) == torch.device("cuda", 1)
    assert distributed.local_device("cuda") == torch.device("cuda", 1)
    assert chosen == [torch.device("cuda", 1)] * 2
    with pytest.raises(ValueError, match="train.device=cuda:0 would put all 2 torchrun processes on one GPU"):
        distributed.local_device("cuda:0", "train.device")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.local_device("cuda:0") == torch.device("cuda", 0)  # one process: any GPU it names


def test_head_from_warm_starts_the_head_and_not_the_adapters(tmp_path, tiny_config, monkeypatch) -> None:
    """The demo's stage 2: a frozen stage-1 backbone with fresh LoRA, the head and token types taken from stage 1."""
    from lorat_plugin.model import save_checkpoint
    from lorat_plugin.model.lora import lora_layers
    from lorat_plugin.train.trainer import build_training_model

    stage1 = build_model(tiny_config.replace(tuning="full"))
    torch.nn.init.normal_(stage1.token_type_embed)
    path = save_checkpoint(stage1, tmp_path / "stage1.safetensors")
    arch = [f"model.{k}={getattr(tiny_config, k)}"
            for k in ("embed_dim", "depth", "num_heads", "template_size", "search_size", "pretrain_grid")]
    monkeypatch.setenv("LORAT_DATA", str(tmp_path))  # the default datasets' folder, read when the config loads
    config = load_config(None, ["model.variant=null", *arch, f"model.backbone_weights={path}",
                                f"model.head_from={path}", "model.tuning=lora"])
    model = build_training_model(config)
    torch.testing.assert_close(model.token_type_embed, stage1.token_type_embed)
    torch.testing.assert_close(model.head.state_dict(), stage1.head.state_dict())
    torch.manual_seed(config.train.seed)
    fresh = build_model(config.model.model_config(), backbone_weights=path)
    for (_, ours), (_, new) in zip(lora_layers(model), lora_layers(fresh), strict=True):
        torch.testing.assert_close(ours.lora_B, new.lora_B)
    other = build_model(tiny_config.replace(tuning="full", embed_dim=2 * tiny_config.embed_dim,
                                            num_heads=2 * tiny_config.num_heads))
    from lorat_plugin.model.weights import WeightsError, load_head, read_weights
    with pytest.raises(WeightsError, match="head tensor token_type_embed has shape"):
        load_head(model, read_weights(save_checkpoint(other, tmp_path / "other.safetensors")))


def test_math_attention_kernel_gives_the_same_step_without_the_fused_kernel(tiny_config) -> None:
    from torch.profiler import profile

    from lorat_plugin.train.step import attention_kernel

    batch = synthetic_batch(tiny_config, 2)
    results = {}
    for kernel in ("default", "math"):
        torch.manual_seed(0)
        model = build_model(tiny_config).train()
        step = TrainStep(model, model, build_optimizer(model, OptimSection()), amp=torch.float32,
                         device=torch.device("cpu"), grad_clip=1.0, loss=LossSection(), attention=kernel)
        with profile() as prof:
            loss, _ = step.backward(batch)
        ops = {event.key for event in prof.key_averages()}
        results[kernel] = loss, [p.grad.clone() for p in step.params], ops
    assert any("flash_attention" in op for op in results["default"][2])
    assert not any("flash_attention" in op for op in results["math"][2])
    torch.testing.assert_close(results["math"][0], results["default"][0], rtol=1e-5, atol=1e-6)
    for math_grad, default_grad in zip(results["math"][1], results["default"][1]):
        torch.testing.assert_close(math_grad, default_grad, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="train.attention"):
        attention_kernel("flash")


def test_deterministic_option_sets_the_flags(monkeypatch) -> None:
    import os

    from lorat_plugin.train.trainer import make_deterministic

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    cudnn = torch.backends.cudnn
    before = torch.are_deterministic_algorithms_enabled(), cudnn.deterministic, cudnn.benchmark
    try:
        make_deterministic()
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1:]


def test_state_files_keep_the_umask_and_a_full_disk_names_the_file(tmp_path, monkeypatch) -> None:
    import os

    from lorat_plugin.train.state import atomic_torch_save

    old = os.umask(0o022)
    try:
        atomic_torch_save({"step": 1}, tmp_path / "state.pt")
    finally:
        os.umask(old)
    assert (tmp_path / "state.pt").stat().st_mode & 0o777 == 0o644

    def full_disk(obj, f) -> None:  # what torch.save raises when the disk fills up mid-write
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=r"cannot write .*state\.pt"):
        atomic_torch_save({"step": 2}, tmp_path / "state.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]  # the old state, no temporary file
