"""Fine-tune LoRAT with the paper's recipe (LoRA by default, or full fine-tuning with model.tuning=full).

  lorat train --config B-224 --output runs/b224 data.batch_size=64 optim.lr=2e-4
  torchrun --nproc-per-node 8 -m lorat_plugin.cli train --config B-224 --output runs/b224
  lorat train --config B-224 --output runs/b224 --resume
  lorat train --config my-recipe.yaml --output runs/mine
  lorat train --config smoke --name first-try          # a tiny model in a minute (see the config's comment)

--config takes a YAML file or the name of a shipped recipe (lorat_plugin/configs/: recipe, S-224 B-224 B-378 L-224
L-378 g-224 g-378, demo-pretrain, demo, smoke); a recipe of your own can start from one with `base: B-224`.

Overrides are key.path=value pairs (values in YAML syntax; list items by index: data.datasets.0.root=/data/GOT-10k).
Under torchrun every process runs this command; rank 0 writes the run folder: config.yaml, state.pt (resumable),
checkpoints/epoch_<N>.safetensors, model.safetensors when done, tensorboard/. The checkpoints record the run
name, which the model's default tracker name then carries (LoRAT-<run>-<hash>-<precision>). See docs/training.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..distributed import Distributed
    from ..model import LoRAT
    from ..train import TrainConfig
    from ..train.trainer import Validation


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="training YAML, or a shipped recipe's name (B-224, ...); default: the built-in recipe "
                             "(B-224, data under $LORAT_DATA)")
    parser.add_argument("--output", metavar="DIR", help="run folder (default: train.output, else runs/<config name>)")
    parser.add_argument("--name", metavar="NAME",
                        help="run name (default: the config's name, else its file stem): the default output folder "
                             "runs/<name>, and recorded in the checkpoints, so the model's default tracker name "
                             "says which run trained it")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output from its state.pt")
    parser.add_argument("--stop-after-steps", type=int, metavar="N",
                        help="stop (resumably) after N optimiser steps in total, e.g. for time-limited jobs")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=2e-4")


def run(args: argparse.Namespace) -> int:
    import json
    import logging
    import os

    from ..train import load_config, train
    from ..train.config import resolve_path

    overrides = list(args.overrides)
    if args.name is not None:
        overrides.append(f"name={json.dumps(args.name)}")  # a JSON string is a YAML string: any text stays text
    config = load_config(args.config, overrides)
    if int(os.environ.get("RANK", "0")) != 0:
        logging.getLogger().setLevel(logging.WARNING)  # one process talks
    output = args.output or resolve_path(config.train.output, "train.output")
    result = train(config, output, resume=args.resume, stop_after_steps=args.stop_after_steps,
                   progress=args.progress,
                   validation=tracking_validation(config) if config.validation.dataset is not None else None)
    if int(os.environ.get("RANK", "0")) == 0:
        if result.finished:
            print(f"trained {result.global_step} steps: {result.checkpoint}")
        else:
            print(f"stopped after {result.global_step} steps; continue with --resume --output {result.output}")
    return 0


def tracking_validation(config: "TrainConfig") -> "Validation":
    """Validation at epoch ends: the current weights, merged, run through the tracking engine and the evaluation
    harness on ``validation.dataset``; the benchmark's headline metrics (AO / SR for GOT-10k layouts, AUC / P for
    OPE benchmarks, as percentages) come back for the logs. Under torchrun every rank tracks a share."""
    import copy

    from ..data.datasets import dataset_key
    from ..engine import TrackingEngine
    from ..evaluation import evaluate, load_results, run_benchmark
    from ..evaluation.report import SPEED_COLUMNS, headline
    from ..train.source import load_entry

    section = config.validation
    entry = section.dataset
    sequences = load_entry(entry, "validation.dataset")[:section.max_sequences]
    dataset = dataset_key(entry.name)

    def validate(model: "LoRAT", output_dir: Path, ctx: "Distributed") -> dict[str, float]:
        # The engine merges a LoRA model into its own copy; a fully fine-tuned one it would switch to eval in place.
        engine = TrackingEngine(model if model.has_lora else copy.deepcopy(model), device=ctx.device)
        run_benchmark(engine, sequences, output_dir, tracker_name=config.name, dataset=dataset, split=entry.split,
                      root=entry.root, batch_size=section.batch_size, progress=False)
        if not ctx.is_main:
            return {}
        results = load_results(output_dir, dataset, sequences)
        metrics = evaluate(dataset, sequences, [results], split=entry.split)
        row = headline(next(iter(metrics["trackers"].values())))
        return {key: float(value) for key, value in row.items()
                if value is not None and key not in SPEED_COLUMNS.values()}

    return validate
