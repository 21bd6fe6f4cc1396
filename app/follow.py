"""Following a run folder that another process writes, and resuming one: the thread side.

:func:`follow_folder` runs on :class:`~app.worker.TrainingWorker`'s background thread (see
``TrainingWorker.start_follow``). It reads the folder with :class:`featdistill_core.RunFollower` —
a little at a time, so a long log is caught up without holding anything — and puts onto the worker's
queue what the live trainer's subscriber would: the same events, which the worker hands to the plots
and maps by the same path as a run trained in the window. Before them come :class:`Following` (the run
file is readable: its config) and one :class:`History` (everything the folder held when following
began, drawn at once, not event by event); a :class:`~featdistill_core.Resumed` in the log, or a log
that was replaced, sends a new :class:`History` (what the resumed run supersedes is dropped, by
:meth:`featdistill_core.RunRecord.apply`).

It ends when the run's final record (finished, stopped, failed) has been read; when a process started
by the window (:class:`featdistill_core.RunProcess`) ended without one (a :class:`~featdistill_core.Failed`
with the process's last output lines); when a local writer's lock was seen and is gone without a final
record (:class:`FollowEnded`: killed); or when following is stopped. A folder on a shared or synced path
written by another machine shows no lock here: it is followed until its final record arrives.

:func:`resume_folder` is the thread side of Resume: the run's history first, then
:meth:`featdistill_core.Trainer.resume_from` runs on the same thread, its events after.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import traceback
import time
from dataclasses import dataclass
from pathlib import Path

from featdistill_core import AttentionSnapshot, Failed, RunConfig, RunFolderError, RunFollower, RunRecord, run_status

POLL_S = 0.5               # how often a followed folder is read (the worker delivers at DRAIN_HZ anyway)
CHUNK_BYTES = 256 << 10    # of metrics.jsonl read per poll: catching up stays responsive to Stop
WRITER_CHECK_S = 2.0       # how often the lock of a folder followed without a process is looked at
EXIT_GRACE_S = 60.0        # after the final record, how long the started process has to end
BURST_EVENTS = 8           # following live, new events are read in bursts of at most this many ...
BURST_PAUSE_S = 0.005      # ... this far apart (a snapshot ends a burst: its arrays take ~3 ms to load)


@dataclass(frozen=True)
class Following:
    """The followed folder's run file is readable: where, and the run it describes."""

    run_dir: str
    config: RunConfig


@dataclass(frozen=True)
class History:
    """Everything recorded so far (the run shown is redrawn from it)."""

    record: RunRecord


@dataclass(frozen=True)
class FollowEnded:
    """Following ended without the run's final record: ``message`` in words, ``kind`` for the status."""

    message: str
    kind: str = "info"


def copy_record(record: RunRecord) -> RunRecord:
    """A copy whose lists the follower thread no longer changes."""
    return dataclasses.replace(record, stages=list(record.stages), steps=list(record.steps),
                               epochs=list(record.epochs), snapshots=list(record.snapshots),
                               checkpoints=list(record.checkpoints), resumes=list(record.resumes),
                               balance=list(record.balance))


def process_failure(process, run_dir: Path) -> Failed:
    """The Failed event for a started process that ended before its run's final record."""
    code = process.poll()
    tail = process.output_tail()
    errors = [line for line in tail.splitlines() if line.startswith("featdistill: error:")]
    first = errors[0].removeprefix("featdistill: error:").strip() if errors else ""
    text = f"the training process ended (exit status {code}) before its run finished"
    return Failed(error=f"{text}: {first}" if first else text + " (see the details)", kind="ProcessExit",
                  run_dir=str(run_dir) if (run_dir / "run.toml").exists() else "",
                  details=f"$ {' '.join(process.argv)}\n\n{tail}")


