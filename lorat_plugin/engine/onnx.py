"""The merged LoRAT network as an ONNX file, and an ONNX Runtime backend the tracking engine can run on.

The file holds the engine's network call: inputs ``z`` (B x 3 x T x T float32, normalised template), ``x``
(B x 3 x S x S float32 search region), ``z_feat_mask`` (B x t x t int64, 1 = target token); outputs ``score_map``
(B x s x s logits) and ``boxes`` (B x s x s x 4, normalised x1 y1 x2 y2). Crop sizes are static, the batch is
dynamic unless fixed; the :class:`~lorat_plugin.model.ModelConfig` is in the file's metadata.

``fp16`` files store the transformer in half precision (for GPU runtimes: ONNX Runtime CUDA, TensorRT); ONNX
Runtime's CPU provider has no fast fp16/bf16 kernels, so on CPU export fp32 or ``int8`` (the blocks' weight products
quantised by ONNX Runtime's ``quantize_dynamic``: the deployment form of ``--dtype int8``).
"""
from __future__ import annotations

import copy
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..files import atomic_path
from ..model import LoRAT, ModelConfig
from ..model.network import NetworkOutput
from .backends import backend_for, build_network
from .cast import cast_model
from .network import merged_model

INPUT_NAMES = ("z", "x", "z_feat_mask")
OUTPUT_NAMES = ("score_map", "boxes")
DEFAULT_OPSET = 17
METADATA_CONFIG = "lorat_model_config"
METADATA_DTYPE = "lorat_dtype"
# Largest |ONNX Runtime CPU - PyTorch| allowed on the same inputs, per file precision: (score logits, boxes in
# normalised search-crop units; 1e-4 of a 224 px crop is 0.02 px). fp16 is compared with PyTorch's fp16 path.
# int8 is compared with PyTorch fp32, its score tolerance relative to the largest |logit| (the int8 network's own).
TOLERANCE = {"fp32": (1e-3, 1e-4), "fp16": (2e-2, 2e-3), "int8": (2e-2, 2e-3)}
# How far an int8 file may be from fp32 relative to PyTorch's own int8 network on the same inputs. Rounding to 8 bits
# costs what it costs for a given model (a small model trained briefly, like the shipped demo one, is further from
# fp32 than the int8 tolerance above); the file must not be much further than `--dtype int8` in PyTorch is, while a
# broken graph is off by orders of magnitude.
INT8_MARGIN = 2.0


class OnnxExportError(RuntimeError):
    """The exported file does not reproduce PyTorch within :data:`TOLERANCE`."""


def _export_module(model: LoRAT, dtype: str) -> nn.Module:
    if dtype not in TOLERANCE:
        raise ValueError(f"ONNX export precision must be fp32, fp16 or int8, got {dtype!r}")
    model = merged_model(model)
    return cast_model(model, torch.float16, "cpu") if dtype == "fp16" else copy.deepcopy(model).cpu().eval()


def export_onnx(model: LoRAT, path: str | os.PathLike, *, dtype: str = "fp32", opset: int = DEFAULT_OPSET,
                batch_size: int | None = None) -> Path:
    """Write the merged network to ``path`` (atomically). ``batch_size=None``: dynamic batch dimension."""
    import onnx

    path = Path(path)
    module = _export_module(model, dtype)
    example = model.get_sample_data(batch_size or 2, "cpu")
    dynamic = None if batch_size else {name: {0: "batch"} for name in (*INPUT_NAMES, *OUTPUT_NAMES)}
    with atomic_path(path) as temp:
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript-based exporter: it needs nothing beyond torch and onnx (the dynamo-based one needs
            # onnxscript) and handles this static-shape ViT well.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(module, example, str(temp), input_names=list(INPUT_NAMES),
                              output_names=list(OUTPUT_NAMES), dynamic_axes=dynamic, opset_version=opset,
                              do_constant_folding=True, dynamo=False)
        proto = onnx.load(str(temp))
        for key, value in ((METADATA_CONFIG, model.config.to_json()), (METADATA_DTYPE, dtype)):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.producer_name = "lorat-plugin"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(temp))
        if dtype == "int8":
            _quantize_blocks(temp)
    return path


