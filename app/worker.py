"""Training off the GUI thread — in a process of its own — with results coalesced for the window.

:class:`TrainingWorker` runs a run from a plain Python thread, from start to end: first the full check
of the run (:func:`featdistill_core.validate_run`: models built, weights files loaded, layers and
pairs checked, device), so that a refusal comes back as ``refused(ConfigError)`` with every problem,
each naming its field, and no run folder is made. Then the run trains **in a training process of its
own** (:func:`featdistill_core.start_training_process`: ``featdistill train --control stdin`` into a
new run folder; ``runStarted(run_dir)`` says which), and the thread follows that folder as it grows
(:func:`app.follow.follow_folder`), putting the same events on the queue that a trainer's subscriber
would. Drawing and training then never share Python's interpreter lock: with both in one process, the
window's drawing held up every torch call of the training thread that wanted the lock back, and
training ran at about half its headless speed on a 2-core machine (``benchmarks/bench_gui_throughput.py``
measures both ways). Pause, Resume and Stop go to the process through its standard input; it stops
at its next step, with its checkpoint, as after Ctrl-C; if the window goes away, the process stops the
same way. A resumed run trains in a process too (``featdistill train --resume``).

``in_process=True`` (and any ``trainer_factory``, which tests use to inject fakes) trains on the
thread instead, with :class:`featdistill_core.Trainer` in this process: the trainer calls its
subscribers on that thread; the worker's subscriber only appends the event to a thread-safe queue.
``FEATDISTILL_TRAIN_IN_WINDOW=1`` makes that the default (to debug a trainer in the window's process).
Either way, everything reaches the window through that queue. A timer on the GUI thread drains the queue :data:`DRAIN_HZ` times a second and
hands each kind of event to the window as one list, so the window redraws at most that often,
whatever the step rate. The GUI thread never waits on training: start, pause, resume and stop only
set flags the trainer checks at its next step (a pause or stop asked for while the run is still
being checked is handed to the trainer as soon as it exists). Progress is the core's estimate
(:class:`featdistill_core.ProgressEstimator`) over the run's stage plan.

While a background thread runs, Python's automatic garbage collection is off and the GUI thread
collects instead (:class:`GuiGarbage`, about once a second, by the same generation thresholds). A
collection that runs on the training thread can delete Qt objects of the window (cycles of pyqtgraph
items left by earlier redraws) from the wrong thread; seen here as the training thread stopping for
good inside a model's constructor while the window waited for it.
"""

from __future__ import annotations

import gc
import os
import queue
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path

from PySide6 import QtCore

from featdistill_core import (
    PAUSE, RESUME, AttentionSnapshot, ConfigError, EpochEvent, Failed, Finished, Problem, ProgressEstimator, Resumed,
    RunConfig, RunRecord, StageStarted, StepEvent, plan_stages, validate_run,
)

from app.follow import FollowEnded, Following, History, copy_record, follow_guarded, resume_history
from app.pacing import PacedTimer

DRAIN_HZ = 2               # deliveries (so window repaints) a second: live enough, and the CPU stays with training
GC_INTERVAL_MS = 1000      # how often the GUI thread collects garbage while automatic collection is off
IN_WINDOW_ENV = "FEATDISTILL_TRAIN_IN_WINDOW"     # "1": train on the worker's thread, in the window's process
_torch_warmed_up = False
_warm_up_thread: threading.Thread | None = None


