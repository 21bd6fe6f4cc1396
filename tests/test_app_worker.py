"""The training worker: background thread, coalesced delivery on the GUI thread, pause/stop, errors.

A fake trainer with the real Trainer's control interface stands in where the test is about the
worker itself (speed of events, failure on demand); one test uses the real run check.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from featdistill_core import ConfigError, Failed, Finished, StageStarted, StepEvent, ValidatedRun, demo_config
from featdistill_core.control import RunControl, StopRequested

from app.worker import DRAIN_HZ, TrainingWorker, config_error_from_failed


class FakeTrainer:
    """Emits ``steps`` step events, honouring pause and stop like the real trainer."""

    steps = 200
    delay = 0.0
    gate: threading.Event | None = None
    fail_at: int | None = None

    def __init__(self, config, run_dir=None):
        self.config = config
        self.run_dir = Path(run_dir or "fake-run")
        self._subscribers = []
        self._control = RunControl()

    def subscribe(self, callback):
        self._subscribers.append(callback)

    def emit(self, event):
        for callback in self._subscribers:
            callback(event)

    def request_stop(self):
        self._control.request_stop()

    def pause(self):
        self._control.pause()

    def resume(self):
        self._control.resume()

    @property
    def paused(self):
        return self._control.paused

    def run(self):
        if self.gate is not None:
            self.gate.wait(10)
        self.emit(StageStarted("student", 1, self.steps, self.steps, str(self.run_dir)))
        try:
            for step in range(1, self.steps + 1):
                self._control.checkpoint()
                if step == self.fail_at:
                    raise RuntimeError(f"exploded at step {step}")
                self.emit(StepEvent("student", step, 1, self.steps, {"ce": 1.0 / step}, 1.0 / step, 0.1, 640.0))
                if self.delay:
                    time.sleep(self.delay)
        except StopRequested:
            finished = Finished(metrics={}, run_dir=str(self.run_dir), stopped=True)
            self.emit(finished)
            return finished
        except Exception as exc:
            self.emit(Failed(error=str(exc), kind=type(exc).__name__, run_dir=str(self.run_dir)))
            raise
        finished = Finished(metrics={"student_test_acc": 50.0}, run_dir=str(self.run_dir))
        self.emit(finished)
        return finished


def fake(**attributes):
    return type("Fake", (FakeTrainer,), attributes)


@pytest.fixture
def worker(qtbot):
    w = TrainingWorker()
    yield w
    w.stop()
    w.wait(10)


class Recorder:
    def __init__(self, worker):
        self.step_batches: list[list] = []
        self.finished: list = []
        self.failed: list = []
        self.refused: list = []
        worker.stepsReceived.connect(self.step_batches.append)
        worker.finished.connect(self.finished.append)
        worker.failed.connect(self.failed.append)
        worker.refused.connect(self.refused.append)

    @property
    def steps(self):
        return [event.step for batch in self.step_batches for event in batch]


def test_many_events_arrive_in_order_in_few_batches(qtbot, worker):
    worker.trainer_factory = fake(steps=3000, delay=0.0002)
    seen = Recorder(worker)
    started = time.perf_counter()
    with qtbot.waitSignal(worker.runEnded, timeout=30000):
        worker.start(demo_config(), validate=False)
    elapsed = time.perf_counter() - started
    assert seen.steps == list(range(1, 3001))
    # coalesced: at most one delivery per drain tick (plus the final drain), not one per event
    assert len(seen.step_batches) <= elapsed * DRAIN_HZ + 3
    assert len(seen.step_batches) < 300
    assert seen.finished and not seen.finished[0].stopped
    assert not worker.running


def test_start_returns_while_the_trainer_is_still_busy(qtbot, worker):
    gate = threading.Event()
    worker.trainer_factory = fake(steps=5, gate=gate)
    started = time.perf_counter()
    worker.start(demo_config(), validate=False)
    assert time.perf_counter() - started < 0.5
    assert worker.running
    qtbot.wait(100)                      # the event loop runs while the trainer waits
    with qtbot.waitSignal(worker.runEnded, timeout=10000):
        gate.set()


def test_pause_holds_the_run_and_resume_continues_it(qtbot, worker):
    worker.trainer_factory = fake(steps=100000, delay=0.001)
    seen = Recorder(worker)
    worker.start(demo_config(), validate=False)
    qtbot.waitUntil(lambda: len(seen.steps) > 5, timeout=10000)
    with qtbot.waitSignal(worker.pausedChanged) as signal:
        worker.pause()
    assert signal.args == [True] and worker.paused
    qtbot.wait(150)
    worker.drain()
    held = len(seen.steps)
    qtbot.wait(300)
    worker.drain()
    assert len(seen.steps) <= held + 1        # at most the step that was under way
    worker.resume()
    assert not worker.paused
    qtbot.waitUntil(lambda: len(seen.steps) > held + 20, timeout=10000)
    with qtbot.waitSignal(worker.runEnded, timeout=10000):
        worker.stop()
    assert seen.finished[-1].stopped


def test_stop_wakes_a_paused_run(qtbot, worker):
    worker.trainer_factory = fake(steps=100000, delay=0.001)
    seen = Recorder(worker)
    worker.start(demo_config(), validate=False)
    qtbot.waitUntil(lambda: len(seen.steps) > 0, timeout=10000)
    worker.pause()
    with qtbot.waitSignal(worker.runEnded, timeout=10000):
        worker.stop()
    assert seen.finished and seen.finished[0].stopped
    assert not worker.running and worker.wait(1)


def test_a_training_error_arrives_as_failed(qtbot, worker):
    worker.trainer_factory = fake(steps=50, fail_at=7)
    seen = Recorder(worker)
    with qtbot.waitSignal(worker.runEnded, timeout=10000):
        worker.start(demo_config(), validate=False)
    assert [f.error for f in seen.failed] == ["exploded at step 7"]
    assert seen.steps == list(range(1, 7))
    assert not seen.finished


def test_the_run_check_refuses_before_any_training(qtbot, worker, tmp_path):
    config = demo_config(output_dir=str(tmp_path / "runs"))
    config.teacher.train_epochs = 0
    config.teacher.weights = str(tmp_path / "missing.safetensors")
    seen = Recorder(worker)
    with qtbot.waitSignal(worker.runEnded, timeout=20000):
        worker.start(config)
    assert len(seen.refused) == 1
    error = seen.refused[0]
    assert isinstance(error, ConfigError) and error.field == "teacher.weights"
    assert not (tmp_path / "runs").exists()        # refused runs leave no folder behind


def test_starting_twice_is_an_error(qtbot, worker):
    gate = threading.Event()
    worker.trainer_factory = fake(steps=1, gate=gate)
    worker.start(demo_config(), validate=False)
    with pytest.raises(RuntimeError, match="already in progress"):
        worker.start(demo_config(), validate=False)
    with qtbot.waitSignal(worker.runEnded, timeout=10000):
        gate.set()


def test_progress_is_the_cores_estimate_over_the_stage_plan(qtbot, worker):
    config = demo_config()
    config.teacher.train_epochs = 2
    config.epochs = 3
    config.batch_size = 32

    class TwoStages(FakeTrainer):
        def run(self):
            self.emit(StageStarted("teacher", 2, 10, 20, "run"))
            self.emit(StepEvent("teacher", 5, 1, 20, {"ce": 1.0}, 1.0, 0.1, 320.0))
            finished = Finished(metrics={}, run_dir="run")
            self.emit(finished)
            return finished

    worker.trainer_factory = TwoStages
    seen = []
    worker.progressChanged.connect(seen.append)
    with qtbot.waitSignal(worker.runEnded, timeout=10000):
        worker.start(config, validate=False)
    progress = seen[-1]
    assert progress.fraction == pytest.approx(5 / 50)         # 5 of (2 + 3) × 10 steps
    assert progress.eta_seconds == pytest.approx(45 * 32 / 320)
    assert (progress.stage_index, progress.stage_count, progress.epoch, progress.epochs) == (1, 2, 1, 2)
    assert progress.stage.title == "Training the teacher"


def test_the_trainer_is_made_on_the_worker_thread_from_the_checked_run(qtbot, worker, tmp_path):
    made = {}

    class Recording(FakeTrainer):
        steps = 3

        def __init__(self, run, run_dir=None):
            made["thread"] = threading.current_thread()
            made["run"] = run
            super().__init__(run, str(tmp_path / "the-run"))

    worker.trainer_factory = Recording
    started = []
    worker.runStarted.connect(started.append)
    config = demo_config(output_dir=str(tmp_path / "runs"))
    config.data.demo_train = 64
    worker.start(config)
    assert worker.run_dir == "" and not started          # known only once the run is checked
    with qtbot.waitSignal(worker.runEnded, timeout=30000):
        pass
    assert made["thread"] is not threading.main_thread()
    assert isinstance(made["run"], ValidatedRun)          # validated once, and the trainer runs that
    assert started == [str(tmp_path / "the-run")] and worker.run_dir == started[0]


def test_a_refusal_carries_every_problem(qtbot, worker, tmp_path):
    config = demo_config(output_dir=str(tmp_path / "runs"))
    config.teacher.train_epochs = 0
    config.teacher.weights = str(tmp_path / "missing.safetensors")
    config.student.arch = "no_such_model"
    seen = Recorder(worker)
    with qtbot.waitSignal(worker.runEnded, timeout=30000):
        worker.start(config)
    fields = {problem.field for problem in seen.refused[0].problems}
    assert {"teacher.weights", "student.arch"} <= fields


def test_pause_and_stop_while_the_run_is_checked_reach_the_trainer(qtbot, worker):
    gate = threading.Event()

    class Slow(FakeTrainer):
        steps = 100000
        delay = 0.001

        def __init__(self, run, run_dir=None):
            gate.wait(10)                       # the run is still being "checked"
            super().__init__(run, run_dir)

    worker.trainer_factory = Slow
    seen = Recorder(worker)
    worker.start(demo_config(), validate=False)
    worker.pause()
    assert worker.paused
    gate.set()
    qtbot.wait(300)
    worker.drain()
    assert seen.steps == []                      # it started paused
    with qtbot.waitSignal(worker.runEnded, timeout=10000):
        worker.stop()
    assert seen.finished and seen.finished[0].stopped


def test_config_error_from_failed_keeps_every_field():
    failed = Failed(error="pairs[1].student: no layer 'x' in demo_student", kind="ConfigError",
                    field="pairs[1].student",
                    problems=(("pairs[1].student", "no layer 'x' in demo_student"), ("data.path", "found 3 classes")))
    error = config_error_from_failed(failed)
    assert (error.field, error.reason) == ("pairs[1].student", "no layer 'x' in demo_student")
    assert [p.field for p in error.problems] == ["pairs[1].student", "data.path"]
    assert config_error_from_failed(Failed(error="boom", kind="RuntimeError")) is None


def test_garbage_is_collected_on_the_gui_thread_while_a_background_thread_runs(qtbot):
    import gc
    import threading

    from app.worker import GuiGarbage

    garbage = GuiGarbage()
    assert gc.isenabled()
    finish = threading.Event()
    thread = threading.Thread(target=finish.wait)
    thread.start()
    garbage.hold(thread)
    try:
        assert not gc.isenabled() and garbage.holding       # no automatic collection on any thread

        class Cycle:
            pass

        for _ in range(gc.get_threshold()[0] + 10):
            a, b = Cycle(), Cycle()
            a.b, b.a = b, a
        assert gc.get_count()[0] > gc.get_threshold()[0]
        garbage.collect_due()                                 # the GUI thread's timer does this
        assert gc.get_count()[0] < gc.get_threshold()[0]
    finally:
        finish.set()
        thread.join()
    qtbot.waitUntil(lambda: gc.isenabled(), timeout=5000)     # released once the thread has ended
    assert not garbage.holding
