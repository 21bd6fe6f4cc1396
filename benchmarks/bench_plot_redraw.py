"""How long one live update of the loss plot takes as the series grow (run by hand).

For each size (points per curve) the plot is filled with that many steps of 4 curves ("total" and
three components), then each repeat times, separately:

* live update: what one flush of the window costs: ``add_steps`` with a batch of new steps (long
  curves are handed to pyqtgraph only when their new points would show; the 10 Hz throttle of the
  window's plot is turned off here so that every update is timed) and a repaint;
* full redraw: every curve handed to pyqtgraph again (``redraw(force=True)``: ``setData`` with the
  whole series) and a repaint, the worst case of a live update;
* paint: the repaint alone (offscreen, as a screen refresh would do it).

Medians over the repeats of the wall-clock time (and the 90th percentile and the process CPU time of
the full redraw, steadier than wall time on a busy machine) are printed, for raw curves and for
smoothed curves on a log axis.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_plot_redraw.py [--repeats 15] [--sizes 1e3 1e5 1e6]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from featdistill_core.events import StepEvent  # noqa: E402

COMPONENTS = ("ce", "kd", "at:layer2")        # + "total" = 4 curves
BATCH = 20                                    # steps per flush: ~400 steps/s at 20 Hz, well above a real run
FILL_CHUNK = 50_000


def make_steps(first: int, count: int, rng: np.random.Generator) -> list[StepEvent]:
    noise = rng.random((count, len(COMPONENTS)))
    events = []
    for i in range(count):
        step = first + i
        decay = np.exp(-step / 2e5)
        losses = {name: float(decay * (1.0 + 0.3 * noise[i, j])) for j, name in enumerate(COMPONENTS)}
        events.append(StepEvent("student", step, 1 + step // 1000, 0, losses, sum(losses.values()), 0.05, 0.0))
    return events


def measure(plot, app, rng, points: int, repeats: int) -> tuple[float, dict[str, list[float]]]:
    """Fill ``plot`` to ``points`` steps, then time ``repeats`` updates of each kind (seconds)."""
    plot.clear()
    filled, fill_seconds = 0, 0.0
    while filled < points:
        events = make_steps(filled + 1, min(FILL_CHUNK, points - filled), rng)
        start = time.perf_counter()
        plot.add_steps(events)
        fill_seconds += time.perf_counter() - start
        filled += len(events)
    plot.plot_items()                         # new curves go on the plot one per event-loop turn: all now
    viewport = plot.plot_widget.viewport()

    def paint() -> None:
        viewport.repaint()
        app.processEvents()

    paint()
    times: dict[str, list[float]] = {"live": [], "full": [], "full cpu": [], "paint": []}
    step = points + 1
    for _ in range(repeats):
        events = make_steps(step, BATCH, rng)
        step += BATCH
        start = time.perf_counter()
        plot.add_steps(events)
        paint()
        times["live"].append(time.perf_counter() - start)

        start, start_cpu = time.perf_counter(), time.process_time()
        for curve in plot._curves.values():
            curve.drawn = -1                  # as after a change of smoothing: every curve is out of date
        plot.redraw(force=True)
        paint()
        times["full"].append(time.perf_counter() - start)
        times["full cpu"].append(time.process_time() - start_cpu)

        start = time.perf_counter()
        paint()
        times["paint"].append(time.perf_counter() - start)
    return points / fill_seconds, times


def _median_ms(seconds: list[float]) -> float:
    return 1000 * statistics.median(seconds)


def _p90_ms(seconds: list[float]) -> float:
    ordered = sorted(seconds)
    return 1000 * ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e3, 1e5, 1e6])
    args = parser.parse_args(argv)

    from PySide6 import QtWidgets

    from app.plots import LossPlot

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    plot = LossPlot()
    plot.redraw_interval_s = 0.0              # time every hand-over (the window's plot throttles to 10 Hz)
    plot.resize(900, 500)
    plot.show()
    app.processEvents()
    rng = np.random.default_rng(0)

    import PySide6
    import pyqtgraph

    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; Python {platform.python_version()}, PySide6 {PySide6.__version__}, "
          f"pyqtgraph {pyqtgraph.__version__}, Qt platform {os.environ['QT_QPA_PLATFORM']}")
    print(f"live = add_steps({BATCH} steps × {len(COMPONENTS) + 1} curves) + repaint; full = setData of every "
          f"curve + repaint; plot 900×500 px; {args.repeats} repeats\n")
    header = (f"{'points/curve':>12} {'curves':>6} {'mode':>16} {'fill steps/s':>13} {'live ms':>8} "
              f"{'full ms':>8} {'full p90':>9} {'full cpu':>9} {'paint ms':>9}")
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        points = int(size)
        for mode in ("raw", "ema 0.9 + log y"):
            plot.set_smoothing(0.9 if mode != "raw" else 0.0)
            plot.set_log_y(mode != "raw")
            rate, times = measure(plot, app, rng, points, args.repeats)
            print(f"{points:>12,} {len(COMPONENTS) + 1:>6} {mode:>16} {rate:>13,.0f} "
                  f"{_median_ms(times['live']):>8.1f} {_median_ms(times['full']):>8.1f} "
                  f"{_p90_ms(times['full']):>9.1f} {_median_ms(times['full cpu']):>9.1f} "
                  f"{_median_ms(times['paint']):>9.1f}", flush=True)
    plot.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
