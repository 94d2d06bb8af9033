"""Prepare a VOT toolkit workspace in which ``vot evaluate lorat`` runs offline.

A workspace (vot-toolkit 0.7.4) is a folder with ``config.yaml`` (stack, tracker registry, sequence folder),
``trackers.ini`` and ``sequences/`` (``list.txt`` plus one folder per sequence). :func:`prepare_workspace` writes
all three:

* ``config.yaml``: the stack and ``registry: [./trackers.ini]``;
* ``trackers.ini``: every entry of the package's ``tracker_registry.ini`` with this installation's interpreter
  (``python = ...``) and the weights given here as ``env_LORAT_...`` lines (absolute paths: the toolkit runs the
  tracker in a temporary directory); entries of other trackers already in the file are kept;
* ``sequences/``: the sequences of a local VOT-format folder linked (or copied) in, and ``list.txt``, whose
  presence stops the toolkit from downloading the stack's dataset.

It checks what the toolkit would otherwise stumble on mid-run: unknown stack names, multistart experiments on
sequences without ``anchor.value``, sequence folders without frames or ground truth.
"""
from __future__ import annotations

import configparser
import io
import logging
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from .trax_server import DEFAULT_VARIANT

log = logging.getLogger(__name__)

REGISTRY_FILE = "tracker_registry.ini"
DEFAULT_TRACKER = "lorat"
# Stacks this integration is tested on end to end (tests/test_vot_toolkit.py runs the first and the last; the others
# were run by hand, docs/vot.md).
TESTED_STACKS = ("vot2022/shorttermbox", "vot2020/shortterm", "tests/basic", "tests/multiobject")
# Stacks whose ground truth is masks: LoRAT reports a mask there (the box rasterised, or SAM's mask).
MASK_STACKS = ("vot2020/shortterm", "vot2021/shortterm", "vot2022/shortterm", "tests/multiobject",
               "tests/segmentation", "davis2017val")
OUTPUT_CHOICES = ("auto", "rectangle", "mask")


class WorkspaceError(ValueError):
    """A workspace that cannot be prepared as asked; the message says what to change."""


@dataclass(frozen=True)
class ModelChoice:
    """Weights for the ``lorat`` entry, and the weights folder of the per-variant entries."""

    variant: str | None = None
    checkpoint: str | None = None
    backbone_weights: str | None = None
    weights_dir: str | None = None
    variants_weights_dir: str | None = None

    @classmethod
    def resolve(cls, variant: str | None = None, checkpoint: str | os.PathLike | None = None,
                backbone_weights: str | os.PathLike | None = None, weights_dir: str | os.PathLike | None = None,
                env: dict[str, str] | os._Environ | None = None) -> "ModelChoice":
        """Arguments first; with none given, the LORAT_* variables of the environment preparing the workspace.
        A weights folder without a variant or checkpoint means the default variant (B-224) for ``lorat``."""
        env = os.environ if env is None else env
        variants_weights_dir = weights_dir or env.get("LORAT_WEIGHTS_DIR") or None
        if not any((variant, checkpoint, backbone_weights, weights_dir)):
            variant = env.get("LORAT_VARIANT") or None
            checkpoint = env.get("LORAT_CHECKPOINT") or None
            backbone_weights = env.get("LORAT_BACKBONE_WEIGHTS") or None
            weights_dir = env.get("LORAT_WEIGHTS_DIR") or None
        if weights_dir and not variant and not checkpoint:
            variant = DEFAULT_VARIANT

        def absolute(path: str | os.PathLike | None) -> str | None:
            return str(Path(path).expanduser().resolve()) if path else None

        return cls(variant=variant, checkpoint=absolute(checkpoint), backbone_weights=absolute(backbone_weights),
                   weights_dir=absolute(weights_dir), variants_weights_dir=absolute(variants_weights_dir))

    @property
    def is_demo(self) -> bool:
        return (self.variant or "").lower() == "demo" or not any((self.variant, self.checkpoint, self.backbone_weights,
                                                                  self.weights_dir))

    def describe(self) -> str:
        if self.is_demo:
            return "the shipped demo model (no weights configured; not LoRAT's published accuracy)"
        parts = [f"variant {self.variant}" if self.variant else None,
                 f"checkpoint {self.checkpoint}" if self.checkpoint else None,
                 f"backbone {self.backbone_weights}" if self.backbone_weights else None,
                 f"weights folder {self.weights_dir}" if self.weights_dir else None]
        return ", ".join(p for p in parts if p)

    def problems(self) -> list[str]:
        """What would stop the ``lorat`` entry from loading (checked without loading anything)."""
        from ..model.sources import resolve_weights

        if self.is_demo:
            try:
                from ..model.sources import demo_checkpoint
                demo_checkpoint()
            except FileNotFoundError as e:
                return [str(e)]
            return []
        found = []
        for label, path in (("checkpoint", self.checkpoint), ("backbone weights", self.backbone_weights)):
            if path and not Path(path).is_file():
                found.append(f"{label} not found: {path}")
        try:
            resolve_weights(self.variant, checkpoint=self.checkpoint, backbone_weights=self.backbone_weights,
                            weights_dir=self.weights_dir)
        except (FileNotFoundError, ValueError, KeyError) as e:
            found.append(str(e).strip('"'))
        return found


