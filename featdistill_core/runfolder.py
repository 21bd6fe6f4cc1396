"""A run folder: everything a run produced, written as it happens, read back, followed and judged.

Layout::

    run.toml              the run file as used (paths made absolute)
    metrics.jsonl         one JSON object per event, appended and flushed as it happens
    balance.json          how each term started next to the task loss and the weight it trains with
                          (the chosen one for weight = "auto"): one report per student-side stage
    snapshots/NNNNNN_<stage>.npz   attention maps of each snapshot (and the probe images)
    checkpoint-last.pt    the whole run state, for --resume (see featdistill_core.checkpoint)
    checkpoint-best.pt    the run state at the end of the best epoch (test accuracy, last stage)
    teacher.safetensors   the teacher, when the run trained it (also when it stopped or failed mid-way)
    student.safetensors   the student, when the run trained it (never a student that was not trained)
    adapters.safetensors  the terms' trained adapters and memories, if any
    pair_cka.json         each distilled pair's CKA before and after training (featdistill_core.analysis.pairs)
    error.txt             what went wrong, where, what the folder holds, and the traceback
    run.lock              held (flock) by the process writing the folder

**Writing** (:class:`RunWriter`, a trainer subscriber): every file but ``metrics.jsonl`` is written
atomically (:mod:`featdistill_core.atomic`), so after any kill each file is absent, its previous
complete version or its new complete version; ``metrics.jsonl`` gets one whole line per event and is
strict JSON: a non-finite number is written as ``null`` and named in the record's ``"nonfinite"``
(``{"losses.ce": "nan"}``), and read back as that number. These writes, the checkpoints and the
trainer's model saves are the only writes of a run (one gate for "only rank 0 writes").

**Resuming** appends to the same ``metrics.jsonl``: a ``resumed`` record gives the checkpoint's
position, and every record of a later position written before it is superseded (the resumed run
writes it again). :class:`RunRecord` applies that rule, so a resumed run reads back exactly like an
uninterrupted one.

**Reading**: :func:`load_run` reads a whole folder; :class:`RunFollower` reads one that another
process is writing, a little more at each :meth:`~RunFollower.poll`; :func:`run_status` says what a
folder is (running, finished, stopped, failed, interrupted) and whether it can be resumed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from featdistill_core.atomic import LineLog, WriteError, atomic_file, remove_stale_temporaries, write_atomic
from featdistill_core.checkpoint import CHECKPOINT_BEST, CHECKPOINT_LAST, checkpoint_summary
from featdistill_core.config import ConfigError, RunConfig, config_to_toml, load_config
from featdistill_core.events import (
    AttentionSnapshot, Checkpointed, EpochEvent, Failed, Finished, LossBalance, PairMaps, Resumed, StageStarted,
    StepEvent, TermBalance,
)
from featdistill_core.stages import Stage

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no run lock, a running run reads as interrupted
    fcntl = None

RUN_FILE = "run.toml"
METRICS_FILE = "metrics.jsonl"
ERROR_FILE = "error.txt"
LOCK_FILE = "run.lock"
SNAPSHOTS = "snapshots"
TEACHER_FILE = "teacher.safetensors"
STUDENT_FILE = "student.safetensors"
ADAPTERS_FILE = "adapters.safetensors"
STATES = ("running", "finished", "stopped", "failed", "interrupted")

__all__ = [
    "ADAPTERS_FILE", "CHECKPOINT_BEST", "CHECKPOINT_LAST", "FollowUpdate", "RunFolderError", "RunFollower",
    "RunLock", "RunRecord", "RunStatus", "RunWriter", "STUDENT_FILE", "TEACHER_FILE", "BALANCE_FILE", "load_run",
    "new_run_dir", "read_balance", "run_status", "write_run_file",
]


class RunFolderError(ValueError):
    """A folder that is not a readable run folder, or cannot be used as one now."""


# ---- making a run folder ----------------------------------------------------------------------


def new_run_dir(config: RunConfig) -> Path:
    """Make and return a new, empty ``output_dir/name-YYYYmmdd-HHMMSS`` (``-2``, ``-3`` … if taken).

    The folder is created with an exclusive ``mkdir``, so two runs started at the same second, from
    threads or processes, always get two folders."""
    root = Path(config.output_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(root, exc) from exc
    base = f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    for n in range(1, 10_000):
        candidate = root / (base if n == 1 else f"{base}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
        except OSError as exc:
            raise WriteError(candidate, exc) from exc
    raise WriteError(root / base, "too many run folders of this name in this second")


def holds_a_run(folder: Path) -> bool:
    return (folder / RUN_FILE).exists() or (folder / METRICS_FILE).exists()


class RunLock:
    """An exclusive lock on a run folder (``flock`` on ``run.lock``), held while a process writes it.

    The kernel releases it when the process ends, however it ends, so a folder whose lock is free
    and whose log has no final event was interrupted. Where ``fcntl`` is missing (Windows) it does
    nothing."""

    def __init__(self, run_dir):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        if fcntl is None:
            return self
        _create_lock_file(self.path)
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError as exc:
            raise WriteError(self.path, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RunFolderError(f"run folder {self.path.parent} is in use: another featdistill process is "
                                 "training into it") from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):
                os.close(fd)

    __enter__ = acquire

    def __exit__(self, *exc) -> None:
        self.release()

    @staticmethod
    def is_held(run_dir) -> bool:
        """Whether a process (this one included) holds the folder's lock now."""
        path = Path(run_dir) / LOCK_FILE
        if fcntl is None or not path.exists():
            return False
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)


