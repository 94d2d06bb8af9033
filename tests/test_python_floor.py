"""setup.py's python_requires is the truth: no module of the repository needs a newer Python (checked by vermin,
which knows the version each standard-library call and syntax feature first appeared in)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vermin", reason="vermin is not installed (pip install 'lorat-plugin[test]')")

REPO = Path(__file__).resolve().parents[1]
# Every folder of Python the repository ships or runs (tests and benchmarks run on the oldest Python too).
SOURCE = ["lorat_plugin", "trackers", "evaluation", "benchmarks", "tests", "setup.py"]


def python_floor() -> str:
    """The oldest Python that setup.py allows (``python_requires=">=3.X"``)."""
    found = re.search(r'python_requires\s*=\s*">=\s*(3\.\d+)"', (REPO / "setup.py").read_text(encoding="utf-8"))
    assert found, "setup.py has no python_requires=\">=3.X\""
    return found.group(1)


def run_vermin(paths: list[str], floor: str) -> subprocess.CompletedProcess:
    # --eval-annotations: annotations count (`X | Y` outside `from __future__ import annotations` is 3.10+);
    # -t=3.10-: fail when any file needs more than the floor. The `vermin` console script is this one function.
    command = [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())",
               "--no-tips", "--eval-annotations", "--violations", f"-t={floor}-", *paths]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_no_module_needs_a_newer_python_than_setup_py_allows() -> None:
    floor = python_floor()
    result = run_vermin(SOURCE, floor)
    assert result.returncode == 0, f"code needs a newer Python than python_requires >={floor}:\n{result.stdout}"


def test_the_check_catches_a_call_newer_than_the_floor(tmp_path: Path) -> None:
    # hashlib.file_digest is 3.11+: the call model/sources.py once made while setup.py allowed 3.10.
    module = tmp_path / "newer.py"
    module.write_text("import hashlib\n\n\ndef digest(f):\n    return hashlib.file_digest(f, 'sha256')\n")
    result = run_vermin([str(module)], "3.10")
    assert result.returncode != 0 and "hashlib.file_digest" in result.stdout, result.stdout
