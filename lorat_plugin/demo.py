"""The out-of-the-box demo: the shipped demo model and classical baselines over the shipped procedural benchmark.

:func:`run_demo` generates the shipped test split (:data:`DEMO_BENCHMARK_ASSET` fixes its parameters and ground
truth digests), runs LoRAT and the baselines through the evaluation harness (result files, records), scores them
with the GOT-10k protocol (AO, SR) and pytracking's OPE protocol (success AUC, precision), writes the reports and
plots, and renders one sequence with every tracker's box. :func:`package_demo_model` turns a checkpoint trained
with ``configs/demo.yaml`` into the shipped ``assets/demo_model.safetensors``. See docs/demo.md.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import math
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .data.sequence import Sequence, read_image

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEMO_BENCHMARK_ASSET = "demo_benchmark.json"
DEMO_TRACKER = "LoRAT-demo"
BASELINE_NAMES = {"csrt": "CSRT", "kcf": "KCF", "static": "StaticBox"}
# Box colours in the rendered video: ground truth white, LoRAT green, then the baselines.
COLORS = {"GT": (255, 255, 255), "LoRAT": (40, 220, 40), "CSRT": (255, 150, 0), "KCF": (60, 140, 255),
          "StaticBox": (200, 60, 200)}


def asset_path(name: str) -> Path:
    return Path(str(resources.files("lorat_plugin") / "assets" / name))


def demo_benchmark_spec() -> dict[str, Any]:
    """Parameters of the shipped test split, its per-sequence ground-truth digests and the sequence to render."""
    path = asset_path(DEMO_BENCHMARK_ASSET)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from this installation (it describes the demo benchmark)")
    return json.loads(path.read_text(encoding="utf-8"))


def prepare_demo_benchmark(root: str | Path, changes: dict[str, Any] | None = None,
                           progress: Callable[[int, int, str], None] | None = None) -> list[Sequence]:
    """Generate (or reuse) the shipped test split under ``root`` and read it back with the GOT-10k reader.
    ``changes`` overrides its parameters (``seed``, ``sequences``, ``frames``, ``size``): another sample of the test
    photographs' sequences, for measuring generalisation.

    The shipped split's ground truth is compared with the recorded digests: a mismatch (another version of
    scikit-image's photographs or of the renderer) is reported, since the metrics then are not the documented ones."""
    from .data.datasets import load_dataset
    from .data.procedural import make_benchmark
    from .data.procedural.layouts import groundtruth_digest

    spec = demo_benchmark_spec()
    p = {**spec["parameters"], **{k: v for k, v in (changes or {}).items() if v is not None}}
    unknown = sorted(set(p) - set(spec["parameters"]))
    if unknown:
        raise ValueError(f"unknown demo benchmark parameters {unknown}")
    bench = make_benchmark(root, split=p["split"], sequences=p["sequences"], frames=p["frames"],
                           size=tuple(p["size"]), seed=p["seed"], layout=p["layout"], progress=progress)
    same = all(p[k] == spec["parameters"][k] for k in ("split", "frames", "size", "seed", "layout"))
    expected = spec.get("sequence_sha256", []) if same else []
    differing = [f.name for f, digest in zip(bench.folders, expected) if groundtruth_digest([f]) != digest]
    if differing:
        log.warning("the generated benchmark differs from the shipped one in %d sequence(s) (e.g. %s): the numbers "
                    "will not match docs/demo.md exactly (scikit-image or OpenCV version?)", len(differing),
                    differing[0])
    return load_dataset(bench.layout, bench.root, split=bench.subset)


DEFAULT_PARAMETERS = {"split": "test", "sequences": 16, "frames": 100, "size": [320, 240], "seed": 0,
                      "layout": "got10k"}


def write_demo_benchmark_spec(root: str | Path, *, video_sequence: str,
                              parameters: dict[str, Any] | None = None) -> Path:
    """Maintainers: generate the demo split under ``root`` and record its parameters and ground-truth digests in
    the package assets (run again only when the generator changes on purpose)."""
    from .data.procedural import GENERATOR_VERSION, make_benchmark
    from .data.procedural.layouts import groundtruth_digest, write_text_atomic

    p = dict(parameters or DEFAULT_PARAMETERS)
    bench = make_benchmark(root, split=p["split"], sequences=p["sequences"], frames=p["frames"],
                           size=tuple(p["size"]), seed=p["seed"], layout=p["layout"])
    if video_sequence not in bench.names:
        raise ValueError(f"{video_sequence!r} is not a sequence of the demo split")
    spec = {"generator_version": GENERATOR_VERSION, "parameters": p, "video_sequence": video_sequence,
            "sequence_sha256": [groundtruth_digest([folder]) for folder in bench.folders]}
    path = asset_path(DEMO_BENCHMARK_ASSET)
    write_text_atomic(path, json.dumps(spec, indent=1) + "\n")
    return path