class GuiGarbage(QtCore.QObject):
    """Garbage collection on the GUI thread only, while background threads run.

    :meth:`hold` turns Python's automatic collection off (the first hold) and :meth:`release` turns it
    back on (the last release, when it was on before). Meanwhile a timer on the GUI thread collects
    each generation whose count passed its threshold, as the automatic collector would, so memory is
    reclaimed as usual, only never on another thread. (pyqtgraph's ``GarbageCollector`` does the same
    for the whole life of an application.)
    """

    _instance: "GuiGarbage | None" = None

    def __init__(self) -> None:
        super().__init__()
        self._holds = 0
        self._was_enabled = True
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(GC_INTERVAL_MS)
        self._timer.timeout.connect(self.collect_due)
        self._threads: list[threading.Thread] = []

    @classmethod
    def instance(cls) -> "GuiGarbage":
        if cls._instance is None:
            cls._instance = GuiGarbage()
        return cls._instance

    def hold(self, thread: threading.Thread | None = None) -> None:
        """Collect on the GUI thread from now on; with ``thread``, until that thread has ended."""
        if self._holds == 0:
            self._was_enabled = gc.isenabled()
            gc.disable()
            self._timer.start()
        self._holds += 1
        if thread is not None:
            self._threads.append(thread)

    def release(self) -> None:
        if self._holds == 0:
            return
        self._holds -= 1
        if self._holds == 0:
            self._timer.stop()
            self.collect_due()
            if self._was_enabled:
                gc.enable()

    def collect_due(self) -> None:
        """Collect the generations due (by ``gc.get_threshold()``); release threads that ended."""
        for thread in [t for t in self._threads if not t.is_alive()]:
            self._threads.remove(thread)
            self.release()
        thresholds, counts = gc.get_threshold(), gc.get_count()
        if counts[0] > thresholds[0]:
            generation = 0
            if counts[1] > thresholds[1]:
                generation = 2 if counts[2] > thresholds[2] else 1
            gc.collect(generation)

    @property
    def holding(self) -> bool:
        return self._holds > 0


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
    GuiGarbage.instance().hold(_warm_up_thread)         # released by the GUI thread once it has ended
    _warm_up_thread.start()


def config_error_from_failed(failed: Failed) -> ConfigError | None:
    """The run-file problems behind a ``Failed`` event (``Failed.problems``), or None when it was
    not about the run file."""
    if not failed.problems:
        return None
    return ConfigError.from_problems(Problem(*problem) for problem in failed.problems)


def _failed(exc: Exception) -> Failed:
    """The :class:`Failed` event for an error raised before training started (its first line for people,
    the traceback as details); call it inside the ``except`` block."""
    lines = str(exc).strip().splitlines()
    return Failed(error=lines[0] if lines else type(exc).__name__, kind=type(exc).__name__,
                  details=traceback.format_exc())


