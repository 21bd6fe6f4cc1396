"""Training off the GUI thread, with results coalesced for the window.

:class:`TrainingWorker` runs :meth:`featdistill_core.trainer.Trainer.run` on a plain Python thread.
The trainer calls its subscribers on that thread; the worker's subscriber only appends the event to
a thread-safe queue. A timer on the GUI thread drains the queue :data:`DRAIN_HZ` times a second and
hands each kind of event to the window as one list, so the window redraws at most that often,
whatever the step rate. The GUI thread never waits on training: start, pause, resume and stop only
set flags the trainer checks at its next step.

Before training, the worker thread runs the full check of the run
(:func:`featdistill_core.validate.validate_run`: models, weights files, layers, pairs, device); a
problem comes back as ``refused(ConfigError)`` with the field to mark, and no run folder is made.
"""

from __future__ import annotations

import queue
import re
import threading
import traceback
from dataclasses import dataclass

from PySide6 import QtCore

from featdistill_core.config import ConfigError, RunConfig
from featdistill_core.events import AttentionSnapshot, EpochEvent, Failed, Finished, StageStarted, StepEvent
from featdistill_core.validate import validate_run

DRAIN_HZ = 10              # deliveries (so window repaints) a second: live enough, and the CPU stays with training
_FIELD = re.compile(r"^((?:pairs\[\d+\])(?:\.[a-z_]+)?|[a-z_]+(?:\.[a-z_]+)?): (.+)$", re.DOTALL)
_torch_warmed_up = False
_warm_up_thread: threading.Thread | None = None


def warm_up_torch() -> None:
    """Construct a throwaway SGD optimizer once, before the first run.

    The first optimizer a process builds imports ``torch._dynamo`` (one to two seconds). Done inside
    the training thread while the window draws, that import holds the interpreter long enough to
    freeze the window for 120–190 ms when training starts; done before, it costs nothing visible.
    Waits for :func:`warm_up_torch_in_background` if that is under way.
    """
    global _torch_warmed_up
    thread = _warm_up_thread
    if thread is not None and thread is not threading.current_thread():
        thread.join()
    if _torch_warmed_up:
        return
    import torch

    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    _torch_warmed_up = True


def warm_up_torch_in_background() -> None:
    """Run :func:`warm_up_torch` on a background thread (once), e.g. as soon as the window shows.

    The window stays responsive meanwhile (longest stall measured ~0.2 s, against a 1–2 s freeze when
    the same import runs on the GUI thread).
    """
    global _warm_up_thread
    if _torch_warmed_up or _warm_up_thread is not None:
        return
    _warm_up_thread = threading.Thread(target=warm_up_torch, name="featdistill-warm-up", daemon=True)
    _warm_up_thread.start()


def config_error_from_failed(failed: Failed) -> ConfigError | None:
    """The :class:`ConfigError` behind a ``Failed`` event, with its field, when it was one."""
    if failed.kind != "ConfigError":
        return None
    match = _FIELD.match(failed.error)
    if match is None:
        return ConfigError("", failed.error)
    return ConfigError(match.group(1), match.group(2))


@dataclass(frozen=True)
class Progress:
    """Where a run is, for the progress bar and the status line."""

    stage: str
    stage_index: int          # 1-based
    stage_count: int
    epoch: int
    epochs: int
    step: int                 # within the stage
    total_steps: int          # of the stage
    images_per_sec: float
    eta_seconds: float | None  # for the whole run (later stages estimated at the same speed)
    fraction: float            # of the whole run's steps, 0..1


STAGE_TITLES = {"teacher": "Training the teacher", "init": "Initialisation stage", "student": "Distilling the student"}


def planned_stages(config: RunConfig) -> list[tuple[str, int]]:
    """(stage, epochs) in the order the trainer runs them."""
    stages = []
    if config.trains_teacher:
        stages.append(("teacher", config.teacher.train_epochs))
    if any(pair.stage == "init" for pair in config.pairs) and config.init_epochs > 0:
        stages.append(("init", config.init_epochs))
    if config.epochs > 0:
        stages.append(("student", config.epochs))
    return stages


