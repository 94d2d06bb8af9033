"""tracker_registry.ini and `lorat vot-workspace`: the files a VOT workspace needs, and the checks before a run."""
from __future__ import annotations

import configparser
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("vot", reason="the VOT toolkit is not installed (pip install 'lorat-plugin[vot]')")

from vot_data import object_boxes, write_dataset  # noqa: E402

from lorat_plugin.cli import main  # noqa: E402
from lorat_plugin.model import VARIANTS  # noqa: E402
from lorat_plugin.trackers.vot_workspace import (  # noqa: E402
    ModelChoice, WorkspaceError, prepare_workspace, registry_template, render_trackers_ini)

REPO = Path(__file__).resolve().parents[1]


def toolkit_registry(path: Path):
    """The registry as the toolkit itself reads it (its own configparser settings, env_ expansion)."""
    from vot.tracker import Registry
    return Registry([str(path)], root=str(path.parent))


def boxes(length: int = 6) -> list[np.ndarray]:
    return [object_boxes(length, (20, 20), (2, 1), (24, 18))]


def test_registry_has_the_default_and_every_variant_and_no_machine_paths() -> None:
    parser = configparser.ConfigParser()
    parser.read(REPO / "tracker_registry.ini")
    expected = ["lorat"] + [f"lorat_{name.replace('-', '')}" for name in VARIANTS]
    assert parser.sections() == expected
    for name in expected:
        entry = parser[name]
        assert entry["protocol"] == "traxpython" and entry["command"] == "lorat_plugin.trackers.trax_server"
        assert "python" not in entry  # the interpreter is this installation's, written by `lorat vot-workspace`
        for key, value in entry.items():
            assert not value.startswith("/") and ":\\" not in value, f"{name}.{key} = {value} is a machine path"
    for name, variant in zip(expected[1:], VARIANTS):
        assert parser[name]["env_lorat_variant"] == variant
        assert parser[name]["env_lorat_weights_dir"] == "${LORAT_WEIGHTS_DIR}"
    # the packaged copy is the same file (an installed, non-editable package builds workspaces from it)
    assert registry_template().read_text() == (REPO / "tracker_registry.ini").read_text()


def test_trackers_ini_as_the_toolkit_reads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = ModelChoice.resolve(checkpoint=tmp_path / "my%ckpt.safetensors", env={"LORAT_WEIGHTS_DIR": "/weights"})
    text, names = render_trackers_ini(registry_template(), model, python="/opt/my env/bin/python",
                                      extra_env={"LORAT_DEVICE": "cuda:1"})
    (tmp_path / "trackers.ini").write_text(text)
    monkeypatch.setenv("LORAT_CHECKPOINT", "/from/the/shell.bin")  # must not change what `lorat` means
    registry = toolkit_registry(tmp_path / "trackers.ini")
    lorat = registry["lorat"]
    assert lorat._envvars["LORAT_CHECKPOINT"] == str(tmp_path / "my%ckpt.safetensors")
    assert lorat._envvars["LORAT_WEIGHTS_DIR"] == "" and lorat._envvars["LORAT_DEVICE"] == "cuda:1"
    assert lorat._args["python"] == "'/opt/my env/bin/python'"  # quoted: the toolkit shlex-splits the command
    b224 = registry["lorat_B224"]
    assert b224._envvars["LORAT_WEIGHTS_DIR"] == "/weights" and b224._envvars["LORAT_VARIANT"] == "B-224"
    assert set(names) <= set(registry.identifiers())


def test_model_choice(tmp_path: Path) -> None:
    assert ModelChoice.resolve(env={}).is_demo
    from_env = ModelChoice.resolve(env={"LORAT_WEIGHTS_DIR": "/w", "LORAT_VARIANT": "L-378"})
    assert (from_env.variant, from_env.weights_dir) == ("L-378", "/w")
    folder_only = ModelChoice.resolve(weights_dir="/w", env={})
    assert folder_only.variant == "B-224" and folder_only.variants_weights_dir == "/w"
    explicit = ModelChoice.resolve(checkpoint="/c.safetensors", env={"LORAT_WEIGHTS_DIR": "/w"})
    assert explicit.weights_dir is None and explicit.variants_weights_dir == "/w"  # variants still find weights
    assert "base.bin" in " ".join(ModelChoice.resolve(weights_dir=tmp_path, env={}).problems())
    assert "folder not found" in " ".join(ModelChoice.resolve(weights_dir=tmp_path / "no", env={}).problems())