def _create_lock_file(path: Path) -> None:
    """Create ``run.lock`` (never replace it: a process may hold the existing one) with content."""
    if path.exists():
        return
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.write(handle, b"featdistill: locked (flock) by the process that trains into this folder\n")
        os.close(handle)
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    except OSError as exc:
        raise WriteError(path, exc) from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


# ---- writing ------------------------------------------------------------------------------------


def write_run_file(run_dir, config: RunConfig) -> Path:
    """Write the run folder's ``run.toml`` (atomically): the first file of a run folder."""
    return write_atomic(Path(run_dir) / RUN_FILE, config_to_toml(config))


class RunWriter:
    """A trainer subscriber that writes every event into the run folder (see the module docstring).

    ``metrics.jsonl`` is appended to (when ``resuming``, a last line cut short by a kill is removed
    first); ``run.toml`` is written before, by :func:`write_run_file`."""

    def __init__(self, run_dir: Path, *, resuming: bool = False):
        self.run_dir = Path(run_dir)
        try:
            (self.run_dir / SNAPSHOTS).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WriteError(self.run_dir / SNAPSHOTS, exc) from exc
        remove_stale_temporaries(self.run_dir)
        remove_stale_temporaries(self.run_dir / SNAPSHOTS)
        self._log = LineLog(self.run_dir / METRICS_FILE)
        if resuming:
            self._log.repair()

    def __call__(self, event) -> None:
        if isinstance(event, AttentionSnapshot):
            name = f"{SNAPSHOTS}/{event.step:06d}_{event.stage}.npz"
            arrays = {"images": event.images, "labels": np.asarray(event.labels)}
            for i, pair in enumerate(event.pairs):
                arrays[f"teacher_{i}"] = pair.teacher
                arrays[f"student_{i}"] = pair.student
            with atomic_file(self.run_dir / name) as file:
                np.savez_compressed(file, **arrays)
            record = {"type": "snapshot", "stage": event.stage, "step": event.step, "epoch": event.epoch,
                      "file": name, "pairs": [[p.name, p.teacher_layer, p.student_layer] for p in event.pairs]}
        else:
            record = {"type": _TYPES[type(event)], **dataclasses.asdict(event)}
        first_error = None
        if isinstance(event, Failed):
            try:
                write_atomic(self.run_dir / ERROR_FILE, error_text(event))
            except WriteError as exc:
                first_error = exc           # still try to log the event
        if isinstance(event, Resumed):
            self._remove_superseded_snapshots(event)
        if isinstance(event, LossBalance):          # one report per student-side stage, in order
            earlier = [dataclasses.asdict(r) for r in read_balance(self.run_dir) if r.stage != event.stage]
            write_atomic(self.run_dir / BALANCE_FILE,
                         json.dumps(earlier + [dataclasses.asdict(event)], indent=1) + "\n")
        self._log.append(encode_record(record))
        if first_error is not None:
            raise first_error

    def _remove_superseded_snapshots(self, resumed: Resumed) -> None:
        for path in (self.run_dir / SNAPSHOTS).glob("*.npz"):
            found = re.fullmatch(r"(\d+)_(\w+)\.npz", path.name)
            if found and found.group(2) in _RANK and _after(found.group(2), int(found.group(1)), resumed):
                with contextlib.suppress(OSError):
                    path.unlink()

    def close(self) -> None:
        self._log.close()


