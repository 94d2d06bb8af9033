"""Sequence names are data, never paths or patterns: every reader refuses a name that would act as one.

A name becomes a folder or file name in results (``<tracker>/<name>/<name>_001.txt``), a zip member and a line on a
terminal, so ``.``/``..``, an absolute name, a path separator or a control character in it would put files outside
their folder or rewrite the terminal. Names are compared as strings, never as glob patterns (``seq[1]`` is a name).
"""
from __future__ import annotations

import unicodedata
from pathlib import Path

from ..annotations import read_text
from ..sequence import AnnotationError


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a sequence name, or None when it can."""
    if name in ("", ".", ".."):
        return "is not a name"
    if name.startswith(("/", "\\")):
        return "is an absolute path"
    if "/" in name or "\\" in name:
        return "holds a path separator"
    if any(unicodedata.category(c) == "Cc" for c in name):
        return "holds a control character"
    return None


def check_sequence_name(name: str, where: str | Path) -> str:
    """``name``, or an ``AnnotationError`` naming ``where`` (the file and line it came from, or the folder)."""
    problem = name_problem(name)
    if problem is not None:
        raise AnnotationError(f"{printable(str(where))}: sequence name {name!r} {problem}; a name must be one plain "
                              "folder name")
    return name


def printable(text: str) -> str:
    """``text`` with control and format characters (newlines, escape sequences, bidirectional overrides) written as
    escapes, so that a line made of data stays one line and cannot drive a terminal. Everything printed that comes
    from data (sequence, tracker and file names) goes through it."""
    return "".join(c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) in ("Cc", "Cf") else c
                   for c in text)


def read_sequence_list(path: Path) -> list[str]:
    """One sequence name per line (``list.txt``, ``testing_set.txt``), blank lines and surrounding spaces ignored;
    each name checked, an error naming the file and line."""
    names = []
    # line ends are read as universal newlines; splitlines() would also cut a name at a form feed inside it
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        name = line.strip(" \t")
        if name:
            names.append(check_sequence_name(name, f"{path}, line {number}"))
    return names
