"""Prepare a VOT toolkit workspace (vot-toolkit 0.7.4) in which ``vot evaluate lorat`` runs offline.

:func:`prepare_workspace` writes ``config.yaml`` (the stack and ``registry: [./trackers.ini]``), ``trackers.ini``
(the LoRAT entries of :mod:`lorat_plugin.trackers.vot_registry`; other trackers' entries are kept) and
``sequences/`` (a local VOT-format folder's sequences linked or copied in, and ``list.txt``, whose presence stops
the toolkit from downloading the stack's dataset). It checks what the toolkit would otherwise stumble on mid-run:
unknown stacks, multistart experiments on sequences without ``anchor.value`` or with an anchor on an unannotated
frame, sequence folders without frames or ground truth.

Results belong to one model: the toolkit reuses whatever ``results/<tracker reference>/`` holds, so the ``lorat``
entry's tracker version is the model's identity (``ModelSpec.identity``: weights and precision) and its results go
to ``results/lorat@<identity>/``; another model or precision gets another folder, and the earlier results stay
beside it under their model's name. The precision is resolved here and pinned in ``trackers.ini``.
"""
from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..data.datasets.vot import VotSequence, find_sequences
from ..devices import parse_device
from ..engine import precision_name, resolve_precision
from ..files import atomic_write_text
from ..model.sources import ENV, ModelSpec
from .vot_registry import (DEFAULT_TRACKER, MODEL_VARIABLE, read_ini, registry_template, render_trackers_ini,
                           results_version)

log = logging.getLogger(__name__)

# Stacks this integration is tested on end to end (tests/test_vot_toolkit.py runs the first and the last; the others
# were run by hand, docs/vot.md).
TESTED_STACKS = ("vot2022/shorttermbox", "vot2020/shortterm", "tests/basic", "tests/multiobject")
# Stacks whose ground truth is masks: LoRAT reports a mask there (the box rasterised, or SAM's mask).
MASK_STACKS = ("vot2020/shortterm", "vot2021/shortterm", "vot2022/shortterm", "tests/multiobject",
               "tests/segmentation", "davis2017val")
REGION_CHOICES = ("auto", "rectangle", "mask")


class WorkspaceError(ValueError):
    """A workspace that cannot be prepared as asked; the message says what to change."""


@dataclass
class StackInfo:
    name: str
    experiments: dict[str, str]  # name -> type
    multiobject: bool
    dataset: str | None


@dataclass
class WorkspaceReport:
    """What :func:`prepare_workspace` did, for the command to print."""

    directory: Path
    stack: StackInfo
    model: ModelSpec
    region: str
    sequences: list[VotSequence] = field(default_factory=list)
    trackers: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    model_name: str = ""  # the identity name of the `lorat` entry's model at its precision
    results: Path | None = None  # where `vot evaluate lorat` keeps that model's results
    previous_model: str | None = None  # the `lorat` entry's model before, when it was another one
    previous_results: Path | None = None  # that model's results folder, when it holds any

    def next_steps(self) -> str:
        ws = shlex.quote(str(self.directory))
        return "\n".join(f"vot {verb} --workspace {ws} {DEFAULT_TRACKER}"
                         for verb in ("evaluate", "analysis", "report"))


