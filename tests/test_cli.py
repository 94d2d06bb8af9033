"""The `lorat` command: every verb exists, explains itself, and user errors are one clear line."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from lorat_plugin.cli import COMMANDS, build_parser, main


@pytest.mark.parametrize("verb", list(COMMANDS))
def test_every_verb_has_a_module_with_help(verb: str) -> None:
    module = importlib.import_module(f"lorat_plugin.commands.{COMMANDS[verb][0]}")
    assert callable(module.add_arguments) and callable(module.run)
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([verb, "--help"])
    assert exit_info.value.code == 0


def test_console_script_lists_the_variants() -> None:
    out = subprocess.run([sys.executable, "-m", "lorat_plugin.cli", "info"], capture_output=True, text=True, check=True)
    assert "B-224" in out.stdout and "12.99M" in out.stdout and "98.7M" in out.stdout


def test_missing_weights_file_is_one_clear_line(tmp_path, capsys) -> None:
    assert main(["info", str(tmp_path / "base.bin")]) == 2
    err = capsys.readouterr().err
    assert "base.bin" in err and "not found" in err and "Traceback" not in err


def test_unknown_variant_is_one_clear_line(capsys) -> None:
    assert main(["benchmark", "--variant", "B-999", "--model-only", "--repeats", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lorat benchmark: error: unknown LoRAT variant 'B-999'; known variants: S-224")


def test_version(capsys) -> None:
    from lorat_plugin import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"lorat {__version__}"