@dataclass(frozen=True)
class _Refused:
    error: ConfigError


class _ProgressTracker:
    """Turns stage and step events into :class:`Progress` (speed smoothed over recent steps)."""

    def __init__(self, config: RunConfig):
        self.stages = planned_stages(config)
        self.batch_size = config.batch_size
        self.stage: StageStarted | None = None
        self.steps_per_epoch = 0
        self.images_per_sec = 0.0
        self.last: StepEvent | None = None

    def stage_started(self, event: StageStarted) -> None:
        self.stage = event
        self.steps_per_epoch = event.steps_per_epoch
        self.last = None

    def step(self, event: StepEvent) -> None:
        self.last = event
        if event.images_per_sec > 0:
            alpha = 0.3 if self.images_per_sec else 1.0
            self.images_per_sec += alpha * (event.images_per_sec - self.images_per_sec)

    def progress(self) -> Progress | None:
        if self.stage is None:
            return None
        names = [name for name, _ in self.stages]
        index = names.index(self.stage.stage) if self.stage.stage in names else 0
        step = self.last.step if self.last else 0
        epoch = self.last.epoch if self.last else 1
        done = sum(epochs * self.steps_per_epoch for _, epochs in self.stages[:index]) + step
        total = sum(epochs * self.steps_per_epoch for _, epochs in self.stages) or 1
        eta = None
        if self.images_per_sec > 0:
            eta = (total - done) * self.batch_size / self.images_per_sec
        return Progress(self.stage.stage, index + 1, max(len(self.stages), 1), epoch, self.stage.epochs, step,
                        self.stage.total_steps, self.images_per_sec, eta, min(done / total, 1.0))


