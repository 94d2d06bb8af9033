"""One model-choice policy (lorat_plugin.model.sources.ModelSpec) for every entry point, and the model identity that
results folders record."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lorat_plugin.cli import main
from lorat_plugin.model.sources import ModelSpec, demo_checkpoint


def folder_with(path: Path, *names: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name in names:
        (path / name).write_bytes(name.encode())  # resolution checks names and presence; loading is tested elsewhere
    return path


def test_explicit_arguments_beat_the_environment(tiny_checkpoint: Path, tmp_path: Path) -> None:
    env = {"LORAT_VARIANT": "L-378", "LORAT_CHECKPOINT": str(tmp_path / "absent.bin"), "LORAT_DEVICE": "cuda",
           "LORAT_DTYPE": "bf16"}
    spec = ModelSpec.resolve(checkpoint=tiny_checkpoint, dtype="fp32", env=env)
    assert (spec.variant, spec.checkpoint, spec.backbone_weights) == (None, tiny_checkpoint, None)
    assert (spec.device, spec.dtype) == ("cuda", "fp32")  # device falls back to its variable on its own
    from_env = ModelSpec.resolve(env={"LORAT_CHECKPOINT": str(tiny_checkpoint), "LORAT_VARIANT": ""})
    assert from_env.checkpoint == tiny_checkpoint and from_env.variant is None
    assert ModelSpec.resolve(env={}).is_demo and ModelSpec.resolve(env={}).checkpoint == demo_checkpoint()
    assert ModelSpec.resolve("demo", env=env).is_demo


@pytest.mark.parametrize("files, variant, checkpoint, backbone", [
    (("base.bin", "dinov2_vitb14_pretrain.pth", "dinov2_vitl14_pretrain.pth"), "B-224", "base.bin",
     "dinov2_vitb14_pretrain.pth"),
    (("large-378.bin", "dinov2_vitl14_pretrain.pth"), "L-378", "large-378.bin", "dinov2_vitl14_pretrain.pth"),
    (("S-224.safetensors", "dinov2_vits14_pretrain.pth"), "S-224", "S-224.safetensors", "dinov2_vits14_pretrain.pth"),
])
def test_a_weights_folder_with_one_checkpoint_picks_the_variant(tmp_path: Path, files, variant, checkpoint,
                                                                backbone) -> None:
    folder = folder_with(tmp_path / "w", *files)
    for spec in (ModelSpec.resolve(weights_dir=folder, env={}),
                 ModelSpec.resolve(env={"LORAT_WEIGHTS_DIR": str(folder)})):
        assert (spec.variant, spec.checkpoint.name, spec.backbone_weights.name) == (variant, checkpoint, backbone)
        assert spec.weights_dir == folder


def test_a_weights_folder_with_several_checkpoints_needs_a_variant(tmp_path: Path) -> None:
    folder = folder_with(tmp_path / "w", "base.bin", "large-378.bin", "dinov2_vitb14_pretrain.pth")
    with pytest.raises(ValueError, match=r"several variants: B-224 \(base.bin\), L-378 \(large-378.bin\); choose one "
                                         r"with --variant or LORAT_VARIANT"):
        ModelSpec.resolve(weights_dir=folder, env={})
    assert ModelSpec.resolve("B-224", weights_dir=folder, env={}).checkpoint.name == "base.bin"


def test_a_weights_folder_without_checkpoints_says_what_was_expected(tmp_path: Path) -> None:
    folder = folder_with(tmp_path / "w", "dinov2_vitb14_pretrain.pth")
    with pytest.raises(FileNotFoundError, match="no LoRAT checkpoint in .*expected one released checkpoint "
                                                r"\(base.bin, base-378.bin.*<variant>.safetensors"):
        ModelSpec.resolve(weights_dir=folder, env={})
    with pytest.raises(FileNotFoundError, match="no checkpoint for S-224 in .*expected S-224.safetensors .*S-224 has "
                                                "no released checkpoint") as info:
        ModelSpec.resolve("S-224", weights_dir=folder, env={})
    assert "None" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="expected base.bin .* or B-224.safetensors"):
        ModelSpec.resolve("B-224", weights_dir=folder_with(tmp_path / "empty"), env={})
    with pytest.raises(FileNotFoundError, match="DINOv2 backbone file not found: .*dinov2_vitl14_pretrain.pth"):
        ModelSpec.resolve(weights_dir=folder_with(tmp_path / "l", "large.bin"), env={})


def test_a_missing_folder_is_the_same_error_from_every_entry_point(tmp_path: Path, monkeypatch, capsys) -> None:
    missing = tmp_path / "no-such-folder"
    expected = f"weights folder not found: {missing}"
    with pytest.raises(FileNotFoundError) as info:
        ModelSpec.resolve(weights_dir=missing, env={})
    assert str(info.value) == expected
    # the TraX program's settings
    from lorat_plugin.trackers.trax_server import ServerSettings
    with pytest.raises(FileNotFoundError) as info:
        ServerSettings.from_env({"LORAT_WEIGHTS_DIR": str(missing)})
    assert str(info.value) == expected
    # CLI verbs, from an argument or from the environment (`lorat benchmark` used to time a random B-224 here)
    assert main(["vot-workspace", str(tmp_path / "ws"), "--stack", "tests/basic", "--weights-dir", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"lorat vot-workspace: error: {expected}"
    monkeypatch.setenv("LORAT_WEIGHTS_DIR", str(missing))
    assert main(["benchmark", "--model-only", "--repeats", "1"]) == 2
    assert capsys.readouterr().err.strip() == f"lorat benchmark: error: {expected}"
    monkeypatch.delenv("LORAT_WEIGHTS_DIR")
    # the got10k tracker
    pytest.importorskip("got10k")
    from lorat_plugin.trackers import LoRATTracker
    with pytest.raises(FileNotFoundError) as info:
        LoRATTracker(variant="B-224", weights_dir=missing)
    assert str(info.value) == expected


def test_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"LoRAT checkpoint not found: {tmp_path / 'x.bin'}"):
        ModelSpec.resolve(checkpoint=tmp_path / "x.bin", env={})
    with pytest.raises(FileNotFoundError, match="DINOv2 backbone file not found"):
        ModelSpec.resolve("B-224", backbone_weights=tmp_path / "d.pth", env={})


def test_identity_follows_the_bytes_not_the_folder(tmp_path: Path) -> None:
    first = folder_with(tmp_path / "a", "base.bin", "dinov2_vitb14_pretrain.pth")
    moved = shutil.copytree(first, tmp_path / "elsewhere" / "b")
    identity = ModelSpec.resolve(weights_dir=first, env={}).identity("bf16")
    assert identity == ModelSpec.resolve(weights_dir=moved, env={}).identity("bf16")
    assert identity["files"] == ["dinov2_vitb14_pretrain.pth", "base.bin"] and str(tmp_path) not in str(identity)
    assert identity["variant"] == "B-224" and identity["precision"] == "bf16" and len(identity["weights"]) == 12
    assert identity["name"] == f"LoRAT-B-224-{identity['weights'][:8]}-bf16"
    assert ModelSpec.resolve(weights_dir=first, env={}).identity("fp32")["name"].endswith("-fp32")
    (moved / "base.bin").write_bytes(b"other weights")
    changed = ModelSpec.resolve(weights_dir=moved, env={}).identity("bf16")
    assert changed["weights"] != identity["weights"] and changed["name"] != identity["name"]


def test_identity_of_a_checkpoint_and_of_the_demo_model(tiny_checkpoint: Path) -> None:
    assert ModelSpec.resolve(checkpoint=tiny_checkpoint, env={}).identity("fp32")["name"].startswith("LoRAT-tiny-")
    demo = ModelSpec.resolve(env={}).identity("fp32")
    assert demo["name"].startswith("LoRAT-demo-") and demo["files"] == ["demo_model.safetensors"]


def test_identity_names_the_training_run_recorded_in_the_checkpoint(tiny_checkpoint: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`lorat train` records the run name in every checkpoint's metadata; results of two runs' models then say which
    run each came from, whatever the files are called (every run writes model.safetensors)."""
    from lorat_plugin.model import build_model, config as model_config, save_checkpoint

    model = build_model(checkpoint=tiny_checkpoint, merge=False)
    first = save_checkpoint(model, tmp_path / "a" / "model.safetensors", extra_metadata={"run": "first-try"})
    second = save_checkpoint(model, tmp_path / "b" / "model.safetensors", extra_metadata={"run": "second"})
    identity = ModelSpec.resolve(checkpoint=first, env={}).identity("fp32")
    assert identity["name"] == f"LoRAT-first-try-{identity['weights'][:8]}-fp32"
    assert ModelSpec.resolve(checkpoint=second, env={}).identity("fp32")["name"].startswith("LoRAT-second-")
    renamed = shutil.copy(first, tmp_path / "best.safetensors")  # the metadata survives a rename
    assert ModelSpec.resolve(checkpoint=renamed, env={}).identity("fp32")["name"] == identity["name"]
    # a known architecture: the variant first, then the run unless it only repeats the variant
    monkeypatch.setitem(model_config.VARIANTS, "T-test", model.config)
    assert ModelSpec.resolve("T-test", checkpoint=first, env={}).identity("fp32")["name"].startswith(
        "LoRAT-T-test-first-try-")
    same = save_checkpoint(model, tmp_path / "c.safetensors", extra_metadata={"run": "t-test"})
    assert ModelSpec.resolve("T-test", checkpoint=same, env={}).identity("fp32")["name"].startswith("LoRAT-T-test-")
    assert "t-test" not in ModelSpec.resolve("T-test", checkpoint=same, env={}).identity("fp32")["name"]


