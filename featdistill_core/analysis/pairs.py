"""The CKA of each distilled pair, before and after distillation: ``pair_cka.json`` in the run folder.

At the end of a run the trainer calls :func:`record_pair_cka` once. For every distillation term that
pairs layers, and for each of its (teacher layer, student layer) couples (FSP pairs two of each), it
measures the linear CKA (:mod:`.cka`) of the teacher's tensor against the student's:

* **before** — the student as initialised (:func:`featdistill_core.validate.initial_student`: rebuilt
  from the run's seed, exactly as validation built it, its weights file loaded if it had one);
* **after** — the trained student.

The tensors are the ones the method taps (a layer's output, or for a method reading inputs the tensor
entering the layer), over up to :data:`PAIR_CKA_PROBE` fixed test images
(:meth:`~featdistill_core.data.DataBundle.probe_indices`), on the run's device.

The file::

    {"version": 1, "estimator": "...", "probe_size": 256, "batch_size": 64, "error": "",
     "pairs": [{"term": "at:layer2<-layer2", "method": "at", "teacher": "layer2", "student": "layer2",
                "taps": "output", "before": 0.41, "after": 0.87}, ...]}

An error while measuring never fails the run: it is written as ``"error"`` (with no pairs), and a
stop requested meanwhile leaves no file. :func:`read_pair_cka` reads it back (None when there is
none); the window's run summary shows it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from torch import nn

from featdistill_core.atomic import write_atomic
from featdistill_core.validate import ValidatedRun, initial_student

from .cka import MIN_BATCH
from .similarity import DEFAULT_BATCH, AnalysisCancelled, Cancel, CKALayer, cka_matrices

PAIR_CKA_FILE = "pair_cka.json"
PAIR_CKA_PROBE = 256
"""Test images the pair CKA is measured on (fewer when the test split is smaller)."""

_ESTIMATOR = "linear CKA, mini-batch unbiased HSIC (Nguyen, Raghu & Kornblith, ICLR 2021)"


@dataclass(frozen=True)
class PairSimilarity:
    """The CKA of one distilled (teacher layer, student layer) couple before and after training."""

    term: str            # the term's loss-component name ("at:layer2<-layer2")
    method: str
    teacher: str
    student: str
    taps: str            # "output" or "input"
    before: Optional[float]     # None: undefined (a layer that did not vary over the probe images)
    after: Optional[float]

    @property
    def change(self) -> Optional[float]:
        return None if self.before is None or self.after is None else self.after - self.before


@dataclass(frozen=True)
class PairCKA:
    """What ``pair_cka.json`` holds."""

    pairs: tuple[PairSimilarity, ...]
    probe_size: int
    batch_size: int
    error: str = ""
    estimator: str = _ESTIMATOR

    def to_dict(self) -> dict:
        return {"version": 1, "estimator": self.estimator, "probe_size": self.probe_size,
                "batch_size": self.batch_size, "error": self.error,
                "pairs": [{"term": p.term, "method": p.method, "teacher": p.teacher, "student": p.student,
                           "taps": p.taps, "before": p.before, "after": p.after} for p in self.pairs]}

    def format_table(self) -> str:
        if self.error:
            return f"pair CKA not measured: {self.error}"
        lines = [f"{'pair':40s} {'before':>7s} {'after':>7s}"]
        for p in self.pairs:
            fmt = lambda v: "-" if v is None else f"{v:.3f}"   # noqa: E731
            tap = " input" if p.taps == "input" else ""
            lines.append(f"{p.teacher + tap + ' <- ' + p.student + tap + ' (' + p.method + ')':40s} "
                         f"{fmt(p.before):>7s} {fmt(p.after):>7s}")
        return "\n".join(lines)


def _couples(validated: ValidatedRun):
    """(term plan, teacher CKALayer, student CKALayer) for every paired layer of every feature term."""
    for term in validated.terms:
        if term.method.on_logits:
            continue
        taps = term.method.taps
        for t_path, s_path, t_shape, s_shape in zip(term.teacher_paths, term.student_paths,
                                                    term.teacher_shapes, term.student_shapes):
            yield term, CKALayer(t_path, tuple(t_shape), taps=taps), CKALayer(s_path, tuple(s_shape), taps=taps)


def measure_pair_cka(validated: ValidatedRun, teacher: nn.Module, student: nn.Module, images, *,
                     device=None, batch_size: int = DEFAULT_BATCH, cancel: Cancel = None,
                     before: Optional[nn.Module] = None) -> PairCKA:
    """The before/after CKA of every distilled couple of ``validated`` on ``images`` (normalised).

    ``before`` is the initial student (default: :func:`~featdistill_core.validate.initial_student`).
    Raises :class:`~.similarity.AnalysisCancelled` when ``cancel()`` answers True, ValueError for too
    few images.
    """
    couples = list(_couples(validated))
    if not couples:
        return PairCKA((), len(images), batch_size)
    rows = list(dict.fromkeys(t for _, t, _ in couples))
    cols = list(dict.fromkeys(s for _, _, s in couples))
    if before is None:
        before = initial_student(validated.config, validated.num_classes)
    before_matrix, after_matrix = cka_matrices(
        teacher, rows, [(before, cols), (student, cols)], images, batch_size=batch_size, device=device,
        cancel=cancel, teacher_name=validated.config.teacher.arch,
        student_names=[f"{validated.config.student.arch} (initial)", validated.config.student.arch])
    pairs = []
    for term, t, s in couples:
        i, j = rows.index(t), cols.index(s)
        pairs.append(PairSimilarity(term.name, term.method.key, t.path, s.path, t.taps,
                                    _number(before_matrix[i, j]), _number(after_matrix[i, j])))
    return PairCKA(tuple(pairs), len(images), batch_size)


def record_pair_cka(run_dir, validated: ValidatedRun, teacher: Optional[nn.Module], student: nn.Module, data, *,
                    device=None, cancel: Cancel = None, probe: int = PAIR_CKA_PROBE) -> Optional[PairCKA]:
    """The trainer's end-of-run hook: measure the pair CKA and write ``run_dir/pair_cka.json``.

    Does nothing (returns None) for a run without layer pairs, without a teacher or without student
    epochs, or when ``cancel()`` answers True. Any other failure is written into the file as its
    ``error``; this never raises an Exception, so a finished run stays finished.
    """
    if teacher is None or validated.config.epochs == 0 or not any(True for _ in _couples(validated)):
        return None
    try:
        count = min(probe, len(data.test_labels))
        if count < MIN_BATCH:
            result = PairCKA((), count, DEFAULT_BATCH, error=f"the test split has {count} images; CKA needs at least {MIN_BATCH}")
        else:
            images, _labels, _display = data.probe_images(count, seed=validated.config.seed)
            result = measure_pair_cka(validated, teacher, student, images, device=device, cancel=cancel)
    except AnalysisCancelled:
        return None
    except Exception as exc:  # noqa: BLE001 - an analysis must never turn a finished run into a failed one
        text = str(exc).strip().splitlines()
        result = PairCKA((), 0, DEFAULT_BATCH, error=f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": "))
    try:
        write_pair_cka(run_dir, result)
    except OSError:
        return result
    return result


def write_pair_cka(run_dir, result: PairCKA) -> Path:
    """Write ``pair_cka.json`` atomically, as every file of a run folder (:mod:`featdistill_core.atomic`)."""
    return write_atomic(Path(run_dir) / PAIR_CKA_FILE, json.dumps(result.to_dict(), indent=1))


def read_pair_cka(run_dir) -> Optional[PairCKA]:
    """The pair CKA of a run folder; None when the run has none (no layer pairs, or an older run).

    Raises ValueError naming the file when it is damaged.
    """
    path = Path(run_dir) / PAIR_CKA_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        pairs = tuple(
            PairSimilarity(str(p["term"]), str(p["method"]), str(p["teacher"]), str(p["student"]),
                           str(p.get("taps", "output")), _optional(p.get("before")), _optional(p.get("after")))
            for p in data.get("pairs", ())
        )
        return PairCKA(pairs, int(data.get("probe_size", 0)), int(data.get("batch_size", 0)),
                       str(data.get("error", "")), str(data.get("estimator", _ESTIMATOR)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path} is damaged: {exc}") from None


def _number(value) -> Optional[float]:
    value = float(value)
    return None if math.isnan(value) else value


def _optional(value) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"a CKA value must be a number or null; got {value!r}")
    return float(value)


__all__ = ["PAIR_CKA_FILE", "PAIR_CKA_PROBE", "PairCKA", "PairSimilarity", "measure_pair_cka", "read_pair_cka",
           "record_pair_cka", "write_pair_cka"]