def follow_folder(put, run_dir, *, stop: threading.Event, process=None, poll_s: float = POLL_S,
                  resumes_before: int | None = None) -> None:
    """Follow ``run_dir`` until its run ends (see the module docstring), ``put`` ting what it reads.

    ``resumes_before``: ``process`` resumes the run, whose folder held that many resumptions when it
    started; the final record the folder already holds is then not an end, only one written after the
    process's own :class:`~featdistill_core.Resumed` is."""
    run_dir = Path(run_dir)
    follower = RunFollower(run_dir)

    def ended() -> bool:
        record = follower.record
        if record is None or not record.ended:
            return False
        return resumes_before is None or len(record.resumes) > resumes_before

    announced = False
    writer_seen = False
    next_check = 0.0
    stop_sent = False
    while True:
        if stop.is_set():
            if process is None:
                put(FollowEnded(f"Stopped following {run_dir}; the run goes on in its own process.", "info"))
                return
            if not stop_sent:
                process.stop()
                stop_sent = True
            process.escalate()
        update = follower.poll(CHUNK_BYTES, between=_pause_between_bursts() if announced else None)
        if follower.record is not None and not announced:
            put(Following(str(run_dir), follower.config))
            announced = True
            while not stop.is_set() and follower.poll(CHUNK_BYTES).events:
                pass                                      # catch up: drawn once, as the history
            put(History(copy_record(follower.record)))
            if ended():                                    # it had ended already: say how
                put(follower.record.failed or follower.record.finished)
            continue
        if update.reset:
            put(History(copy_record(follower.record)))
        else:
            for event in update.events:
                put(event)
        if ended():
            _let_the_process_end(process)
            return
        if process is not None:
            if process.poll() is not None:
                for _ in range(3):                         # what it wrote last
                    for event in follower.poll().events:
                        put(event)
                if ended():
                    _let_the_process_end(process)
                    return
                process.kill_leftovers()
                put(process_failure(process, run_dir))
                with contextlib.suppress(OSError):
                    run_dir.rmdir()                        # the folder made for it, if it stayed empty
                return
        elif time.monotonic() >= next_check:
            next_check = time.monotonic() + WRITER_CHECK_S
            state = _state(run_dir)
            if state == "running":
                writer_seen = True
            elif writer_seen and state is not None:
                for event in follower.poll().events:       # the last lines before its lock went
                    put(event)
                if not ended():
                    put(FollowEnded(f"The process writing {run_dir} ended without a final record (killed?); "
                                    "it can be resumed from its last checkpoint (Runs ▸ right-click ▸ Resume).",
                                    "error"))
                return
        if stop.is_set():
            time.sleep(0.1)                                # stopping: escalate now and then
        elif not update.events:
            stop.wait(poll_s)


def _pause_between_bursts():
    """What reading a live run's new events does between two of them: a short sleep after every
    :data:`BURST_EVENTS` events and after every snapshot.

    This thread shares the window's process, and while it decodes (Python code) it holds the
    interpreter's lock; on a machine whose other cores train, it also shares the window's core. Read
    in one go, half a second of a run (a few hundred steps and snapshots) took 8–15 ms and stretched
    whatever the window was drawing by as much. In bursts, the window gets the lock and the core
    between them; the catch-up of a long log (before the run is announced) is read without pauses."""
    count = 0

    def between(event) -> None:
        nonlocal count
        count += 1
        if count >= BURST_EVENTS or isinstance(event, AttentionSnapshot):
            count = 0
            time.sleep(BURST_PAUSE_S)

    return between


def follow_guarded(put, run_dir, *, stop: threading.Event, process=None, poll_s: float = POLL_S,
                   resumes_before: int | None = None) -> None:
    """:func:`follow_folder`, with an unexpected error reported as a Failed event (never lost); a
    process the window started is then asked to stop (it checkpoints; Resume continues it)."""
    try:
        follow_folder(put, run_dir, stop=stop, process=process, poll_s=poll_s, resumes_before=resumes_before)
    except Exception as exc:  # noqa: BLE001 - reported to the user
        if process is not None:
            process.stop()
            _let_the_process_end(process, grace_s=0.0)
        put(Failed(error=f"following {run_dir} failed: {exc}", kind=type(exc).__name__,
                   details=traceback.format_exc()))


def _state(run_dir: Path) -> str | None:
    try:
        return run_status(run_dir).state
    except (RunFolderError, OSError, ValueError):
        return None


def _let_the_process_end(process, grace_s: float = EXIT_GRACE_S) -> None:
    """After the final record: give the started process time to exit, then make sure it has."""
    if process is None:
        return
    deadline = time.monotonic() + grace_s
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if process.poll() is None:
        process.stop()
        while process.poll() is None:
            process.escalate()
            time.sleep(0.1)
    process.kill_leftovers()


def resume_history(run_dir) -> History:
    """The history of a run folder about to be resumed (its snapshots included)."""
    from featdistill_core import load_run

    return History(load_run(run_dir))
