"""OpenVINO, Intel's CPU runtime, on the same network as ours (``lorat benchmark --compare openvino``), timed in a
process of its own and alternated with ours: in one process, OpenVINO's worker threads keep the cores after its
calls and slow whatever runs next (docs/speed.md, "OpenVINO"). Each is timed at the best of its
``PERFORMANCE_HINT`` LATENCY and THROUGHPUT (one stream), with ``INFERENCE_NUM_THREADS`` = torch's thread count
and the precision hint that matches ours.
"""
from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..engine.onnx import INPUT_NAMES  # the names the exported file's inputs carry
from ..model import ModelConfig
from ..model.network import NetworkOutput
from .openvino_worker import read_message, write_message
from .timing import median_ratio

HINTS = ("LATENCY", "THROUGHPUT")
CALLS_PER_ROUND = 3  # calls per candidate and round; a round's sample is their median
# Pause before each candidate's calls, so that neither side's idle threads (OpenMP's spin, OpenVINO's) still hold a
# core when the other starts.
SETTLE_S = 0.1


class OpenVinoError(ValueError):
    """OpenVINO could not read, compile or run the file (one line)."""


def require_openvino() -> None:
    """Raises ``ModuleNotFoundError`` (named ``openvino``: the command line turns it into the one line naming the
    extra) when OpenVINO is not installed; checked here, since it is imported only by the worker."""
    if importlib.util.find_spec("openvino") is None:
        raise ModuleNotFoundError("No module named 'openvino'", name="openvino")


def openvino_precision(dtype: torch.dtype, native_bf16: bool) -> str:
    """The ``INFERENCE_PRECISION_HINT`` that matches our precision ``dtype``: ``f32`` against fp32 (and on CPUs
    without native bf16, where OpenVINO's bf16 would be emulated), ``bf16`` against bf16 and int8 (whose attention
    and norms run at bf16)."""
    return "bf16" if dtype != torch.float32 and native_bf16 else "f32"


def feeds(z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor) -> dict[str, np.ndarray]:
    """The network inputs as the exported file takes them."""
    arrays = (z.float(), x.float(), z_feat_mask.long())
    return {name: np.ascontiguousarray(a.detach().cpu().numpy()) for name, a in zip(INPUT_NAMES, arrays)}