def test_workspace_files(tmp_path: Path, tiny_checkpoint: Path) -> None:
    source = write_dataset(tmp_path / "data", {"a": dict(objects=boxes(), anchors=[0]),
                                               "b": dict(objects=boxes(), anchors=[0, 3])})
    ws = tmp_path / "ws"
    (ws).mkdir()
    (ws / "trackers.ini").write_text("[mine]\nprotocol = trax\ncommand = ./mine --x 100%%\n")
    assert main(["vot-workspace", str(ws), "--stack", "vot2022/shorttermbox", "--sequences", str(source),
                 "--checkpoint", str(tiny_checkpoint)]) == 0
    config = yaml.safe_load((ws / "config.yaml").read_text())
    assert config == {"registry": ["./trackers.ini"], "stack": "vot2022/shorttermbox", "sequences": "sequences"}
    assert (ws / "sequences" / "list.txt").read_text() == "a\nb\n"
    assert (ws / "sequences" / "a").resolve() == source / "a"
    registry = toolkit_registry(ws / "trackers.ini")
    assert "mine" in registry.identifiers() and registry["mine"]._command == "./mine --x 100%"
    assert registry["lorat"]._args["python"] == sys.executable
    assert registry["lorat"]._envvars["LORAT_VOT_OUTPUT"] == "rectangle"

    # the toolkit loads it: stack, sequences (no download: list.txt is there), trackers
    from vot.workspace import Workspace
    workspace = Workspace.load(str(ws))
    assert sorted(s.name for s in workspace.dataset) == ["a", "b"]
    assert set(workspace.stack.experiments) == {"baseline", "realtime", "unsupervised"}

    # preparing again updates in place; another stack is refused without --force
    assert main(["vot-workspace", str(ws), "--stack", "vot2022/shorttermbox", "--sequences", str(source)]) == 0
    with pytest.raises(WorkspaceError, match="workspace for stack 'vot2022/shorttermbox'"):
        prepare_workspace(ws, "tests/basic", sequences=source)


def test_masks_are_reported_on_mask_stacks_and_mask_ground_truth(tmp_path: Path) -> None:
    source = write_dataset(tmp_path / "data", {"m": dict(objects=boxes(), masks=True)})
    report = prepare_workspace(tmp_path / "ws", "tests/basic", sequences=source, model=ModelChoice())
    assert report.output == "mask" and report.sequences[0].masks
    report = prepare_workspace(tmp_path / "ws2", "tests/multiobject", model=ModelChoice())
    assert report.output == "mask" and any("download" in w for w in report.warnings)


def test_multistart_needs_anchors(tmp_path: Path) -> None:
    source = write_dataset(tmp_path / "data", {"a": dict(objects=boxes(), anchors=[0]), "b": dict(objects=boxes())})
    with pytest.raises(WorkspaceError, match=r"anchor.value.*: b\."):
        prepare_workspace(tmp_path / "ws", "vot2022/shorttermbox", sequences=source, model=ModelChoice())
    prepare_workspace(tmp_path / "ws", "tests/basic", sequences=source, model=ModelChoice())  # no multistart: fine


def test_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["vot-workspace", str(tmp_path / "ws"), "--stack", "vot2022/stb"]) == 2
    err = capsys.readouterr().err
    assert "unknown stack 'vot2022/stb'" in err and "vot2022/shorttermbox" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WorkspaceError, match="no VOT sequences"):
        prepare_workspace(tmp_path / "ws", "tests/basic", sequences=empty, model=ModelChoice())
    broken = write_dataset(tmp_path / "data", {"a": dict(objects=boxes())})
    (broken / "a" / "color" / "00000001.jpg").unlink()
    with pytest.raises(WorkspaceError, match="first frame .*00000001.jpg not found"):
        prepare_workspace(tmp_path / "ws", "tests/basic", sequences=broken, model=ModelChoice())
    report = prepare_workspace(tmp_path / "ws3", "tests/basic", sequences=write_dataset(
        tmp_path / "data2", {"a": dict(objects=boxes())}), model=ModelChoice.resolve(
        checkpoint=tmp_path / "missing.safetensors", env={}))
    assert any("will fail" in w and "missing.safetensors" in w for w in report.warnings)
