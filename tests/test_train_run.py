"""Training runs on CPU with the tiny model and generated GOT-10k-layout data: the loss goes down, a resumed run
ends bit-identical to an uninterrupted one, two torchrun (gloo) processes match one, full fine-tuning feeds LoRA."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch.utils.data import default_collate

from lorat_plugin.cli import main
from lorat_plugin.commands.train import tracking_validation
from lorat_plugin.geometry import normalize_images
from lorat_plugin.model import ModelConfig, build_model, read_weights
from lorat_plugin.train import build_training_model, load_config, train, tracking_loss
from lorat_plugin.train.config import DatasetEntry
from lorat_plugin.train.loader import PairDataset
from lorat_plugin.train.pairs import PairRecipe
from lorat_plugin.train.source import build_source

from train_data import write_moving_objects


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny tensors: one intra-op thread is many times faster than two on a shared 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_config: ModelConfig, dinov2_writer) -> Path:
    root = tmp_path_factory.mktemp("train")
    write_moving_objects(root / "data", "train", 6, length=12)
    write_moving_objects(root / "data", "val", 2, length=10, seed=99, prefix="GOT-10k_Val")
    dinov2_writer(root / "dinov2_tiny.pth", tiny_config)
    return root


def run_config(workspace: Path, tiny: ModelConfig, **train_keys) -> dict:
    """A run of 2 epochs x 4 steps of 8 pairs on the tiny model."""
    config = {
        "model": {"variant": None, "embed_dim": tiny.embed_dim, "depth": tiny.depth, "num_heads": tiny.num_heads,
                  "template_size": tiny.template_size, "search_size": tiny.search_size,
                  "lora_rank": tiny.lora_rank, "lora_alpha": tiny.lora_alpha,
                  "backbone_weights": str(workspace / "dinov2_tiny.pth")},
        "data": {"datasets": [{"name": "got10k", "root": str(workspace / "data"), "split": "train"}],
                 "samples_per_epoch": 32, "batch_size": 8, "num_workers": 0},
        "optim": {"warmup_epochs": 0.5, "lr": 1e-3},
        "train": {"epochs": 2, "dtype": "fp32", "log_every": 1, "seed": 3},
        "validation": {},
    }
    for key, value in train_keys.items():
        section, name = key.split("__")
        config[section][name] = value
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def reference_run(workspace: Path, tiny_config: ModelConfig) -> Path:
    """One uninterrupted single-process run through the `lorat train` command."""
    config = write_config(workspace / "tiny.yaml", run_config(workspace, tiny_config))
    output = workspace / "reference"
    assert main(["train", "--config", str(config), "--output", str(output), "--no-progress"]) == 0
    return output


def _same_tensors(a: Path, b: Path) -> dict[str, float]:
    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys()
    return {k: (ta[k] - tb[k]).abs().max().item() for k in ta}


def test_run_folder_holds_config_state_checkpoints_and_logs(reference_run: Path, tiny_config: ModelConfig) -> None:
    assert (reference_run / "config.yaml").is_file() and (reference_run / "state.pt").is_file()
    assert sorted(p.name for p in (reference_run / "checkpoints").iterdir()) == ["epoch_2.safetensors"]
    if importlib.util.find_spec("tensorboard"):  # optional ([train] extra)
        assert any((reference_run / "tensorboard").iterdir())
    final = read_weights(reference_run / "model.safetensors")
    assert final.metadata["contents"] == "trainable" and final.lora_alpha == tiny_config.lora_alpha
    assert not final.is_backbone and final.is_lorat_checkpoint and final.metadata["global_step"] == "8"
    # Every file of the run (state, data index, checkpoints, config) is readable as the umask allows, not 0600.
    umask = os.umask(0)
    os.umask(umask)
    written = [f for f in reference_run.rglob("*") if f.is_file() and "tensorboard" not in f.parts]
    assert {f.name for f in written} >= {"config.yaml", "state.pt", "model.safetensors", "epoch_2.safetensors"}
    assert any(f.suffix == ".npz" for f in written)
    assert {f.stat().st_mode & 0o777 for f in written} == {0o666 & ~umask}
    # A second run into the same folder is refused (one clear line), and resuming a finished run is a no-op.
    config = str(reference_run.parent / "tiny.yaml")
    assert main(["train", "--config", config, "--output", str(reference_run), "--no-progress"]) == 2
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(load_config(config), reference_run.parent / "empty", resume=True, progress=False)


def test_the_model_is_named_after_the_run(workspace: Path, reference_run: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Every run writes model.safetensors; the run name (the config's, else its file stem; or --name) is in the
    checkpoints' metadata, so the default tracker name of each run's model says which run trained it."""
    from lorat_plugin.model.sources import ModelSpec

    backbone = workspace / "dinov2_tiny.pth"
    identity = ModelSpec.resolve(checkpoint=reference_run / "model.safetensors", backbone_weights=backbone,
                                 env={}).identity("fp32")
    assert identity["name"].startswith("LoRAT-tiny-")  # tiny.yaml has no name: its stem
    monkeypatch.chdir(tmp_path)  # the default output folder is runs/<name>, under the current folder
    short = ["train.epochs=1", "data.samples_per_epoch=8"]
    assert main(["train", "--config", str(workspace / "tiny.yaml"), "--name", "first-try", "--no-progress",
                 *short]) == 0
    model = tmp_path / "runs" / "first-try" / "model.safetensors"
    assert read_weights(model).metadata["run"] == "first-try"
    assert read_weights(model.parent / "checkpoints" / "epoch_1.safetensors").metadata["run"] == "first-try"
    named = ModelSpec.resolve(checkpoint=model, backbone_weights=backbone, env={}).identity("fp32")["name"]
    assert named.startswith("LoRAT-first-try-") and named.endswith("-fp32")
    # a name that is no folder name is refused in one line before any work
    assert main(["train", "--config", str(workspace / "tiny.yaml"), "--name", "a/b", "--no-progress", *short]) == 2
    assert not (tmp_path / "runs" / "a").exists()


