"""The `lorat` command. Each verb is a thin module in lorat_plugin.commands that calls the library."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys

from . import __version__
from .process import tune_cpu_allocator

# verb -> (module in lorat_plugin.commands, one-line help). Modules import heavy libraries inside run().
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run the shipped demo model over the shipped benchmark: results, metrics, plots, a video"),
    "app": ("app", "a local web page: draw targets on your video and track them; browse evaluation results"),
    "track": ("track", "track one target in a video file, a frame folder or an image list"),
    "evaluate": ("evaluate", "run a tracker over a benchmark and write its result files (resumable, torchrun)"),
    "report": ("report", "compute a benchmark's official metrics from result files; table, metrics.json, plots"),
    "pack": ("pack", "build a GOT-10k or TrackingNet server submission zip from a results folder"),
    "train": ("train", "fine-tune LoRAT (LoRA or full) on tracking datasets; runs under torchrun"),
    "make-benchmark": ("make_benchmark", "generate a procedural benchmark from real photographs"),
    "vot-workspace": ("vot_workspace", "prepare an offline VOT toolkit workspace for `vot evaluate lorat`"),
    "benchmark": ("benchmark", "measure model and tracker frames per second on this machine"),
    "export": ("export", "export the merged network to ONNX and check it against PyTorch"),
    "info": ("info", "list the variants, or describe weights files"),
}


# Optional packages by the module name Python reports missing -> the extra that installs them (setup.py's
# extras_require; tests/test_cli.py keeps the two in step).
EXTRAS: dict[str, str] = {
    "av": "video", "imageio": "video", "imageio_ffmpeg": "video",
    "got10k": "got10k",
    "vot": "vot", "trax": "vot", "attributee": "vot",
    "onnx": "export", "onnxruntime": "export",
    "openvino": "openvino",
    "cv2": "baselines",
    "skimage": "demo",
    "pycocotools": "train", "tensorboard": "train",
    "segment_anything": "sam",
    "starlette": "app", "uvicorn": "app",
    "pytest": "test", "playwright": "test",
}


def missing_extra(error: ImportError) -> str:
    """One line for an optional package that is not installed: what is missing and the ``pip install`` that adds it
    (an error that already says how, as the readers' do, is kept as it is)."""
    if "pip install" in str(error):
        return str(error)
    module = (error.name or "").split(".")[0]
    extra = EXTRAS.get(module)
    if extra is None:
        return f"a package is missing: {error}"
    return f"{module} is not installed: pip install 'lorat-plugin[{extra}]'"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lorat", description="LoRAT visual object tracker (ECCV 2024)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for verb, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"lorat_plugin.commands.{module_name}")
        command = sub.add_parser(verb, help=help_text, description=(module.__doc__ or help_text).strip(),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        command.add_argument("-q", "--quiet", action="store_true",
                             help="no progress bars and no info logs (results, warnings and errors stay)")
        command.add_argument("--no-progress", action="store_true",
                             help="no progress bars; log lines stay (for job logs)")
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def check_device_and_precision(args: argparse.Namespace) -> None:
    """``--device`` and ``--dtype`` through the one device parser and the backend table, before any file is read,
    so that a typo is named first."""
    if not hasattr(args, "device"):  # a verb without the model arguments
        return
    from .devices import parse_device
    from .engine.precision import resolve_precision
    from .model.sources import ENV

    device_setting, device = "--device", args.device
    if device is None and os.environ.get(ENV["device"], "").strip():
        device_setting, device = ENV["device"], os.environ[ENV["device"]]
    device = parse_device(device, setting=device_setting)
    dtype = args.dtype or os.environ.get(ENV["dtype"], "").strip() or None
    if dtype is not None:
        resolve_precision(dtype, device)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for i in range(len(argv) - 1, 0, -1):  # "--init -5,-5,40,40": argparse would read the leading minus as an option
        if argv[i - 1].startswith("--") and re.fullmatch(r"-[\d.]+([,;\s]+-?[\d.]+)+", argv[i]):
            argv[i - 1:i + 1] = [f"{argv[i - 1]}={argv[i]}"]
    args = build_parser().parse_args(argv)
    args.progress = not (args.quiet or args.no_progress)
    logging.basicConfig(format="%(levelname)s %(message)s")
    logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    tune_cpu_allocator()  # process-wide, so only here at the program's entry
    try:
        check_device_and_precision(args)
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, OSError) as e:  # user errors: one clear line, no traceback
        if args.verbose:
            raise
        print(f"lorat {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:  # an optional extra that is not installed (our own import errors are bugs: raised)
        if args.verbose or (e.name or "").startswith("lorat_plugin") or (
                not isinstance(e, ModuleNotFoundError) and "pip install" not in str(e)):
            raise
        print(f"lorat {args.command}: error: {missing_extra(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