@dataclass
class DemoResult:
    output: Path
    table: str
    metrics: dict[str, dict[str, float | None]]  # tracker -> column -> value (percent; FPS as is)
    reports: list[Path] = field(default_factory=list)
    video: Path | None = None


def run_demo(output: str | Path, model: Any = None, *, tracker_name: str = DEMO_TRACKER,
             baselines: tuple[str, ...] = ("csrt", "kcf", "static"), video: bool = True,
             video_sequence: str | None = None, batch_size: int = 16, device: str | None = None,
             dtype: str | None = None, benchmark: dict[str, Any] | None = None, progress: bool = True
             ) -> DemoResult:
    """The whole demo into ``output``: ``benchmark/``, ``results/<tracker>/``, ``report/``, ``video/``.
    Re-running reuses the benchmark and the baselines' results; the model is always run again."""
    from .evaluation import evaluate, load_results, run_benchmark, write_report
    from .trackers.baselines import baseline

    output = Path(output)
    sequences = prepare_demo_benchmark(output / "benchmark", benchmark)
    trackers: list[tuple[str, Any]] = []
    if model is not None:
        from .engine import TrackingEngine
        trackers.append((tracker_name, TrackingEngine(model, device=device, dtype=dtype)))
    for name in baselines:
        adapter = baseline(name)
        trackers.append((adapter.name, adapter))
    if not trackers:
        raise ValueError("nothing to run: no model and no baselines")
    if model is not None:  # the model may have changed since the last run; the baselines are deterministic
        shutil.rmtree(output / "results" / tracker_name, ignore_errors=True)
    results = []
    for name, tracker in trackers:
        folder = output / "results" / name
        log.info("running %s over %d sequences", name, len(sequences))
        run_benchmark(tracker, sequences, folder, tracker_name=name, dataset="got10k", split="val",
                      root=output / "benchmark", batch_size=batch_size, progress=progress)
        results.append(load_results(folder, "got10k", sequences, name=name))

    got10k = evaluate("got10k", sequences, results)
    ope = evaluate("procedural", sequences, results)
    got10k["title"] = ope["title"] = "Procedural test split"
    reports = write_report(got10k, output / "report") + write_report(ope, output / "report" / "ope")
    metrics = combined_metrics(got10k, ope)
    table = format_table(metrics, sequences)
    (output / "report" / "demo_table.txt").write_text(table + "\n", encoding="utf-8")
    reports.append(output / "report" / "demo_table.txt")
    video_path = None
    if video:
        names = [s.name for s in sequences]
        name = video_sequence or demo_benchmark_spec().get("video_sequence")
        name = name if name in names else names[0]
        video_path = render_sequence_video(sequences, results, name, output / "video")
    return DemoResult(output, table, metrics, reports, video_path)


def combined_metrics(got10k: dict, ope: dict) -> dict[str, dict[str, float | None]]:
    rows = {}
    for name, entry in got10k["trackers"].items():
        overall = entry["got10k"]["overall"]
        scores = ope["trackers"][name]["ope"]
        rows[name] = {"AO": 100 * overall["ao"], "SR0.5": 100 * overall["sr50"], "SR0.75": 100 * overall["sr75"],
                      "AUC": 100 * scores["auc"], "P@20": 100 * scores["precision"], "FPS": entry.get("fps")}
    return rows


def format_table(metrics: dict[str, dict[str, float | None]], sequences: list[Sequence]) -> str:
    frames = sum(len(s) for s in sequences)
    columns = ["AO", "SR0.5", "SR0.75", "AUC", "P@20", "FPS"]
    width = max(12, *(len(n) for n in metrics))
    lines = [f"Procedural test split: {len(sequences)} sequences, {frames} frames, photographs never seen in training",
             "AO, SR0.5, SR0.75: GOT-10k protocol; AUC, P@20: OPE (pytracking); FPS: tracker time per frame",
             f"{'tracker':<{width}} " + " ".join(f"{c:>7}" for c in columns)]
    for name, row in metrics.items():
        cells = ["-" if row[c] is None or not math.isfinite(row[c]) else
                 (f"{row[c]:.0f}" if c == "FPS" else f"{row[c]:.1f}") for c in columns]
        lines.append(f"{name:<{width}} " + " ".join(f"{v:>7}" for v in cells))
    return "\n".join(lines)


