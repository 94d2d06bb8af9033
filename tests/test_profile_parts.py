"""benchmarks/profile_parts.py: every part of the network is timed once and only once (the parts' exclusive times
add up to the whole call), and the FLOPs it counts per part are the network's own. No timed assertions."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lorat_plugin.engine import build_network
from lorat_plugin.engine.int8 import int8_available
from lorat_plugin.engine.onednn import onednn_available
from lorat_plugin.model import build_model
from lorat_plugin.speed import network_flops

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def profile_parts(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as `python benchmarks/profile_parts.py` has it
    import profile_parts
    return profile_parts


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "int8"])
def test_parts_add_up_to_the_network_and_count_its_flops(profile_parts, monkeypatch, tiny_config, dtype: str) -> None:
    if dtype == "int8" and not int8_available() or dtype == "bf16" and not onednn_available():
        pytest.skip("this torch build has no oneDNN kernels")
    monkeypatch.setattr(profile_parts, "cpu_has_native_bf16", lambda: True)
    import lorat_plugin.engine.backends as backends
    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: True)  # the fused / int8 blocks on any x86 CPU
    torch.manual_seed(0)
    model = build_model(tiny_config, merge=True).eval()
    network = build_network(model, "cpu", dtype, per_sequence=False)
    timer = profile_parts.PartTimer()
    for module, name in ((profile_parts.int8_module, "quantize_dynamic"), (profile_parts.tracking_module, "crop_image"),
                         (profile_parts.tracking_module, "normalize_images"),
                         (profile_parts.tracking_module, "select_boxes")):
        monkeypatch.setattr(module, name, getattr(module, name))  # wrapped below, restored after the test
    profile_parts.instrument_functions(timer)
    profile_parts.instrument_network(network.module, timer)
    inputs = model.get_sample_data(1, "cpu")
    timer.enabled = True
    timer.start()
    network(*inputs)
    timer.stop("outside the network")
    parts = set(timer.seconds)
    linears = {f"linear {name} ({tiny_config.tokens} rows)" for name in ("qkv", "proj", "fc1", "fc2")}
    assert linears | {"attention (q k^T, softmax, v)", "layer norms (blocks)", "head (score and box MLPs)",
                      "patch embedding", "final norm"} <= parts, parts
    assert ("int8 activation quantisation (aminmax, quantize)" in parts) == (dtype == "int8")
    assert all(seconds >= 0 for seconds in timer.seconds.values())
    assert timer.seconds["outside the network"] < sum(timer.seconds.values())  # the parts are inside the call
    # what the parts' FLOPs add up to is the network's matrix products (the counter's total also has the patch
    # embedding and the head, which the script does not count)
    counted = sum(timer.flops.values())
    dim, hidden, tokens = tiny_config.embed_dim, tiny_config.ffn_hidden, tiny_config.tokens
    expected_linears = 2 * tokens * tiny_config.depth * (dim * 3 * dim + dim * dim + 2 * dim * hidden)
    assert sum(timer.flops[name] for name in linears) == pytest.approx(expected_linears)
    assert counted < network_flops(model)