def error_text(event: Failed) -> str:
    """``error.txt``: the error, its field, where the run was, what the folder holds, the details."""
    lines = [event.error, "", "The run failed."]
    if event.field:
        lines.append(f"field: {event.field}")
    if event.where:
        lines.append(f"where: {event.where}")
    if event.holds:
        lines += ["", "This folder holds:"]
        width = max(len(name) for name, _ in event.holds)
        lines += [f"  {name:{width}s}  {what}" for name, what in event.holds]
    if event.details:
        lines += ["", "Details:", event.details.rstrip()]
    return "\n".join(lines) + "\n"


_TYPES = {StageStarted: "stage", StepEvent: "step", EpochEvent: "epoch", Finished: "finished", Failed: "failed",
          Checkpointed: "checkpoint", Resumed: "resumed", LossBalance: "balance"}
_CLASSES = {name: cls for cls, name in _TYPES.items()}
_RANK = {stage.value: rank for rank, stage in enumerate(Stage)}
BALANCE_FILE = "balance.json"


def balance_from_dict(data: dict) -> LossBalance:
    """A :class:`LossBalance` from its JSON form (a ``balance`` record or an item of ``balance.json``)."""
    data = {k: v for k, v in data.items() if k != "type"}
    data["terms"] = tuple(TermBalance(**term) for term in data.get("terms", ()))
    return LossBalance(**data)


def read_balance(run_dir: str | Path) -> tuple[LossBalance, ...]:
    """The run folder's ``balance.json``: one report per student-side stage measured (none when there is
    no file). RunFolderError when it is damaged."""
    path = Path(run_dir) / BALANCE_FILE
    if not path.is_file():
        return ()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ValueError("expected a list of reports")
        return tuple(balance_from_dict(item) for item in data)
    except (ValueError, TypeError, KeyError, AttributeError, OSError) as exc:
        raise RunFolderError(f"{path} is damaged: {exc}") from None


def encode_record(record: dict) -> str:
    """One strict-JSON line: non-finite numbers become ``null`` and are listed under ``"nonfinite"``."""
    nonfinite: dict[str, str] = {}

    def clean(value, path: str):
        if isinstance(value, float) and not math.isfinite(value):
            nonfinite[path] = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
            return None
        if isinstance(value, dict):
            return {str(k): clean(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v, f"{path}.{i}") for i, v in enumerate(value)]
        if isinstance(value, (np.floating, np.integer)):
            return clean(value.item(), path)
        return value

    cleaned = clean(record, "")
    if nonfinite:
        cleaned["nonfinite"] = nonfinite
    return json.dumps(cleaned, allow_nan=False)


def decode_record(line: str) -> dict:
    """The record of one line, non-finite numbers put back (raises ValueError for a damaged line)."""
    data = json.loads(line)
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ValueError("not an event record")
    for path, word in (data.pop("nonfinite", None) or {}).items():
        holder, parts = data, str(path).split(".")
        for part in parts[:-1]:
            holder = holder[int(part)] if isinstance(holder, list) else holder[part]
        key = int(parts[-1]) if isinstance(holder, list) else parts[-1]
        holder[key] = float(word)
    return data


# ---- reading ------------------------------------------------------------------------------------


def _after(stage, step: int, resumed: Resumed) -> bool:
    """Whether a record at (stage, step) lies after the resumed position."""
    return (_RANK[str(stage)], step) > (_RANK[str(resumed.stage)], resumed.step)


