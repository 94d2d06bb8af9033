"""The tracker on a shared CPU: ms per frame alone and with busy processes on some of the cores, per precision and
process setting, in fresh processes alternated (the thread count is chosen once per process, and the OpenMP wait
policy is fixed when torch loads).

With ``B`` of ``C`` cores busy the ideal share is ``alone * C / (C - B)``; the script prints each case's median
over the alternations, the threads the tracker ran, and the fraction of that ideal it keeps (1.0: the tracker lost
only the cores it gave away). The load average is printed before and after: a number taken on a machine busier than
the script made it is noise.

  python benchmarks/shared_cpu.py --variant B-224 --dtypes bf16,fp32 --busy 1 --alternations 5
  python benchmarks/shared_cpu.py --settings default,LORAT_THREADS=torch,LORAT_THREADS=torch+OMP_WAIT_POLICY=PASSIVE

A setting is ``default`` (what a plain run gets: the environment without the thread and wait variables, so the
thread chooser of ``lorat_plugin.process`` decides; ``LORAT_THREADS=torch`` keeps torch's count, as before the
chooser) or ``NAME=VALUE`` settings joined by ``+``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from typing import Iterator

from lorat_plugin.process import usable_cpus  # no torch in this process: only the workers load it

WORKER = r"""
import json, sys, time
import numpy as np, torch
from lorat_plugin.data.synthetic import moving_box_video
from lorat_plugin.engine import TrackingEngine
from lorat_plugin.model import build_model
variant, dtype, frames = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.manual_seed(0)
engine = TrackingEngine(build_model(variant, merge=True), device="cpu", dtype=dtype)
images, truth = moving_box_video(frames + 3, (640, 480), textured=True)
state = engine.initialize([images[0]], truth[:1])
for image in images[1:3]:  # warm-up: kernel choices, weight packing, first allocations
    engine.track(state, [image])
times = []
for image in images[3:]:
    start = time.perf_counter()
    engine.track(state, [image])
    times.append(time.perf_counter() - start)
print(json.dumps({"ms": 1e3 * float(np.median(times)), "threads": torch.get_num_threads()}))
"""


def busy() -> None:
    """A process that keeps one core busy until it is terminated."""
    while True:
        pass


@contextlib.contextmanager
def busy_cores(count: int) -> Iterator[None]:
    """``count`` processes that keep a core busy each, for the duration of the block (half a second to start)."""
    loaders = [multiprocessing.Process(target=busy, daemon=True) for _ in range(count)]
    for process in loaders:
        process.start()
    time.sleep(0.5 if count else 0)
    try:
        yield
    finally:
        for process in loaders:
            process.terminate()
            process.join()


# what a setting may set: removed from the inherited environment so that "default" is a plain run
SETTING_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "LORAT_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def measure(variant: str, dtype: str, frames: int, setting: str, threads: int | None) -> dict:
    env = {name: value for name, value in os.environ.items() if name not in SETTING_VARIABLES}
    if setting != "default":
        env.update(part.split("=", 1) for part in setting.split("+"))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    out = subprocess.run([sys.executable, "-c", WORKER, variant, dtype, str(frames)], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="B-224")
    parser.add_argument("--dtypes", default="bf16,fp32")
    parser.add_argument("--settings", default="default,LORAT_THREADS=torch",
                        help="comma-separated process settings: 'default' or NAME=VALUE[+NAME=VALUE]")
    parser.add_argument("--busy", type=int, default=1, help="cores kept busy by other processes in the shared runs")
    parser.add_argument("--frames", type=int, default=12, help="timed frames per process (median)")
    parser.add_argument("--alternations", type=int, default=5)
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the tracker (default: the setting's)")
    args = parser.parse_args()
    cores = usable_cpus() or 1  # the busy processes inherit this process's affinity
    if not 0 < args.busy < cores:
        raise SystemExit(f"--busy must leave the tracker at least one of the {cores} cores")
    print(f"{cores} cores, {args.busy} busy in the shared runs; load average before: {os.getloadavg()}")
    cases = [(dtype, setting) for dtype in args.dtypes.split(",") for setting in args.settings.split(",")]
    runs: dict[tuple[str, str, str], list[dict]] = {}
    for round_ in range(args.alternations):
        for dtype, setting in cases:
            runs.setdefault((dtype, setting, "alone"), []).append(
                measure(args.variant, dtype, args.frames, setting, args.threads))
            with busy_cores(args.busy):
                runs.setdefault((dtype, setting, "shared"), []).append(
                    measure(args.variant, dtype, args.frames, setting, args.threads))
        print(f"round {round_ + 1}/{args.alternations} done", file=sys.stderr)
    print(f"load average after: {os.getloadavg()}")
    share = cores / (cores - args.busy)
    print(f"| variant | dtype | setting | alone ms (threads) | shared ms (threads) | shared / alone | of the ideal "
          f"share ({share:.1f}x alone): median (per-round range) |")
    print("|---|---|---|---|---|---|---|")
    for dtype, setting in cases:
        alone, shared = runs[(dtype, setting, "alone")], runs[(dtype, setting, "shared")]
        alone_ms = statistics.median(run["ms"] for run in alone)
        shared_ms = statistics.median(run["ms"] for run in shared)
        kept = [a["ms"] * share / s["ms"] for a, s in zip(alone, shared)]
        print(f"| {args.variant} | {dtype} | {setting} | {alone_ms:.1f} ({_threads(alone)}) | {shared_ms:.1f} "
              f"({_threads(shared)}) | {shared_ms / alone_ms:.2f}x | {statistics.median(kept):.2f} "
              f"({min(kept):.2f}-{max(kept):.2f}) |")


def _threads(runs: list[dict]) -> str:
    return "/".join(str(count) for count in sorted({run["threads"] for run in runs}))


if __name__ == "__main__":
    main()
