"""Prepare a VOT toolkit workspace for `vot evaluate lorat`, offline.

Writes DIR/config.yaml (the stack and the tracker registry), DIR/trackers.ini (the LoRAT entries of
tracker_registry.ini with this installation's Python and the weights named here) and DIR/sequences (the sequences
of a local VOT-format folder, linked, with list.txt so that nothing is downloaded). Then:

  vot evaluate --workspace DIR lorat
  vot analysis --workspace DIR lorat
  vot report --workspace DIR lorat

Entries: `lorat` (the weights given here, else the LORAT_* environment variables, else the shipped demo model;
a weights folder alone means B-224) and lorat_S224, lorat_B224, lorat_B378, lorat_L224, lorat_L378, lorat_g224,
lorat_g378 (each from the weights folder). See docs/vot.md.
"""
from __future__ import annotations

import argparse

from .common import add_model_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", metavar="DIR", help="workspace folder (created if needed)")
    parser.add_argument("--stack", required=True,
                        help="vot2022/shorttermbox, vot2020/shortterm, tests/basic, tests/multiobject, any other "
                             "stack the toolkit knows, or a stack .yaml file")
    parser.add_argument("--sequences", metavar="DIR",
                        help="local sequences in VOT format (a dataset folder with list.txt, or folders with a "
                             "`sequence` file, color/%%08d.jpg and groundtruth.txt); without it the toolkit "
                             "downloads the stack's dataset")
    parser.add_argument("--copy", action="store_true", help="copy the sequences instead of linking them")
    parser.add_argument("--output", choices=("auto", "rectangle", "mask"), default="auto",
                        help="region the tracker reports (auto: masks on mask stacks, else rectangles)")
    parser.add_argument("--sam-checkpoint", metavar="FILE",
                        help="masks from Segment Anything prompted with the box (sam_vit_h_4b8939.pth, ...; needs "
                             "pip install 'lorat-plugin[sam]') instead of the rasterised box")
    parser.add_argument("--sam-model", choices=("vit_b", "vit_l", "vit_h"),
                        help="SAM model type when the checkpoint's name does not tell")
    parser.add_argument("--force", action="store_true", help="switch an existing workspace to another stack")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..trackers.vot_workspace import ModelChoice, prepare_workspace

    model = ModelChoice.resolve(args.variant, checkpoint=args.checkpoint, backbone_weights=args.backbone_weights,
                                weights_dir=args.weights_dir)
    report = prepare_workspace(args.directory, args.stack, sequences=args.sequences, copy=args.copy, model=model,
                               device=args.device, dtype=args.dtype, output=args.output,
                               sam_checkpoint=args.sam_checkpoint, sam_model=args.sam_model, force=args.force)
    stack = report.stack
    print(f"workspace {report.directory}")
    print(f"  stack      {stack.name}: experiments {', '.join(f'{k} ({v})' for k, v in stack.experiments.items())}")
    if report.sequences:
        print(f"  sequences  {len(report.sequences)} linked{' (copied)' if args.copy else ''} from {args.sequences}")
    print(f"  trackers   {', '.join(report.trackers)} (trackers.ini), reporting {report.output}s")
    print(f"  lorat      {report.model.describe()}")
    if report.model.variants_weights_dir:
        print(f"  variants   weights from {report.model.variants_weights_dir}")
    else:
        print("  variants   need LORAT_WEIGHTS_DIR where `vot` runs (or --weights-dir here)")
    for warning in report.warnings:
        print(f"warning: {warning}")
    print("next:\n  " + report.next_steps().replace("\n", "\n  "))
    return 0