def test_model_identity_of_a_spec_an_exported_file_and_a_model_in_memory(tiny_checkpoint: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The one identity function every entry point calls (demo, LoRATTracker, evaluate, the TraX program)."""
    import hashlib

    from lorat_plugin.model import build_model, config as model_config
    from lorat_plugin.model.sources import model_identity, state_digest

    spec = ModelSpec.resolve(checkpoint=tiny_checkpoint, env={})
    assert model_identity("bf16", spec=spec) == spec.identity("bf16")

    exported = tmp_path / "tracker.onnx"
    exported.write_bytes(b"an exported network")
    digest = hashlib.sha256(b"an exported network").hexdigest()
    assert model_identity("fp32", exported=exported) == {
        "name": f"LoRAT-tracker-{digest[:8]}-fp32", "variant": None, "weights": digest[:12],
        "files": ["tracker.onnx"], "precision": "fp32"}

    model = build_model(checkpoint=tiny_checkpoint)
    weights = state_digest(model)
    assert model_identity("fp32", model=model) == {
        "name": f"LoRAT-model-{weights[:8]}-fp32", "variant": None, "weights": weights, "files": [],
        "precision": "fp32"}
    monkeypatch.setitem(model_config.VARIANTS, "T-test", model.config)  # a config that is a known variant
    assert model_identity("fp32", model=model)["name"] == f"LoRAT-T-test-{weights[:8]}-fp32"
    with pytest.raises(ValueError, match="needs a spec, an exported file or a model"):
        model_identity("fp32")
