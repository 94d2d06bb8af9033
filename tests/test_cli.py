"""The `lorat` command: every verb exists, explains itself, and user errors are one clear line."""
from __future__ import annotations

import argparse
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


def subcommands() -> dict:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


@pytest.mark.parametrize("verb", list(COMMANDS))
def test_quiet_means_the_same_in_every_verb(verb: str) -> None:
    command = subcommands()[verb]
    quiet = command._option_string_actions["--quiet"]
    assert quiet.dest == "quiet" and command._option_string_actions["-q"] is quiet
    assert command._option_string_actions["--no-progress"].dest == "no_progress"  # declared once, by the CLI
    assert "--no-progress" in command.format_help()



@pytest.mark.parametrize("verb, old, new", [
    ("evaluate", ["--sequences", "a", "b", "--repeats", "3"], ["--sequence-names", "a", "b", "--runs", "3"]),
    ("report", ["--names", "x"], ["--tracker-name", "x"]),
    ("vot-workspace", ["--sequences", "/s"], ["--sequences-dir", "/s"]),
])
def test_old_spellings_are_hidden_aliases(verb: str, old: list[str], new: list[str]) -> None:
    required = {"evaluate": ["--dataset", "got10k", "--root", "r", "--output", "o"], "report": ["results"],
                "vot-workspace": ["ws", "--stack", "tests/basic"]}[verb]
    parse = build_parser().parse_args
    assert vars(parse([verb, *required, *old])) == vars(parse([verb, *required, *new]))
    help_text = subcommands()[verb].format_help()
    assert [flag for flag in old if flag.startswith("--") and flag in help_text.split()] == []


def test_quiet_hides_info_logs_and_progress_not_results(tmp_path, tiny_checkpoint, capsys) -> None:
    import logging

    import numpy as np
    from PIL import Image

    for i in range(3):
        frame = np.full((48, 64, 3), 40, np.uint8)
        frame[10 + i:30 + i, 12:30] = 220
        Image.fromarray(frame).save(tmp_path / f"{i + 1:08d}.jpg")
    track = ["track", str(tmp_path), "--init", "12,10,18,20", "--checkpoint", str(tiny_checkpoint), "-o", "-"]
    assert main(track) == 0
    assert logging.getLogger().level == logging.INFO and "frame/s" in capsys.readouterr().err  # the progress bar
    assert main([*track, "--no-progress"]) == 0  # no progress bar, info logs stay
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 3 and logging.getLogger().level == logging.INFO and "frame/s" not in err
    for flag in ("--quiet", "-q"):
        assert main([*track, flag]) == 0
        out, err = capsys.readouterr()
        assert len(out.splitlines()) == 3 and logging.getLogger().level == logging.WARNING
        assert err.splitlines() == [err.strip()] and err.startswith("3 frames in")  # the summary line only


def test_every_extra_has_its_missing_package_line() -> None:
    import ast
    from pathlib import Path

    from lorat_plugin.cli import EXTRAS

    setup = ast.parse((Path(__file__).resolve().parents[1] / "setup.py").read_text())
    call = next(node for node in ast.walk(setup) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    extras = next(ast.literal_eval(k.value) for k in call.keywords if k.arg == "extras_require")
    assert set(EXTRAS.values()) == set(extras)


@pytest.mark.parametrize("module, argv", [
    ("skimage", ["demo", "--output", "{tmp}/demo", "--no-video"]),
    ("av", ["track", "{tmp}/clip.mp4", "--init", "1,1,5,5"]),
    ("onnx", ["export", "{tmp}/model.onnx"]),
    ("vot", ["vot-workspace", "{tmp}/ws", "--stack", "tests/basic"]),
    ("cv2", ["demo", "--output", "{tmp}/demo", "--no-video", "--baselines", "csrt"]),
    ("starlette", ["app", "{tmp}"]),
])
def test_a_missing_extra_is_one_line_in_every_verb(module: str, argv: list[str], tmp_path, monkeypatch,
                                                    capsys) -> None:
    from lorat_plugin.cli import EXTRAS

    (tmp_path / "clip.mp4").write_bytes(b"\0" * 64)
    monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ModuleNotFoundError
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "pip install" in err, err
    assert f"lorat-plugin[{EXTRAS[module]}]" in err or "opencv" in err.lower(), err
