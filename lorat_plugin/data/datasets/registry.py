"""The one table of datasets: each reader module registers what its dataset is, once.

An entry holds the reader and every convention a user of the sequences needs: the splits the reader accepts, the
box convention of the dataset's files, the benchmark protocol that scores it and the result layouts its toolkits
read. ``lorat_plugin.evaluation`` reads the conventions from here; the CLI's ``--dataset`` and ``--split`` help is
generated from here. A name that is neither a key nor an alias is an error listing the known keys.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..sequence import Sequence
from .names import check_sequence_name

Loader = Callable[[Path, "str | None"], "list[Sequence]"]

# the headline metric definitions (their code: lorat_plugin.evaluation.metrics; their description: docs/evaluation.md)
PROTOCOLS = ("got10k", "ope", "trackingnet")
# pytracking's rule for frames without a target in OPE (pytracking/analysis/extract_results.py)
OPE_KINDS = ("generic", "lasot", "uav")


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset's reader and the conventions of its files and of the benchmark that scores it."""

    key: str
    title: str
    load: Loader
    splits: tuple[str, ...]        # what the reader's ``split`` accepts, as help shows it (``TRAIN_<k>``: a pattern)
    default_split: str | None      # the split read when none is given; None: the user must choose
    one_based: bool = False        # the files use 1-based MATLAB pixels (sequences are always 0-based)
    protocol: str | None = "ope"   # one of PROTOCOLS; None: training data, not scored
    ope_kind: str = "generic"      # one of OPE_KINDS
    formats: tuple[str, ...] = ("pytracking",)  # result layouts written by default (evaluation/formats.py)
    also_got10k_otb: bool = False  # also compute got10k's ExperimentOTB numbers (OTB, UAV123, NfS)
    also_lasot_toolkit: bool = False  # also compute the LaSOT MATLAB toolkit's numbers (LaSOT, LaSOT_ext)
    pytracking_prefix: str = ""    # pytracking's sequence-name prefix (uav_, nfs_)
    aliases: tuple[str, ...] = ()  # other spellings users type ("got-10k", "otb100")

    def __post_init__(self) -> None:
        if self.protocol is not None and self.protocol not in PROTOCOLS:
            raise ValueError(f"dataset {self.key}: unknown protocol {self.protocol!r} (known: {', '.join(PROTOCOLS)})")
        if self.ope_kind not in OPE_KINDS:
            raise ValueError(f"dataset {self.key}: unknown OPE kind {self.ope_kind!r} (known: {', '.join(OPE_KINDS)})")
        if self.default_split is not None and self.default_split not in self.splits:
            raise ValueError(f"dataset {self.key}: default split {self.default_split!r} is not one of its splits")

    @property
    def split_help(self) -> str:
        choices = "|".join(self.splits)
        if self.default_split is None:
            return f"{choices} (no default)"
        return choices if self.splits[0] == self.default_split else f"{choices} (default {self.default_split})"


DATASETS: dict[str, DatasetInfo] = {}


def register(info: DatasetInfo) -> DatasetInfo:
    """Add a reader's entry (each reader module registers its own); a key or alias may be taken once."""
    taken = {name for entry in DATASETS.values() for name in (entry.key, *entry.aliases)}
    clashes = sorted(taken & {info.key, *info.aliases})
    if clashes and DATASETS.get(info.key) != info:
        raise ValueError(f"dataset names already registered: {', '.join(clashes)}")
    DATASETS[info.key] = info
    return info


def _spelling(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def dataset_key(name: str) -> str:
    """The registry key for a user-typed dataset name ('LaSOT-ext' -> 'lasot_ext'); unknown names are an error
    listing the known keys."""
    wanted = _spelling(name)
    for info in DATASETS.values():
        if wanted in {_spelling(n) for n in (info.key, *info.aliases)}:
            return info.key
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


def dataset_info(name: str) -> DatasetInfo:
    return DATASETS[dataset_key(name)]


def load_dataset(name: str, root: str | Path, split: str | None = None) -> list[Sequence]:
    """The sequences of a dataset; every name checked (list files are checked line by line as they are read)."""
    root = Path(root).expanduser()
    sequences = dataset_info(name).load(root, split)
    for sequence in sequences:  # names that came from folder or file names
        source = sequence.frames[0].parent if len(sequence.frames) else root
        check_sequence_name(sequence.name, source)
    return sequences


def dataset_help(*, scored_only: bool = False) -> str:
    """The known keys, for ``--dataset`` help."""
    return ", ".join(key for key, info in DATASETS.items() if info.protocol is not None or not scored_only)


def split_help(*, scored_only: bool = False) -> str:
    """Each dataset's splits, for ``--split`` help ("got10k: train|val|test (required); lasot: test|train|all")."""
    return "; ".join(f"{key}: {info.split_help}" for key, info in DATASETS.items()
                     if info.protocol is not None or not scored_only)
