"""torchrun with rank 1 SIGKILLed mid-run, two CPU processes (gloo): `lorat evaluate` and `lorat train` exit non-zero
within a minute naming rank 1, and rerunning the same command ends where an uninterrupted run ends (byte-identical
result files; training weights equal at the same step).

Rank 1 kills itself with a real SIGKILL through the test hook ``LORAT_TEST_SIGKILL=RANK:POINT:N``
(lorat_plugin/distributed.py), so that the kill lands at a known point. Two launches are tried: torchrun itself,
whose agent stops the group and names the rank, and two processes without a launcher (the peer on another node, or
a launcher that stops nothing), where the survivor's own collective must fail and name rank 1.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from lorat_plugin.cli import main
from lorat_plugin.model import ModelConfig

from evaluation_support import make_benchmark
from system_tools import free_port
from train_data import write_moving_objects

pytestmark = pytest.mark.slow

LIMIT_S = 60  # the command ends within this after rank 1 dies
LAUNCH_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LORAT_TEST_SIGKILL")
# torchrun's summary: the first failure is rank 1, killed by signal 9
TORCHRUN_NAMES_RANK_1 = re.compile(r"Root Cause.*?rank\s*:\s*1 \(local_rank: 1\)\s*\n\s*exitcode\s*:\s*-9", re.S)


def _environment(kill: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    env["OMP_NUM_THREADS"] = "1"
    if kill is not None:
        env["LORAT_TEST_SIGKILL"] = kill
    return env


def _torchrun(arguments: list[str], kill: str | None = None) -> tuple[subprocess.CompletedProcess, float]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "--max-restarts", "0", "-m", "lorat_plugin.cli", *arguments]
    start = time.monotonic()
    done = subprocess.run(command, env=_environment(kill), capture_output=True, text=True, timeout=300)
    return done, time.monotonic() - start



def _two_processes_without_launcher(arguments: list[str], kill: str) -> tuple[int, str, int, float]:
    """Ranks 0 and 1 started as plain processes sharing a rendezvous: nobody stops rank 0 when rank 1 dies.
    Returns rank 0's exit status and stderr, rank 1's exit status, and rank 0's time from rank 1's death."""
    port = str(free_port())
    processes = []
    for rank in (0, 1):
        env = {**_environment(kill), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(rank),
               "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"}
        processes.append(subprocess.Popen([sys.executable, "-m", "lorat_plugin.cli", *arguments], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    survivor, killed = processes
    try:
        killed_status = killed.wait(timeout=300)
        died = time.monotonic()
        _, stderr = survivor.communicate(timeout=300)
        return survivor.returncode, stderr, killed_status, time.monotonic() - died
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def _torchrun_killed(arguments: list[str], kill: str) -> None:
    """The command ends non-zero within the limit and torchrun's summary names rank 1, killed by SIGKILL."""
    done, seconds = _torchrun(arguments, kill=kill)
    assert done.returncode != 0 and seconds < LIMIT_S, (seconds, done.stderr[-3000:])
    assert TORCHRUN_NAMES_RANK_1.search(done.stderr), done.stderr[-3000:]


def _survivor_says(arguments: list[str], kill: str) -> str:
    """Rank 0's one error line when rank 1 dies with no launcher to stop rank 0 (exit status 2, no traceback)."""
    status, stderr, killed_status, seconds = _two_processes_without_launcher(arguments, kill=kill)
    assert killed_status == -9 and status == 2 and seconds < LIMIT_S, (seconds, stderr[-3000:])
    message = [line for line in stderr.splitlines() if line.startswith(f"lorat {arguments[0]}: error:")]
    assert len(message) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return message[0]


def _box_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.txt"))
            if not p.name.endswith("_time.txt")}


