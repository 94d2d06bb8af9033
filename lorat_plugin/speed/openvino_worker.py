"""The OpenVINO side of ``lorat benchmark --compare openvino``: run as a script in a process of its own (it imports
neither torch nor lorat_plugin), so OpenVINO's worker threads never share a process with PyTorch's, whose cores they
would keep after each call. :class:`lorat_plugin.speed.openvino_comparison.OpenVinoProcess` starts it and sends it requests.

Requests come on stdin and replies go out on the original stdout, each one pickled dict after its 8-byte length;
anything OpenVINO itself prints goes to stderr. Requests (``op``):

* ``compile``: ``path`` (an ONNX file), ``shapes`` (input name -> static shape), ``threads``, ``precision``
  (``bf16`` / ``f32``), ``hints`` (``LATENCY``, ``THROUGHPUT``): one compiled model per hint, replacing those of
  an earlier ``compile``; replies the settings each compiled model reports.
* ``time``: ``hint``, ``inputs`` (name -> array), ``calls``: seconds per call.
* ``run``: ``hint``, ``inputs``: the outputs, in the file's order.
"""
from __future__ import annotations

import os
import pickle
import struct
import sys
import time
from typing import Any, BinaryIO

LENGTH = struct.Struct("<Q")
# What each compiled model is asked for and reports back; THROUGHPUT is held to one stream, so one call at a time
# uses every thread, as the tracker's calls do.
REPORTED = ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT")


def read_message(stream: BinaryIO) -> Any:
    """The next message on ``stream``; ``None`` at its end."""
    header = stream.read(LENGTH.size)
    if len(header) < LENGTH.size:
        return None
    (length,) = LENGTH.unpack(header)
    return pickle.loads(stream.read(length))


def write_message(stream: BinaryIO, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(LENGTH.pack(len(data)) + data)
    stream.flush()


class Worker:
    def __init__(self) -> None:
        import openvino

        self.openvino = openvino
        self.core = openvino.Core()
        self.models: dict[str, Any] = {}    # path -> the file read once
        self.requests: dict[str, Any] = {}  # hint -> an infer request of the model compiled with that hint

    def compile(self, path: str, shapes: dict[str, list[int]], threads: int, precision: str,
                hints: list[str]) -> dict[str, Any]:
        if path not in self.models:
            self.models[path] = self.core.read_model(path)
        model = self.models[path]
        model.reshape({name: self.openvino.PartialShape(shape) for name, shape in shapes.items()})
        self.requests.clear()
        reported = {}
        for hint in hints:
            config = {"PERFORMANCE_HINT": hint, "INFERENCE_NUM_THREADS": threads,
                      "INFERENCE_PRECISION_HINT": precision}
            if hint == "THROUGHPUT":
                config["NUM_STREAMS"] = 1
            compiled = self.core.compile_model(model, "CPU", config)
            self.requests[hint] = compiled.create_infer_request()
            reported[hint] = {key: _text(compiled.get_property(key)) for key in REPORTED}
        return {"version": self.openvino.get_version(), "compiled": reported}

    def time(self, hint: str, inputs: dict[str, Any], calls: int) -> list[float]:
        request = self.requests[hint]
        seconds = []
        for _ in range(calls):
            start = time.perf_counter()
            request.infer(inputs)
            seconds.append(time.perf_counter() - start)
        return seconds

    def run(self, hint: str, inputs: dict[str, Any]) -> list[Any]:
        results = self.requests[hint].infer(inputs)
        return [array.copy() for array in results.to_tuple()]


def _text(value: Any) -> str:
    """A property as OpenVINO spells it in its settings (``bf16``, not ``<Type: 'bfloat16'>``)."""
    return value.to_string() if hasattr(value, "to_string") else str(value)


def main() -> None:
    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # OpenVINO's own prints must not land among the replies
    try:
        worker = Worker()
    except ImportError as error:
        write_message(replies, {"error": f"openvino cannot be imported: {error}"})
        return
    write_message(replies, {"ready": True})
    while (request := read_message(requests)) is not None:
        operation = request.pop("op")
        try:
            write_message(replies, {"result": getattr(worker, operation)(**request)})
        except Exception as error:  # the parent turns it into one line
            write_message(replies, {"error": f"{type(error).__name__}: {error}".splitlines()[0]})


if __name__ == "__main__":
    main()