def test_resumed_run_is_bit_identical(workspace: Path, reference_run: Path, tiny_config: ModelConfig) -> None:
    # Stopped mid-epoch with worker processes, resumed: the same samples, steps and weights as the reference.
    config = load_config(write_config(workspace / "resume.yaml",
                                      run_config(workspace, tiny_config, data__num_workers=2)))
    output = workspace / "resumed"
    first = train(config, output, stop_after_steps=3, progress=False)
    assert not first.finished and first.global_step == 3 and not (output / "model.safetensors").exists()
    second = train(config, output, resume=True, progress=False)
    assert second.finished and second.global_step == 8
    differences = _same_tensors(reference_run / "model.safetensors", output / "model.safetensors")
    assert all(d == 0.0 for d in differences.values()), differences


@pytest.mark.slow  # two processes start torch and gloo
def test_two_torchrun_processes_match_one(workspace: Path, reference_run: Path) -> None:
    output = workspace / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "lorat_plugin.cli", "train", "--config", str(workspace / "tiny.yaml"), "--output", str(output),
               "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "gloo" in done.stderr and "trained 8 steps" in done.stdout
    state = torch.load(output / "state.pt", weights_only=True)
    assert state["world_size"] == 2
    # Same global batches: only the order of the gradient sums differs.
    differences = _same_tensors(reference_run / "model.safetensors", output / "model.safetensors")
    assert max(differences.values()) < 1e-5, differences


def test_training_lowers_the_loss(workspace: Path, tiny_config: ModelConfig) -> None:
    config = load_config(write_config(workspace / "longer.yaml", run_config(
        workspace, tiny_config, data__samples_per_epoch=128, train__epochs=3, train__dtype="bf16",
        optim__warmup_epochs=0.2, optim__lr=3e-3, validation__every=3)))
    assert config.validation.dataset is None
    config.validation.dataset = DatasetEntry("got10k", str(workspace / "data"), "val")
    before = build_training_model(config).eval()
    recipe = PairRecipe.create(before.config, config.data)
    pairs = PairDataset(build_source(config.data.datasets), recipe, samples_per_epoch=64, seed=123, max_gap=100)
    batch = default_collate([pairs[(0, i)] for i in range(64)])  # held-out pairs (another seed than training)

    def loss(model) -> float:
        with torch.no_grad():
            out = model(normalize_images(batch["z"]), normalize_images(batch["x"]), batch["z_feat_mask"])
            return tracking_loss(out.score_map, out.boxes, batch["positive"], batch["box"])[0].item()

    result = train(config, workspace / "longer", progress=False, validation=tracking_validation(config))
    after = build_model(backbone_weights=config.model.backbone_weights, checkpoint=result.checkpoint).eval()
    start, end = loss(before), loss(after)
    assert end < 0.6 * start, (start, end)  # measured: 4.19 -> 1.62
    logged = [p["loss"] for p in result.history if "loss" in p]
    assert sum(logged[-4:]) < sum(logged[:4])
    # Validation through the evaluation harness ran once, after the last epoch, and logged GOT-10k metrics.
    validations = [p for p in result.history if "val_AO" in p]
    assert len(validations) == 1 and validations[0]["epoch"] == 3 and 0 <= validations[0]["val_AO"] <= 100
    assert (workspace / "longer" / "validation" / "epoch_3" / "run.json").is_file()


def test_full_fine_tuning_checkpoint_is_a_backbone_for_lora(workspace: Path, tiny_config: ModelConfig) -> None:
    full = load_config(None, [f"{k}={v}" for k, v in _flat(run_config(workspace, tiny_config, train__epochs=1)).items()]
                       + ["model.tuning=full", "data.samples_per_epoch=8"])
    result = train(full, workspace / "full", progress=False)
    weights = read_weights(result.checkpoint)
    assert weights.metadata["contents"] == "full" and weights.is_backbone
    lora = load_config(None, [f"{k}={v}" for k, v in _flat(run_config(workspace, tiny_config)).items()]
                       + [f"model.backbone_weights={result.checkpoint}"])
    model = build_training_model(lora)
    trained = weights.tensors["blocks.1.mlp.fc2.weight"]
    assert torch.equal(model.blocks[1].mlp.fc2.base.weight, trained) and model.has_lora
    original = torch.load(workspace / "dinov2_tiny.pth", weights_only=True)["blocks.1.mlp.fc2.weight"]
    assert not torch.equal(trained, original)  # full tuning moved the backbone


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value)  # JSON is YAML
    return out


def test_non_finite_gradients_stop_a_bf16_run_before_anything_is_written(workspace: Path, tiny_config: ModelConfig,
                                                                         monkeypatch) -> None:
    from lorat_plugin.train.step import TrainStep

    def overflowing_update(self) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        return torch.tensor(float("inf"))

    monkeypatch.setattr(TrainStep, "update", overflowing_update)
    config = load_config(write_config(workspace / "inf.yaml", run_config(workspace, tiny_config, train__dtype="bf16")))
    with pytest.raises(FloatingPointError, match=r"non-finite gradients in 1 step\(s\) up to global step 1"):
        train(config, workspace / "inf", progress=False)
    assert not (workspace / "inf" / "state.pt").exists()
