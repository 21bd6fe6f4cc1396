"""Which method works here: every chosen method, over several seeds, against the undistilled baseline.

``featdistill compare RUN.toml --methods at,hint,kd --seeds 0,1,2`` (and the window's compare view)
runs this module:

1. :func:`plan_compare` turns a run file into *candidates*: each method at its reference placement
   (:func:`featdistill_core.placement.place_method`, the placement the window's *Suggest pairs* uses)
   with its reference weight (or ``"auto"``: :mod:`featdistill_core.balance`) and its recipe stage,
   plus the undistilled ``baseline`` and, on request, ``recipe`` (the run file's own terms as written).
   Every candidate is validated once; a method that cannot be placed on this pair of networks is
   kept, with the reason, and reported in the leaderboard — never silently skipped.
2. :class:`CompareRunner` trains (or loads) the teacher once, then every candidate with every seed,
   each into its own run folder inside the compare folder. An entry that fails is recorded with its
   error and the others still run; :meth:`CompareRunner.request_stop` (Ctrl-C in the CLI, Stop in the
   window) stops the entry under way at its next step, and what is done is written.
3. The compare folder holds ``compare.json`` (the plan and every entry, rewritten whole after each
   entry), ``leaderboard.csv``, ``leaderboard.md`` and the run folders. :func:`read_compare` reads it
   back for the window: :attr:`CompareResult.rows` is the leaderboard.

A method whose recipe stage is ``"init"`` (``Method.default_stage``: FSP) gets an initialisation
stage before the student epochs, of ``init_epochs`` epochs: the run file's ``init_epochs`` if it sets
one, else one eighth of the student epochs (at least 1) — RepDistiller's FSP recipe initialises for
30 epochs before 240. Those epochs come on top of the student epochs every candidate gets; the time
per epoch in the leaderboard is that of the student stage.

The baseline and every candidate train with the same seeds; the teacher is trained once, with the
run file's seed. An image folder's test split does not depend on the seed
(:mod:`featdistill_core.data.imagefolder`), so the teacher has never seen any seed's test images.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import math
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from featdistill_core.config import (
    AUTO_WEIGHT, ConfigError, PairConfig, RunConfig, checked, config_from_dict, config_to_dict, save_config,
)
from featdistill_core.data import DatasetError, dataset_info
from featdistill_core.demo import baseline_config
from featdistill_core.errors import Problems
from featdistill_core.events import EpochEvent, Failed, StageStarted, StepEvent
from featdistill_core.losses import METHODS, Taps, get_method
from featdistill_core.placement import PlacementError, place_method
from featdistill_core.stages import Stage
from featdistill_core.trainer import Trainer
from featdistill_core.validate import model_layers, validate_run

BASELINE = "baseline"
"""The candidate without a teacher: the student trained on its own."""
RECIPE = "recipe"
"""The candidate that trains the run file's own distillation terms, as written."""
AUTO_SUFFIX = "+auto"
"""Appended to a candidate's key when its weights are chosen by calibration (``weight = "auto"``)."""
WEIGHT_MODES = ("reference", "auto", "both")
COMPARE_FILE = "compare.json"
COMPARE_VERSION = 1
INIT_FRACTION = 8        # an init-stage method initialises for epochs / INIT_FRACTION epochs by default

DONE, FAILED, STOPPED, NOT_RUN, UNPLACEABLE = "done", "failed", "stopped", "not run", "cannot be placed"

__all__ = [
    "AUTO_SUFFIX", "BASELINE", "COMPARE_FILE", "Candidate", "CompareEntry", "CompareFolderError", "ComparePlan",
    "CompareResult", "CompareRunner", "EntryFinished", "EntryStarted", "LeaderboardRow", "RECIPE", "SweepEstimator",
    "SweepFinished", "WEIGHT_MODES", "default_init_epochs", "leaderboard", "leaderboard_csv", "leaderboard_markdown",
    "leaderboard_text", "parse_methods", "parse_seeds", "plan_compare", "read_compare",
]