def _quantize_blocks(path: Path) -> None:
    """Quantise, in place, the transformer blocks' products with a weight (not attention's, not the head's)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(path)).graph
    weights = {tensor.name for tensor in graph.initializer}
    nodes = [node.name for node in graph.node
             if node.op_type == "MatMul" and "/blocks." in node.name and node.input[1] in weights]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs a line per tensor, and advice, on the root logger
    try:
        with atomic_path(path) as quantized:
            quantize_dynamic(path, quantized, per_channel=True, weight_type=QuantType.QInt8, nodes_to_quantize=nodes)
    finally:
        root.setLevel(level)


def check_onnx(path: str | os.PathLike, model: LoRAT, *, batch_size: int = 2, seed: int = 0,
               threads: int | None = None) -> dict[str, float]:
    """Run the file with ONNX Runtime (CPU) and the PyTorch model on the same inputs. Returns the largest absolute
    differences (``score_map``: score logits, ``boxes``) and what is allowed for each (``score_map_allowed``,
    ``boxes_allowed``: :data:`TOLERANCE`; for int8 files also up to :data:`INT8_MARGIN` times PyTorch's own int8
    network's difference from fp32 on the same inputs, where PyTorch can run int8). Raises
    :class:`OnnxExportError` (one line: the measured differences and the allowed ones) beyond them."""
    network = OnnxNetwork(path, threads=threads)
    if network.fixed_batch is not None:
        batch_size = network.fixed_batch
    module = _export_module(model, "fp32" if network.precision == "int8" else network.precision)
    inputs = model.get_sample_data(batch_size, "cpu", seed=seed)
    with torch.inference_mode():
        expected = module(*inputs)
    diffs = _largest_differences(network(*inputs), expected)
    score_tol, box_tol = TOLERANCE[network.precision]
    allowed = {"score_map": score_tol, "boxes": box_tol}
    if network.precision == "int8":
        allowed["score_map"] *= float(expected[0].abs().max())
        torch_int8 = _torch_int8_differences(model, inputs, expected)
        if torch_int8 is not None:
            allowed = {key: max(value, INT8_MARGIN * torch_int8[key]) for key, value in allowed.items()}
    diffs |= {f"{key}_allowed": value for key, value in allowed.items()}
    if not all(diffs[key] <= allowed[key] for key in allowed):
        raise OnnxExportError(f"ONNX Runtime differs from PyTorch by {diffs['score_map']:.2e} (score logits, allowed "
                              f"{allowed['score_map']:.2e}) and {diffs['boxes']:.2e} (boxes, allowed "
                              f"{allowed['boxes']:.2e} in normalised crop units)")
    return diffs


def _largest_differences(got: Sequence[torch.Tensor], expected: Sequence[torch.Tensor]) -> dict[str, float]:
    return {name: float((a.float() - b.float()).abs().max()) for name, a, b in zip(OUTPUT_NAMES, got, expected)}


def _torch_int8_differences(model: LoRAT, inputs: Sequence[torch.Tensor], expected: Sequence[torch.Tensor]
                            ) -> dict[str, float] | None:
    """PyTorch's int8 network (``--dtype int8``) against fp32 on ``inputs``; ``None`` where it cannot run."""
    try:
        network = build_network(model, "cpu", "int8", per_sequence=False)  # one call, as the file runs
    except ValueError:  # no oneDNN quantised kernels in this torch build (e.g. not x86)
        return None
    return _largest_differences(network(*inputs), expected)


def exported_config(metadata: dict[str, str], path: Path) -> ModelConfig:
    """The model config ``lorat export`` wrote into the metadata of the file at ``path``."""
    if METADATA_CONFIG not in metadata:
        raise ValueError(f"{path} has no LoRAT model config in its metadata: export it with `lorat export`")
    return ModelConfig.from_json(metadata[METADATA_CONFIG])


class OnnxNetwork:
    """A :class:`~lorat_plugin.engine.network.NetworkBackend` running an exported file with ONNX Runtime
    (``TrackingEngine(OnnxNetwork("model.onnx"))``). ``providers`` defaults to the CPU provider; ``threads`` to
    torch's intra-op thread count (so PyTorch and ONNX Runtime use the same cores when compared)."""

    def __init__(self, path: str | os.PathLike, *, providers: Sequence[str] | None = None,
                 threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX file not found: {self.path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle ONNX Runtime threads otherwise spin after each call, taking the cores from the tracker's own PyTorch
        # work between calls and from whatever `lorat benchmark` times next (docs/speed.md, "CPU int8").
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as e:  # onnxruntime raises its own exception types for unreadable files
            raise ValueError(f"{self.path} is not a loadable ONNX model: {e}") from e
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.config = exported_config(metadata, self.path)
        self.precision = metadata.get(METADATA_DTYPE, "fp32")
        self.dtype = backend_for(self.precision).dtype
        self.device = torch.device("cpu")
        self.description = f"ONNX Runtime CPU, {self.precision} ({self.path.name})"
        names = [i.name for i in self.session.get_inputs()]
        if tuple(names) != INPUT_NAMES:
            raise ValueError(f"{self.path}: inputs {names}, expected {list(INPUT_NAMES)}")
        batch = self.session.get_inputs()[1].shape[0]
        self.fixed_batch: int | None = batch if isinstance(batch, int) else None

    def __call__(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor) -> NetworkOutput:
        if self.fixed_batch is not None and x.shape[0] != self.fixed_batch:
            raise ValueError(f"{self.path} was exported for batch size {self.fixed_batch}, got {x.shape[0]}: "
                             "export with a dynamic batch (the default) to track other batch sizes")
        feeds = {"z": _array(z, np.float32), "x": _array(x, np.float32), "z_feat_mask": _array(z_feat_mask, np.int64)}
        score_map, boxes = self.session.run(list(OUTPUT_NAMES), feeds)
        return NetworkOutput(torch.from_numpy(score_map), torch.from_numpy(boxes))


def _array(tensor: torch.Tensor, dtype: Any) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=dtype)