class OpenVinoProcess:
    """An OpenVINO worker process (``openvino_worker.py``) holding ``path`` compiled once per hint of
    :data:`HINTS`, at the input shapes last given to :meth:`compile`. Use as a context manager."""

    def __init__(self, path: str | Path, *, threads: int, precision: str) -> None:
        require_openvino()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX file not found: {self.path}")
        self.threads, self.precision = int(threads), precision
        self.version: str | None = None
        self.compiled: dict[str, dict[str, str]] = {}  # hint -> the settings the compiled model reports
        self._shapes: dict[str, list[int]] | None = None
        worker = Path(__file__).with_name("openvino_worker.py")
        self._process = subprocess.Popen([sys.executable, str(worker)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._reply()

    def _reply(self) -> Any:
        reply = read_message(self._process.stdout)
        if reply is None:
            raise OpenVinoError(f"the OpenVINO process ended (exit status {self._process.wait()}); see its messages "
                                "above")
        if "error" in reply:
            raise OpenVinoError(f"OpenVINO on {self.path}: {reply['error']}")
        return reply.get("result")

    def _request(self, op: str, **arguments: Any) -> Any:
        write_message(self._process.stdin, {"op": op, **arguments})
        return self._reply()

    def compile(self, inputs: dict[str, np.ndarray]) -> None:
        """Compile the file for these inputs' shapes (static shapes: OpenVINO's fastest), unless it already is."""
        shapes = {name: list(array.shape) for name, array in inputs.items()}
        if shapes == self._shapes:
            return
        result = self._request("compile", path=str(self.path.resolve()), shapes=shapes, threads=self.threads,
                               precision=self.precision, hints=list(HINTS))
        self.version, self.compiled, self._shapes = result["version"], result["compiled"], shapes

    def time(self, hint: str, inputs: dict[str, np.ndarray], calls: int) -> list[float]:
        """Seconds per call of ``calls`` calls, timed inside the worker."""
        self.compile(inputs)
        return self._request("time", hint=hint, inputs=inputs, calls=calls)

    def run(self, hint: str, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.compile(inputs)
        return self._request("run", hint=hint, inputs=inputs)

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.close()  # the worker stops at the end of its requests
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> "OpenVinoProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OpenVinoNetwork:
    """A :class:`~lorat_plugin.engine.network.NetworkBackend` running the file in an :class:`OpenVinoProcess` with
    one hint: for the tracker agreement, not for timing (each call crosses a pipe)."""

    def __init__(self, process: OpenVinoProcess, hint: str, config: ModelConfig) -> None:
        self.process, self.hint, self.config = process, hint, config
        self.device = torch.device("cpu")
        self.dtype = torch.bfloat16 if process.precision == "bf16" else torch.float32
        self.description = f"OpenVINO {process.version or ''} CPU, {process.precision}, {hint} ({process.path.name})"

    def __call__(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor) -> NetworkOutput:
        score_map, boxes = self.process.run(self.hint, feeds(z, x, z_feat_mask))
        return NetworkOutput(torch.from_numpy(score_map), torch.from_numpy(boxes))


@dataclass
class ApartRow:
    """One batch size: ms per frame (medians over rounds) of ours and of OpenVINO at each hint, the best hint, and
    our frames/s over OpenVINO's at it (median of per-round ratios; > 1: ours is faster)."""

    batch: int
    ours_ms: float
    openvino_ms: dict[str, float]
    best_hint: str
    speedup: float


@dataclass
class OpenVinoComparison:
    ours: str
    file: str
    version: str
    precision: str
    threads: int
    compiled: dict[str, dict[str, str]]
    rounds: int
    rows: list[ApartRow] = field(default_factory=list)
    agreement: list[str] = field(default_factory=list)  # lines: output differences on the same inputs


def time_apart(ours: Callable[[], Any], process: OpenVinoProcess, inputs: dict[str, np.ndarray], *, rounds: int,
               calls: int = CALLS_PER_ROUND, warmup: int = 1, settle_s: float = SETTLE_S) -> dict[str, list[float]]:
    """Seconds per call of ``ours`` (in this process) and of OpenVINO at each hint (in its own), ``rounds`` samples
    each (a sample: the median of ``calls`` calls), taken in turn after ``warmup`` untimed rounds, with a pause of
    ``settle_s`` before each candidate's calls."""
    def time_ours() -> list[float]:
        seconds = []
        for _ in range(calls):
            start = time.perf_counter()
            ours()
            seconds.append(time.perf_counter() - start)
        return seconds

    candidates: dict[str, Callable[[], list[float]]] = {"ours": time_ours}
    for hint in HINTS:
        candidates[hint] = lambda hint=hint: process.time(hint, inputs, calls)
    process.compile(inputs)
    for _ in range(warmup):
        for call in candidates.values():
            call()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, call in candidates.items():
            time.sleep(settle_s)
            samples[name].append(statistics.median(call()))
    return samples


def compare_openvino(network: Any, process: OpenVinoProcess, sample_inputs: Callable[[int], Sequence[torch.Tensor]],
                     *, batch_sizes: Sequence[int], rounds: int, warmup: int = 1,
                     reference: Callable[..., Any] | None = None) -> tuple[OpenVinoComparison, OpenVinoNetwork]:
    """Time our ``network`` against the file in ``process`` at each batch size (:func:`time_apart`), then compare
    their outputs on the same inputs at the first batch size (and with ``reference``, the fp32 model, when given).
    Returns the comparison and a backend on OpenVINO's best hint at the first batch size (for tracker
    agreement)."""
    rows = []
    for batch in batch_sizes:
        inputs = sample_inputs(batch)
        samples = time_apart(lambda: network(*inputs), process, feeds(*inputs), rounds=rounds, warmup=warmup)
        ms = {name: 1e3 * statistics.median(values) / batch for name, values in samples.items()}
        best = min(HINTS, key=lambda hint: ms[hint])
        rows.append(ApartRow(batch, ms["ours"], {hint: ms[hint] for hint in HINTS}, best,
                             median_ratio(samples[best], samples["ours"])))
    result = OpenVinoComparison(ours=network.description, file=str(process.path), version=process.version or "?",
                                precision=process.precision, threads=process.threads, compiled=process.compiled,
                                rounds=rounds, rows=rows)
    backend = OpenVinoNetwork(process, rows[0].best_hint, network.config)
    inputs = sample_inputs(batch_sizes[0])
    theirs = backend(*inputs)
    with torch.inference_mode():
        compared = {"ours": network(*inputs)}
        if reference is not None:
            compared["fp32"] = reference(*inputs)
    for name, output in compared.items():
        logits = output[0].float()
        score = float((theirs[0].float() - logits).abs().max() / logits.abs().max().clamp(min=1e-12))
        boxes = float((theirs[1].float() - output[1].float()).abs().max())
        result.agreement.append(f"OpenVINO vs {name} on the same inputs: score logits {score:.2e} of the largest "
                                f"|logit|, boxes {boxes:.2e} (normalised crop units)")
    return result, backend


def format_openvino(result: OpenVinoComparison) -> str:
    """The section ``lorat benchmark --compare openvino`` prints."""
    settings = "; ".join(f"{hint}: " + ", ".join(f"{key}={value}" for key, value in reported.items())
                         for hint, reported in result.compiled.items())
    lines = [f"OpenVINO {result.version} on {Path(result.file).name}, in its own process, alternated with ours "
             f"({result.ours}): median of {result.rounds} rounds of {CALLS_PER_ROUND} calls each, network only",
             f"  compiled with {settings}"]
    for row in result.rows:
        theirs = ", ".join(f"{hint} {ms:.1f}" for hint, ms in row.openvino_ms.items())
        lines.append(f"  batch {row.batch}: ours {row.ours_ms:.1f} ms per frame, OpenVINO {theirs} ms; ours "
                     f"{row.speedup:.2f}x OpenVINO's frames/s at its best hint ({row.best_hint})")
    lines += [f"  {line}" for line in result.agreement]
    return "\n".join(lines)