def test_evaluate_with_rank_1_killed_ends_then_resumes_to_the_same_files(tmp_path: Path,
                                                                          tiny_checkpoint: Path) -> None:
    names = [f"cat-{i}" for i in range(1, 17)]  # 8 per rank: each kill leaves work for the next run
    root = make_benchmark(tmp_path / "LaSOT", "lasot", len(names), length=5, split="test", names=names)
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    arguments = ["evaluate", "--dataset", "lasot", "--root", str(root), "--checkpoint", str(tiny_checkpoint),
                 "--device", "cpu", "--batch-size", "1", "--no-progress"]
    assert main([*arguments, "--output", str(single)]) == 0  # the uninterrupted run
    arguments += ["--output", str(sharded)]

    # torchrun: rank 1 dies after its first record; torchrun stops rank 0 and names rank 1
    _torchrun_killed(arguments, kill="1:record:1")
    after_first = len(list((sharded / "records").glob("*.npz")))
    assert 1 <= after_first < len(names)

    # no launcher: rank 0's own collective fails at once and says, in one line, that rank 1 is gone
    message = _survivor_says(arguments, kill="1:record:1")
    assert "rank 0 of 2: rank 1 ended or lost its connection during evaluation" in message
    assert "rerun the same command" in message
    after_second = len(list((sharded / "records").glob("*.npz")))
    assert after_first < after_second < len(names)

    # the rerun tracks what is left: the same files as the uninterrupted run, byte for byte
    done, _ = _torchrun(arguments)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{len(names) - after_second} runs tracked by 2 processes, {after_second} already done" in done.stdout
    assert _box_files(sharded) == _box_files(single) and len(_box_files(single)) == 2 * len(names)


def _train_config(folder: Path, tiny: ModelConfig, backbone: Path) -> Path:
    """2 epochs x 4 steps of 8 pairs on the tiny model, the resumable state written every 2 steps."""
    config = {
        "model": {"variant": None, "embed_dim": tiny.embed_dim, "depth": tiny.depth, "num_heads": tiny.num_heads,
                  "template_size": tiny.template_size, "search_size": tiny.search_size,
                  "lora_rank": tiny.lora_rank, "lora_alpha": tiny.lora_alpha, "backbone_weights": str(backbone)},
        "data": {"datasets": [{"name": "got10k", "root": str(folder / "data"), "split": "train"}],
                 "samples_per_epoch": 32, "batch_size": 8, "num_workers": 0},
        "optim": {"warmup_epochs": 0.5, "lr": 1e-3},
        "train": {"epochs": 2, "dtype": "fp32", "log_every": 1, "seed": 3, "state_every_steps": 2},
        "validation": {},
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _global_step(output: Path) -> int:
    return int(torch.load(output / "state.pt", weights_only=True)["global_step"])


def test_train_with_rank_1_killed_ends_then_resumes_to_the_same_weights(tmp_path: Path, tiny_config: ModelConfig,
                                                                        dinov2_writer) -> None:
    write_moving_objects(tmp_path / "data", "train", 6, length=12)
    config = _train_config(tmp_path, tiny_config, dinov2_writer(tmp_path / "dinov2_tiny.pth", tiny_config))
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    done, _ = _torchrun(["train", "--config", str(config), "--output", str(reference), "--no-progress"])
    assert done.returncode == 0, done.stderr[-3000:]

    # torchrun: rank 1 dies after step 3, past the state of step 2
    _torchrun_killed(["train", "--config", str(config), "--output", str(killed), "--no-progress"],
                     kill="1:train-step:3")
    assert _global_step(killed) == 2 and not (killed / "model.safetensors").exists()

    # no launcher: resumed at step 2, rank 1 dies after its 3rd step (global step 5); rank 0's all-reduce fails
    resume = ["train", "--config", str(config), "--output", str(killed), "--no-progress", "--resume"]
    message = _survivor_says(resume, kill="1:train-step:3")
    assert "rank 0 of 2: rank 1 ended or lost its connection during training" in message and "--resume" in message
    assert _global_step(killed) == 4

    # the rerun continues from step 4 and ends with the uninterrupted run's weights, bit for bit
    done, _ = _torchrun(resume)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _global_step(killed) == 8
    expected, got = load_file(str(reference / "model.safetensors")), load_file(str(killed / "model.safetensors"))
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[name], got[name]) for name in expected)