def training_environment() -> dict:
    """The environment of a run's training process: this one's, with the window's thread policy
    (torch's thread count here, all cores but one; see ``app.__main__``) unless ``OMP_NUM_THREADS``
    says otherwise."""
    env = dict(os.environ)
    if not env.get("OMP_NUM_THREADS"):
        import torch

        env["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    return env


def _release_device_memory() -> None:
    """After checking a run here, give back what the check took on a GPU (the training process needs it).
    (No ``gc.collect()`` here: collections happen on the GUI thread only, see :class:`GuiGarbage`.)"""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


_FAILED = object()           # what TrainingWorker._before_training returns when the work failed


@dataclass(frozen=True)
class _Refused:
    error: ConfigError


@dataclass(frozen=True)
class _TrainerReady:
    run_dir: str


@dataclass(frozen=True)
class EndedRun:
    """The run folder of a run that has ended, read once on the worker's thread after the run
    (:func:`featdistill_core.load_run` without snapshots), so the window's runs list and run summary
    need not read it again on the GUI thread (two readings there held the window up 30–45 ms at the
    run's end). ``stamp``: its log's modification time before the reading (a later change reads it
    again); ``record`` is None when it could not be read (the window then reads it and says why)."""

    run_dir: str
    stamp: float
    record: RunRecord | None


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
    configKnown = QtCore.Signal(object)        # RunConfig of a run followed or resumed (before runStarted)
    historyReceived = QtCore.Signal(object)    # RunRecord: draw the run shown again from it (resume, follow)
    followEnded = QtCore.Signal(str, str)      # following ended without a final record: message, kind

    def __init__(self, parent: QtCore.QObject | None = None, trainer_factory=None, in_process: bool | None = None):
        super().__init__(parent)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._trainer = None                     # set by the training thread once the run is checked
        self._lock = threading.Lock()            # between the trainer's arrival and pause/stop
        self._paused = False
        self._estimator: ProgressEstimator | None = None
        self.trainer_factory = trainer_factory   # None: featdistill_core.Trainer; tests inject fakes
        self._in_process = in_process            # None: a process of its own, unless a factory or IN_WINDOW_ENV
        self._child = None                       # the RunProcess training the window's own run, once started
        self._stop_requested = threading.Event()
        self._timer = PacedTimer(self, single_shot=False, name="worker: hand over events")
        self._timer.setInterval(1000 // DRAIN_HZ)
        self._timer.timeout.connect(self.drain)
        self.drains = 0                          # how many drains delivered something (for benchmarks)
        self.mode = ""                           # "train", "resume" or "follow" while running
        self.process = None                      # the RunProcess a followed run was started as, if any
        self._followed = ""                      # the folder followed
        self._record = None                      # RunRecord of a run followed or resumed (GUI thread;
                                                 # a new run's is the follower's, not copied here)
        self._thread_run_dir = ""                # the folder the thread trains or follows (its thread)
        self._ended: EndedRun | None = None      # that folder, read once the run ended (GUI thread)

    # ---- state -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True from :meth:`start` until ``runEnded`` has been emitted."""
        return self._thread is not None

    @property
    def paused(self) -> bool:
        return self.running and self._paused

    @property
    def run_dir(self) -> str:
        """The run folder; "" until the run has been checked and its trainer made."""
        trainer = self._trainer
        return str(trainer.run_dir) if trainer is not None else self._followed

    @property
    def following(self) -> bool:
        """True while a run folder written by another process is followed."""
        return self.running and self.mode == "follow"

    @property
    def pausable(self) -> bool:
        return self.running and self.mode != "follow"

    @property
    def in_process(self) -> bool:
        """Whether runs train on the worker's thread, in this process (else in a process of their own)."""
        if self._in_process is not None:
            return self._in_process
        return self.trainer_factory is not None or os.environ.get(IN_WINDOW_ENV, "") == "1"

    @in_process.setter
    def in_process(self, value: bool | None) -> None:
        self._in_process = value

    @property
    def training_process(self):
        """The :class:`featdistill_core.RunProcess` training the window's own run (None on the thread)."""
        return self._child

    @property
    def record(self):
        """What a followed or resumed run has recorded so far (a RunRecord), else None."""
        return self._record

    @property
    def ended_run(self) -> EndedRun | None:
        """The last run's folder as read after it ended (from ``runEnded`` on), or None (no folder)."""
        return self._ended

    # ---- control (GUI thread; none of these waits for training) -------------------------------
    def start(self, config: RunConfig, run_dir: str | None = None, validate: bool = True) -> None:
        """Check ``config`` and train it on the background thread (``validate=False`` hands the
        config to the trainer factory unchecked: the real trainer then checks it itself)."""
        if self.running:
            raise RuntimeError("a run is already in progress; stop it first")
        if not self.in_process:
            self._begin("train", ProgressEstimator(plan_stages(config), config.batch_size))
            self._launch(self._run_in_a_process, (config, run_dir, validate), name="featdistill-run")
            return
        if self.trainer_factory is None:
            from featdistill_core import Trainer
            factory = Trainer
        else:
            factory = self.trainer_factory
        warm_up_torch()
        self._begin("train", ProgressEstimator(plan_stages(config), config.batch_size))
        self._launch(self._run, (config, run_dir, validate, factory))

    def start_resume(self, run_dir: str) -> None:
        """Continue the run in ``run_dir`` from its last checkpoint (:meth:`featdistill_core.Trainer.resume_from`)
        on the background thread: ``configKnown``, ``runStarted``, ``historyReceived`` (what the folder
        holds), then the resumed run's events as for :meth:`start` (its ``Resumed`` sends the history
        again, without what it supersedes)."""
        if self.running:
            raise RuntimeError("a run is already in progress; stop it first")
        if not self.in_process:
            self._begin("resume", None)
            self._launch(self._resume_in_a_process, (str(run_dir),), name="featdistill-run")
            return
        warm_up_torch()
        self._begin("resume", None)
        self._launch(self._resume, (str(run_dir),))

    def start_follow(self, run_dir: str, process=None) -> None:
        """Follow ``run_dir``, written by another process (``process``: a
        :class:`featdistill_core.RunProcess` the window started, stopped by :meth:`stop`), until its run
        ends; its events come as for :meth:`start` (see :mod:`app.follow`)."""
        if self.running:
            raise RuntimeError("a run is already in progress; stop it first")
        self._begin("follow", None)
        self.process = process
        self._followed = self._thread_run_dir = str(run_dir)
        self._launch(follow_guarded, (self._queue.put, run_dir),
                     {"stop": self._stop_requested, "process": process}, name="featdistill-follow")

    def _begin(self, mode: str, estimator) -> None:
        self.mode = mode
        self.process = None
        self._followed = ""
        self._record = None
        self._thread_run_dir = ""
        self._ended = None
        self._trainer = None
        self._child = None
        self._paused = False
        self._estimator = estimator
        self._stop_requested.clear()

    def _launch(self, target, args, kwargs=None, name: str = "featdistill-training") -> None:
        def run() -> None:
            try:
                target(*args, **(kwargs or {}))
            finally:
                self._read_ended_run()

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        gc.collect(1)                         # what earlier windows left, collected here, on the GUI thread
        GuiGarbage.instance().hold()          # ... and nothing on the training thread (see GuiGarbage)
        self._thread.start()
        self._timer.start()

    def pause(self) -> None:
        if not self.pausable or self._paused:
            return
        with self._lock:
            self._paused = True
            if self._trainer is not None:
                self._trainer.pause()
            if self._child is not None:
                self._child.send(PAUSE)
        self.pausedChanged.emit(True)

    def resume(self) -> None:
        if not self.running or not self._paused:
            return
        with self._lock:
            self._paused = False
            if self._trainer is not None:
                self._trainer.resume()
            if self._child is not None:
                self._child.send(RESUME)
        self.pausedChanged.emit(False)

    def stop(self) -> None:
        """Ask the run to stop at its next step (a paused run wakes up to stop; a run still being
        checked stops before training)."""
        self._stop_requested.set()          # a run in a process: the process is stopped (or following ends)
        with self._lock:
            was_paused, self._paused = self._paused, False
            if self._trainer is not None:
                self._trainer.request_stop()
            # a run in a process: the follower sends it the stop (a paused run wakes up to stop)
        if was_paused and self.running:
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
    def _read_ended_run(self) -> None:
        """Read the folder of the run that just ended, for the window (see :class:`EndedRun`)."""
        run_dir = self._thread_run_dir
        if not run_dir:
            return
        from featdistill_core import load_run

        try:
            stamp = (Path(run_dir) / "metrics.jsonl").stat().st_mtime
            record = load_run(run_dir, snapshots=False)
        except Exception:  # noqa: BLE001 - the window reads it again itself, and says what is wrong
            stamp, record = 0.0, None
        self._queue.put(EndedRun(run_dir, stamp, record))

    def _before_training(self, work):
        """``work()``; a refusal (ConfigError) or an error goes on the queue for the window instead, and
        :data:`_FAILED` comes back: the one place the work before training reports how it failed."""
        try:
            return work()
        except ConfigError as error:
            self._queue.put(_Refused(error))
        except Exception as exc:  # noqa: BLE001 - reported to the user, never lost
            self._queue.put(_failed(exc))
        return _FAILED

    def _run(self, config: RunConfig, run_dir: str | None, validate: bool, factory) -> None:
        def make():
            run = validate_run(config) if validate else config
            return None if self._stop_requested.is_set() else factory(run, run_dir)   # None: stopped meanwhile

        trainer = self._before_training(make)
        if trainer is not _FAILED:
            self._train(trainer)

    def _train(self, trainer, history: History | None = None) -> None:
        with self._lock:
            stopped = self._stop_requested.is_set()
            if not stopped:
                trainer.subscribe(self._queue.put)
                self._trainer = trainer
                if self._paused:
                    trainer.pause()
        if stopped:                                   # stopped while the run was being checked
            self._queue.put(Finished(metrics={}, run_dir="", stopped=True))
            return
        self._thread_run_dir = str(trainer.run_dir)
        if history is not None:
            self._queue.put(Following(str(trainer.run_dir), history.record.config))
        self._queue.put(_TrainerReady(str(trainer.run_dir)))
        if history is not None:
            self._queue.put(history)
        try:
            trainer.run()
        except Exception:  # noqa: BLE001 - the trainer has emitted Failed (with the traceback) already
            pass

    def _run_in_a_process(self, config: RunConfig, run_dir: str | None, validate: bool) -> None:
        """Check the run here, then train it in a process of its own and follow its folder."""
        from featdistill_core import new_run_folder, start_training_process

        def start():
            if validate:
                validate_run(config)                  # every problem at once, before any folder is made
                _release_device_memory()
            if self._stop_requested.is_set():
                self._queue.put(Finished(metrics={}, run_dir="", stopped=True))
                return None
            folder = run_dir or new_run_folder(config)
            return start_training_process(config, folder, env=training_environment()), str(folder)

        started = self._before_training(start)
        if started is not _FAILED and started is not None:
            self._follow_process(*started)

    def _resume_in_a_process(self, run_dir: str) -> None:
        from featdistill_core import load_run, start_training_process

        def start():
            resumes = len(load_run(run_dir, snapshots=False).resumes)
            return start_training_process(resume=run_dir, env=training_environment()), resumes

        started = self._before_training(start)
        if started is not _FAILED:
            self._follow_process(started[0], run_dir, resumes_before=started[1])

    def _follow_process(self, process, run_dir: str, resumes_before: int | None = None) -> None:
        """Follow the folder ``process`` writes, as the trainer's subscriber would report it
        (``resumes_before``: it resumes the run, see :func:`app.follow.follow_folder`)."""
        resumed = resumes_before is not None
        self._thread_run_dir = run_dir
        with self._lock:
            self._child = process
            if self._paused:
                process.send(PAUSE)
        if not resumed:
            self._queue.put(_TrainerReady(run_dir))

        def put(event) -> None:
            self._queue.put(event)
            if resumed and isinstance(event, Following):
                self._queue.put(_TrainerReady(run_dir))

        follow_guarded(put, run_dir, stop=self._stop_requested, process=process, resumes_before=resumes_before)

    def _resume(self, run_dir: str) -> None:
        from featdistill_core import Trainer

        made = self._before_training(lambda: (Trainer.resume_from(run_dir), resume_history(run_dir)))
        if made is not _FAILED:
            self._train(*made)

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
        run_events = []
        for event in events:
            if isinstance(event, EndedRun):   # not an event of the run (a later drain's progress would
                self._ended = event            # say the run's speed again after its end)
            else:
                run_events.append(event)
        events = run_events
        if events:
            self.drains += 1
            self._deliver(events)
        if thread_done and self._thread is not None:
            self._thread = None
            self._timer.stop()
            GuiGarbage.instance().release()
            for process in (self.process, self._child):
                if process is not None:
                    process.close()
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
            if isinstance(event, (StepEvent, StageStarted)) and self._estimator is not None:
                self._estimator.update(event)
                if isinstance(event, StageStarted) and self._record is not None:
                    done = [e for e in self._record.steps if e.stage == event.stage]   # a resumed stage
                    if done:
                        self._estimator.update(done[-1])
            if self._record is not None and not isinstance(event, (History, Following, _TrainerReady, FollowEnded)):
                self._record.apply(event)
            if isinstance(event, Following):
                flush()
                self._estimator = ProgressEstimator(plan_stages(event.config), event.config.batch_size)
                if not self._followed:
                    self._followed = event.run_dir
                self.configKnown.emit(event.config)
            elif isinstance(event, History):
                flush()
                if self.mode == "train":          # a new run (in a process): its history is only drawn
                    self.historyReceived.emit(event.record)
                else:
                    self._record = copy_record(event.record)
                    self._history_to_estimator()
                    self.historyReceived.emit(self._record)
            elif isinstance(event, Resumed):
                flush()                       # what came before it, then the history without what it supersedes
                if self._record is not None:
                    self._history_to_estimator()
                    self.historyReceived.emit(self._record)
            elif isinstance(event, FollowEnded):
                ends.append(event)
            elif isinstance(event, StepEvent):
                steps.append(event)
            elif isinstance(event, EpochEvent):
                epochs.append(event)
            elif isinstance(event, AttentionSnapshot):
                snapshots.append(event)
            elif isinstance(event, StageStarted):
                flush()                       # curves of one stage before the next one starts
                self.stageStarted.emit(event)
            elif isinstance(event, _TrainerReady):
                self.runStarted.emit(event.run_dir)
            else:
                ends.append(event)
        flush()
        progress = self._estimator.progress() if self._estimator else None
        if progress is not None:
            self.progressChanged.emit(progress)
        for event in ends:
            if isinstance(event, Finished):
                self.finished.emit(event)
            elif isinstance(event, Failed):
                self.failed.emit(event)
            elif isinstance(event, _Refused):
                self.refused.emit(event.error)
            elif isinstance(event, FollowEnded):
                self.followEnded.emit(event.message, event.kind)

    def _history_to_estimator(self) -> None:
        """Bring the progress estimate to where the recorded history ends."""
        record = self._record
        if self._estimator is None or record is None:
            return
        if record.stages:
            self._estimator.update(record.stages[-1])
            last = [e for e in record.steps if e.stage == record.stages[-1].stage]
            if last:
                self._estimator.update(last[-1])
