"""The window's runs train in a process of their own: events, pause, resume, stop, a killed process,
closing the window, the control pipe, and the frozen app taking the training command.

These use the real ``featdistill train --control stdin`` started by the worker (no fakes): each test
costs a process start (importing torch, about two seconds) plus a tiny run.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from featdistill_core import (
    PAUSE, RESUME, STOP, Finished, StepEvent, load_run, obey_commands, run_status, start_training_process,
)

from app.worker import IN_WINDOW_ENV, TrainingWorker
from tests._tiny import tiny_config

pytestmark = pytest.mark.skipif(os.name != "posix", reason="kills the training process with POSIX signals")


@pytest.fixture
def worker(qtbot, monkeypatch):
    monkeypatch.delenv(IN_WINDOW_ENV, raising=False)
    w = TrainingWorker()
    yield w
    w.stop()
    assert w.wait(60)
    child = w.training_process
    assert child is None or child.poll() is not None, "a training process outlived its test"


class Seen:
    def __init__(self, worker):
        self.steps: list[StepEvent] = []
        self.finished: list = []
        self.failed: list = []
        self.started: list[str] = []
        worker.stepsReceived.connect(self.steps.extend)
        worker.finished.connect(self.finished.append)
        worker.failed.connect(self.failed.append)
        worker.runStarted.connect(self.started.append)


def _longer(tmp_path, epochs=6, images=512):
    config = tiny_config(tmp_path, epochs=epochs)
    config.data.demo_train = images
    return config


def _student_steps(run_dir) -> int:
    """Student steps the run folder holds so far (0 before its log exists)."""
    try:
        return sum(1 for e in load_run(run_dir).steps if e.stage == "student")
    except Exception:  # noqa: BLE001 - not written yet
        return 0


def _has_steps(seen, count: int) -> bool:
    return bool(seen.started) and _student_steps(seen.started[0]) >= count


def test_a_run_trains_in_a_process_of_its_own_and_arrives_like_a_thread_run(qtbot, worker, tmp_path):
    assert not worker.in_process
    seen = Seen(worker)
    with qtbot.waitSignal(worker.runEnded, timeout=120000):
        worker.start(tiny_config(tmp_path))
    assert not seen.failed, seen.failed[0].details if seen.failed else ""
    assert len(seen.finished) == 1 and not seen.finished[0].stopped
    assert "student_test_acc" in seen.finished[0].metrics
    child = worker.training_process
    assert child is not None and child.pid != os.getpid() and child.poll() == 0
    assert "--control" in child.argv and "featdistill_core" in child.argv
    assert all(not Path(p).exists() for p in child.temporary)          # the run file copy is gone
    run_dir = Path(seen.started[0])
    assert run_dir.parent == tmp_path / "runs"
    record = load_run(run_dir)
    assert record.finished is not None
    steps = [(e.stage, e.step) for e in seen.steps]
    assert steps == [(e.stage, e.step) for e in record.steps]          # every step, in order, once
    assert [e.stage for e in record.stages] == ["teacher", "student"]
    assert worker.record is None            # the follower holds the run's record; the worker keeps no copy
    ended = worker.ended_run                # ... and its thread read the ended folder once, for the window
    assert ended is not None and Path(ended.run_dir) == run_dir
    assert ended.record.finished.metrics == record.finished.metrics and ended.record.snapshots == []
    assert ended.stamp == (run_dir / "metrics.jsonl").stat().st_mtime


def test_pause_holds_the_training_process_and_resume_continues_it(qtbot, worker, tmp_path):
    seen = Seen(worker)
    worker.start(_longer(tmp_path))
    qtbot.waitUntil(lambda: _has_steps(seen, 3), timeout=120000)
    worker.pause()
    assert worker.paused
    time.sleep(1.0)                                      # the step under way ends, then it holds
    held = _student_steps(seen.started[0])
    time.sleep(2.0)
    assert _student_steps(seen.started[0]) == held
    assert worker.training_process.poll() is None
    with qtbot.waitSignal(worker.runEnded, timeout=120000):
        worker.resume()
    assert len(seen.finished) == 1 and not seen.finished[0].stopped
    assert _student_steps(seen.started[0]) > held


def test_stop_ends_the_process_with_its_checkpoint_so_the_run_can_be_resumed(qtbot, worker, tmp_path):
    seen = Seen(worker)
    worker.start(_longer(tmp_path, epochs=20))
    qtbot.waitUntil(lambda: _has_steps(seen, 2), timeout=120000)
    worker.pause()                                       # a paused run wakes up to stop
    with qtbot.waitSignal(worker.runEnded, timeout=120000):
        worker.stop()
    assert len(seen.finished) == 1 and seen.finished[0].stopped
    assert worker.training_process.poll() is not None
    status = run_status(seen.started[0])
    assert status.state == "stopped" and status.resumable

    resumed = Seen(worker)                               # and Resume continues it, in a process too
    with qtbot.waitSignal(worker.runEnded, timeout=180000):
        worker.start_resume(seen.started[0])
    assert not resumed.failed, resumed.failed[0].details if resumed.failed else ""
    assert len(resumed.finished) == 1 and not resumed.finished[0].stopped
    assert run_status(seen.started[0]).state == "finished"


def test_a_killed_training_process_is_reported_not_waited_for(qtbot, worker, tmp_path):
    seen = Seen(worker)
    worker.start(_longer(tmp_path, epochs=50))
    qtbot.waitUntil(lambda: _has_steps(seen, 1), timeout=120000)
    with qtbot.waitSignal(worker.runEnded, timeout=60000):
        os.kill(worker.training_process.pid, signal.SIGKILL)
    assert len(seen.failed) == 1 and not seen.finished
    assert "training process ended" in seen.failed[0].error
    assert run_status(seen.started[0]).resumable


def test_closing_the_window_stops_its_training_process(qtbot, tmp_path, monkeypatch):
    from PySide6 import QtCore

    from app.main_window import MainWindow

    monkeypatch.delenv(IN_WINDOW_ENV, raising=False)
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    window = MainWindow(config=_longer(tmp_path, epochs=50), settings=settings)
    window.show_error_dialogs = False
    window.prompt_unsaved = False
    qtbot.addWidget(window)
    window.show()
    window.form.wait_for_layers()
    window.baseline_box.setChecked(False)
    assert window.start_run()
    qtbot.waitUntil(lambda: bool(window.worker.run_dir) and _student_steps(window.worker.run_dir) >= 1,
                    timeout=120000)
    child, run_dir = window.worker.training_process, window.worker.run_dir
    window.close()
    assert child.poll() is not None                      # waited for: stopped, not orphaned
    assert run_status(run_dir).state == "stopped"


def test_the_control_pipe_pauses_resumes_stops_and_its_end_stops():
    calls = []

    class Trainer:
        def pause(self):
            calls.append(PAUSE)

        def resume(self):
            calls.append(RESUME)

        def request_stop(self):
            calls.append(STOP)

    read, write = os.pipe()
    thread = threading.Thread(target=obey_commands, args=(read, Trainer()), daemon=True)
    thread.start()
    os.write(write, b"pause\nnonsense\nRESUME\r\nst")
    os.write(write, b"op\n")
    time.sleep(0.2)
    assert calls == [PAUSE, RESUME, STOP]
    os.close(write)                                      # whoever started it is gone: stop
    thread.join(5)
    os.close(read)
    assert not thread.is_alive() and calls == [PAUSE, RESUME, STOP, STOP]


def test_a_training_process_stops_when_its_starter_goes_away(tmp_path):
    config = _longer(tmp_path, epochs=50)
    from featdistill_core import new_run_folder

    run_dir = new_run_folder(config)
    process = start_training_process(config, run_dir)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (run_dir / "metrics.jsonl").exists():
            time.sleep(0.2)
        process.process.stdin.close()                    # as when the window's process dies
        assert process.wait(120) is not None
    finally:
        process.stop()
        process.wait(30)
        process.close()
    assert run_status(run_dir).state == "stopped"
    assert run_status(run_dir).resumable


def test_the_frozen_app_runs_the_training_command(capsys):
    import app.__main__ as entry

    assert entry.main(["-m", "featdistill_core", "methods"]) == 0
    assert "attention" in capsys.readouterr().out.lower()
    assert sys.executable                               # the command the worker starts: this interpreter
