"""The GUI event loop's longest stall while the window trains and plots live.

    python benchmarks/bench_gui_stall.py [--device auto] [--train 2000]

A 10 ms precise QTimer on the GUI thread records the time between its ticks for the whole run, from
just after Start until the run has ended (the worker's run check, data generation, teacher stage,
student stage, evaluations). A tick that comes late means the GUI thread could not run: a stall.
Targets: longest gap ≤ 50 ms, 99th percentile ≤ 20 ms. The run is the throughput benchmark's (a
step event every step, an attention snapshot every 5 steps); torch._dynamo is imported before Start,
as the app does when its window first shows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_gui_throughput import bench_config, leave_a_core_for_the_window, machine_description

HEARTBEAT_MS = 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train", type=int, default=2000, help="demo training images")
    args = parser.parse_args()

    leave_a_core_for_the_window()
    from PySide6 import QtCore, QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    app.setStyle("Fusion")
    from app.main_window import MainWindow
    from app.worker import warm_up_torch

    workdir = Path(tempfile.mkdtemp(prefix="featdistill-bench-"))
    settings = QtCore.QSettings(str(workdir / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    window = MainWindow(config=bench_config(str(workdir / "runs"), args.device, args.train), settings=settings)
    window.show_error_dialogs = False
    window.show()
    window.form.wait_for_layers()
    warm_up_torch()
    print(machine_description())

    ticks: list[float] = []
    heartbeat = QtCore.QTimer()
    heartbeat.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
    heartbeat.setInterval(HEARTBEAT_MS)
    heartbeat.timeout.connect(lambda: ticks.append(time.perf_counter()))
    loop = QtCore.QEventLoop()
    window.runEnded.connect(loop.quit)

    started = time.perf_counter()
    if not window.start_run():
        raise SystemExit(f"the window refused the run: {window.status_text()}")
    start_call_ms = (time.perf_counter() - started) * 1000
    ticks.append(time.perf_counter())
    heartbeat.start()
    loop.exec()
    heartbeat.stop()
    ticks.append(time.perf_counter())
    window.close()

    gaps = np.diff(np.asarray(ticks)) * 1000
    print(f"run: {window.status_text()[:120]}")
    print(f"Start button handler: {start_call_ms:.1f} ms on the GUI thread")
    print(f"heartbeat every {HEARTBEAT_MS} ms over {ticks[-1] - ticks[0]:.1f} s: {gaps.size} gaps; "
          f"median {np.median(gaps):.1f} ms, p99 {np.percentile(gaps, 99):.1f} ms (target ≤ 20), "
          f"max {gaps.max():.1f} ms (target ≤ 50); gaps > 50 ms: {(gaps > 50).sum()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
