"""The precision policy, the CUDA-graph wrapper with ``torch.cuda`` emulated on the CPU, the compile recompile limit,
the fp32-without-TF32 guard."""
from __future__ import annotations

import contextlib

import pytest
import torch

from lorat_plugin.engine import precision
from lorat_plugin.engine.backends import build_network
from lorat_plugin.engine.compiled import BATCH_BUCKETS
from lorat_plugin.engine.cuda_graphs import CUDAGraphNetwork
from lorat_plugin.devices import parse_device
from lorat_plugin.engine.precision import (default_precision, full_fp32, precision_name,
                                           resolve_precision)
from lorat_plugin.model import ModelConfig, build_model


# ---- the precision policy ---------------------------------------------------------------------------------------


def test_default_precision_per_device(monkeypatch) -> None:
    assert default_precision("cuda") == default_precision("cuda:1") == torch.float16
    assert default_precision("mps") == torch.float32
    monkeypatch.setattr(precision.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert default_precision("cpu") == torch.bfloat16 == resolve_precision(None, "cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert default_precision("cpu") == torch.float32 == resolve_precision(None, torch.device("cpu"))
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision.platform, "machine", lambda: "arm64")
    assert default_precision("cpu") == torch.float32


@pytest.mark.parametrize("cap, native", [("AVX2", False), ("avx512_core_vnni", False), ("AVX512_CORE_BF16", None),
                                         ("AVX512_CORE_AMX", None), ("", None)])
def test_a_onednn_cap_below_bf16_holds_the_bf16_decision(monkeypatch, cap: str, native: bool | None) -> None:
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    unheld = precision.cpu_has_native_bf16()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert precision.cpu_has_native_bf16() is (unheld if native is None else native)


def test_precision_names_round_trip() -> None:
    for name in ("fp32", "bf16", "fp16"):
        assert precision_name(resolve_precision(name, "cpu")) == name
    assert resolve_precision("half", "cpu") == resolve_precision("torch.float16", "cpu") == torch.float16
    assert resolve_precision(torch.bfloat16, "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="fp32, bf16, fp16"):
        resolve_precision("fp8", "cpu")
    with pytest.raises(ValueError, match="inference precision"):
        resolve_precision(torch.float64, "cpu")
    with pytest.raises(ValueError):
        precision_name(torch.int32)


@pytest.mark.parametrize("text", ["toaster", "cuda:x", "cpu:zero", "", "auto", "cpu", "CPU", " cpu ", "cuda:1", "mps",
                                  "meta", "cuda:99"])
def test_one_parser_for_device_strings(text: str) -> None:
    usable = {"", "auto", "cpu", " cpu "} | ({"cuda:1"} if torch.cuda.device_count() > 1 else set()) | (
        {"mps"} if torch.backends.mps.is_available() else set())
    if text in usable:
        assert parse_device(text).type in ("cpu", "cuda", "mps")
        return
    with pytest.raises(ValueError) as error:
        parse_device(text, setting="--device")
    message = str(error.value)
    assert message.startswith(f"--device {text.strip()!r}" if text.strip() == text else "--device ")
    assert "use one of cpu" in message and "\n" not in message


def test_fp32_on_cuda_runs_without_tf32_and_restores_the_flags() -> None:
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32
    try:
        matmul.allow_tf32 = cudnn.allow_tf32 = True
        with full_fp32(torch.device("cuda:1"), torch.float32):
            assert not matmul.allow_tf32 and not cudnn.allow_tf32
        assert matmul.allow_tf32 and cudnn.allow_tf32
        for device, dtype in (("cuda", torch.float16), ("cpu", torch.float32)):
            with full_fp32(torch.device(device), dtype):
                assert matmul.allow_tf32 and cudnn.allow_tf32
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


def test_compile_keeps_a_graph_per_bucket(tiny_config) -> None:
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    saved = getattr(config, name)
    try:
        setattr(config, name, 8)
        # compiles lazily, on the first call
        build_network(build_model(tiny_config, merge=True), "cpu", "fp32", compile=True)
        assert getattr(config, name) >= len(BATCH_BUCKETS)
    finally:
        setattr(config, name, saved)


# ---- CUDA graphs with torch.cuda emulated -----------------------------------------------------------------------

class _FakeCuda:
    """Just enough of ``torch.cuda`` to follow which device and stream each step of capture and replay runs on.
    A "kernel" launched during a capture is recorded in the graph and run on replay, as a real graph would."""

    def __init__(self) -> None:
        self.device = torch.device("cuda:0")
        self.capturing: _FakeCuda.Graph | None = None
        self.streams: list[_FakeCuda.Stream] = []
        fake = self

        class Stream:
            def __init__(self, device: torch.device) -> None:
                self.device = torch.device(device)
                fake.streams.append(self)

            def wait_stream(self, other: object) -> None:
                pass

        class Graph:
            def __init__(self) -> None:
                self.kernels: list = []
                self.captured_on: tuple | None = None
                self.replayed_on: list[torch.device] = []

            def replay(self) -> None:
                self.replayed_on.append(fake.device)
                for kernel in self.kernels:
                    kernel()

        self.Stream, self.Graph = Stream, Graph
        self.default = self.stream = Stream("cuda:0")
        self.streams.clear()

    def patch(self, monkeypatch) -> None:
        fake = self

        @contextlib.contextmanager
        def device(dev):
            saved, fake.device = fake.device, torch.device(dev)
            try:
                yield
            finally:
                fake.device = saved

        @contextlib.contextmanager
        def stream(s):
            saved, fake.stream = fake.stream, s
            try:
                yield
            finally:
                fake.stream = saved

        @contextlib.contextmanager
        def graph(g, pool=None, stream=None):
            g.captured_on = (fake.device, stream)
            saved, fake.stream, fake.capturing = fake.stream, stream or fake.stream, g
            try:
                yield
            finally:
                fake.stream, fake.capturing = saved, None

        for name, value in {"device": device, "stream": stream, "graph": graph, "Stream": self.Stream,
                            "CUDAGraph": self.Graph, "graph_pool_handle": lambda: "pool",
                            "current_stream": lambda device=None: self.default}.items():
            monkeypatch.setattr(torch.cuda, name, value)


class _Inner:
    """A backend on ``cuda:1`` (tensors stay on the CPU) that logs where each call runs and launches its one
    "kernel" through the fake CUDA (recorded when capturing, run at once otherwise)."""

    def __init__(self, cuda: _FakeCuda, config: ModelConfig) -> None:
        self.config, self.device, self.dtype = config, torch.device("cuda:1"), torch.float16
        self.description = "fake fp16 network"
        self.cuda, self.calls = cuda, []

    def __call__(self, z, x, mask):
        self.calls.append((self.cuda.device, self.cuda.stream, self.cuda.capturing is not None))
        with torch.inference_mode():  # as every real backend runs
            score = torch.empty(x.shape[0], 2, 2)
            boxes = torch.empty(x.shape[0], 2, 2, 4)

        def kernel() -> None:
            with torch.inference_mode():
                score.copy_(x.mean(dim=(1, 2, 3)).view(-1, 1, 1).expand_as(score) + mask.sum(dim=(1, 2)).view(-1, 1, 1))
                boxes.copy_(z.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1).expand_as(boxes))
        if self.cuda.capturing is not None:
            self.cuda.capturing.kernels.append(kernel)
        else:
            kernel()
        return score, boxes


def _inputs(config: ModelConfig, batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    return build_model(config, device="meta").get_sample_data(batch, "cpu", seed=seed)


def test_cuda_graph_captures_and_replays_on_the_networks_device_and_stream(monkeypatch, tiny_config) -> None:
    cuda = _FakeCuda()
    cuda.patch(monkeypatch)
    inner = _Inner(cuda, tiny_config)
    graphs = CUDAGraphNetwork(inner, max_graphs=2)
    first, second = _inputs(tiny_config, 3, 1), _inputs(tiny_config, 3, 2)
    with torch.inference_mode():  # the engine's track() calls it in inference mode ...
        out1 = graphs(*first)
    out2 = graphs(*second)  # ... a later call outside it must still be able to fill the buffers
    assert cuda.device == torch.device("cuda:0")  # the caller's current device is left as it was
    warmup, capture = inner.calls[:-1], inner.calls[-1]
    side = cuda.streams[0]
    assert len(warmup) == CUDAGraphNetwork.WARMUP_CALLS and len(inner.calls) == CUDAGraphNetwork.WARMUP_CALLS + 1
    # warm-up (where torch.compile compiles) before the capture, on the network's GPU and the side stream
    assert all(call == (torch.device("cuda:1"), side, False) for call in warmup)
    assert capture == (torch.device("cuda:1"), side, True) and side.device == torch.device("cuda:1")
    graph = graphs._graphs[4][2].__self__  # the fake graph whose replay was kept
    assert graph.captured_on == (torch.device("cuda:1"), side)
    assert graph.replayed_on == [torch.device("cuda:1")] * 2
    for out, inputs in ((out1, first), (out2, second)):  # replayed on each call's inputs, copied out
        expected = inputs[1].mean(dim=(1, 2, 3)) + inputs[2].sum(dim=(1, 2))
        assert out[0].shape == (3, 2, 2) and torch.allclose(out[0][:, 0, 0], expected)
    assert not torch.allclose(out1[0], out2[0])
    graphs(*_inputs(tiny_config, 1, 3))  # a second bucket: a second capture
    assert len(graphs._graphs) == 2 and len(inner.calls) == 2 * (CUDAGraphNetwork.WARMUP_CALLS + 1)
    eager = graphs(*_inputs(tiny_config, 16, 4))  # a third bucket past max_graphs: eager, no capture
    assert eager[0].shape[0] == 16 and inner.calls[-1][2] is False and len(graphs._graphs) == 2


def test_cuda_graphs_need_a_cuda_network(tiny_config) -> None:
    inner = _Inner(_FakeCuda(), tiny_config)
    inner.device = torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA"):
        CUDAGraphNetwork(inner)


def test_model_describes_its_own_example_inputs(tiny_config) -> None:
    model = build_model(tiny_config, device="meta")
    z, x, mask = model.get_sample_data(3, "cpu", torch.bfloat16)
    assert z.shape == (3, 3, tiny_config.template_size, tiny_config.template_size) and z.dtype == torch.bfloat16
    assert x.shape == (3, 3, tiny_config.search_size, tiny_config.search_size) and x.device.type == "cpu"
    grid = tiny_config.template_grid
    assert mask.shape == (3, grid, grid) and mask.dtype == torch.long and mask.any()
    assert model.get_sample_data()[0].device.type == "meta"  # the model's own device by default
