"""Process-wide tuning (lorat_plugin.process): the OpenMP wait policy is chosen before torch loads, the Python API
gets the CLI's tuning, and neither moves a box."""
from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys

import pytest

from lorat_plugin import process

CLEAN = {name: value for name, value in os.environ.items()
         if name not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "LORAT_NO_WAIT_TUNING", "OMP_NUM_THREADS")}


def run_python(code: str, **env: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**CLEAN, **env}, timeout=300)
    return done.stdout.strip() + done.stderr


@pytest.mark.parametrize("environ, torch_loaded, state, policy", [
    ({}, False, "set", "PASSIVE"),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, False, "user", "ACTIVE"),
    ({"GOMP_SPINCOUNT": "1000"}, False, "user", None),
    ({"LORAT_NO_WAIT_TUNING": "1"}, False, "declined", None),
    ({}, True, "too late", None),
])
def test_the_wait_policy_is_set_only_where_it_can_act_and_nobody_chose(monkeypatch, environ: dict, torch_loaded: bool,
                                                                          state: str, policy: str | None) -> None:
    monkeypatch.setattr(process, "_wait", None)  # restored after: what this process found stays as it was
    if not torch_loaded:
        monkeypatch.delitem(sys.modules, "torch", raising=False)
    environ = dict(environ)
    assert process.prefer_passive_wait(environ) == state
    assert environ.get("OMP_WAIT_POLICY") == policy


def test_importing_lorat_plugin_first_sets_passive_and_torch_first_is_said_once() -> None:
    first = run_python("import os, lorat_plugin, torch; print(os.environ['OMP_WAIT_POLICY'])")
    assert first.splitlines()[0] == "PASSIVE"
    chosen = run_python("import os, lorat_plugin; print(os.environ['OMP_WAIT_POLICY'])", OMP_WAIT_POLICY="ACTIVE")
    assert chosen.splitlines()[0] == "ACTIVE"
    late = run_python(
        "import torch, lorat_plugin\n"
        "from lorat_plugin.engine import TrackingEngine\n"
        "from lorat_plugin.model import ModelConfig, build_model\n"
        "config = ModelConfig(embed_dim=32, depth=1, num_heads=2, template_size=28, search_size=56, lora_rank=4)\n"
        "model = build_model(config, merge=True)\n"
        "TrackingEngine(model, device='cpu', dtype='fp32'); TrackingEngine(model, device='cpu', dtype='fp32')\n")
    assert late.count("OMP_WAIT_POLICY=PASSIVE could not be set") == 1


def test_a_cpu_engine_tunes_the_allocator_once_and_it_can_be_declined(monkeypatch, tiny_config) -> None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    from lorat_plugin.engine import TrackingEngine
    from lorat_plugin.model import build_model

    monkeypatch.setattr(process, "_TUNED", False)
    monkeypatch.setenv("LORAT_NO_MALLOC_TUNING", "1")
    TrackingEngine(build_model(tiny_config, merge=True), device="cpu", dtype="fp32")
    assert process._TUNED is False
    monkeypatch.delenv("LORAT_NO_MALLOC_TUNING")
    TrackingEngine(build_model(tiny_config, merge=True), device="cpu", dtype="fp32")
    assert process._TUNED is True and process.tune_cpu_allocator() is True


TRACK = r"""
import json, torch
from lorat_plugin.data.synthetic import moving_box_video
from lorat_plugin.engine import TrackingEngine
from lorat_plugin.model import ModelConfig, build_model
torch.manual_seed(0)
model = build_model(ModelConfig(embed_dim=768, depth=1, num_heads=12), merge=True)
engine = TrackingEngine(model, device="cpu", dtype="fp32")
frames, truth = moving_box_video(6, (192, 144), textured=True)
state = engine.initialize([frames[0]], truth[:1])
print(json.dumps([engine.track(state, [frame])[0][0].tolist() for frame in frames[1:]]))
"""


@pytest.mark.slow
def test_the_wait_policy_moves_no_box() -> None:
    """The policy only decides how idle threads wait; B-224 widths, where the kernels have work to split."""
    boxes = {policy: json.loads(run_python(TRACK, OMP_WAIT_POLICY=policy, OMP_NUM_THREADS="2").splitlines()[0])
             for policy in ("PASSIVE", "ACTIVE")}
    assert boxes["PASSIVE"] == boxes["ACTIVE"]