@dataclass
class RunRecord:
    """Everything a run folder recorded, with a resumed run's superseded records dropped."""

    path: Path
    config: RunConfig
    stages: list[StageStarted] = field(default_factory=list)
    steps: list[StepEvent] = field(default_factory=list)
    epochs: list[EpochEvent] = field(default_factory=list)
    snapshots: list[AttentionSnapshot] = field(default_factory=list)
    finished: Finished | None = None
    failed: Failed | None = None
    checkpoints: list[Checkpointed] = field(default_factory=list)
    resumes: list[Resumed] = field(default_factory=list)
    balance: list[LossBalance] = field(default_factory=list)    # one per student-side stage measured

    def apply(self, event) -> None:
        """Add one event in the order it was written (a :class:`Resumed` drops what it supersedes;
        an event at the same place as one held — same stage and step or epoch — replaces it)."""
        if isinstance(event, Resumed):
            self.resumes.append(event)
            rank = _RANK[str(event.stage)]
            self.steps = [e for e in self.steps if not _after(e.stage, e.step, event)]
            self.snapshots = [e for e in self.snapshots if not _after(e.stage, e.step, event)]
            self.checkpoints = [e for e in self.checkpoints if not _after(e.stage, e.step, event)]
            self.epochs = [e for e in self.epochs if _RANK[str(e.stage)] < rank
                           or (e.stage == event.stage and e.epoch <= event.epoch)]
            self.stages = [e for e in self.stages if _RANK[str(e.stage)] <= rank]
            self.finished = self.failed = None
        elif isinstance(event, StageStarted):
            _put(self.stages, event, lambda e: e.stage)
        elif isinstance(event, StepEvent):
            _put(self.steps, event, lambda e: (e.stage, e.step))
        elif isinstance(event, EpochEvent):
            _put(self.epochs, event, lambda e: (e.stage, e.epoch))
        elif isinstance(event, AttentionSnapshot):
            _put(self.snapshots, event, lambda e: (e.stage, e.step))
        elif isinstance(event, Checkpointed):
            self.checkpoints.append(event)
        elif isinstance(event, LossBalance):
            _put(self.balance, event, lambda e: e.stage)
        elif isinstance(event, Finished):
            self.finished = event
        elif isinstance(event, Failed):
            self.failed = event

    @property
    def ended(self) -> bool:
        return self.finished is not None or self.failed is not None


def _put(items: list, event, key) -> None:
    """Append ``event``, or replace the last held event with the same key (a resumed run's rewrite)."""
    wanted = key(event)
    for i in range(len(items) - 1, max(-1, len(items) - 64), -1):
        if key(items[i]) == wanted:
            items[i] = event
            return
    items.append(event)


def event_from_record(data: dict, run_dir: Path, *, snapshots: bool = True):
    """The event of one decoded record (None for a snapshot when ``snapshots`` is False, or an unknown
    type of record, skipped so newer folders still read). Raises KeyError/TypeError/ValueError/OSError."""
    data = dict(data)
    kind = data.pop("type")
    if "stage" in data:
        data["stage"] = Stage(data["stage"])
    if kind == "snapshot":
        return _read_snapshot(run_dir, data) if snapshots else None
    if kind == "balance":
        return balance_from_dict(data)
    if kind == "failed":
        data["problems"] = tuple(tuple(p) for p in data.get("problems", ()))
        data["holds"] = tuple(tuple(p) for p in data.get("holds", ()))
    cls = _CLASSES.get(kind)
    if cls is None:
        return None
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


def _read_config(path: Path) -> RunConfig:
    if not (path / RUN_FILE).is_file() or not (path / METRICS_FILE).is_file():
        raise RunFolderError(f"{path} is not a run folder (expected run.toml and metrics.jsonl in it)")
    try:
        return load_config(path / RUN_FILE)
    except ConfigError as exc:
        raise RunFolderError(f"{path / RUN_FILE}: {exc}") from None


