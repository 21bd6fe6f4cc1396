"""Launch to first window of the PyInstaller bundle, and the bundle's size. Run by hand after a build:

    scripts/build_bundle.sh                                  # builds dist/featdistill/
    .venv/bin/python benchmarks/bench_bundle_launch.py       # median of 5 launches
    .venv/bin/python benchmarks/bench_bundle_launch.py --runs 9 --tar-size --source

Each launch runs ``dist/featdistill/featdistill --exit-when-shown`` in an empty environment, as on a
machine without Python (``env -i PATH=/usr/bin:/bin HOME=<temporary folder>``). The app prints
``window shown after X s`` once the main window has been painted and then quits; measured here:

* ``shown``: wall time from starting the process to that line (what a user waits for);
* ``app``: the app's own figure (from the start of its entry module, so without the bootloader's
  unpacking and Python's start);
* ``exit``: wall time until the process has ended.

A first launch warms the file cache and is reported apart (``cold``); the median is over the runs
after it. Without a display the window is painted by Qt's offscreen platform; ``--display`` keeps
``DISPLAY``/``WAYLAND_DISPLAY`` (for an X server or Xvfb). ``--source`` also times ``python -m app``
from the checkout, for comparison. ``--tar-size`` also reports the bundle's size as ``.tar.gz``
(takes ~half a minute). Target (README): first window <= 3 s.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHOWN = re.compile(r"window shown after ([0-9.]+) s")


def folder_size(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (links not followed), like ``du --apparent-size``."""
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def tar_gz_size(folder: Path) -> int:
    """Bytes of ``folder`` packed as .tar.gz (gzip level 6), written to a temporary file and removed."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "bundle.tar.gz"
        with gzip.open(archive, "wb", compresslevel=6) as raw, tarfile.open(fileobj=raw, mode="w") as tar:
            tar.add(folder, arcname=folder.name)
        return archive.stat().st_size


def scrubbed_environment(home: str, keep_display: bool) -> dict[str, str]:
    """What ``env -i PATH=/usr/bin:/bin HOME=...`` leaves, plus the display variables if asked."""
    env = {"PATH": "/usr/bin:/bin", "HOME": home}
    if keep_display:
        env.update({k: os.environ[k] for k in ("DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY") if k in os.environ})
    return env


def launch_once(command: list[str], env: dict[str, str], timeout_s: float) -> tuple[float, float | None, float]:
    """``(shown, app, exit)`` seconds for one launch; raises RuntimeError when no window was shown."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    shown, app_figure, output = None, None, []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            match = SHOWN.search(line)
            if match and shown is None:
                shown = time.perf_counter() - started
                app_figure = float(match.group(1))
            if time.perf_counter() - started > timeout_s:
                break
        process.wait(timeout=max(1.0, timeout_s - (time.perf_counter() - started)))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    exited = time.perf_counter() - started
    if shown is None:
        tail = "".join(output[-15:])
        raise RuntimeError(f"{command[0]} exited {process.returncode} without showing its window:\n{tail}")
    return shown, app_figure, exited


def measure(label: str, command: list[str], runs: int, keep_display: bool, timeout_s: float) -> dict:
    results = []
    with tempfile.TemporaryDirectory(prefix="featdistill-bench-home-") as home:
        env = scrubbed_environment(home, keep_display)
        if label == "source":  # the checkout's venv Python needs nothing else, but keep the scrubbed rest
            env["PYTHONPATH"] = str(ROOT)
        cold = launch_once(command, env, timeout_s)
        for _ in range(runs):
            results.append(launch_once(command, env, timeout_s))
    shown = [r[0] for r in results]
    apps = [r[1] for r in results if r[1] is not None]
    exits = [r[2] for r in results]
    summary = {
        "label": label, "cold_shown_s": cold[0], "median_shown_s": statistics.median(shown),
        "min_shown_s": min(shown), "max_shown_s": max(shown),
        "median_app_s": statistics.median(apps) if apps else None, "median_exit_s": statistics.median(exits),
    }
    print(f"{label:>7}: first window {summary['median_shown_s']:.2f} s median of {runs} "
          f"(min {summary['min_shown_s']:.2f}, max {summary['max_shown_s']:.2f}; cold {cold[0]:.2f}); "
          f"app's own figure {summary['median_app_s'] or float('nan'):.2f} s; "
          f"process ended after {summary['median_exit_s']:.2f} s")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "dist" / "featdistill", help="the onedir bundle folder")
    parser.add_argument("--runs", type=int, default=5, help="launches after the cold one (default 5)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds one launch may take")
    parser.add_argument("--display", action="store_true", help="keep DISPLAY/WAYLAND_DISPLAY (default: offscreen)")
    parser.add_argument("--source", action="store_true", help="also time `python -m app` from the checkout")
    parser.add_argument("--tar-size", action="store_true", help="also report the bundle's size as .tar.gz")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    executable = args.bundle / ("featdistill.exe" if sys.platform == "win32" else "featdistill")
    if not executable.is_file():
        print(f"no bundle at {executable}: build it first with scripts/build_bundle.sh", file=sys.stderr)
        return 1

    size = folder_size(args.bundle)
    print(f" bundle: {args.bundle} is {size / 1e6:.0f} MB unpacked ({size / 2**20:.0f} MiB)")
    if args.tar_size:
        packed = tar_gz_size(args.bundle)
        print(f" bundle: {packed / 1e6:.0f} MB as .tar.gz ({packed / 2**20:.0f} MiB)")

    try:
        measure("bundle", [str(executable), "--exit-when-shown"], args.runs, args.display, args.timeout)
        if args.source:
            measure("source", [sys.executable, "-m", "app", "--exit-when-shown"], args.runs, args.display, args.timeout)
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
