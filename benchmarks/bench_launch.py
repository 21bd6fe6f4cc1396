"""Launch to first window: a fresh ``python -m app`` process until its window has been painted once.

    python benchmarks/bench_launch.py [--runs 5]

Each run starts ``python -m app --exit-when-shown``, which prints a line as soon as its first window
has been painted and another when the workbench window has (then it closes). On Linux the first
window is the starting window, shown before ``import torch`` (see ``app/starting.py``); elsewhere it
is the workbench window. The figures are the wall-clock times from starting the process to reading
each line; the medians of the runs are reported. Target ≤ 1.5 s (Linux). Without a display the app uses Qt's offscreen
platform. A temporary settings file keeps the user's settings out of it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "featdistill-gui: window shown after"
WORKBENCH = "featdistill-gui: workbench shown after"


def launch_once(workdir: Path) -> tuple[float, float, float]:
    """(seconds until the first window's line was read, the app's own count for it, seconds until the
    workbench window's line was read)."""
    env = dict(os.environ)
    env["FEATDISTILL_SETTINGS"] = str(workdir / "settings.ini")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "app", "--exit-when-shown"], cwd=workdir, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    shown = workbench = None
    reported = float("nan")
    for line in process.stdout:
        if line.startswith(MARKER):
            shown = time.perf_counter() - started
            reported = float(line[len(MARKER):].split()[0])
        if line.startswith(WORKBENCH):
            workbench = time.perf_counter() - started
            break
    process.wait(timeout=60)
    if shown is None or workbench is None:
        raise SystemExit(f"the app exited ({process.returncode}) without showing its window")
    return shown, reported, workbench


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_gui_throughput import machine_description

    print(machine_description())
    workdir = Path(tempfile.mkdtemp(prefix="featdistill-launch-"))
    launch_once(workdir)                          # a first start warms the disk cache; not counted
    times, workbenches = [], []
    for run in range(args.runs):
        shown, reported, workbench = launch_once(workdir)
        times.append(shown)
        workbenches.append(workbench)
        print(f"  run {run + 1}: first window after {shown:.2f} s (the app counts {reported:.2f} s from its own "
              f"start); the workbench window after {workbench:.2f} s")
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "unknown"
    print(f"median launch to first window: {statistics.median(times):.2f} s over {args.runs} runs (target ≤ 1.5 s); "
          f"to the workbench window: {statistics.median(workbenches):.2f} s; load average {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