def load_run(path: str | Path, *, snapshots: bool = True) -> RunRecord:
    """Read a run folder back: the run file, every metric event and (unless ``snapshots`` is False)
    every attention snapshot. A last line cut short is ignored; a damaged line elsewhere is an error."""
    path = Path(path)
    record = RunRecord(path=path, config=_read_config(path))
    lines = (path / METRICS_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
    missing = None            # the first snapshot whose file is gone: superseded, if a resumption follows
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = event_from_record(decode_record(line), path, snapshots=snapshots)
        except FileNotFoundError:
            # A resumption removes the snapshots after its checkpoint; their lines stay before its
            # record, and a run killed again before it re-reached them has no file for them.
            missing = missing or number
            continue
        except (ValueError, KeyError, TypeError, IndexError, OSError):
            if number == len(lines):
                break  # a last line cut short by a crash: keep everything before it
            raise RunFolderError(f"{path / METRICS_FILE} line {number} is damaged") from None
        if isinstance(event, Resumed):
            missing = None
        if event is not None:
            record.apply(event)
    if missing is not None:
        raise RunFolderError(f"{path / METRICS_FILE} line {missing} is damaged (its snapshot file is missing)")
    return record


def _read_snapshot(run_dir: Path, data: dict) -> AttentionSnapshot:
    with np.load(run_dir / data["file"]) as arrays:
        pairs = tuple(
            PairMaps(name=name, teacher_layer=t, student_layer=s,
                     teacher=arrays[f"teacher_{i}"], student=arrays[f"student_{i}"])
            for i, (name, t, s) in enumerate(data["pairs"])
        )
        return AttentionSnapshot(stage=data["stage"], step=data["step"], epoch=data["epoch"],
                                 images=arrays["images"], labels=tuple(int(v) for v in arrays["labels"]),
                                 pairs=pairs)


# ---- following a run another process writes --------------------------------------------------------


@dataclass(frozen=True)
class FollowUpdate:
    """What one :meth:`RunFollower.poll` found: the new events in order, and ``reset`` when the log was
    replaced or shortened since the last poll (start over from ``RunFollower.record``)."""

    events: list
    reset: bool = False


class RunFollower:
    """Reads a run folder that another process is writing, incrementally.

    Each :meth:`poll` reads only what was appended to ``metrics.jsonl`` since the last one and returns
    the new events (snapshots loaded from their ``.npz`` unless ``snapshots`` is False). It is
    tolerant of a folder that does not exist yet, of ``run.toml`` or ``metrics.jsonl`` appearing later,
    of a last line still being written (kept until its newline arrives), and of a damaged line or an
    unreadable snapshot (skipped and listed in :attr:`problems`). A :class:`~featdistill_core.events.Resumed`
    event means: drop what you hold after its position (``record`` has done so already).

    ``record`` (a :class:`RunRecord`, None until ``run.toml`` is readable) holds everything so far;
    :attr:`ended` is True once a final event (finished, stopped, failed) has been read. Never raises
    for what it reads; one instance is for one thread.
    """

    def __init__(self, run_dir, *, snapshots: bool = True):
        self.run_dir = Path(run_dir)
        self.snapshots = snapshots
        self.record: RunRecord | None = None
        self.problems: list[str] = []
        self._offset = 0
        self._partial = b""
        self._inode = None

    @property
    def config(self) -> RunConfig | None:
        return self.record.config if self.record is not None else None

    @property
    def ended(self) -> bool:
        return self.record is not None and self.record.ended

    def poll(self, max_bytes: int = 16 << 20, between: Callable[[object], None] | None = None) -> FollowUpdate:
        """New events since the last poll (at most ``max_bytes`` of the log read per call).

        ``between(event)``, if given, is called after each event is read (a thread that shares the
        interpreter with a window can pause there, see ``app.follow``)."""
        if self.record is None:
            try:
                config = load_config(self.run_dir / RUN_FILE)
            except (ConfigError, OSError):
                return FollowUpdate([])
            self.record = RunRecord(path=self.run_dir, config=config)
        path = self.run_dir / METRICS_FILE
        try:
            with open(path, "rb") as stream:
                info = os.fstat(stream.fileno())
                reset = False
                if info.st_size < self._offset or (self._inode is not None and info.st_ino != self._inode):
                    reset = True
                    self._offset, self._partial = 0, b""
                    self.record = RunRecord(path=self.run_dir, config=self.record.config)
                self._inode = info.st_ino
                stream.seek(self._offset)
                chunk = stream.read(max_bytes)
        except OSError:
            return FollowUpdate([])
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        events = []
        for raw in lines:
            if not raw.strip():
                continue
            try:
                event = event_from_record(decode_record(raw.decode("utf-8")), self.run_dir, snapshots=self.snapshots)
            except (ValueError, KeyError, TypeError, IndexError, OSError, UnicodeDecodeError):
                self.problems.append(f"{path}: skipped a damaged record ({raw[:60]!r}…)")
                continue
            if event is not None:
                self.record.apply(event)
                events.append(event)
                if between is not None:
                    between(event)
        return FollowUpdate(events, reset)


# ---- what a folder is ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunStatus:
    """What a run folder is, for a runs list: ``state`` is one of :data:`STATES`."""

    path: Path
    state: str               # running | finished | stopped | failed | interrupted
    resumable: bool          # `featdistill train --resume PATH` / Trainer.resume_from(PATH) would continue it
    checkpoint: dict | None  # the last checkpoint's position (stage_index, epoch, batch, step, reason, saved_at)
    message: str             # one line for people
    metrics: dict = field(default_factory=dict)   # the final metrics of a finished or stopped run
    error: str = ""          # a failed run's error


def run_status(path: str | Path) -> RunStatus:
    """What the folder ``path`` is; raises :class:`RunFolderError` if it is not a run folder.

    Cheap: it reads the end of ``metrics.jsonl`` and the position of the last checkpoint (mapped,
    not read), not the whole log. A folder whose lock is held is ``running``; a log that ends
    without a final event, with no process holding the lock, is ``interrupted``."""
    path = Path(path)
    if not (path / RUN_FILE).is_file():
        raise RunFolderError(f"{path} is not a run folder (it has no run.toml)")
    summary = checkpoint_summary(path / CHECKPOINT_LAST) if (path / CHECKPOINT_LAST).exists() else None
    where = (f"checkpoint at stage {summary['stage_index'] + 1}, epoch {summary['epoch']}, "
             f"batch {summary['batch']}" if summary else "no checkpoint: a resumed run starts over")
    if RunLock.is_held(path):
        return RunStatus(path, "running", False, summary, "running (another process is writing it)")
    last = _last_record(path / METRICS_FILE)
    try:
        load_config(path / RUN_FILE)
        readable = True
    except (ConfigError, OSError):
        readable = False
    if last is not None and last.get("type") == "finished":
        metrics = dict(last.get("metrics") or {})
        if last.get("stopped"):
            return RunStatus(path, "stopped", readable, summary, f"stopped; {where}", metrics)
        return RunStatus(path, "finished", False, summary, "finished", metrics)
    if last is not None and last.get("type") == "failed":
        error = str(last.get("error", ""))
        return RunStatus(path, "failed", readable, summary, f"failed: {error}; {where}", error=error)
    return RunStatus(path, "interrupted", readable, summary, f"interrupted (killed or crashed); {where}")


def _last_record(path: Path, tail: int = 1 << 16) -> dict | None:
    """The last complete, readable record of a log (None if there is none)."""
    try:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            stream.seek(max(0, size - tail))
            data = stream.read()
    except OSError:
        return None
    for raw in reversed(data.split(b"\n")):
        if raw.strip():
            try:
                return decode_record(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                continue
    return None


# ---- what a run folder is, for a list of runs ----------------------------------------------------

RUN_STATES = ("finished", "stopped", "failed", "interrupted")


def run_state(record: RunRecord) -> str:
    """How the recorded run ended, one of :data:`RUN_STATES`: ``"finished"``, ``"stopped"`` (a stop
    request ended it early), ``"failed"`` (an error ended it; ``record.failed`` says which), or
    ``"interrupted"`` (its log ends without an end record: the process was killed, or is still
    writing it)."""
    if record.failed is not None:
        return "failed"
    if record.finished is not None:
        return "stopped" if record.finished.stopped else "finished"
    return "interrupted"


def run_folders(folder: str | Path) -> list[Path]:
    """The run folders directly inside ``folder`` (those holding ``run.toml`` and ``metrics.jsonl``),
    newest first (by the time their log was last written); ``[]`` when ``folder`` is not a folder."""
    folder = Path(folder)
    try:
        children = [child for child in folder.iterdir() if child.is_dir()]
    except OSError:
        return []
    found = []
    for child in children:
        log = child / "metrics.jsonl"
        try:
            if (child / "run.toml").is_file() and log.is_file():
                found.append((log.stat().st_mtime, child))
        except OSError:
            continue
    return [child for _mtime, child in sorted(found, key=lambda item: (-item[0], item[1].name))]