@dataclass
class StackInfo:
    name: str
    file: Path
    experiments: dict[str, str]  # name -> type
    multiobject: bool
    dataset: str | None

    @property
    def needs_anchors(self) -> list[str]:
        return [name for name, kind in self.experiments.items() if kind == "multistart"]


@dataclass
class SequenceInfo:
    name: str
    path: Path
    masks: bool  # ground truth holds masks
    objects: int
    anchors: int  # frames marked in anchor.value (0: none or no file)


@dataclass
class WorkspaceReport:
    """What :func:`prepare_workspace` did, for the command to print."""

    directory: Path
    stack: StackInfo
    model: ModelChoice
    output: str
    sequences: list[SequenceInfo] = field(default_factory=list)
    trackers: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def next_steps(self) -> str:
        ws = shlex.quote(str(self.directory))
        return "\n".join((f"vot evaluate --workspace {ws} {DEFAULT_TRACKER}",
                          f"vot analysis --workspace {ws} {DEFAULT_TRACKER}",
                          f"vot report --workspace {ws} {DEFAULT_TRACKER}"))


# ---- the registry template -------------------------------------------------------------------------------------------
def registry_template() -> Path:
    """The ``tracker_registry.ini`` of this installation (package data; the repository root in a checkout)."""
    candidates = [Path(str(resources.files(__package__) / REGISTRY_FILE)),
                  Path(__file__).resolve().parents[1] / REGISTRY_FILE]
    for path in candidates:
        if path.is_file() and _read_ini(path).sections():
            return path
    raise FileNotFoundError(f"{REGISTRY_FILE} is missing from this installation (looked in "
                            f"{', '.join(str(c) for c in candidates)}); reinstall lorat-plugin")


def _read_ini(path: Path) -> configparser.ConfigParser:
    # Raw values (no interpolation): ${NAME} references and %% escapes are kept exactly as written.
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep env_LORAT_... readable (the toolkit upper-cases the names itself)
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as e:
        raise WorkspaceError(f"{path}: {e}") from e
    return parser


def _ini_value(value: str) -> str:
    return value.replace("%", "%%")  # the toolkit reads trackers.ini with configparser's % interpolation


def render_trackers_ini(template: Path, model: ModelChoice, *, python: str = sys.executable,
                        extra_env: dict[str, str] | None = None, keep: configparser.ConfigParser | None = None,
                        ) -> tuple[str, list[str]]:
    """trackers.ini text for this installation, and the LoRAT entry names it holds.

    ``lorat`` gets the model choice as explicit ``env_LORAT_*`` lines (empty = unset, so that the variables of the
    shell running ``vot`` cannot change what it means); the per-variant entries get the weights folder when one is
    known, else keep their ``${LORAT_WEIGHTS_DIR}`` reference. ``extra_env`` (device, dtype, output format, SAM)
    goes to every entry. Sections of ``keep`` that are not LoRAT entries are carried over unchanged.
    """
    source = _read_ini(template)
    names = source.sections()
    out = io.StringIO()
    out.write(f"; Generated by `lorat vot-workspace` from {template.name}: re-run it to change the LoRAT entries.\n"
              "; Entries of other trackers below them are kept.\n")
    interpreter = shlex.quote(python)
    for name in names:
        values = dict(source[name])
        values["python"] = _ini_value(interpreter)
        if name == DEFAULT_TRACKER:
            chosen = {"LORAT_VARIANT": model.variant, "LORAT_CHECKPOINT": model.checkpoint,
                      "LORAT_BACKBONE_WEIGHTS": model.backbone_weights, "LORAT_WEIGHTS_DIR": model.weights_dir}
            values.update({f"env_{key}": _ini_value(value or "") for key, value in chosen.items()})
        elif model.variants_weights_dir and "env_LORAT_WEIGHTS_DIR" in values:
            values["env_LORAT_WEIGHTS_DIR"] = _ini_value(model.variants_weights_dir)
        for key, value in (extra_env or {}).items():
            values[f"env_{key}"] = _ini_value(value)
        out.write(f"\n[{name}]\n")
        for key, value in values.items():
            out.write(f"{key} = {value}\n" if value != "" else f"{key} =\n")
    if keep is not None:
        for name in keep.sections():
            if name in names:
                continue
            out.write(f"\n[{name}]\n")
            for key, value in keep[name].items():
                out.write(f"{key} = {value}\n")
    return out.getvalue(), names


