"""The GUI event loop's longest stall while the window trains and plots live.

    python benchmarks/bench_gui_stall.py [--device auto] [--train 2000] [--repeats 1] [--profile | --events]

The window is shown and left to paint itself for half a second, as a user sees it before pressing
Start. A 10 ms precise QTimer on the GUI thread records the time between its ticks for the whole
run, from just after Start until the run has ended (the worker's run check, data generation,
teacher stage, student stage, evaluations). A tick that comes late means the GUI thread could not
run: a stall.
Targets: longest gap ≤ 33 ms, 99th percentile ≤ 17 ms, and the GUI thread's CPU time ≤ 5 % of the
run's CPU time (the training process's; with ``--thread``, training on the window's worker thread as 0.1
did, the window's whole process's). The run is the throughput benchmark's (a
step event every step, an attention snapshot every 5 steps); torch._dynamo is imported before Start,
as the app does when its window first shows. The machine's load average is printed before and
after each run: on a shared machine, other processes' work shows up as stalls too.

``--profile`` also times, on the GUI thread, every hand-over of the worker's events to the widgets
(each widget's handler separately) and every repaint of a plot view, and prints which of them ran
during the gaps longer than 17 ms (the p99 target); what no timed call covers is other Qt work or waiting for the
CPU (with ``--thread``, the training thread holds Python's GIL between its torch calls).
``--events`` also times every outermost event Qt hands to an object that takes over 1 ms (a scene's
processing and repaint, a paced piece's timer by the piece's name, a layout request): the work no
wrapped method covers. Both add their own cost to what they time; quote the plain runs' figures.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench_gui_throughput import bench_config, children_cpu, leave_a_core_for_the_window, machine_description

HEARTBEAT_MS = 10
SETTLE_MS = 500            # the window is shown and idle this long before Start
LONG_GAP_MS = 17.0       # the p99 target: what the gaps above it hold
DRAIN = "worker.drain (all handlers)"
UNTIMED = "(no timed call: Qt, other threads, CPU)"
FOLLOWER = "follower thread: RunFollower.poll"


class CallClock:
    """Records ``(name, start, end)`` of every call of the methods it wraps (the GUI thread's, and the
    follower thread's reading of the run folder), and the thread's CPU time each call took (steady under
    load, where wall times stretch)."""

    def __init__(self):
        self.spans: list[tuple[str, float, float]] = []
        self.cpu: dict[str, list[float]] = defaultdict(list)

    def wrap(self, cls, method: str, name=None) -> None:
        """Time every call of ``cls.method`` as ``name`` (a string, or a function of the instance);
        a method the class does not have (an older version of a widget) is left out."""
        original = getattr(cls, method, None)
        if original is None:
            return
        spans, cpu = self.spans, self.cpu

        @functools.wraps(original)
        def timed(this, *args, **kwargs):
            start, start_cpu = time.perf_counter(), time.thread_time()
            try:
                return original(this, *args, **kwargs)
            finally:
                label = name(this) if callable(name) else (name or f"{cls.__name__}.{method}")
                spans.append((label, start, time.perf_counter()))
                cpu[label].append(time.thread_time() - start_cpu)

        setattr(cls, method, timed)

    def report(self, ticks: np.ndarray) -> str:
        """Per-call statistics, then how much of the long gaps each kind of call covers."""
        by_name: dict[str, list[float]] = defaultdict(list)
        for label, start, end in self.spans:
            by_name[label].append((end - start) * 1000)
        lines = [f"{'call (GUI thread)':<36} {'count':>6} {'median ms':>10} {'p99 ms':>8} {'max ms':>8} "
                 f"{'total s':>8} {'CPU p99':>8} {'CPU max':>8}"]
        for label, times in sorted(by_name.items(), key=lambda kv: -sum(kv[1])):
            t = np.asarray(times)
            c = np.asarray(self.cpu[label]) * 1000
            lines.append(f"{label:<36} {t.size:>6} {np.median(t):>10.1f} {np.percentile(t, 99):>8.1f} "
                         f"{t.max():>8.1f} {t.sum() / 1000:>8.2f} {np.percentile(c, 99):>8.1f} {c.max():>8.1f}")
        gaps = np.diff(ticks) * 1000
        long = np.flatnonzero(gaps > LONG_GAP_MS)
        covered: dict[str, float] = defaultdict(float)
        largest: dict[str, int] = defaultdict(int)      # long gaps by the timed call that took most of them
        uncovered = 0.0
        spans = sorted(self.spans, key=lambda s: s[1])
        starts = np.asarray([s[1] for s in spans])
        for i in long:
            a, b = ticks[i], ticks[i + 1]
            first = max(0, int(np.searchsorted(starts, a - 5.0)))
            inside = [(label, max(s, a), min(e, b)) for label, s, e in spans[first:np.searchsorted(starts, b)]
                      if e > a and s < b]
            outer = _outermost(inside)
            for label, s, e in inside:
                covered[label] += (e - s) * 1000
            left = (b - a) * 1000 - sum((e - s) * 1000 for _, s, e in outer)
            uncovered += left
            handlers = [(e - s, label) for label, s, e in inside if label != DRAIN]
            top = max(handlers) if handlers else (0.0, "")
            largest[top[1] if top[0] * 1000 >= left else UNTIMED] += 1
        total = gaps[long].sum()
        lines.append(f"\n{long.size} gaps > {LONG_GAP_MS:.0f} ms, {total:.0f} ms in all; time in them covered by:")
        for label, ms in sorted(covered.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {label:<40} {ms:8.0f} ms ({100 * ms / max(total, 1e-9):4.1f} %)")
        lines.append(f"  {UNTIMED:<40} {uncovered:8.0f} ms ({100 * uncovered / max(total, 1e-9):4.1f} %)")
        lines.append("long gaps by what took most of them: " + ", ".join(
            f"{label} {count}" for label, count in sorted(largest.items(), key=lambda kv: -kv[1])))
        worst = long[np.argsort(gaps[long])[::-1][:5]]
        for i in worst:
            a, b = ticks[i], ticks[i + 1]
            inside = sorted(((label, (min(e, b) - max(s, a)) * 1000) for label, s, e in self.spans if e > a and s < b),
                            key=lambda kv: -kv[1])
            calls = ", ".join(f"{label} {ms:.0f}" for label, ms in inside[:6]) or "no timed call"
            lines.append(f"  gap {gaps[i]:6.1f} ms at {a - ticks[0]:5.1f} s: {calls}")
        return "\n".join(lines)


def _outermost(spans):
    """The spans not nested in another (a handler runs inside the worker's drain)."""
    out = []
    for label, s, e in sorted(spans, key=lambda x: (x[1], -x[2])):
        if out and s >= out[-1][1] and e <= out[-1][2]:
            continue
        out.append((label, s, e))
    return out


def _view_name(view) -> str:
    widget = view
    while widget is not None and not widget.objectName():
        widget = widget.parentWidget()
    return f"paint {widget.objectName() if widget is not None else type(view).__name__}"


def instrument() -> CallClock:
    """Wrap the flush handlers, the widgets' deferred drawing (private methods, named after what they
    do) and the plot views' paintEvent; before the window is built."""
    import pyqtgraph as pg

    from app.attention_scene import AttentionScene
    from app.attention_view import AttentionView
    from app.main_window import MainWindow
    from app.plots import AccuracyPlot, LossPlot
    from app.worker import GuiGarbage, TrainingWorker

    clock = CallClock()
    clock.wrap(TrainingWorker, "drain", DRAIN)
    clock.wrap(GuiGarbage, "collect_due", "GuiGarbage.collect_due")
    from featdistill_core import RunFollower

    clock.wrap(RunFollower, "poll", FOLLOWER)                 # on the follower thread: holds the GIL meanwhile
    clock.wrap(LossPlot, "add_steps", "LossPlot.add_steps")
    clock.wrap(LossPlot, "redraw", "LossPlot.redraw")
    clock.wrap(AccuracyPlot, "add_epochs", "AccuracyPlot.add_epochs")
    clock.wrap(AccuracyPlot, "_redraw", "AccuracyPlot: draw epochs")                # a turn after add_epochs
    clock.wrap(AttentionView, "add_snapshots", "AttentionView.add_snapshots")
    clock.wrap(AttentionView, "_render_pending", "AttentionView: draw snapshot")     # a turn after add_snapshots
    clock.wrap(AttentionScene, "_build_next", "AttentionView: build a pair")          # four turns a pair:
    clock.wrap(AttentionScene, "_make_block", "AttentionView: build: make a pair")     # made,
    clock.wrap(AttentionScene, "_place_block", "AttentionView: build: add a pair")     # added,
    clock.wrap(AttentionScene, "fit", "AttentionView: build: lay out")                # laid out,
    clock.wrap(AttentionScene, "_show_blocks", "AttentionView: build: fill")          # filled
    clock.wrap(LossPlot, "_place_next", "LossPlot: put a curve on")                 # one curve per turn
    clock.wrap(MainWindow, "_show_progress", "MainWindow._show_progress")
    clock.wrap(MainWindow, "_epochs_received", "MainWindow._epochs_received")
    clock.wrap(MainWindow, "_stage_started", "MainWindow._stage_started")
    clock.wrap(pg.GraphicsView, "paintEvent", _view_name)
    return clock


def _receiver_name(receiver) -> str:
    """A receiver's class, and for a plot's or the maps' scene the widget it is drawn in."""
    name = type(receiver).__name__
    views = getattr(receiver, "views", None)
    if callable(views) and views():
        name += " of " + _view_name(views()[0]).removeprefix("paint ")
    elif type(receiver).__name__ == "QTimer" and receiver.parent() is not None:
        owner = receiver.parent()         # a PacedTimer's inner timer: the piece it runs, by name
        name += f" of {owner.objectName() or type(owner).__name__}"
    return name


def traced_application(clock: CallClock):
    """A QApplication class that records, in ``clock``, every outermost event taking over 1 ms
    (``"event <type> → <receiver class>"``): the Qt work no wrapped method covers (layouts, repaints
    of other widgets, the scene's bookkeeping)."""
    from PySide6 import QtWidgets

    depth = [0]

    class TracedApplication(QtWidgets.QApplication):
        def notify(self, receiver, event):
            depth[0] += 1
            start, start_cpu = time.perf_counter(), time.thread_time()
            kind = event.type()
            try:
                return super().notify(receiver, event)
            finally:
                depth[0] -= 1
                end = time.perf_counter()
                if depth[0] == 0 and end - start > 0.001:
                    label = f"event {kind.name} → {_receiver_name(receiver)}"
                    clock.spans.append((label, start, end))
                    clock.cpu[label].append(time.thread_time() - start_cpu)

    return TracedApplication


def load_average() -> str:
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average unknown"


def timed_finish() -> None:
    """Record on the window when it starts handling the run's end (the end of "while training")."""
    from app.main_window import MainWindow

    original = MainWindow._run_finished
    if getattr(original, "timed", False):
        return

    @functools.wraps(original)
    def run_finished(self, event):
        self.finish_started_at = time.perf_counter()
        return original(self, event)

    run_finished.timed = True
    MainWindow._run_finished = run_finished


def _when(moment: float, stage_starts: list[tuple[str, float]]) -> str:
    """Where a gap ending at ``moment`` was: "(2.31 s into the student stage)"."""
    before = [(name, at) for name, at in stage_starts if at <= moment]
    if not before:
        return "(before the first stage)"
    name, at = before[-1]
    return f"({moment - at:.2f} s into the {name} stage)"


def one_run(args, clock: CallClock | None) -> tuple[np.ndarray, np.ndarray]:
    """Train once in a fresh window with the heartbeat running; returns the gaps in ms (Start to end,
    and while training: between the first stage's start and the run's end reaching the window)."""
    from PySide6 import QtCore

    from app.main_window import MainWindow

    timed_finish()

    workdir = Path(tempfile.mkdtemp(prefix="featdistill-bench-"))
    settings = QtCore.QSettings(str(workdir / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    window = MainWindow(config=bench_config(str(workdir / "runs"), args.device, args.train), settings=settings)
    window.show_error_dialogs = False
    window.prompt_unsaved = False
    window.worker.in_process = args.thread
    window.baseline_box.setChecked(False)          # the run alone, as the throughput benchmark times it
    window.show()
    window.form.wait_for_layers()
    settle = QtCore.QEventLoop()         # the window's first paint, long done when a user presses Start
    QtCore.QTimer.singleShot(SETTLE_MS, settle.quit)
    settle.exec()

    ticks: list[float] = []
    heartbeat = QtCore.QTimer()
    heartbeat.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
    heartbeat.setInterval(HEARTBEAT_MS)
    heartbeat.timeout.connect(lambda: ticks.append(time.perf_counter()))
    loop = QtCore.QEventLoop()
    window.runEnded.connect(loop.quit)
    training: list[float] = []           # when the first stage's start and the run's end reached the window
    window.worker.stageStarted.connect(lambda _e: training.append(time.perf_counter()) if not training else None)
    stage_starts: list[tuple[str, float]] = []      # each stage's start reaching the window (to place long gaps)
    window.worker.stageStarted.connect(lambda e: stage_starts.append((str(getattr(e.stage, "value", e.stage)), time.perf_counter())))
    window.finish_started_at = None      # set by the wrapped _run_finished (see timed_finish)

    print(f"before the run: {load_average()}")
    if clock is not None:
        clock.spans.clear()
        clock.cpu.clear()
    started = time.perf_counter()
    started_cpu = time.thread_time()
    started_process = time.process_time()
    started_children = children_cpu()
    if not window.start_run():
        raise SystemExit(f"the window refused the run: {window.status_text()}")
    start_call_ms = (time.perf_counter() - started) * 1000
    ticks.append(time.perf_counter())
    heartbeat.start()
    loop.exec()
    heartbeat.stop()
    ticks.append(time.perf_counter())
    gui_cpu = time.thread_time() - started_cpu
    process_cpu = time.process_time() - started_process
    run_cpu = process_cpu if args.thread else children_cpu() - started_children
    window.close()
    print(f"after the run:  {load_average()}")

    stamps = np.asarray(ticks)
    gaps = np.diff(stamps) * 1000
    print(f"run: {window.status_text()[:120]}")
    print(f"Start button handler: {start_call_ms:.1f} ms on the GUI thread")
    print(f"heartbeat every {HEARTBEAT_MS} ms over {stamps[-1] - stamps[0]:.1f} s: {gaps.size} gaps; "
          f"median {np.median(gaps):.1f} ms, p99 {np.percentile(gaps, 99):.1f} ms (target ≤ 17), "
          f"max {gaps.max():.1f} ms (target ≤ 33); gaps > 33 ms: {(gaps > 33).sum()}; gaps > 17 ms: "
          f"{(gaps > 17).sum()}", flush=True)
    whose = "the window's process (training on its thread)" if args.thread else "the training process"
    if training and window.finish_started_at is not None:
        training.append(window.finish_started_at)
        inside = (stamps[:-1] >= training[0]) & (stamps[1:] <= training[-1])
        during = gaps[inside]
        print(f"while training (first stage started → the run's end handled, {training[-1] - training[0]:.1f} s): p99 "
              f"{np.percentile(during, 99):.1f} ms (target ≤ 17), max {during.max():.1f} ms (target ≤ 33); gaps > 33 ms: "
              f"{(during > 33).sum()}; gaps > 17 ms: {(during > 17).sum()}", flush=True)
        ends = stamps[1:][inside]
        longest = np.argsort(during)[::-1][:3]
        print("  longest: " + "; ".join(f"{during[i]:.1f} ms {_when(ends[i], stage_starts)}" for i in longest))
    print(f"GUI thread CPU time (this benchmark's own {gaps.size} heartbeat ticks included): {gui_cpu:.2f} s = {100 * gui_cpu / max(run_cpu, 1e-9):.1f} % of the run's CPU time "
          f"({run_cpu:.1f} s, {whose}; target ≤ 5 %), {100 * gui_cpu / (stamps[-1] - stamps[0]):.1f} % of the "
          f"wall time; the window's whole process: {process_cpu:.1f} s")
    if clock is not None:
        print(clock.report(stamps), flush=True)
    return gaps, (during if len(training) >= 2 else gaps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train", type=int, default=2000, help="demo training images")
    parser.add_argument("--repeats", type=int, default=1, help="runs, each in a fresh window")
    parser.add_argument("--profile", action="store_true", help="time the flush handlers and the repaints")
    parser.add_argument("--events", action="store_true",
                        help="--profile, and time every event Qt hands to a widget or object that takes over 1 ms")
    parser.add_argument("--thread", action="store_true",
                        help="train on the window's worker thread, in its process (FEATDISTILL_TRAIN_IN_WINDOW=1)")
    args = parser.parse_args()

    leave_a_core_for_the_window()
    from PySide6 import QtWidgets

    clock = instrument() if args.profile or args.events else None
    app = QtWidgets.QApplication.instance() or (traced_application(clock) if args.events else QtWidgets.QApplication)([])
    app.setStyle("Fusion")
    from app.worker import warm_up_torch

    warm_up_torch()
    print(machine_description())
    results = []
    for repeat in range(args.repeats):
        print(f"\n-- run {repeat + 1}/{args.repeats}")
        gaps, during = one_run(args, clock)
        results.append((np.median(gaps), np.percentile(gaps, 99), gaps.max(), np.percentile(during, 99), during.max()))
    if args.repeats > 1:
        medians, p99s, maxima, p99t, maxt = zip(*results)
        print(f"\nover {args.repeats} runs, Start to end: median {np.median(medians):.1f} ms; "
              f"p99 {min(p99s):.1f}–{max(p99s):.1f} ms; max {min(maxima):.1f}–{max(maxima):.1f} ms; while training: "
              f"p99 {min(p99t):.1f}–{max(p99t):.1f} ms; max {min(maxt):.1f}–{max(maxt):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
