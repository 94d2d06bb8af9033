"""Tracking validation at epoch ends: the current weights, merged, run through the tracking engine and the
evaluation harness on a held-out set; the benchmark's headline metrics (AO / SR for GOT-10k layouts, AUC / P for
OPE benchmarks) come back for the logs. Under torchrun every rank tracks a share of the sequences."""
from __future__ import annotations

import copy
import logging
from pathlib import Path

from ..model import LoRAT
from .config import TrainConfig
from .distributed import Distributed
from .source import load_entry

log = logging.getLogger(__name__)


def validate(model: LoRAT, config: TrainConfig, output_dir: Path, ctx: Distributed) -> dict[str, float]:
    """Track the validation set with ``model`` (left untouched) and return its headline metrics on rank 0
    (percentages, as papers print them); other ranks return {}."""
    from ..data.datasets import dataset_key
    from ..engine import TrackingEngine
    from ..evaluation import evaluate, load_results, run_benchmark
    from ..evaluation.report import headline

    section = config.validation
    entry = section.dataset
    sequences = load_entry(entry, "validation.dataset")
    if section.max_sequences is not None:
        sequences = sequences[:section.max_sequences]
    dataset = dataset_key(entry.name)
    # The engine merges a LoRA model into its own copy; a fully fine-tuned one it would switch to eval in place.
    tracked = model if model.has_lora else copy.deepcopy(model)
    engine = TrackingEngine(tracked, device=ctx.device)
    was_training = model.training
    try:
        run_benchmark(engine, sequences, output_dir, tracker_name=config.name, dataset=dataset, split=entry.split,
                      root=entry.root, batch_size=section.batch_size, progress=False)
    finally:
        model.train(was_training)
    if not ctx.is_main:
        return {}
    results = load_results(output_dir, dataset, sequences)
    metrics = evaluate(dataset, sequences, [results], split=entry.split)
    row = headline(next(iter(metrics["trackers"].values())))
    return {key: float(value) for key, value in row.items() if value is not None and key != "FPS"}