# ---- stacks ----------------------------------------------------------------------------------------------------------
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
    experiments = {}
    multiobject = False
    for exp_name, exp in (data.get("experiments") or {}).items():
        exp = exp or {}
        experiments[str(exp_name)] = str(exp.get("type", ""))
        multiobject |= str(exp.get("multiobject", False)).lower() == "true"
    return StackInfo(name=name, file=Path(found), experiments=experiments, multiobject=multiobject,
                     dataset=data.get("dataset"))


# ---- sequences -------------------------------------------------------------------------------------------------------
def _is_sequence(folder: Path) -> bool:
    return folder.is_dir() and ((folder / "sequence").is_file() or (folder / "groundtruth.txt").is_file()
                                or any(folder.glob("groundtruth_*.txt")))


def _read_properties(path: Path) -> dict[str, str]:
    props = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props


def inspect_sequence(folder: Path) -> SequenceInfo:
    """Check a VOT sequence folder enough that the toolkit will not fail on it halfway through a run."""
    folder = folder.resolve()
    if (folder / "sequence").is_file():
        props = _read_properties(folder / "sequence")
        pattern = props.get("channels.color", "color/%08d.jpg")
    else:  # the toolkit's legacy layout: frames next to groundtruth.txt
        pattern = "%08d.jpg"
    first = folder / (pattern % 1 if "%" in pattern else pattern)
    if not first.is_file():
        raise WorkspaceError(f"sequence {folder}: first frame {first} not found")
    truths = sorted(folder.glob("groundtruth_*.txt")) or [folder / "groundtruth.txt"]
    if not truths[0].is_file():
        raise WorkspaceError(f"sequence {folder}: no groundtruth.txt (or groundtruth_<object>.txt)")
    masks = False
    for truth in truths:
        with open(truth, encoding="utf-8") as f:
            first_line = f.readline().strip()
        if not first_line:
            raise WorkspaceError(f"sequence {folder}: {truth.name} is empty")
        masks |= first_line.startswith("m")
    anchors = 0
    if (folder / "anchor.value").is_file():
        for number, line in enumerate((folder / "anchor.value").read_text(encoding="utf-8").splitlines(), 1):
            try:
                anchors += float(line) != 0 if line.strip() else 0
            except ValueError as e:
                raise WorkspaceError(f"{folder / 'anchor.value'}, line {number}: not a number: {line!r}") from e
    return SequenceInfo(name=folder.name, path=folder, masks=masks, objects=len(truths), anchors=int(anchors))


def find_sequences(source: Path) -> list[SequenceInfo]:
    """The sequences of a VOT-format folder: those of its list.txt, else every sequence sub-folder (or itself)."""
    source = Path(source).expanduser().resolve()
    if not source.is_dir():
        raise WorkspaceError(f"sequence folder not found: {source}")
    listing = source / "list.txt"
    if listing.is_file():
        folders = []
        for number, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                folder = source / line.strip()
                if not folder.is_dir():
                    raise WorkspaceError(f"{listing}, line {number}: sequence folder {folder} not found")
                folders.append(folder)
    elif _is_sequence(source):
        folders = [source]
    else:
        folders = sorted(f for f in source.iterdir() if _is_sequence(f))
    if not folders:
        raise WorkspaceError(f"no VOT sequences in {source}: expected list.txt or folders holding a `sequence` file "
                             "or groundtruth.txt with color/00000001.jpg ... (docs/vot.md, 'Sequence format')")
    infos = [inspect_sequence(folder) for folder in folders]
    names = [info.name for info in infos]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise WorkspaceError(f"sequence names occur twice in {source}: {', '.join(duplicates)}")
    return infos


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def install_sequences(sequences: list[SequenceInfo], target: Path, *, copy: bool = False) -> None:
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
    _atomic_write(target / "list.txt", "".join(f"{info.name}\n" for info in sequences))


