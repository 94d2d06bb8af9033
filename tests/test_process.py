"""Process-wide tuning (lorat_plugin.process): the Python API gets the CLI's allocator tuning, once, and it can be
declined."""
from __future__ import annotations

import multiprocessing
import os
import platform
import time

import pytest

from lorat_plugin import process


def test_a_cpu_engine_tunes_the_allocator_once_and_it_can_be_declined(monkeypatch, tiny_config) -> None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    from lorat_plugin.engine import TrackingEngine
    from lorat_plugin.model import build_model

    monkeypatch.setattr(process, "_TUNED", False)
    monkeypatch.setenv("LORAT_NO_MALLOC_TUNING", "1")
    TrackingEngine(build_model(tiny_config, merge=True), device="cpu", dtype="fp32")
    assert process._TUNED is False
    monkeypatch.delenv("LORAT_NO_MALLOC_TUNING")
    TrackingEngine(build_model(tiny_config, merge=True), device="cpu", dtype="fp32")
    assert process._TUNED is True and process.tune_cpu_allocator() is True


# ---- the thread chooser ---------------------------------------------------------------------------------------------
# (environment, quota, free CPUs as (cpus, busy, free) or None, torch's count) -> (threads chosen, words of the reason)
CHOOSER_CASES = {
    "quiet machine: torch's count": ({}, None, (2, 0.1, 2), 2, 2, "no CPU busy"),
    "one of two CPUs busy: one thread": ({}, None, (2, 1.0, 1), 2, 1, "1.0 of 2 CPUs busy"),
    "every CPU busy: still one thread": ({}, None, (4, 4.0, 0), 4, 1, "4.0 of 4 CPUs busy"),
    "container quota below torch's count": ({}, 2, (16, 0.0, 16), 16, 2, "CPU quota of this container (2 CPUs)"),
    "quota and busy CPUs: the lower": ({}, 3, (16, 14.2, 2), 16, 2, "busy with other processes"),
    "never more than torch's count": ({}, None, (16, 0.0, 16), 4, 4, "no CPU busy"),
    "torch's one thread: nothing measured": ({}, 1, "not measured", 1, 1, "torch's count"),
    "no /proc/stat (not Linux): torch's count": ({}, None, None, 3, 3, "free CPUs not measured"),
    "LORAT_THREADS fixes the count": ({"LORAT_THREADS": "3"}, None, (2, 1.0, 1), 2, 3, "LORAT_THREADS=3"),
    "LORAT_THREADS=torch keeps torch's": ({"LORAT_THREADS": "torch"}, 1, (2, 2.0, 0), 2, 2, "LORAT_THREADS=torch"),
    "LORAT_THREADS in any case": ({"LORAT_THREADS": " Torch "}, 1, (2, 2.0, 0), 2, 2, "LORAT_THREADS=torch"),
    "OMP_NUM_THREADS keeps torch's": ({"OMP_NUM_THREADS": "2"}, 1, (2, 1.0, 1), 2, 2, "OMP_NUM_THREADS=2"),
    "MKL_NUM_THREADS keeps torch's": ({"MKL_NUM_THREADS": "2"}, None, (2, 1.0, 1), 2, 2, "MKL_NUM_THREADS=2"),
}


@pytest.fixture
def fresh_choice(monkeypatch):
    """No choice made yet in this process, no thread variable set, and torch's count restored afterwards."""
    import torch

    before = torch.get_num_threads()
    monkeypatch.setattr(process, "_CHOICE", None)
    for name in (process.THREADS_VARIABLE, *process.TORCH_THREAD_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("case", CHOOSER_CASES.values(), ids=CHOOSER_CASES.keys())
def test_the_thread_chooser(case, monkeypatch, fresh_choice) -> None:
    import torch

    environment, quota, free, current, expected, reason = case
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(process, "cpu_quota", lambda: quota)
    if free == "not measured":
        monkeypatch.setattr(process, "free_cpus", lambda: pytest.fail("measured CPUs it could not use"))
    else:
        monkeypatch.setattr(process, "free_cpus", lambda: free and process.FreeCpus(*free))
    torch.set_num_threads(current)
    choice = process.choose_threads()
    assert (choice.threads, torch.get_num_threads()) == (expected, expected)
    assert reason in choice.reason
    monkeypatch.setattr(process, "free_cpus", lambda: pytest.fail("the choice is made once per process"))
    assert process.choose_threads() == choice
    assert process.choose_threads(2).threads == 2 == torch.get_num_threads()  # --threads: as given, always


def test_more_threads_than_cpus_run_with_a_warning(monkeypatch, fresh_choice, caplog) -> None:
    monkeypatch.setattr(process, "usable_cpus", lambda: 2)
    with caplog.at_level("WARNING", logger="lorat_plugin.process"):
        assert process.choose_threads(5).threads == 5
    assert "5 threads (asked for (--threads)) on 2 usable CPUs" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="lorat_plugin.process"):
        process.choose_threads(2)
    assert not caplog.text


