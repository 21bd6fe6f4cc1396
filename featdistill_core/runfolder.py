"""A run folder: everything a run produced, written as it happens, and read back.

Layout::

    run.toml            the run file as used
    metrics.jsonl       one JSON object per event, appended and flushed as it happens
    snapshots/NNNNNN_<stage>.npz   attention maps of each snapshot (and the probe images)
    teacher.safetensors the teacher, when the run trained it
    student.safetensors the student (also written when the run is stopped or fails mid-way)
    adapters.safetensors the pairs' trained regressors, if any
    pair_cka.json       each distilled pair's CKA before and after training (featdistill_core.analysis.pairs)
    error.txt           the error and its traceback, if the run failed

Because every line and snapshot is on disk the moment it exists, nothing is lost when a run fails.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featdistill_core.config import ConfigError, RunConfig, load_config, save_config
from featdistill_core.events import (
    AttentionSnapshot, EpochEvent, Failed, Finished, PairMaps, StageStarted, StepEvent,
)
from featdistill_core.stages import Stage


class RunFolderError(ValueError):
    """A folder that is not a readable run folder."""


def new_run_dir(config: RunConfig) -> Path:
    """``output_dir/name-YYYYmmdd-HHMMSS`` (with a counter if that exists already)."""
    base = Path(config.output_dir) / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


class RunWriter:
    """A trainer subscriber that writes every event into the run folder."""

    def __init__(self, run_dir: Path, config: RunConfig):
        self.run_dir = Path(run_dir)
        (self.run_dir / "snapshots").mkdir(parents=True, exist_ok=True)
        save_config(config, self.run_dir / "run.toml")
        self._metrics = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")

    def __call__(self, event) -> None:
        record: dict
        if isinstance(event, AttentionSnapshot):
            name = f"snapshots/{event.step:06d}_{event.stage}.npz"
            arrays = {"images": event.images, "labels": np.asarray(event.labels)}
            for i, pair in enumerate(event.pairs):
                arrays[f"teacher_{i}"] = pair.teacher
                arrays[f"student_{i}"] = pair.student
            np.savez_compressed(self.run_dir / name, **arrays)
            record = {"type": "snapshot", "stage": event.stage, "step": event.step, "epoch": event.epoch,
                      "file": name, "pairs": [[p.name, p.teacher_layer, p.student_layer] for p in event.pairs]}
        else:
            record = {"type": _TYPES[type(event)], **dataclasses.asdict(event)}
            if isinstance(event, Failed):
                (self.run_dir / "error.txt").write_text(f"{event.error}\n\n{event.details}", encoding="utf-8")
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()

    def close(self) -> None:
        self._metrics.close()


_TYPES = {StageStarted: "stage", StepEvent: "step", EpochEvent: "epoch", Finished: "finished", Failed: "failed"}
_CLASSES = {name: cls for cls, name in _TYPES.items()}


@dataclass
class RunRecord:
    path: Path
    config: RunConfig
    stages: list[StageStarted] = field(default_factory=list)
    steps: list[StepEvent] = field(default_factory=list)
    epochs: list[EpochEvent] = field(default_factory=list)
    snapshots: list[AttentionSnapshot] = field(default_factory=list)
    finished: Finished | None = None
    failed: Failed | None = None


def load_run(path: str | Path, *, snapshots: bool = True) -> RunRecord:
    """Read a run folder back: the run file, every metric event and every attention snapshot
    (``snapshots=False`` leaves the snapshots unread: ``record.snapshots`` is then empty)."""
    path = Path(path)
    if not (path / "run.toml").is_file() or not (path / "metrics.jsonl").is_file():
        raise RunFolderError(f"{path} is not a run folder (expected run.toml and metrics.jsonl in it)")
    try:
        config = load_config(path / "run.toml")
    except ConfigError as exc:
        raise RunFolderError(f"{path / 'run.toml'}: {exc}") from None
    record = RunRecord(path=path, config=config)
    lists = {"stage": record.stages, "step": record.steps, "epoch": record.epochs}
    for number, line in enumerate((path / "metrics.jsonl").read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            kind = data.pop("type")
            if "stage" in data:
                data["stage"] = Stage(data["stage"])
            if kind == "snapshot":
                if snapshots:
                    record.snapshots.append(_read_snapshot(path, data))
            elif kind in lists:
                lists[kind].append(_CLASSES[kind](**data))
            elif kind == "finished":
                record.finished = Finished(**data)
            elif kind == "failed":
                data["problems"] = tuple(tuple(p) for p in data.get("problems", ()))
                record.failed = Failed(**data)
        except (ValueError, KeyError, TypeError, OSError) as exc:
            if number == _count_lines(path / "metrics.jsonl"):
                break  # a last line cut short by a crash: keep everything before it
            raise RunFolderError(f"{path / 'metrics.jsonl'} line {number} is damaged: {exc}") from None
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


def _count_lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


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