def resolve_stack(name: str, workspace: Path) -> StackInfo:
    """A stack the installed toolkit knows (or a stack YAML file), with its experiments."""
    try:
        from vot.stack import list_integrated_stacks
        from vot.stack import resolve_stack as vot_resolve_stack
    except ImportError as e:
        raise WorkspaceError("the VOT toolkit is not installed: pip install 'lorat-plugin[vot]'") from e
    candidate = Path(name).expanduser()
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        name = str(candidate.resolve())
    found = vot_resolve_stack(name, str(workspace))
    if found is None:
        known = ", ".join(sorted(list_integrated_stacks()))
        hint = " (the VOT2022 box stack is vot2022/shorttermbox)" if name.startswith("vot2022/stb") else ""
        raise WorkspaceError(f"unknown stack {name!r}{hint}; the installed toolkit knows: {known}")
    with open(found, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    experiments = {str(key): exp or {} for key, exp in (data.get("experiments") or {}).items()}
    return StackInfo(name=name, experiments={key: str(exp.get("type", "")) for key, exp in experiments.items()},
                     multiobject=any(str(exp.get("multiobject")).lower() == "true" for exp in experiments.values()),
                     dataset=data.get("dataset"))


def running_precision(model: ModelSpec) -> str:
    """The precision the TraX program will run ``model`` in on this machine (the engine's rule for ``dtype=None``)."""
    # An unavailable device named explicitly is not refused here: the workspace may be run on another machine.
    device = parse_device(model.device, setting="--device", here=False)
    return precision_name(resolve_precision(model.dtype, device))


def set_results_aside(results: Path, entries: list[str]) -> list[str]:
    """Move each entry's unversioned results folder (written before entries had a version: its model is unknown)
    to ``<entry>@unrecorded``, where the toolkit still lists it but never takes it for the current model's."""
    notes = []
    for entry in entries:
        folder = results / entry
        if not folder.is_dir() or not any(folder.iterdir()):
            continue
        target = results / f"{entry}@unrecorded"
        suffix = 1
        while target.exists():
            suffix += 1
            target = results / f"{entry}@unrecorded{suffix}"
        folder.rename(target)
        notes.append(f"results/{entry} held results of a model the workspace did not record: moved to "
                     f"results/{target.name} (`vot evaluate {entry}` tracks again, into a folder named after its model)")
    return notes


def install_sequences(sequences: list[VotSequence], target: Path, *, copy: bool = False) -> None:
    """Link (or copy) each sequence into ``target`` and write ``target/list.txt``."""
    target.mkdir(parents=True, exist_ok=True)
    wanted = {info.name for info in sequences}
    for entry in target.iterdir():  # links of an earlier preparation that are not wanted any more
        if entry.is_symlink() and entry.name not in wanted:
            entry.unlink()
    for info in sequences:
        destination = target / info.name
        if destination.is_symlink():
            destination.unlink()
        elif destination.exists():
            if destination.resolve() != info.path:
                log.info("sequences/%s exists (a copy); kept", info.name)
            continue
        if copy:
            shutil.copytree(info.path, destination)
        else:
            destination.symlink_to(info.path, target_is_directory=True)
    atomic_write_text(target / "list.txt", "".join(f"{info.name}\n" for info in sequences))


def prepare_workspace(directory: str | os.PathLike, stack: str, *, sequences: str | os.PathLike | None = None,
                      copy: bool = False, model: ModelSpec | None = None, region: str = "auto",
                      sam_checkpoint: str | os.PathLike | None = None, sam_model: str | None = None,
                      force: bool = False, python: str = sys.executable) -> WorkspaceReport:
    """Create or update a VOT workspace in ``directory`` for ``stack``; see the module docstring. ``model``
    (default: :meth:`ModelSpec.resolve` of the environment) is the ``lorat`` entry, its weights folder the
    per-variant entries', its device and precision every entry's; ``region``: what the tracker reports
    (``auto``: masks on mask stacks and mask ground truth, else rectangles)."""
    if region not in REGION_CHOICES:
        raise WorkspaceError(f"region {region!r}: use one of {', '.join(REGION_CHOICES)}")
    directory = Path(directory).expanduser().resolve()
    if directory.exists() and not directory.is_dir():
        raise WorkspaceError(f"{directory} exists and is not a folder")
    directory.mkdir(parents=True, exist_ok=True)
    info = resolve_stack(stack, directory)
    model = model or ModelSpec.resolve()
    report = WorkspaceReport(directory=directory, stack=info, model=model, region=region)

    config_file = directory / "config.yaml"
    if config_file.is_file():
        previous = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        if previous.get("stack") not in (None, info.name) and not force:
            raise WorkspaceError(f"{directory} is a workspace for stack {previous.get('stack')!r}, not {info.name!r}: "
                                 "use another folder (or --force to switch it; old results stay in results/)")
    if info.name not in TESTED_STACKS:
        report.warnings.append(f"stack {info.name} is not one this integration was tested on "
                               f"({', '.join(TESTED_STACKS)}); it should work, but check the first results")

    # sequences
    sequence_dir = directory / "sequences"
    if sequences is not None:
        found = find_sequences(Path(sequences))
        multistart = [name for name, kind in info.experiments.items() if kind == "multistart"]
        if multistart:
            missing = [s.name for s in found if not s.anchors]
            if missing:
                raise WorkspaceError(
                    f"stack {info.name} runs multistart experiments ({', '.join(multistart)}), which start "
                    f"the tracker at the anchor frames listed in anchor.value, but these sequences have none: "
                    f"{', '.join(missing)}. The official VOT datasets ship anchor.value; for your own sequences "
                    "write one number per frame (1 = forward anchor, -1 = backward anchor, 0 = none), or choose "
                    "a stack without multistart experiments (tests/basic)")
            for s in found:
                if s.unannotated_anchors:  # the toolkit stops there after seconds while `vot` exits 0
                    raise WorkspaceError(f"sequence {s.name} ({s.path}): anchor on an unannotated frame: "
                                         f"{'; '.join(s.unannotated_anchors)}; the multistart experiments start the "
                                         "tracker there. Fix anchor.value (0 on that frame) or the ground truth")
        multi = [s.name for s in found if s.objects > 1]
        if multi and not info.multiobject:
            report.warnings.append(f"sequences with several objects ({', '.join(multi)}) on a single-object stack: "
                                   "the toolkit runs each object separately")
        install_sequences(found, sequence_dir, copy=copy)
        report.sequences = found
    elif not (sequence_dir / "list.txt").is_file():
        sequence_dir.mkdir(exist_ok=True)
        if info.dataset:
            report.warnings.append(f"no --sequences-dir: the first `vot` command will download the {info.name} dataset "
                                   f"({info.dataset}; needs network access); pass --sequences-dir DIR to work offline")
        else:
            raise WorkspaceError(f"stack {info.name} names no dataset to download: pass --sequences-dir DIR")

    # the region type
    if region == "auto":
        masks = info.name in MASK_STACKS or info.name.startswith("vots") or any(s.masks for s in report.sequences)
        region = "mask" if masks else "rectangle"
    report.region = region
    # The precision is pinned (not left to the machine or shell running `vot`): it is part of the results' model.
    precision = running_precision(model)
    extra_env = {"LORAT_VOT_OUTPUT": region, ENV["dtype"]: precision}
    if model.device:
        extra_env[ENV["device"]] = model.device
    if sam_checkpoint:
        if region != "mask":
            raise WorkspaceError("--sam-checkpoint makes masks: it needs mask output (--region mask)")
        sam_path = Path(sam_checkpoint).expanduser().resolve()
        if not sam_path.is_file():
            raise WorkspaceError(f"SAM checkpoint not found: {sam_path}")
        extra_env["LORAT_SAM_CHECKPOINT"] = str(sam_path)
        if sam_model:
            extra_env["LORAT_SAM_MODEL"] = sam_model

    # trackers.ini and config.yaml
    trackers_file = directory / "trackers.ini"
    keep = read_ini(trackers_file) if trackers_file.is_file() else None
    identity = model.identity(precision)
    text, report.trackers = render_trackers_ini(registry_template(), model, python=python, extra_env=extra_env,
                                                keep=keep, identity=identity)
    results = directory / "results"
    results.mkdir(exist_ok=True)
    report.warnings += set_results_aside(results, report.trackers)
    report.model_name = identity["name"]
    report.results = results / f"{DEFAULT_TRACKER}@{results_version(identity['name'])}"
    if keep is not None and keep.has_section(DEFAULT_TRACKER):
        before = keep[DEFAULT_TRACKER]
        previous = before.get(f"env_{MODEL_VARIABLE}", "").replace("%%", "%") or None
        if previous and previous != report.model_name:
            report.previous_model = previous
            folder = results / f"{DEFAULT_TRACKER}@{before.get('version', '')}"
            report.previous_results = folder if folder.is_dir() and any(folder.iterdir()) else None
    atomic_write_text(trackers_file, text)
    config = {"registry": ["./trackers.ini"], "stack": info.name, "sequences": "sequences"}
    atomic_write_text(config_file, yaml.safe_dump(config, sort_keys=False))
    return report
