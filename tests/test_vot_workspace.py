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
from lorat_plugin.data.datasets.vot import find_sequences  # noqa: E402
from lorat_plugin.model.sources import ModelSpec  # noqa: E402
from lorat_plugin.trackers.vot_registry import registry_template, render_trackers_ini  # noqa: E402
from lorat_plugin.trackers.vot_workspace import WorkspaceError, prepare_workspace  # noqa: E402

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


def test_trackers_ini_as_the_toolkit_reads_it(tmp_path: Path, tiny_checkpoint: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint = tmp_path / "my%ckpt.safetensors"
    checkpoint.write_bytes(tiny_checkpoint.read_bytes())
    weights = tmp_path / "weights"
    weights.mkdir()
    model = ModelSpec.resolve(checkpoint=checkpoint, device="cuda:1", env={"LORAT_WEIGHTS_DIR": str(weights)})
    text, names = render_trackers_ini(registry_template(), model, python="/opt/my env/bin/python")
    (tmp_path / "trackers.ini").write_text(text)
    monkeypatch.setenv("LORAT_CHECKPOINT", "/from/the/shell.bin")  # must not change what `lorat` means
    registry = toolkit_registry(tmp_path / "trackers.ini")
    lorat = registry["lorat"]
    assert lorat._envvars["LORAT_CHECKPOINT"] == str(checkpoint)
    assert lorat._envvars["LORAT_WEIGHTS_DIR"] == "" and lorat._envvars["LORAT_VARIANT"] == ""
    assert lorat._args["python"] == "'/opt/my env/bin/python'"  # quoted: the toolkit shlex-splits the command
    b224 = registry["lorat_B224"]
    assert b224._envvars["LORAT_WEIGHTS_DIR"] == str(weights) and b224._envvars["LORAT_VARIANT"] == "B-224"
    assert set(names) <= set(registry.identifiers())
    demo, _ = render_trackers_ini(registry_template(), ModelSpec.resolve(env={}))
    assert "env_LORAT_VARIANT = demo\n" in demo and "demo_model" not in demo


def test_the_lorat_entry_loads_what_the_workspace_was_given(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """The TraX program resolves the written entry to the same model (ModelSpec on both sides)."""
    from lorat_plugin.trackers.trax_server import ServerSettings

    ws = tmp_path / "ws"
    source = write_dataset(tmp_path / "data", {"a": dict(objects=boxes())})
    assert main(["vot-workspace", str(ws), "--stack", "tests/basic", "--sequences-dir", str(source),
                 "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--dtype", "fp32"]) == 0
    entry = toolkit_registry(ws / "trackers.ini")["lorat"]
    settings = ServerSettings.from_env(entry._envvars)
    assert settings.model == ModelSpec.resolve(checkpoint=tiny_checkpoint, device="cpu", dtype="fp32", env={})


def test_workspace_files(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    source = write_dataset(tmp_path / "data", {"a": dict(objects=boxes(), anchors=[0]),
                                               "b": dict(objects=boxes(), anchors=[0, 3])})
    ws = tmp_path / "ws"
    (ws).mkdir()
    (ws / "trackers.ini").write_text("[mine]\nprotocol = trax\ncommand = ./mine --x 100%%\n")
    assert main(["vot-workspace", str(ws), "--stack", "vot2022/shorttermbox", "--sequences-dir", str(source),
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
    assert main(["vot-workspace", str(ws), "--stack", "vot2022/shorttermbox", "--sequences", str(source)]) == 0  # old
    assert main(["vot-workspace", str(ws), "--stack", "vot2022/shorttermbox", "--output", "mask"]) == 2
    assert "--region mask" in capsys.readouterr().err
    with pytest.raises(WorkspaceError, match="workspace for stack 'vot2022/shorttermbox'"):
        prepare_workspace(ws, "tests/basic", sequences=source)


def test_masks_are_reported_on_mask_stacks_and_mask_ground_truth(tmp_path: Path) -> None:
    source = write_dataset(tmp_path / "data", {"m": dict(objects=boxes(), masks=True)})
    report = prepare_workspace(tmp_path / "ws", "tests/basic", sequences=source, model=ModelSpec.resolve(env={}))
    assert report.region == "mask" and report.sequences[0].masks
    report = prepare_workspace(tmp_path / "ws2", "tests/multiobject", model=ModelSpec.resolve(env={}))
    assert report.region == "mask" and any("download" in w for w in report.warnings)


def test_multistart_needs_anchors(tmp_path: Path) -> None:
    source = write_dataset(tmp_path / "data", {"a": dict(objects=boxes(), anchors=[0]), "b": dict(objects=boxes())})
    with pytest.raises(WorkspaceError, match=r"anchor.value.*: b\."):
        prepare_workspace(tmp_path / "ws", "vot2022/shorttermbox", sequences=source, model=ModelSpec.resolve(env={}))
    # no multistart: fine
    prepare_workspace(tmp_path / "ws", "tests/basic", sequences=source, model=ModelSpec.resolve(env={}))


@pytest.mark.parametrize("masks", [False, True])
def test_an_anchor_on_an_unannotated_frame_is_refused(tmp_path: Path, masks: bool) -> None:
    """`vot evaluate` stops seconds into the run on such an anchor while `vot` exits 0: refuse it up front."""
    source = write_dataset(tmp_path / "data", {"a": dict(objects=boxes(), anchors=[0]),
                                               "b": dict(objects=boxes(), anchors=[0, 3], masks=masks)})
    truth = source / "b" / "groundtruth.txt"
    lines = truth.read_text().splitlines()
    lines[3] = "m0,0,0,0" if masks else "0,0,0,0"
    truth.write_text("\n".join(lines) + "\n")
    assert find_sequences(source)[1].unannotated_anchors == [f"frame 4 (groundtruth.txt: {lines[3]!r})"]
    with pytest.raises(WorkspaceError, match=r"sequence b .*anchor on an unannotated frame: frame 4 "):
        prepare_workspace(tmp_path / "ws", "vot2022/shorttermbox", sequences=source, model=ModelSpec.resolve(env={}))
    lines[3] = lines[2]
    truth.write_text("\n".join(lines) + "\n")
    prepare_workspace(tmp_path / "ws", "vot2022/shorttermbox", sequences=source, model=ModelSpec.resolve(env={}))


def test_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["vot-workspace", str(tmp_path / "ws"), "--stack", "vot2022/stb"]) == 2
    err = capsys.readouterr().err
    assert "unknown stack 'vot2022/stb'" in err and "vot2022/shorttermbox" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no VOT sequences"):
        prepare_workspace(tmp_path / "ws", "tests/basic", sequences=empty, model=ModelSpec.resolve(env={}))
    broken = write_dataset(tmp_path / "data", {"a": dict(objects=boxes())})
    (broken / "a" / "color" / "00000001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="first frame not found: .*00000001.jpg"):
        prepare_workspace(tmp_path / "ws", "tests/basic", sequences=broken, model=ModelSpec.resolve(env={}))


def test_each_model_and_precision_gets_its_own_results_folder(tmp_path: Path, tiny_checkpoint: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    source = write_dataset(tmp_path / "data", {"a": dict(objects=boxes())})
    ws = tmp_path / "ws"
    (ws / "results" / "lorat" / "baseline").mkdir(parents=True)  # a workspace from before versions: model unknown
    (ws / "results" / "lorat" / "baseline" / "old.txt").write_text("boxes of some model\n")
    prepare = ["vot-workspace", str(ws), "--stack", "tests/basic", "--sequences-dir", str(source),
               "--checkpoint", str(tiny_checkpoint), "--device", "cpu"]
    assert main([*prepare, "--dtype", "fp32"]) == 0
    out = capsys.readouterr().out
    fp32 = ModelSpec.resolve(checkpoint=tiny_checkpoint, env={}).identity("fp32")["name"]
    registry = toolkit_registry(ws / "trackers.ini")
    lorat = registry["lorat"]
    assert lorat.version == fp32 and lorat.reference == f"lorat@{fp32}"
    assert lorat._envvars["LORAT_DTYPE"] == "fp32" and lorat._envvars["LORAT_VOT_MODEL"] == fp32
    assert registry["lorat_B224"].version == "fp32" and registry["lorat_B224"]._envvars["LORAT_DTYPE"] == "fp32"
    assert (ws / "results" / "lorat@unrecorded" / "baseline" / "old.txt").is_file()
    assert not (ws / "results" / "lorat").exists() and "lorat@unrecorded" in out
    assert f"results/lorat@{fp32}" in out

    (ws / "results" / f"lorat@{fp32}" / "baseline").mkdir(parents=True)  # as `vot evaluate lorat` leaves it
    report = prepare_workspace(ws, "tests/basic", model=ModelSpec.resolve(checkpoint=tiny_checkpoint, dtype="bf16",
                                                                          device="cpu", env={}))
    bf16 = report.model_name
    assert bf16 == fp32.replace("-fp32", "-bf16") and report.results == ws / "results" / f"lorat@{bf16}"
    assert report.previous_model == fp32 and report.previous_results == ws / "results" / f"lorat@{fp32}"
    assert toolkit_registry(ws / "trackers.ini")["lorat"].version == bf16
    report = prepare_workspace(ws, "tests/basic", model=ModelSpec.resolve(checkpoint=tiny_checkpoint, dtype="bf16",
                                                                          device="cpu", env={}))
    assert report.previous_model is None  # the same model again: its results are its own


def test_a_checkpoint_name_becomes_a_version_the_toolkit_accepts(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from lorat_plugin.trackers.vot_registry import results_version

    checkpoint = tmp_path / "run 3.v2%.safetensors"
    checkpoint.write_bytes(tiny_checkpoint.read_bytes())
    model = ModelSpec.resolve(checkpoint=checkpoint, dtype="fp32", env={})
    identity = model.identity("fp32")
    text, _ = render_trackers_ini(registry_template(), model, identity=identity)
    (tmp_path / "trackers.ini").write_text(text)
    lorat = toolkit_registry(tmp_path / "trackers.ini")["lorat"]  # the toolkit raises on an illegal version
    assert identity["name"].startswith("LoRAT-run 3.v2%-")
    assert lorat.version == results_version(identity["name"]) == "LoRAT-run_3_v2_-" + identity["name"][16:]
    assert lorat._envvars["LORAT_VOT_MODEL"] == identity["name"]  # the TraX program compares the real name


def test_the_tracker_refuses_a_model_other_than_the_one_its_results_are_named_after(tmp_path: Path,
                                                                                    tiny_checkpoint: Path) -> None:
    from safetensors.torch import load_file, save_file

    from lorat_plugin.trackers.trax_server import ServerSettings, build_tracker

    checkpoint = tmp_path / "mine.safetensors"
    checkpoint.write_bytes(tiny_checkpoint.read_bytes())
    ws = tmp_path / "ws"
    source = write_dataset(tmp_path / "data", {"a": dict(objects=boxes())})
    assert main(["vot-workspace", str(ws), "--stack", "tests/basic", "--sequences-dir", str(source),
                 "--checkpoint", str(checkpoint), "--device", "cpu", "--dtype", "fp32"]) == 0
    env = toolkit_registry(ws / "trackers.ini")["lorat"]._envvars
    build_tracker(ServerSettings.from_env(env))  # the model it was prepared for: fine

    from safetensors import safe_open
    with safe_open(str(checkpoint), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(checkpoint))
    name = next(key for key in tensors if tensors[key].is_floating_point())
    tensors[name] = tensors[name] + 1  # the checkpoint rewritten in place, as a new training run would
    save_file(tensors, str(checkpoint), metadata=metadata)
    with pytest.raises(ValueError, match=rf"prepared for {env['LORAT_VOT_MODEL']} .* now loads LoRAT-mine-"):
        build_tracker(ServerSettings.from_env(env))