class CompareFolderError(ValueError):
    """A folder that is not a readable compare folder."""


# ---- the plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One row of the leaderboard: a method at its reference placement (or the baseline, or the recipe)."""

    key: str                 # "at", "at+auto", "baseline", "recipe"
    method: str              # the method's key; "" for the baseline and the recipe
    title: str
    auto: bool = False
    layers: str = ""         # where it is placed, in words: "layer2←layer2; layer3←layer3"
    weight: str = ""         # "1000", "auto", "as written"
    init_epochs: int = 0
    refusal: str = ""        # why it cannot run on these networks ("" when it can)
    pairs: tuple = ()        # its [[pairs]] as plain dicts (the run file's form)

    @property
    def placeable(self) -> bool:
        return not self.refusal


@dataclass
class ComparePlan:
    """What a sweep will run: the base run, its candidates and its seeds, into ``folder``."""

    config: RunConfig
    candidates: list[Candidate]
    seeds: list[int]
    folder: Path
    steps_per_epoch: int = 0

    def config_for(self, candidate: Candidate, seed: int) -> RunConfig:
        """The run of ``candidate`` with ``seed`` (the teacher as the plan has it: weights, or trained)."""
        return _candidate_config(self.config, candidate, seed)

    def entry_steps(self, candidate: Candidate) -> int:
        """Training steps of one entry of ``candidate`` (the teacher's excluded)."""
        if not candidate.placeable:
            return 0
        return (self.config.epochs + candidate.init_epochs) * self.steps_per_epoch

    @property
    def teacher_steps(self) -> int:
        return self.config.teacher.train_epochs * self.steps_per_epoch if self.trains_teacher else 0

    @property
    def trains_teacher(self) -> bool:
        return not self.config.teacher.weights and any(c.method or c.key.startswith(RECIPE) for c in self.candidates
                                                        if c.placeable)

    @property
    def total_steps(self) -> int:
        return self.teacher_steps + sum(self.entry_steps(c) for c in self.candidates) * len(self.seeds)


