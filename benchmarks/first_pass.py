"""The got10k tracker's first pass: seconds from ``LoRATTracker(...)`` to the end of its first sequence against a
second sequence of the same length, each case in a fresh process (what a toolkit experiment sees), alternated.

  python benchmarks/first_pass.py --variant B-224 --frames 30 --alternations 3
  python benchmarks/first_pass.py --env default --env LORAT_NO_MALLOC_TUNING=1 --env LORAT_THREADS=torch
  python benchmarks/first_pass.py --busy 1 --env default --env LORAT_THREADS=torch   # one core taken meanwhile

A case is ``default`` (this environment) or ``NAME=VALUE`` settings joined by ``+``; the ratio first / second is
the figure (docs/speed.md, "Shared machines and the first pass").
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from lorat_plugin.process import usable_cpus
from shared_cpu import busy_cores  # the script beside this one

WORKER = r"""
import json, sys, time
start = time.perf_counter()
import torch
from lorat_plugin.data.synthetic import moving_box_video
from lorat_plugin.model import build_model
from lorat_plugin.trackers import LoRATTracker
variant, dtype, frames = sys.argv[1], (None if sys.argv[2] == "default" else sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
model = build_model(variant, merge=True)
built = time.perf_counter()
tracker = LoRATTracker(model, device="cpu", dtype=dtype)
seconds = []
for seed in (1, 2):
    images, truth = moving_box_video(frames, (640, 480), seed=seed, textured=True)
    begin = time.perf_counter() if seconds else built
    tracker.init(images[0], truth[0])
    for image in images[1:]:
        tracker.update(image)
    seconds.append(time.perf_counter() - begin)
print(json.dumps({"first": seconds[0], "second": seconds[1], "import_and_build": built - start}))
"""


def run_case(variant: str, dtype: str, frames: int, case: str) -> dict:
    env = dict(os.environ)
    if case != "default":
        env.update(setting.split("=", 1) for setting in case.split("+"))
    done = subprocess.run([sys.executable, "-c", WORKER, variant, dtype, str(frames)], env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="B-224")
    parser.add_argument("--dtype", default=None, help="default: the CPU's default precision")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--alternations", type=int, default=3)
    parser.add_argument("--env", action="append", default=None, help="a case (repeatable); default: 'default'")
    parser.add_argument("--busy", type=int, default=0, help="cores kept busy by other processes during each case")
    args = parser.parse_args()
    cases = args.env or ["default"]
    dtype = args.dtype or "default"
    print(f"{usable_cpus()} cores, {args.busy} busy; load average before: {os.getloadavg()}")
    results: dict[str, list[dict]] = {case: [] for case in cases}
    for _ in range(args.alternations):
        for case in cases:
            with busy_cores(args.busy):
                results[case].append(run_case(args.variant, dtype, args.frames, case))
    print(f"load average after: {os.getloadavg()}")
    print(f"| case | first sequence s (from LoRATTracker(...)) | second s | first / second: median (range) | "
          f"{args.frames} frames |")
    print("|---|---|---|---|---|")
    for case, runs in results.items():
        first = statistics.median(r["first"] for r in runs)
        second = statistics.median(r["second"] for r in runs)
        ratios = [r["first"] / r["second"] for r in runs]
        print(f"| {case} | {first:.2f} | {second:.2f} | {statistics.median(ratios):.2f}x ({min(ratios):.2f}-"
              f"{max(ratios):.2f}) | |")


if __name__ == "__main__":
    main()
