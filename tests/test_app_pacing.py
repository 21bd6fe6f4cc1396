"""Paced pieces of the window's drawing: one at a time, with the event loop's turn in between."""

from __future__ import annotations

import time

from PySide6 import QtCore

from app import pacing
from app.follow import BURST_EVENTS, _pause_between_bursts
from app.pacing import PACE_GAP_MS, PacedTimer
from featdistill_core import AttentionSnapshot


def _busy(ms: float) -> None:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


def test_pieces_due_together_run_apart_with_the_event_loop_in_between(qtbot):
    pacing.piece_ended()                            # (no earlier piece's gap left over from another test)
    qtbot.wait(PACE_GAP_MS + 5)
    runs: list[tuple[str, float, float]] = []
    ticks: list[float] = []

    def piece(name):
        def run():
            start = time.perf_counter()
            _busy(8)                                   # a piece of drawing work
            runs.append((name, start, time.perf_counter()))
        return run

    timers = []
    for name in ("a", "b", "c"):
        timer = PacedTimer(name=f"piece {name}")
        timer.timeout.connect(piece(name))
        timers.append(timer)
    heartbeat = QtCore.QTimer()
    heartbeat.setInterval(2)
    heartbeat.timeout.connect(lambda: ticks.append(time.perf_counter()))
    heartbeat.start()
    for timer in timers:
        timer.start(0)                                  # all three fall due at once
    assert all(timer.isActive() for timer in timers)
    qtbot.waitUntil(lambda: len(runs) == 3, timeout=2000)
    heartbeat.stop()
    assert sorted(name for name, _, _ in runs) == ["a", "b", "c"]
    runs.sort(key=lambda run: run[1])
    for (_, _, end), (_, start, _) in zip(runs, runs[1:]):
        assert start - end >= PACE_GAP_MS / 1000 - 0.002                  # at least the gap apart ...
        assert any(end < tick < start for tick in ticks)                  # ... and the loop ran in between
    assert not any(timer.isActive() for timer in timers)


def test_a_piece_waiting_for_its_turn_can_be_stopped_and_a_repeating_one_repeats(qtbot):
    ran = []
    waiting = PacedTimer()
    waiting.timeout.connect(lambda: ran.append("stopped one"))
    pacing.piece_ended()                                # a piece just ended: the next one waits
    waiting.start(0)
    qtbot.wait(5)
    assert waiting.isActive() and 0 <= waiting.remainingTime() <= PACE_GAP_MS
    waiting.stop()
    assert not waiting.isActive()
    repeating = PacedTimer(interval_ms=30, single_shot=False)
    repeating.timeout.connect(lambda: ran.append("repeating"))
    repeating.start()
    qtbot.waitUntil(lambda: ran.count("repeating") >= 3, timeout=2000)
    repeating.stop()
    assert "stopped one" not in ran and repeating.interval() == 30 and not repeating.isSingleShot()


def test_following_live_reads_events_in_bursts(monkeypatch):
    sleeps = []
    monkeypatch.setattr("app.follow.time.sleep", lambda s: sleeps.append(s))
    between = _pause_between_bursts()
    for _ in range(3 * BURST_EVENTS):
        between(object())
    assert len(sleeps) == 3                             # one pause per burst of steps ...
    snapshot = AttentionSnapshot.__new__(AttentionSnapshot)
    between(snapshot)
    assert len(sleeps) == 4                             # ... and one after every snapshot (its arrays load slowly)


class _PaintCounter(QtCore.QObject):
    def __init__(self):
        super().__init__()
        self.paints = 0

    def eventFilter(self, watched, event):  # noqa: N802 (Qt override)
        if event.type() == QtCore.QEvent.Type.Paint:
            self.paints += 1
        return False


def test_a_progress_bar_moved_by_repaint_later_repaints_on_the_next_turn_not_at_once(qtbot):
    from PySide6 import QtWidgets

    bar = QtWidgets.QProgressBar()
    bar.setRange(0, 100)
    qtbot.addWidget(bar)
    bar.show()
    qtbot.waitExposed(bar)
    counter = _PaintCounter()
    bar.installEventFilter(counter)
    qtbot.wait(50)
    counter.paints = 0
    bar.setValue(10)                          # Qt's own: a synchronous repaint, inside the caller
    assert counter.paints == 1
    pacing.repaint_later(bar, bar.setValue, 20)
    assert counter.paints == 1 and bar.value() == 20 and bar.updatesEnabled()
    qtbot.waitUntil(lambda: counter.paints == 2, timeout=2000)     # ... painted on the next turn