def render_sequence_video(sequences: list[Sequence], results: list, name: str, folder: Path,
                          scale: int = 2, fps: float = 10.0) -> Path:
    """One sequence with the ground truth and every tracker's box drawn: MP4 when PyAV is installed, else GIF."""
    from PIL import Image

    from .data.video import draw_boxes, write_video

    by_name = {s.name: s for s in sequences}
    if name not in by_name:
        raise ValueError(f"no sequence {name!r} in the demo benchmark; choose one of {', '.join(by_name)}")
    sequence = by_name[name]
    suffix = ".mp4" if importlib.util.find_spec("av") else ".gif"  # PyAV writes mp4; imageio falls back to GIF

    def frames():
        for index, path in enumerate(sequence.frames):
            image = read_image(path)
            height, width = image.shape[:2]
            image = np.asarray(Image.fromarray(image).resize((width * scale, height * scale), Image.BILINEAR))
            boxes, colors, labels = [], [], []
            if sequence.visible[index]:
                boxes.append(sequence.boxes[index] * scale)
                colors.append(COLORS["GT"])
                labels.append(None)
            for result in results:
                boxes.append(np.asarray(result.runs[name][0][index]) * scale)
                colors.append(COLORS.get(result.name, COLORS["LoRAT"] if "LoRAT" in result.name else (255, 255, 0)))
                labels.append(result.name if index == 0 else None)
            yield _caption(draw_boxes(image, boxes, colors, labels, thickness=2),
                           f"{name}  frame {index + 1}/{len(sequence)}  white: ground truth")

    return write_video(folder / f"{name}{suffix}", frames(), fps=fps)


def _caption(image: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, canvas.width, 14), fill=(0, 0, 0))
    draw.text((4, 2), text, fill=(255, 255, 255))
    return np.asarray(canvas)


# ---- the shipped checkpoint -------------------------------------------------------------------------------------

def sincos_position_table(grid: int, dim: int) -> "torch.Tensor":
    """1 x grid*grid x dim fixed 2-D sine-cosine position codes (MAE's): half the channels encode the column,
    half the row, each as sines and cosines of geometrically spaced frequencies."""
    import torch

    if dim % 4:
        raise ValueError(f"the embedding width {dim} must be a multiple of 4 for 2-D sine-cosine codes")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64),
                                indexing="ij")
    parts = []
    for coordinate in (cols.flatten(), rows.flatten()):
        angles = coordinate[:, None] * omega[None, :]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()[None]


def write_initial_backbone(config_file: str | Path, path: str | Path) -> Path:
    """Stage 0 of the demo recipe: a randomly initialised backbone (seeded by the training config) whose position
    table starts as 2-D sine-cosine codes. Training from scratch then starts with tokens that know where they are,
    which the box regression needs; everything else is the model's own random initialisation."""
    import torch

    from .model import build_model, save_checkpoint
    from .train import load_config

    config = load_config(config_file)
    model_config = config.model.model_config().replace(tuning="full")
    torch.manual_seed(config.train.seed)
    model = build_model(model_config)
    with torch.no_grad():
        model.pos_embed.copy_(sincos_position_table(model_config.search_grid, model_config.embed_dim))
    return save_checkpoint(model, path, include_backbone=True,
                           extra_metadata={"description": "random initialisation with sine-cosine position codes "
                                                          "(demo recipe, stage 0)"})



DEMO_DESCRIPTION = ("lorat-plugin demo model: a small LoRAT (ViT width 192, depth 6, 56/112 px) whose backbone was "
                    "pre-trained from scratch on the procedural train split and then frozen and adapted with LoRA "
                    "and the head (configs/demo-pretrain.yaml, configs/demo.yaml). For demonstrations and tests only; "
                    "not a benchmark model.")


def package_demo_model(source: str | Path, destination: str | Path | None = None) -> Path:
    """Label a checkpoint written by ``lorat train --config configs/demo.yaml`` as the demo model and store it,
    adapters unmerged and backbone included, in half precision (it is loaded into float32) to keep the package
    small."""
    import torch

    from .model import build_model, save_checkpoint
    from .model.weights import read_weights

    source = Path(source)
    weights = read_weights(source, what="demo model checkpoint")
    if not weights.is_backbone:
        raise ValueError(f"{source} holds no backbone: train the demo with train.include_backbone: true")
    model = build_model(checkpoint=source)
    if not model.has_lora:
        raise ValueError(f"{source} is not a LoRA checkpoint (tuning {model.config.tuning}); package the stage-2 "
                         "model of configs/demo.yaml")
    destination = Path(destination) if destination else asset_path("demo_model.safetensors")
    metadata = {"description": DEMO_DESCRIPTION, "demo_model": "true", "stored_dtype": "float16",
                "trained_from": source.name, **{k: v for k, v in weights.metadata.items()
                                                if k in ("run", "epochs_done", "global_step")}}
    with torch.no_grad():
        model.half()
    return save_checkpoint(model, destination, include_backbone=True, extra_metadata=metadata)


__all__ = ["run_demo", "DemoResult", "prepare_demo_benchmark", "demo_benchmark_spec", "package_demo_model",
           "render_sequence_video", "DEMO_TRACKER"]