def parse_methods(text: str | Sequence[str]) -> list[str]:
    """``"at,hint"`` → ``["at", "hint"]``; ``"all"`` → every registered method (:data:`METHODS`), in
    registration order. ``baseline`` is always run and may be left out; ``recipe`` names the run
    file's own terms. ValueError for an unknown name (all of them named) or an empty list."""
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not names:
        raise ValueError("--methods needs at least one method (or 'all')")
    result: list[str] = []
    unknown = []
    for name in names:
        expanded = list(METHODS) if name == "all" else [name]
        for key in expanded:
            if key == BASELINE:
                continue
            if key != RECIPE and key not in METHODS:
                unknown.append(key)
            elif key not in result:
                result.append(key)
    if unknown:
        raise ValueError(f"unknown method{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                         f"allowed: all, {RECIPE}, {', '.join(METHODS)}")
    return result


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` → a list of distinct seeds; ValueError for anything else."""
    if not isinstance(text, str):
        seeds = [int(s) for s in text]
    else:
        seeds = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            try:
                if "-" in part[1:]:
                    low, high = part.split("-", 1)
                    seeds += list(range(int(low), int(high) + 1))
                else:
                    seeds.append(int(part))
            except ValueError:
                raise ValueError(f"--seeds must be whole numbers like 0,1,2 or 0-4; got {text!r}") from None
    if not seeds or any(s < 0 or s > 2**32 - 1 for s in seeds):
        raise ValueError(f"--seeds must be whole numbers from 0 to {2**32 - 1}, at least one; got {text!r}")
    return list(dict.fromkeys(seeds))


def default_init_epochs(config: RunConfig) -> int:
    """The init stage of an init-stage method: the run's ``init_epochs``, or epochs / 8 (at least 1)."""
    return config.init_epochs if config.init_epochs > 0 else max(1, round(config.epochs / INIT_FRACTION))


def plan_compare(config: RunConfig, methods: Sequence[str] | str, seeds: Sequence[int] | str, *,
                 weights: str = "reference", init_epochs: Optional[int] = None,
                 folder: str | Path | None = None) -> ComparePlan:
    """Place and check every candidate on the run's networks; ConfigError for a run that cannot be
    compared at all (no teacher, missing data, unknown method …), every problem at once."""
    problems = Problems()
    try:
        methods = parse_methods(methods)
    except ValueError as exc:
        problems.add("methods", str(exc))
        methods = []
    try:
        seeds = parse_seeds(seeds)
    except ValueError as exc:
        problems.add("seeds", str(exc))
        seeds = []
    if weights not in WEIGHT_MODES:
        problems.add("weights", f"must be one of {', '.join(WEIGHT_MODES)}; got {weights!r}")
    if init_epochs is not None and (isinstance(init_epochs, bool) or not isinstance(init_epochs, int) or init_epochs < 1):
        problems.add("init_epochs", f"must be at least 1; got {init_epochs!r}")
    config = checked(config)
    if config.epochs < 1:
        problems.add("epochs", "must be at least 1 to compare students")
    if not config.teacher.weights and config.teacher.train_epochs < 1:
        problems.add("teacher.weights", "compare needs a teacher: give its weights file, or train it first "
                                        "(teacher.train_epochs above 0)")
    problems.raise_if_any()

    try:
        info = dataset_info(config.data.name, config.data.path or None, demo_train=config.data.demo_train,
                            demo_test=config.data.demo_test, seed=config.seed,
                            test_fraction=config.data.test_fraction)
    except DatasetError as exc:
        raise ConfigError("data.path", str(exc)) from None
    shape = (3, config.data.image_size, config.data.image_size)
    layers = {}
    for role in ("teacher", "student"):
        try:
            layers[role] = model_layers(getattr(config, role).arch, info.num_classes, shape)
        except ValueError as exc:
            problems.add(f"{role}.arch", str(exc))
    problems.raise_if_any()

    init = init_epochs if init_epochs is not None else default_init_epochs(config)
    modes = {"reference": (False,), "auto": (True,), "both": (False, True)}[weights]
    candidates = [_baseline_candidate()]
    for key in methods:
        for auto in modes:
            if key == RECIPE:
                candidates.append(_recipe_candidate(config, auto))
            else:
                candidates.append(_method_candidate(key, auto, layers["teacher"], layers["student"], init))
    if folder is None:
        folder = Path(config.output_dir) / f"compare-{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    plan = ComparePlan(config=config, candidates=candidates, seeds=seeds, folder=Path(folder),
                       steps_per_epoch=info.train_size // config.batch_size)
    plan.candidates = [_checked(plan, c) for c in candidates]
    return plan


def _baseline_candidate() -> Candidate:
    return Candidate(key=BASELINE, method="", title="baseline (no teacher)", weight="-", layers="-")


def _recipe_candidate(config: RunConfig, auto: bool) -> Candidate:
    key = RECIPE + (AUTO_SUFFIX if auto else "")
    terms = config.terms
    pairs = tuple(config_to_dict(RunConfig(pairs=list(terms)))["pairs"])
    refusal = "" if terms else "the run file has no distillation terms"
    layers = "; ".join(f"{t.method} {_layers_text(t.teacher, t.student, t.method)}" if t.teacher
                       else _layers_text([], [], t.method) for t in terms)
    return Candidate(key=key, method="", title="the run file's terms", auto=auto, layers=layers,
                     weight="auto" if auto else "as written", init_epochs=config.init_epochs, refusal=refusal,
                     pairs=pairs)


def _method_candidate(key: str, auto: bool, teacher_layers, student_layers, init: int) -> Candidate:
    info = get_method(key)
    name = key + (AUTO_SUFFIX if auto else "")
    try:
        terms = place_method(key, teacher_layers, student_layers)
    except PlacementError as exc:
        return Candidate(key=name, method=key, title=info.title, auto=auto, weight=_weight_text(info, auto),
                         refusal=str(exc))
    stage = info.default_stage
    pairs = tuple(
        {"method": key, "teacher": list(t), "student": list(s), "weight": AUTO_WEIGHT if auto else info.default_weight,
         "stage": stage, "options": {}}
        for t, s in terms
    )
    return Candidate(key=name, method=key, title=info.title, auto=auto,
                     layers="; ".join(_layers_text(t, s, key) for t, s in terms), weight=_weight_text(info, auto),
                     init_epochs=init if stage == Stage.INIT.value else 0, pairs=pairs)


def _weight_text(info, auto: bool) -> str:
    return "auto" if auto else f"{info.default_weight:g}"


def _layers_text(teacher, student, method) -> str:
    """``layer2←layer2``; ``fc input←fc input`` for a method on a layer's input; ``logits``."""
    if not teacher and not student:
        return f"{method}: logits" if method else "logits"
    tap = " input" if method in METHODS and METHODS[method].taps == Taps.INPUT else ""
    return f"{'+'.join(teacher)}{tap}←{'+'.join(student)}{tap}"


def _candidate_config(base: RunConfig, candidate: Candidate, seed: int) -> RunConfig:
    if candidate.key == BASELINE:
        config = baseline_config(base)
    else:
        config = copy.deepcopy(base)
        config.kd.weight = 0.0
        config.pairs = [PairConfig(**dict(p)) for p in candidate.pairs]
        config.init_epochs = candidate.init_epochs
        config.balance.auto = candidate.auto
    config.seed = seed
    config.name = f"{base.name}-{candidate.key.replace('+', '-')}-seed{seed}"[:120]
    return checked(config)


def _checked(plan: ComparePlan, candidate: Candidate) -> Candidate:
    """Validate one candidate's run (first seed): a refusal becomes the candidate's reason."""
    if not candidate.placeable or not plan.seeds:
        return candidate
    try:
        validate_run(plan.config_for(candidate, plan.seeds[0]))
    except ConfigError as error:
        reason = "; ".join(str(p) for p in error.problems)
        return dataclasses.replace(candidate, refusal=f"refused on these networks: {reason}")
    return candidate


# ---- the sweep -------------------------------------------------------------------------------------


@dataclass
class CompareEntry:
    """One run of the sweep: a candidate with a seed (or the teacher's training)."""

    candidate: str
    seed: int
    status: str = NOT_RUN              # done | failed | stopped | not run | cannot be placed
    run_dir: str = ""
    test_acc: Optional[float] = None    # the student's final test top-1, percent
    teacher_acc: Optional[float] = None
    seconds: float = 0.0                # wall time of the whole entry
    seconds_per_epoch: Optional[float] = None   # of the student stage (training and test pass)
    error: str = ""
    weights: dict = field(default_factory=dict)   # term name → the weight it trained with


@dataclass(frozen=True)
class EntryStarted:
    index: int            # 1-based, over the entries that run
    count: int
    candidate: str
    seed: int
    run_dir: str


@dataclass(frozen=True)
class EntryFinished:
    index: int
    count: int
    entry: CompareEntry


@dataclass(frozen=True)
class SweepFinished:
    folder: str
    stopped: bool


@dataclass
class CompareResult:
    """A compare folder's content: the plan's candidates and seeds, the teacher, every entry."""

    folder: Path
    config: RunConfig
    candidates: list[Candidate]
    seeds: list[int]
    entries: list[CompareEntry]
    teacher: Optional[CompareEntry] = None
    finished: bool = False
    stopped: bool = False

    @property
    def rows(self) -> list["LeaderboardRow"]:
        return leaderboard(self)

    def entry(self, candidate: str, seed: int) -> Optional[CompareEntry]:
        for e in self.entries:
            if e.candidate == candidate and e.seed == seed:
                return e
        return None


class CompareRunner:
    """Runs a :class:`ComparePlan`. ``subscribe(callback)`` receives the sweep's events
    (:class:`EntryStarted`, :class:`EntryFinished`, :class:`SweepFinished`) and every trainer event of
    the entry under way; :meth:`request_stop` may be called from any thread (or a signal handler)."""

    def __init__(self, plan: ComparePlan):
        self.plan = plan
        self._subscribers: list[Callable] = []
        self._stop = threading.Event()
        self._trainer: Optional[Trainer] = None
        self._lock = threading.Lock()
        self.result: Optional[CompareResult] = None

    def subscribe(self, callback: Callable) -> None:
        self._subscribers.append(callback)

    def emit(self, event) -> None:
        for callback in self._subscribers:
            callback(event)

    def request_stop(self) -> None:
        self._stop.set()
        with self._lock:
            trainer = self._trainer
        if trainer is not None:
            trainer.request_stop()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> CompareResult:
        plan = self.plan
        folder = plan.folder
        if (folder / COMPARE_FILE).exists():
            raise CompareFolderError(f"{folder} holds a compare already; choose another folder")
        folder.mkdir(parents=True, exist_ok=True)
        save_config(plan.config, folder / "compare.toml")
        entries = []
        for candidate in plan.candidates:
            for seed in plan.seeds:
                status = NOT_RUN if candidate.placeable else UNPLACEABLE
                entries.append(CompareEntry(candidate.key, seed, status=status, error=candidate.refusal))
        result = CompareResult(folder=folder, config=plan.config, candidates=list(plan.candidates),
                               seeds=list(plan.seeds), entries=entries)
        self.result = result
        _write(result)
        runnable = [e for e in entries if e.status == NOT_RUN]
        teacher_weights = plan.config.teacher.weights
        teacher_problem = ""
        if plan.trains_teacher and not self._stop.is_set():
            result.teacher = self._train_teacher()
            _write(result)
            if result.teacher.status == DONE:
                teacher_weights = str(Path(result.teacher.run_dir) / "teacher.safetensors")
            else:
                teacher_problem = f"the teacher was not trained ({result.teacher.status}: {result.teacher.error})"
        by_key = {c.key: c for c in plan.candidates}
        for index, entry in enumerate(runnable, 1):
            if self._stop.is_set():
                break
            candidate = by_key[entry.candidate]
            if teacher_problem and candidate.key != BASELINE:
                entry.status, entry.error = FAILED, teacher_problem
                _write(result)
                continue
            config = plan.config_for(candidate, entry.seed)
            if candidate.key != BASELINE:
                config.teacher.weights, config.teacher.train_epochs = teacher_weights, 0
            run_dir = folder / f"{candidate.key.replace('+', '-')}-seed{entry.seed}"
            entry.run_dir = str(run_dir)
            self.emit(EntryStarted(index, len(runnable), entry.candidate, entry.seed, str(run_dir)))
            self._run_entry(entry, config, run_dir)
            _write(result)
            self.emit(EntryFinished(index, len(runnable), entry))
        result.stopped = self._stop.is_set()
        result.finished = not result.stopped
        _write(result)
        self.emit(SweepFinished(str(folder), result.stopped))
        return result

    def _train_teacher(self) -> CompareEntry:
        config = copy.deepcopy(self.plan.config)
        config.pairs, config.kd.weight, config.epochs = [], 0.0, 0
        config.name = f"{self.plan.config.name}-teacher"
        entry = CompareEntry("teacher", config.seed, run_dir=str(self.plan.folder / "teacher"))
        self.emit(EntryStarted(0, 0, "teacher", config.seed, entry.run_dir))
        self._run_entry(entry, checked(config), Path(entry.run_dir), stage=Stage.TEACHER)
        entry.teacher_acc = entry.test_acc
        self.emit(EntryFinished(0, 0, entry))
        return entry

    def _run_entry(self, entry: CompareEntry, config: RunConfig, run_dir: Path, stage: Stage = Stage.STUDENT) -> None:
        timer = _StageTimer(stage)
        started = time.perf_counter()
        trainer = None
        try:
            trainer = Trainer(config, run_dir=run_dir)
            trainer.subscribe(timer)
            trainer.subscribe(self.emit)
            with self._lock:
                self._trainer = trainer
            if self._stop.is_set():
                trainer.request_stop()
            finished = trainer.run()
            metrics = finished.metrics
            entry.test_acc = metrics.get(f"{stage}_test_acc")
            entry.teacher_acc = metrics.get("teacher_test_acc")
            entry.status = STOPPED if finished.stopped else DONE
            if finished.stopped:
                entry.error = "stopped"
            distiller = getattr(trainer, "distiller", None)
            if distiller is not None:
                entry.weights = {t.name: t.weight for t in distiller.terms}
        except ConfigError as error:
            entry.status, entry.error = FAILED, "; ".join(str(p) for p in error.problems)
        except Exception as exc:  # noqa: BLE001 - one entry's failure must not end the sweep
            entry.status, entry.error = FAILED, _one_line(exc)
        finally:
            with self._lock:
                self._trainer = None
        entry.seconds = time.perf_counter() - started
        entry.seconds_per_epoch = timer.seconds_per_epoch()


class _StageTimer:
    """Wall time of one stage, from its start to its last epoch's test pass."""

    def __init__(self, stage: Stage):
        self.stage = stage
        self.start: Optional[float] = None
        self.end: Optional[float] = None
        self.epochs = 0

    def __call__(self, event) -> None:
        if isinstance(event, StageStarted) and event.stage == self.stage:
            self.start = time.perf_counter()
        elif isinstance(event, EpochEvent) and event.stage == self.stage:
            self.end = time.perf_counter()
            self.epochs = event.epoch

    def seconds_per_epoch(self) -> Optional[float]:
        if self.start is None or self.end is None or not self.epochs:
            return None
        return (self.end - self.start) / self.epochs


class SweepEstimator:
    """The whole sweep's progress from its events: fraction of its training steps done, and the time
    left at the speed measured so far (for the CLI's progress bar and the window)."""

    def __init__(self, plan: ComparePlan):
        self.total = max(plan.total_steps, 1)
        self.done = 0
        self.started = time.perf_counter()
        self.entry: Optional[EntryStarted] = None
        self.stage: Optional[StageStarted] = None
        self.last_step: Optional[StepEvent] = None
        self._last = 0

    def update(self, event) -> None:
        if isinstance(event, EntryStarted):
            self.entry = event
        elif isinstance(event, StageStarted):
            self.stage, self._last = event, 0
        elif isinstance(event, StepEvent):
            self.done += max(event.step - self._last, 0)
            self._last = event.step
            self.last_step = event
        elif isinstance(event, (Failed, EntryFinished)):
            self._last = 0

    @property
    def fraction(self) -> float:
        return min(self.done / self.total, 1.0)

    def eta_seconds(self) -> Optional[float]:
        if self.done == 0:
            return None
        elapsed = time.perf_counter() - self.started
        return elapsed / self.done * max(self.total - self.done, 0)


# ---- the leaderboard ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaderboardRow:
    """One candidate's line: mean ± std test top-1 over its finished seeds, gain over the baseline."""

    rank: Optional[int]
    key: str
    title: str
    layers: str
    weight: str
    runs: int                       # seeds finished
    seeds: int                      # seeds planned
    mean: Optional[float]
    std: Optional[float]
    gain: Optional[float]           # mean over seeds of (this − baseline), seeds where both finished
    gain_std: Optional[float]
    seconds_per_epoch: Optional[float]
    accuracies: tuple               # (seed, top-1) of each finished seed
    weights: str = ""               # the weights used (auto: the chosen ones, mean over seeds)
    note: str = ""                  # "cannot be placed: …", "1 of 3 failed: …", "stopped"


def leaderboard(result: CompareResult) -> list[LeaderboardRow]:
    """Candidates by mean top-1, best first; those with no finished run last, with the reason."""
    baseline = {e.seed: e.test_acc for e in result.entries if e.candidate == BASELINE and e.status == DONE}
    rows = []
    for candidate in result.candidates:
        entries = [e for e in result.entries if e.candidate == candidate.key]
        done = [e for e in entries if e.status == DONE and e.test_acc is not None]
        accs = [e.test_acc for e in done]
        gains = [e.test_acc - baseline[e.seed] for e in done if e.seed in baseline]
        times = [e.seconds_per_epoch for e in done if e.seconds_per_epoch]
        note = ""
        if not candidate.placeable:
            note = f"cannot be placed: {candidate.refusal}"
        else:
            failed = [e for e in entries if e.status == FAILED]
            stopped = [e for e in entries if e.status == STOPPED]
            not_run = [e for e in entries if e.status == NOT_RUN]
            parts = []
            if failed:
                parts.append(f"{len(failed)} of {len(entries)} failed: {failed[0].error}")
            if stopped:
                parts.append(f"{len(stopped)} stopped")
            if not_run:
                parts.append(f"{len(not_run)} not run")
            note = "; ".join(parts)
        rows.append(LeaderboardRow(
            rank=None, key=candidate.key, title=candidate.title, layers=candidate.layers, weight=candidate.weight,
            runs=len(done), seeds=len(entries), mean=statistics.fmean(accs) if accs else None,
            std=statistics.stdev(accs) if len(accs) > 1 else (0.0 if accs else None),
            gain=statistics.fmean(gains) if gains else None,
            gain_std=statistics.stdev(gains) if len(gains) > 1 else (0.0 if gains else None),
            seconds_per_epoch=statistics.fmean(times) if times else None,
            accuracies=tuple((e.seed, e.test_acc) for e in done), weights=_weights_used(candidate, done), note=note,
        ))
    ranked = sorted((r for r in rows if r.mean is not None), key=lambda r: -r.mean)
    rest = [r for r in rows if r.mean is None]
    return [dataclasses.replace(r, rank=i) for i, r in enumerate(ranked, 1)] + rest


def _weights_used(candidate: Candidate, done: list[CompareEntry]) -> str:
    if not candidate.auto or not done:
        return ""
    names = list(done[0].weights)
    means = [statistics.fmean(e.weights.get(n, math.nan) for e in done) for n in names]
    return ", ".join(f"{n} {w:.3g}" for n, w in zip(names, means))


_COLUMNS = ("rank", "method", "title", "layers", "weight", "runs", "top1_mean", "top1_std", "gain", "gain_std",
            "seconds_per_epoch", "per_seed", "chosen_weights", "note")


def _cells(row: LeaderboardRow) -> list[str]:
    def num(value, digits=2):
        return "" if value is None else f"{value:.{digits}f}"
    return [
        "" if row.rank is None else str(row.rank), row.key, row.title, row.layers, row.weight,
        f"{row.runs}/{row.seeds}", num(row.mean), num(row.std), num(row.gain), num(row.gain_std),
        num(row.seconds_per_epoch, 1), " ".join(f"{s}:{a:.2f}" for s, a in row.accuracies), row.weights, row.note,
    ]


def leaderboard_csv(rows: list[LeaderboardRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_COLUMNS)
    for row in rows:
        writer.writerow(_cells(row))
    return out.getvalue()


def leaderboard_markdown(result: CompareResult) -> str:
    rows = leaderboard(result)
    teacher = _teacher_acc(result)
    lines = [f"Compare of {result.config.student.arch} from {result.config.teacher.arch} on {result.config.data.name}: "
             f"{result.config.epochs} student epochs, seeds {', '.join(map(str, result.seeds))}"
             + (f"; teacher {teacher:.2f} %" if teacher is not None else "") + ".", "",
             "| rank | method | layers | weight | runs | top-1 (mean ± std) | gain over baseline | s/epoch | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        top1 = "" if row.mean is None else f"{row.mean:.2f} ± {row.std:.2f}"
        gain = "" if row.gain is None else f"{row.gain:+.2f} ± {row.gain_std:.2f}"
        note = "; ".join(x for x in (f"weights {row.weights}" if row.weights else "", row.note) if x)
        lines.append(f"| {'' if row.rank is None else row.rank} | {row.key} | {row.layers} | {row.weight} | "
                     f"{row.runs}/{row.seeds} | {top1} | {gain} | "
                     f"{'' if row.seconds_per_epoch is None else f'{row.seconds_per_epoch:.1f}'} | "
                     f"{note.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def leaderboard_text(result: CompareResult) -> str:
    """The leaderboard as the CLI prints it."""
    rows = leaderboard(result)
    width = max([len(r.key) for r in rows] + [6])
    teacher = _teacher_acc(result)
    head = f"{'rank':>4}  {'method':{width}s}  {'top-1 (mean ± std)':>18}  {'gain':>14}  {'s/epoch':>7}  runs"
    lines = ([f"teacher {result.config.teacher.arch}: {teacher:.2f} %"] if teacher is not None else []) + [head,
                                                                                                          "-" * len(head)]
    for row in rows:
        top1 = "" if row.mean is None else f"{row.mean:6.2f} ± {row.std:5.2f}"
        gain = "" if row.gain is None else f"{row.gain:+6.2f} ± {row.gain_std:5.2f}"
        secs = "" if row.seconds_per_epoch is None else f"{row.seconds_per_epoch:7.1f}"
        line = (f"{'' if row.rank is None else row.rank:>4}  {row.key:{width}s}  {top1:>18}  {gain:>14}  {secs:>7}  "
                f"{row.runs}/{row.seeds}")
        extra = "; ".join(x for x in (f"weights {row.weights}" if row.weights else "", row.note) if x)
        lines.append(line + (f"  {extra}" if extra else ""))
    return "\n".join(lines)


def _teacher_acc(result: CompareResult) -> Optional[float]:
    if result.teacher is not None and result.teacher.test_acc is not None:
        return result.teacher.test_acc
    accs = [e.teacher_acc for e in result.entries if e.teacher_acc is not None]
    return accs[0] if accs else None


# ---- the compare folder ---------------------------------------------------------------------------


def _write(result: CompareResult) -> None:
    data = {
        "version": COMPARE_VERSION,
        "config": config_to_dict(result.config),
        "seeds": result.seeds,
        "candidates": [dataclasses.asdict(c) for c in result.candidates],
        "teacher": dataclasses.asdict(result.teacher) if result.teacher else None,
        "entries": [dataclasses.asdict(e) for e in result.entries],
        "finished": result.finished,
        "stopped": result.stopped,
    }
    _atomic_write(result.folder / COMPARE_FILE, json.dumps(data, indent=1) + "\n")
    _atomic_write(result.folder / "leaderboard.csv", leaderboard_csv(leaderboard(result)))
    _atomic_write(result.folder / "leaderboard.md", leaderboard_markdown(result))


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def read_compare(folder: str | Path) -> CompareResult:
    """Read a compare folder back (finished, stopped or still running). CompareFolderError if it is not one."""
    folder = Path(folder)
    path = folder / COMPARE_FILE
    if not path.is_file():
        raise CompareFolderError(f"{folder} is not a compare folder (expected {COMPARE_FILE} in it)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != COMPARE_VERSION:
            raise ValueError(f"version {data.get('version')!r} is not {COMPARE_VERSION}")
        candidates = [Candidate(**{**c, "pairs": tuple(c.get("pairs", ()))}) for c in data["candidates"]]
        entries = [CompareEntry(**e) for e in data["entries"]]
        teacher = CompareEntry(**data["teacher"]) if data.get("teacher") else None
        config = config_from_dict(data["config"])
        return CompareResult(folder=folder, config=config, candidates=candidates, seeds=list(data["seeds"]),
                             entries=entries, teacher=teacher, finished=bool(data.get("finished")),
                             stopped=bool(data.get("stopped")))
    except (ValueError, TypeError, KeyError, AttributeError, OSError) as exc:
        raise CompareFolderError(f"{path} is damaged: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