@pytest.mark.parametrize("setting", ["0", "-1", "two", "1.5"])
def test_a_bad_lorat_threads_is_one_error_naming_it(setting: str, monkeypatch, fresh_choice) -> None:
    monkeypatch.setenv(process.THREADS_VARIABLE, setting)
    with pytest.raises(ValueError, match=rf"LORAT_THREADS='{setting}': expected a whole number >= 1, or 'torch'"):
        process.choose_threads()


def test_a_cpu_engine_chooses_the_threads_the_cli_would(monkeypatch, fresh_choice, tiny_config) -> None:
    import torch

    from lorat_plugin.engine import TrackingEngine
    from lorat_plugin.model import build_model

    monkeypatch.setattr(process, "cpu_quota", lambda: None)
    monkeypatch.setattr(process, "free_cpus", lambda: process.FreeCpus(cpus=2, busy=1.0, free=1))
    torch.set_num_threads(2)
    TrackingEngine(build_model(tiny_config, merge=True), device="cpu", dtype="fp32")
    assert torch.get_num_threads() == 1 and process._CHOICE.threads == 1


@pytest.mark.parametrize("membership, files, expected", [
    ("0::/\n", {"cpu.max": "max 100000\n"}, None),
    ("0::/\n", {"cpu.max": "150000 100000\n"}, 2),
    ("0::/\n", {"cpu.max": "50000 100000\n"}, 1),
    # a quota on a parent group (a systemd slice) holds its children
    ("0::/slice/job\n", {"slice/job/cpu.max": "max 100000\n", "slice/cpu.max": "200000 100000\n"}, 2),
    ("0::/slice/job\n", {"slice/job/cpu.max": "300000 100000\n", "slice/cpu.max": "500000 100000\n"}, 3),
    ("1:cpu,cpuacct:/docker/abc\n", {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
                                      "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, None),
    ("1:cpu,cpuacct:/docker/abc\n", {"cpu,cpuacct/cpu.cfs_quota_us": "400000\n",  # the container's own mount
                                      "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 4),
    ("2:cpu:/batch\n", {"cpu/batch/cpu.cfs_quota_us": "250000\n", "cpu/batch/cpu.cfs_period_us": "100000\n"}, 3),
    ("0::/\n", {"cpu.max": "garbage\n"}, None),
    ("0::/\n", {}, None),
    ("", {}, None),
])
def test_cpu_quota_from_cgroup_files(tmp_path, membership: str, files: dict[str, str], expected) -> None:
    (tmp_path / "proc-self-cgroup").write_text(membership)
    root = tmp_path / "cgroup"
    root.mkdir()
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert process.cpu_quota(root, tmp_path / "proc-self-cgroup") == expected


def test_cpu_ticks_reads_the_affine_cpus_and_counts_steal_as_busy(tmp_path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  10 0 10 100 5 0 0 1 0 0\n"
                    "cpu0 4 0 4 50 2 0 0 1 7 0\n"      # busy 4+4+1 (steal), idle 50+2; guest 7 is inside user
                    "cpu1 6 0 6 50 3 0 0 0 0 0\n"
                    "intr 12345\n")
    assert process._cpu_ticks(stat, {0}) == (9, 61)
    assert process._cpu_ticks(stat, {0, 1}) == (21, 126)
    assert process._cpu_ticks(stat, {5}) is None
    assert process._cpu_ticks(tmp_path / "missing", {0}) is None
    stat.write_text("\ncpu0 4 0 4 50\n\n")  # blank lines, an old kernel's four fields
    assert process._cpu_ticks(stat, {0}) == (8, 58)
    for damaged in ("cpu0 4 0\n", "cpu0 4 x 4 50 2\n"):
        stat.write_text(damaged)
        assert process._cpu_ticks(stat, {0}) is None


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs Linux's /proc/stat")
def test_a_busy_process_leaves_the_tracker_the_other_cpus() -> None:
    """Real CPUs: one process spinning on one of this process's CPUs is measured as taken."""
    cpus = sorted(os.sched_getaffinity(0))
    context = multiprocessing.get_context("spawn")
    spinning = context.Event()
    spinner = context.Process(target=_spin, args=(cpus[0], spinning), daemon=True)
    spinner.start()
    try:
        assert spinning.wait(60), "the spinning process did not start"
        time.sleep(0.2)
        measured = process.free_cpus(window=0.5)
    finally:
        spinner.terminate()
        spinner.join()
    assert measured is not None and measured.cpus == len(cpus)
    assert measured.busy >= 0.7 and measured.free <= len(cpus) - 1


def _spin(cpu: int, spinning) -> None:
    os.sched_setaffinity(0, {cpu})
    spinning.set()
    while True:
        pass
