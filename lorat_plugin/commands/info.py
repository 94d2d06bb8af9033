"""List the named LoRAT variants with their sizes, or describe weights files (what they hold, for which model)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", help="weights files to describe (DINOv2 backbones, LoRAT checkpoints)")


def run(args: argparse.Namespace) -> int:
    from ..model import VARIANTS, build_model, count_parameters, read_weights
    from ..model.weights import describe

    if args.files:
        for file in args.files:
            print(describe(read_weights(file)))
        return 0
    print(f"{'variant':8} {'width':>5} {'depth':>5} {'ffn':6} {'template':>8} {'search':>6} {'factor':>6} "
          f"{'trainable':>10} {'with LoRA':>10} {'merged':>9}")
    for name, c in VARIANTS.items():
        train = count_parameters(build_model(c, device="meta"))
        merged = count_parameters(build_model(c, device="meta", merge=True))["total"]
        print(f"{name:8} {c.embed_dim:5d} {c.depth:5d} {c.ffn:6} {c.template_size:8d} {c.search_size:6d} "
              f"{c.search_area_factor:6g} {train['trainable'] / 1e6:9.2f}M {train['total'] / 1e6:9.1f}M "
              f"{merged / 1e6:8.1f}M")
    return 0
