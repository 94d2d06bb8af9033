"""Prepare a VOT toolkit workspace for `vot evaluate lorat`, offline.

Writes DIR/config.yaml (stack and tracker registry), DIR/trackers.ini (the LoRAT entries with this installation's
Python and the weights named here) and DIR/sequences (a local VOT-format folder's sequences, linked, with list.txt
so that nothing is downloaded). Then: vot evaluate|analysis|report --workspace DIR lorat

Entries: `lorat` (the model the arguments or LORAT_* variables name; nothing named: the shipped demo model) and
lorat_S224, lorat_B224, lorat_B378, lorat_L224, lorat_L378, lorat_g224, lorat_g378 (from the weights folder).
Results belong to one model: `lorat`'s go to DIR/results/lorat@<model identity>, so preparing the workspace again
for other weights or another --dtype makes `vot evaluate lorat` track again instead of reusing the earlier
model's results, which stay beside them under that model's name. See docs/vot.md.
"""
from __future__ import annotations

import argparse
import shlex

from .common import add_model_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", metavar="DIR", help="workspace folder (created if needed)")
    parser.add_argument("--stack", required=True,
                        help="vot2022/shorttermbox, vot2020/shortterm, tests/basic, tests/multiobject, any other "
                             "stack the toolkit knows, or a stack .yaml file")
    parser.add_argument("--sequences-dir", metavar="DIR",
                        help="local sequences in VOT format (a dataset folder with list.txt, or folders with a "
                             "`sequence` file, color/%%08d.jpg and groundtruth.txt); without it the toolkit "
                             "downloads the stack's dataset")
    parser.add_argument("--sequences", dest="sequences_dir", help=argparse.SUPPRESS)  # old spelling
    parser.add_argument("--copy", action="store_true", help="copy the sequences instead of linking them")
    parser.add_argument("--region", choices=("auto", "rectangle", "mask"), default="auto",
                        help="region the tracker reports (auto: masks on mask stacks, else rectangles)")
    parser.add_argument("--output", dest="old_output", help=argparse.SUPPRESS)  # the region type's old name
    parser.add_argument("--sam-checkpoint", metavar="FILE",
                        help="masks from Segment Anything prompted with the box (sam_vit_h_4b8939.pth, ...; needs "
                             "pip install 'lorat-plugin[sam]') instead of the rasterised box")
    parser.add_argument("--sam-model", choices=("vit_b", "vit_l", "vit_h"),
                        help="SAM model type when the checkpoint's name does not tell")
    parser.add_argument("--force", action="store_true", help="switch an existing workspace to another stack")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..model.sources import ModelSpec
    from ..trackers.vot_workspace import prepare_workspace

    if args.old_output:
        raise ValueError(f"--output {args.old_output}: the region type is now --region {args.old_output}")
    model = ModelSpec.from_args(args)
    report = prepare_workspace(args.directory, args.stack, sequences=args.sequences_dir, copy=args.copy, model=model,
                               region=args.region, sam_checkpoint=args.sam_checkpoint, sam_model=args.sam_model,
                               force=args.force)
    experiments = ", ".join(f"{name} ({kind})" for name, kind in report.stack.experiments.items())
    print(f"workspace {report.directory}")
    print(f"  stack      {report.stack.name}: experiments {experiments}")
    if report.sequences:
        print(f"  sequences  {len(report.sequences)} {'copied' if args.copy else 'linked'} from {args.sequences_dir}")
    print(f"  trackers   {', '.join(report.trackers)} (trackers.ini), reporting {report.region}s")
    print(f"  lorat      {report.model_name}: {model.describe()}")
    print(f"  results    `vot evaluate lorat` keeps them in {report.results}")
    if report.previous_model:
        kept = (f"stay in {report.previous_results}" if report.previous_results
                else "were not written (nothing to keep)")
        print(f"  before     the entry ran {report.previous_model}; its results {kept}. "
              f"Both in one analysis: vot analysis --workspace {shlex.quote(str(report.directory))} lorat@")
    print(f"  variants   weights from {model.weights_dir}" if model.weights_dir
          else "  variants   need LORAT_WEIGHTS_DIR where `vot` runs (or --weights-dir here)")
    for warning in report.warnings:
        print(f"warning: {warning}")
    print("next:\n  " + report.next_steps().replace("\n", "\n  "))
    return 0