class TrainingWorker(QtCore.QObject):
    """Runs one training run at a time on a background thread; all signals fire on the GUI thread."""

    runStarted = QtCore.Signal(str)            # the run folder
    stageStarted = QtCore.Signal(object)       # StageStarted
    stepsReceived = QtCore.Signal(list)        # list[StepEvent], in order
    epochsReceived = QtCore.Signal(list)       # list[EpochEvent]
    snapshotsReceived = QtCore.Signal(list)    # list[AttentionSnapshot]
    progressChanged = QtCore.Signal(object)    # Progress
    finished = QtCore.Signal(object)           # Finished (stopped=True after a stop)
    failed = QtCore.Signal(object)             # Failed
    refused = QtCore.Signal(object)            # ConfigError found before training: nothing ran
    runEnded = QtCore.Signal()                 # the thread is gone (after finished/failed/refused)
    pausedChanged = QtCore.Signal(bool)

    def __init__(self, parent: QtCore.QObject | None = None, trainer_factory=None):
        super().__init__(parent)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._trainer = None
        self._tracker: _ProgressTracker | None = None
        self.trainer_factory = trainer_factory   # None: featdistill_core.trainer.Trainer; tests inject fakes
        self._stop_requested = threading.Event()
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(1000 // DRAIN_HZ)
        self._timer.timeout.connect(self.drain)
        self.drains = 0                          # how many drains delivered something (for benchmarks)

    # ---- state -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True from :meth:`start` until ``runEnded`` has been emitted."""
        return self._thread is not None

    @property
    def paused(self) -> bool:
        return self._trainer is not None and self._trainer.paused

    @property
    def run_dir(self) -> str:
        return str(self._trainer.run_dir) if self._trainer is not None else ""

    # ---- control (GUI thread; none of these waits for training) -------------------------------
    def start(self, config: RunConfig, run_dir: str | None = None, validate: bool = True) -> None:
        if self.running:
            raise RuntimeError("a run is already in progress; stop it first")
        from featdistill_core.trainer import Trainer

        warm_up_torch()
        factory = self.trainer_factory or Trainer
        self._trainer = factory(config, run_dir)
        self._trainer.subscribe(self._queue.put)
        self._tracker = _ProgressTracker(config)
        self._stop_requested.clear()
        self._thread = threading.Thread(target=self._run, args=(config, self._trainer, validate),
                                        name="featdistill-training", daemon=True)
        self._thread.start()
        self._timer.start()
        self.runStarted.emit(str(self._trainer.run_dir))

    def pause(self) -> None:
        if self._trainer is not None and not self._trainer.paused:
            self._trainer.pause()
            self.pausedChanged.emit(True)

    def resume(self) -> None:
        if self._trainer is not None and self._trainer.paused:
            self._trainer.resume()
            self.pausedChanged.emit(False)

    def stop(self) -> None:
        """Ask the run to stop at its next step (a paused run wakes up to stop)."""
        self._stop_requested.set()
        if self._trainer is not None:
            was_paused = self._trainer.paused
            self._trainer.request_stop()
            if was_paused:
                self.pausedChanged.emit(False)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the thread has ended (used when the window closes); True if it has."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return False
        self.drain()
        return True

    # ---- the training thread -------------------------------------------------------------------
    def _run(self, config: RunConfig, trainer, validate: bool) -> None:
        try:
            if validate:
                validate_run(config)
        except ConfigError as error:
            self._queue.put(_Refused(error))
            return
        except Exception as exc:  # noqa: BLE001 - reported to the user, never lost
            self._queue.put(Failed(error=str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                                   kind=type(exc).__name__, details=traceback.format_exc()))
            return
        if self._stop_requested.is_set():
            self._queue.put(Finished(metrics={}, run_dir="", stopped=True))
            return
        try:
            trainer.run()
        except Exception:  # noqa: BLE001 - the trainer has emitted Failed (with the traceback) already
            pass

    # ---- the GUI thread ------------------------------------------------------------------------
    def drain(self) -> None:
        """Hand everything queued since the last drain to the window, one list per kind."""
        thread_done = self._thread is None or not self._thread.is_alive()   # checked first: nothing missed
        events = []
        while True:
            try:
                events.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if events:
            self.drains += 1
            self._deliver(events)
        if thread_done and self._thread is not None:
            self._thread = None
            self._timer.stop()
            self.runEnded.emit()

    def _deliver(self, events: list) -> None:
        steps: list[StepEvent] = []
        epochs: list[EpochEvent] = []
        snapshots: list[AttentionSnapshot] = []
        ends = []

        def flush() -> None:
            if steps:
                self.stepsReceived.emit(list(steps))
                steps.clear()
            if epochs:
                self.epochsReceived.emit(list(epochs))
                epochs.clear()
            if snapshots:
                self.snapshotsReceived.emit(list(snapshots))
                snapshots.clear()

        for event in events:
            if isinstance(event, StepEvent):
                steps.append(event)
                self._tracker.step(event)
            elif isinstance(event, EpochEvent):
                epochs.append(event)
            elif isinstance(event, AttentionSnapshot):
                snapshots.append(event)
            elif isinstance(event, StageStarted):
                flush()                       # curves of one stage before the next one starts
                self._tracker.stage_started(event)
                self.stageStarted.emit(event)
            else:
                ends.append(event)
        flush()
        progress = self._tracker.progress() if self._tracker else None
        if progress is not None:
            self.progressChanged.emit(progress)
        for event in ends:
            if isinstance(event, Finished):
                self.finished.emit(event)
            elif isinstance(event, Failed):
                self.failed.emit(event)
            elif isinstance(event, _Refused):
                self.refused.emit(event.error)


def format_duration(seconds: float | None) -> str:
    """``75`` → ``"1:15"``, ``3725`` → ``"1:02:05"``; ``None`` → ``"–"``."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "–"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
