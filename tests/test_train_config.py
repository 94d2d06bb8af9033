"""The training config: shipped recipes, strict keys and types, overrides, ranges, resume differences."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorat_plugin.model import get_config
from lorat_plugin.train.config import ConfigError, DataSection, OptimSection, load_config, resolve_path


def test_shipped_configs_load_strictly(monkeypatch, repo_root) -> None:
    monkeypatch.setenv("LORAT_DATA", "/data")
    monkeypatch.setenv("LORAT_WEIGHTS_DIR", "/weights")
    files = sorted((repo_root / "lorat_plugin" / "configs").glob("[SBLg]-*.yaml"))
    assert len(files) == 7
    for file in files:
        config = load_config(file)
        assert load_config(file.stem) == config  # a shipped recipe by name, from any directory
        assert config.model.model_config() == get_config(file.stem)
        assert config.data == DataSection() and config.optim == OptimSection()
        assert config.train.epochs == 170 and config.data.batch_size == 128
        assert str(resolve_path(config.model.backbone_weights, "k")).startswith("/weights/dinov2_vit")


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="shipped recipes: B-224, B-378"):
        load_config("B-225")
    with pytest.raises(ConfigError, match="optim.lrr"):
        load_config(None, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="model.depthh"):
        load_config(None, ["model.depthh=3"])
    with pytest.raises(ConfigError, match="train.epochs must be an integer"):
        load_config(None, ["train.epochs=ten"])
    with pytest.raises(ConfigError, match="not divisible"):
        load_config(None, ["data.batch_size=96", "optim.accumulation_steps=5", "data.samples_per_epoch=960"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  datasets:\n    - {name: got10k, root: /x, sizee: 3}\n")
    with pytest.raises(ConfigError, match=r"data\.datasets\.0\.sizee"):
        load_config(bad)
    with pytest.raises(ConfigError, match="LORAT_NOT_SET"):
        resolve_path("${LORAT_NOT_SET}/x", "data.datasets.0.root")


def test_overrides_reach_nested_keys_and_list_items() -> None:
    config = load_config(None, ["optim.lr=2e-4", "data.datasets.1.root=/lasot", "model.variant=L-378",
                                "model.drop_path=0", "train.dtype=bf16", "validation.dataset.name=got10k",
                                "validation.dataset.root=/g", "data.datasets.0.sequences_file=null"])
    assert config.optim.lr == 2e-4 and config.data.datasets[1].root == "/lasot"
    assert config.data.datasets[0].sequences_file is None and len(config.data.datasets) == 4
    assert config.model.model_config() == get_config("L-378").replace(drop_path=0.0)
    assert config.validation.dataset.root == "/g" and config.train.dtype == "bf16"
    round_trip = json.loads(json.dumps(config.to_dict()))
    assert round_trip["model"]["drop_path"] == 0 and round_trip["model"]["variant"] == "L-378"


@pytest.mark.parametrize("override, message", [
    ("data.batch_size=-8", "data.batch_size must be >= 1, got -8"),
    ("data.batch_size=0", "data.batch_size must be >= 1, got 0"),
    ("data.samples_per_epoch=0", "data.samples_per_epoch must be >= 1"),
    ("data.num_workers=-1", "data.num_workers must be >= 0"),
    ("train.epochs=0", "train.epochs must be >= 1"),
    ("optim.lr=0", "optim.lr must be > 0"),
    ("optim.lr=-1e-4", "optim.lr must be > 0"),
    ("optim.accumulation_steps=0", "optim.accumulation_steps must be >= 1"),
    ("data.flip_probability=1.5", r"data.flip_probability must be in \[0, 1\]"),
    ("data.datasets.0.weight=0", "data.datasets.0.weight must be > 0"),
    ("validation.max_sequences=0", "validation.max_sequences must be >= 1"),
    ("model.depth=0", "model: depth must be positive"),
    ("model.template_size=-28", "model: template_size=-28 must be a positive multiple"),
    ("model.variant=B-225", "model: unknown LoRAT variant 'B-225'"),
    ("data.foo=1", r"^unknown key data.foo \(known: datasets, samples_per_epoch, batch_size"),
    ("data.batch_size=many", "^data.batch_size must be an integer, got 'many'"),
    ("optim.lr=fast", "^optim.lr must be a number, got 'fast'"),
    ("train.dtype=fp8", "^train.dtype: invalid value 'fp8', expected one of"),
    ("validation.dataset.root=/g", "^validation.dataset.name must be set"),
    ("data.datasets.9.root=/g", "'9' is not an index of a list of 4 items"),
    ("data.batch_size", "not of the form key.path=value"),
])
def test_bad_values_are_one_line_errors_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        load_config(None, [override])
    assert "\n" not in str(error.value)


def test_recipes_start_from_a_base(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LORAT_WEIGHTS_DIR", "/weights")
    base = load_config("recipe")
    b224 = load_config("B-224")
    assert b224.name == "B-224" and base.name == "recipe"
    assert b224.data == base.data and b224.optim == base.optim and b224.train == base.train
    assert str(resolve_path(b224.model.backbone_weights, "k")) == "/weights/dinov2_vitb14_pretrain.pth"
    # A user's recipe names a shipped one (or a file beside it) as its base and changes what it lists.
    (tmp_path / "mine.yaml").write_text("base: B-224\noptim:\n  lr: 2.0e-4\ndata:\n  batch_size: 64\n")
    (tmp_path / "mine-small.yaml").write_text("base: mine\ndata:\n  samples_per_epoch: 640\n")
    mine = load_config(tmp_path / "mine-small.yaml", ["train.epochs=3"])
    assert (mine.name, mine.optim.lr, mine.data.batch_size, mine.data.samples_per_epoch, mine.train.epochs) == (
        "mine-small", 2e-4, 64, 640, 3)
    assert mine.model.backbone_weights == b224.model.backbone_weights
    # The demo's stage 2 changes stage 1's recipe in a few keys only.
    demo, pretrain = load_config("demo"), load_config("demo-pretrain")
    assert demo.model.model_config() == pretrain.model.model_config().replace(tuning="lora", lora_rank=16,
                                                                              lora_alpha=16.0)
    assert (demo.optim.weight_decay, demo.train.epochs, demo.train.dtype) == (0.1, 4, "bf16")
    assert demo.data == pretrain.data
    (tmp_path / "loop.yaml").write_text("base: loop\n")
    with pytest.raises(ConfigError, match="nest more than 8 deep"):
        load_config(tmp_path / "loop.yaml")


def test_environment_variables_in_paths_stay_for_resolve_path(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "paths.yaml").write_text("model:\n  backbone_weights: ${MY_WEIGHTS}/b.pth\n")
    config = load_config(tmp_path / "paths.yaml", ["data.datasets.0.root=$MY_DATA/GOT-10k"])
    assert config.model.backbone_weights == "${MY_WEIGHTS}/b.pth"
    monkeypatch.setenv("MY_DATA", "/d")
    assert str(resolve_path(config.data.datasets[0].root, "k")) == "/d/GOT-10k"
