"""The shipped smoke config and the README's "Train a model in a minute" commands: a tiny model from random weights
on a small generated set, nothing downloaded, and a model named after its run."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from lorat_plugin.model import build_model, count_parameters
from lorat_plugin.train import load_config

REPO = Path(__file__).resolve().parent.parent


def readme_smoke_commands() -> list[list[str]]:
    """The `lorat ...` lines of the README section's code block, as argument lists."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Train a model in a minute\n(.*?)^## ", readme, re.S | re.M)
    assert section, "README has no 'Train a model in a minute' section"
    block = re.search(r"```bash\n(.*?)```", section.group(1), re.S)
    assert block, "the section has no bash block"
    lines = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    return [shlex.split(line) for line in lines if line.startswith("lorat ")]


def test_smoke_config_is_tiny_needs_no_weights_and_reads_what_the_readme_writes() -> None:
    config = load_config("smoke")
    assert config.name == "smoke"
    section = config.model
    assert (section.backbone_weights, section.checkpoint, section.head_from) == (None, None, None)
    model = build_model(section.model_config())
    assert count_parameters(model)["total"] < 1_000_000  # the demo model has 2.7M; B-224 98.7M
    assert section.tuning == "full"  # random weights: nothing to adapt with LoRA, every weight trains
    make_benchmark, train = readme_smoke_commands()
    assert make_benchmark[:2] == ["lorat", "make-benchmark"] and "--split" in make_benchmark
    assert make_benchmark[make_benchmark.index("--split") + 1] == "train"
    written = make_benchmark[2]  # the output folder, the first positional argument
    assert [(entry.name, entry.root, entry.split) for entry in config.data.datasets] == [("got10k", written, "train")]
    assert train[:4] == ["lorat", "train", "--config", "smoke"]


@pytest.mark.slow
def test_the_readme_smoke_commands_train_a_model_named_after_the_run(tmp_path: Path) -> None:
    """Both commands as the README gives them, in an empty folder: a model whose identity names the run."""
    from lorat_plugin.model.sources import ModelSpec

    env = {**os.environ, "MPLBACKEND": "Agg"}
    for command in readme_smoke_commands():
        done = subprocess.run([sys.executable, "-m", "lorat_plugin.cli", *command[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (command, done.stderr[-3000:])
    model = tmp_path / "runs" / "smoke" / "model.safetensors"
    config = load_config("smoke")
    steps = config.data.samples_per_epoch // config.data.batch_size * config.train.epochs
    assert f"trained {steps} steps" in done.stdout and str(Path("runs/smoke/model.safetensors")) in done.stdout
    identity = ModelSpec.resolve(checkpoint=model, env={}).identity("fp32")
    assert identity["name"].startswith("LoRAT-smoke-") and identity["files"] == ["model.safetensors"]
    build_model(checkpoint=model)  # self-contained: the backbone is inside
