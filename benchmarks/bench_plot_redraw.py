"""How long one live update of the loss plot takes as the series grow (run by hand).

For each size (points per curve) the plot is filled with that many steps of 4 curves ("total" and
three components), then each repeat does what one ~20 Hz flush of the window does: append a batch of
new steps (``add_steps``) and repaint the plot (offscreen, as a screen refresh would).
The medians (and the 90th percentile of the total) of the repeats are printed, for raw curves and for smoothed curves on
a log axis (which recompute more per update).

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


def measure(plot, app, rng, points: int, repeats: int) -> tuple[float, list[float], list[float]]:
    """Fill ``plot`` to ``points`` steps, then time ``repeats`` updates.

    Returns the fill rate (steps/s) and, per update, the seconds spent in ``add_steps`` and in
    painting (a synchronous repaint of the plot's viewport, then the event loop drained).
    """
    plot.clear()
    filled, fill_seconds = 0, 0.0
    while filled < points:
        events = make_steps(filled + 1, min(FILL_CHUNK, points - filled), rng)
        start = time.perf_counter()
        plot.add_steps(events)
        fill_seconds += time.perf_counter() - start
        filled += len(events)
    viewport = plot.plot_widget.viewport()
    viewport.repaint()
    app.processEvents()
    adds, paints = [], []
    step = points + 1
    for _ in range(repeats):
        events = make_steps(step, BATCH, rng)
        step += BATCH
        start = time.perf_counter()
        plot.add_steps(events)
        added = time.perf_counter()
        viewport.repaint()
        app.processEvents()
        adds.append(added - start)
        paints.append(time.perf_counter() - added)
    return points / fill_seconds, adds, paints


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
    plot.resize(900, 500)
    plot.show()
    app.processEvents()
    rng = np.random.default_rng(0)

    import PySide6
    import pyqtgraph

    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; Python {platform.python_version()}, PySide6 {PySide6.__version__}, "
          f"pyqtgraph {pyqtgraph.__version__}, Qt platform {os.environ['QT_QPA_PLATFORM']}")
    print(f"one update = add_steps({BATCH} steps × {len(COMPONENTS) + 1} curves) + repaint of a 900×500 plot; "
          f"{args.repeats} repeats\n")
    header = (f"{'points/curve':>12} {'curves':>6} {'mode':>16} {'fill steps/s':>13} {'add ms':>7} "
              f"{'paint ms':>9} {'total ms':>9} {'p90 ms':>7}")
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        points = int(size)
        for mode in ("raw", "ema 0.9 + log y"):
            plot.set_smoothing(0.9 if mode != "raw" else 0.0)
            plot.set_log_y(mode != "raw")
            rate, adds, paints = measure(plot, app, rng, points, args.repeats)
            totals = [a + p for a, p in zip(adds, paints)]
            print(f"{points:>12,} {len(COMPONENTS) + 1:>6} {mode:>16} {rate:>13,.0f} {_median_ms(adds):>7.1f} "
                  f"{_median_ms(paints):>9.1f} {_median_ms(totals):>9.1f} {_p90_ms(totals):>7.1f}", flush=True)
    plot.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
