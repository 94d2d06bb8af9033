"""The training config: shipped recipes, strict keys and types, overrides, ranges, environment variables."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorat_plugin.model import get_config
from lorat_plugin.train.config import ConfigError, OptimSection, load_config, resolve_path


@pytest.fixture(autouse=True)
def data_folders(monkeypatch) -> None:
    # The built-in defaults and the shipped recipes read these when a config is loaded.
    monkeypatch.setenv("LORAT_DATA", "/data")
    monkeypatch.setenv("LORAT_WEIGHTS_DIR", "/weights")


def test_shipped_configs_load_strictly(repo_root) -> None:
    files = sorted((repo_root / "lorat_plugin" / "configs").glob("[SBLg]-*.yaml"))
    assert len(files) == 7
    defaults = load_config(None)  # the built-in defaults are the recipe
    for file in files:
        config = load_config(file)
        assert load_config(file.stem) == config  # a shipped recipe by name, from any directory
        assert config.model.model_config() == get_config(file.stem)
        assert config.data == defaults.data and config.optim == defaults.optim == OptimSection()
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
    bad.write_text("data:\n  datasets:\n    - {name: got10k, root: /x, roots: 3}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key data\.datasets\.0\.roots "
                                          r"\(did you mean root\? known: name, root"):
        load_config(bad)
    bad.write_text("data:\n  datasets:\n    - {name: got10k, root: /x, weight: heavy}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: data\.datasets\.0\.weight must be a number, got 'heavy'$"):
        load_config(bad)


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
    ("train.dtype=fp8", "^train.dtype must be one of fp16, bf16, fp32, got 'fp8'$"),
    ("validation.dataset.root=/g", "^validation.dataset.name must be set"),
    ("data.datasets.9.root=/g", "^data.datasets.9: there is no item 9 in a list of 4$"),
    ("data.batch_size", "not of the form key.path=value"),
    ("train.seed=-1", r"^train.seed must be in \[0, 2\*\*64\), got -1$"),
    ("optim.lr=nan", "^optim.lr must be a finite number, got nan$"),
    ("optim.grad_clip=inf", "^optim.grad_clip must be a finite number, got inf$"),
    ("optim.grad_clip=-1", "^optim.grad_clip must be >= 0"),
    ("optim.betas.0=high", "^optim.betas.0 must be a number, got 'high'$"),
    ("optim.lrr=1", r"^unknown key optim.lrr \(did you mean lr\? known: lr, weight_decay"),
    ("data=5", "^data must be a section of keys, got '5'$"),
    ("optim.lr=[1,", r"^override 'optim.lr=\[1,': the value is not valid YAML"),
    ("train.threads=0", "^train.threads must be >= 1, got 0$"),
    ("name=runs/x", "^name 'runs/x' holds a path separator; the run name must be one plain folder name$"),
    ("name=''", "^name '' is not a name"),
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


def test_environment_variables_are_omegaconf_interpolations(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MY_WEIGHTS", "/w")
    monkeypatch.delenv("MY_DATA", raising=False)
    (tmp_path / "paths.yaml").write_text("model:\n  backbone_weights: ${oc.env:MY_WEIGHTS}/b.pth\n"
                                         "train:\n  output: ${oc.env:MY_RUNS,runs}/${name}\n")
    config = load_config(tmp_path / "paths.yaml", ["data.datasets.0.root=${oc.env:LORAT_DATA}/mine"])
    assert config.model.backbone_weights == "/w/b.pth"  # resolved when read
    assert config.train.output == "runs/paths"  # a default for an unset variable; another key interpolated
    assert config.data.datasets[0].root == "/data/mine"
    monkeypatch.delenv("LORAT_DATA")
    with pytest.raises(ConfigError, match=r"^data\.datasets\.0\.root: environment variable LORAT_DATA is not set "
                                          r"\(\$\{oc\.env:LORAT_DATA\}/GOT-10k\); set it"):
        load_config(None)
    with pytest.raises(ConfigError, match="environment variable MY_DATA is not set"):
        load_config(tmp_path / "paths.yaml", ["data.datasets=[{name: got10k, root: '${oc.env:MY_DATA}'}]"])
    # Overriding the keys that name LORAT_DATA is enough.
    assert load_config(None, ["data.datasets=[{name: got10k, root: /g}]"]).data.datasets[0].root == "/g"


@pytest.mark.parametrize("value, message", [
    ("$MY_WEIGHTS/b.pth", r"'\$MY_WEIGHTS/b.pth' names the environment variable MY_WEIGHTS the shell's way; in a "
                          r"config write \$\{oc.env:MY_WEIGHTS\}"),
    ("${MY_WEIGHTS}/b.pth", r"'\$\{MY_WEIGHTS\}/b.pth' interpolates a key that does not exist; an environment "
                            r"variable is written \$\{oc.env:MY_WEIGHTS\}"),
])
def test_the_shell_syntax_for_variables_is_refused_with_its_replacement(tmp_path: Path, monkeypatch, value: str,
                                                                        message: str) -> None:
    monkeypatch.setenv("MY_WEIGHTS", "/w")  # set or not, configs do not expand $NAME
    (tmp_path / "old.yaml").write_text(f"model:\n  backbone_weights: {value}\n")
    with pytest.raises(ConfigError, match=f"^model.backbone_weights: {message}") as error:
        load_config(tmp_path / "old.yaml")
    assert "\n" not in str(error.value)


def test_paths_expand_the_home_folder_and_refuse_empty_values(monkeypatch) -> None:
    monkeypatch.setenv("HOME", "/home/me")
    assert resolve_path("~/runs/b224", "train.output") == Path("/home/me/runs/b224")
    assert resolve_path(None, "model.checkpoint") is None
    with pytest.raises(ConfigError, match="^data.datasets.0.root is empty"):
        load_config(None, ["data.datasets.0.root=' '"]).check_paths()