# ---- the workspace ---------------------------------------------------------------------------------------------------
def prepare_workspace(directory: str | os.PathLike, stack: str, *, sequences: str | os.PathLike | None = None,
                      copy: bool = False, model: ModelChoice | None = None, device: str | None = None,
                      dtype: str | None = None, output: str = "auto", sam_checkpoint: str | os.PathLike | None = None,
                      sam_model: str | None = None, force: bool = False,
                      python: str = sys.executable) -> WorkspaceReport:
    """Create or update a VOT workspace in ``directory`` for ``stack``; see the module docstring."""
    if output not in OUTPUT_CHOICES:
        raise WorkspaceError(f"output {output!r}: use one of {', '.join(OUTPUT_CHOICES)}")
    directory = Path(directory).expanduser().resolve()
    if directory.exists() and not directory.is_dir():
        raise WorkspaceError(f"{directory} exists and is not a folder")
    directory.mkdir(parents=True, exist_ok=True)
    info = resolve_stack(stack, directory)
    model = model or ModelChoice.resolve()
    report = WorkspaceReport(directory=directory, stack=info, model=model, output=output)

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
        if info.needs_anchors:
            missing = [s.name for s in found if s.anchors == 0]
            if missing:
                raise WorkspaceError(
                    f"stack {info.name} runs multistart experiments ({', '.join(info.needs_anchors)}), which start "
                    f"the tracker at the anchor frames listed in anchor.value, but these sequences have none: "
                    f"{', '.join(missing)}. The official VOT datasets ship anchor.value; for your own sequences "
                    "write one number per frame (1 = forward anchor, -1 = backward anchor, 0 = none), or choose "
                    "a stack without multistart experiments (tests/basic)")
        multi = [s.name for s in found if s.objects > 1]
        if multi and not info.multiobject:
            report.warnings.append(f"sequences with several objects ({', '.join(multi)}) on a single-object stack: "
                                   "the toolkit runs each object separately")
        install_sequences(found, sequence_dir, copy=copy)
        report.sequences = found
    elif not (sequence_dir / "list.txt").is_file():
        sequence_dir.mkdir(exist_ok=True)
        if info.dataset:
            report.warnings.append(f"no --sequences: the first `vot` command will download the {info.name} dataset "
                                   f"({info.dataset}; needs network access); pass --sequences DIR to work offline")
        else:
            raise WorkspaceError(f"stack {info.name} names no dataset to download: pass --sequences DIR")

    # output format
    if output == "auto":
        masks = info.name in MASK_STACKS or info.name.startswith("vots") or any(s.masks for s in report.sequences)
        output = "mask" if masks else "rectangle"
    report.output = output
    extra_env: dict[str, str] = {"LORAT_VOT_OUTPUT": output}
    if device:
        extra_env["LORAT_DEVICE"] = device
    if dtype:
        extra_env["LORAT_DTYPE"] = dtype
    if sam_checkpoint:
        if output != "mask":
            raise WorkspaceError("--sam-checkpoint makes masks: it needs mask output (--output mask)")
        sam_path = Path(sam_checkpoint).expanduser().resolve()
        if not sam_path.is_file():
            raise WorkspaceError(f"SAM checkpoint not found: {sam_path}")
        extra_env["LORAT_SAM_CHECKPOINT"] = str(sam_path)
        if sam_model:
            extra_env["LORAT_SAM_MODEL"] = sam_model

    # trackers.ini and config.yaml
    trackers_file = directory / "trackers.ini"
    keep = _read_ini(trackers_file) if trackers_file.is_file() else None
    text, report.trackers = render_trackers_ini(registry_template(), model, python=python, extra_env=extra_env,
                                                keep=keep)
    _atomic_write(trackers_file, text)
    config = {"registry": ["./trackers.ini"], "stack": info.name, "sequences": "sequences"}
    _atomic_write(config_file, yaml.safe_dump(config, sort_keys=False))
    (directory / "results").mkdir(exist_ok=True)

    for problem in model.problems():
        report.warnings.append(f"`vot evaluate {DEFAULT_TRACKER}` will fail: {problem}")
    return report
