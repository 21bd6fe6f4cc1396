"""Two runs' attention maps side by side: the same probe images and the same layer, one run above the other.

:func:`paired_snapshots` (numpy, no Qt) builds, for every snapshot of run A, one snapshot holding two
"pairs": A's maps of the chosen layers and B's at the same stage and the nearest step. The attention
view then draws them as it draws any snapshot — probe image, teacher, student, difference, one block
per run, on shared colour scales, with the timeline, probes and exports — so comparing two methods
(AT against a hint, say) is the same picture as watching one run. Both runs must have recorded their
maps on the same probe images (the same data and seed); otherwise comparing them would mislead, and
:class:`CompareError` says so.

:class:`AttentionCompare` is the panel: run A, run B and the layers to compare, above an
:class:`~app.attention_view.AttentionView`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PySide6 import QtCore, QtWidgets

from app.attention_view import AttentionView
from featdistill_core import AttentionSnapshot, PairMaps

NEEDS_TWO = "Tick a second run with attention snapshots in the Runs panel to compare it with the run shown."


class CompareError(ValueError):
    """Two runs whose maps cannot be compared (no common layer, different probe images)."""


@dataclass(frozen=True)
class CompareRun:
    key: str
    label: str
    snapshots: tuple[AttentionSnapshot, ...]


def layer_pairs(snapshots: Sequence[AttentionSnapshot]) -> list[tuple[str, str]]:
    """The ``(teacher layer, student layer)`` pairs of a run's snapshots, in order of first appearance."""
    found: dict[tuple[str, str], None] = {}
    for snap in snapshots:
        for pair in snap.pairs:
            found.setdefault((pair.teacher_layer, pair.student_layer))
    return list(found)


def common_layers(a: Sequence[AttentionSnapshot], b: Sequence[AttentionSnapshot]) -> list[tuple[str, str]]:
    theirs = set(layer_pairs(b))
    return [layers for layers in layer_pairs(a) if layers in theirs]


def _maps_of(snap: AttentionSnapshot, layers: tuple[str, str]) -> PairMaps | None:
    return next((p for p in snap.pairs if (p.teacher_layer, p.student_layer) == layers), None)


def _nearest(snaps: Sequence[AttentionSnapshot], stage: str, step: int, layers) -> AttentionSnapshot | None:
    candidates = [s for s in snaps if s.stage == stage and _maps_of(s, layers) is not None]
    return min(candidates, key=lambda s: (abs(s.step - step), s.step)) if candidates else None


def paired_snapshots(a: CompareRun, b: CompareRun, layers: tuple[str, str]) -> list[AttentionSnapshot]:
    """For every snapshot of ``a`` holding ``layers``, a snapshot of two pairs: ``a``'s maps and ``b``'s
    (at the same stage, the nearest step). Raises :class:`CompareError` when the runs cannot be
    compared."""
    if layers not in common_layers(a.snapshots, b.snapshots):
        raise CompareError(f"{a.label} and {b.label} have no maps of teacher {layers[0]} ↔ student {layers[1]} "
                           "in common")
    out = []
    for snap in a.snapshots:
        mine = _maps_of(snap, layers)
        if mine is None:
            continue
        other = _nearest(b.snapshots, snap.stage, snap.step, layers)
        if other is None:
            continue
        if other.images.shape != snap.images.shape or not np.allclose(other.images, snap.images, atol=1e-3):
            raise CompareError(f"{a.label} and {b.label} recorded their maps on different probe images "
                               "(a different dataset or seed): their maps cannot be compared image by image")
        theirs = _maps_of(other, layers)
        if theirs.teacher.shape != mine.teacher.shape:
            raise CompareError(f"{a.label} and {b.label} have maps of different sizes at these layers "
                               f"({mine.teacher.shape[1:]} and {theirs.teacher.shape[1:]})")
        step_note = "" if other.step == snap.step else f" (step {other.step})"
        pairs = (
            PairMaps(f"{a.label}", mine.teacher_layer, mine.student_layer, mine.teacher, mine.student),
            PairMaps(f"{b.label}{step_note}", theirs.teacher_layer, theirs.student_layer, theirs.teacher,
                     theirs.student),
        )
        out.append(AttentionSnapshot(snap.stage, snap.step, snap.epoch, snap.images, snap.labels, pairs))
    if not out:
        raise CompareError(f"{b.label} has no snapshot in the stages of {a.label}'s")
    return out


class AttentionCompare(QtWidgets.QWidget):
    """Run A and run B (from the runs given with :meth:`set_runs`) at the chosen layers, side by side."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("attentionCompare")
        self._runs: dict[str, CompareRun] = {}
        self.a_box, self.b_box, self.layer_box = QtWidgets.QComboBox(), QtWidgets.QComboBox(), QtWidgets.QComboBox()
        for box, name, tip in ((self.a_box, "compareRunA", "The run shown first"),
                               (self.b_box, "compareRunB", "The run it is compared with"),
                               (self.layer_box, "compareLayers", "The teacher ↔ student layers both runs recorded")):
            box.setObjectName(name)
            box.setToolTip(tip)
            box.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(10)
        self.view = AttentionView()
        self.view.setObjectName("attentionCompareView")
        self.view.set_waiting_text(NEEDS_TWO)
        top = QtWidgets.QHBoxLayout()
        top.setContentsMargins(4, 4, 4, 0)
        top.addWidget(QtWidgets.QLabel("run"))
        top.addWidget(self.a_box, 1)
        top.addWidget(QtWidgets.QLabel("against"))
        top.addWidget(self.b_box, 1)
        top.addWidget(QtWidgets.QLabel("layers"))
        top.addWidget(self.layer_box, 1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(top)
        layout.addWidget(self.view, 1)
        self.a_box.activated.connect(lambda _i: self._runs_picked())
        self.b_box.activated.connect(lambda _i: self._runs_picked())
        self.layer_box.activated.connect(lambda _i: self._refresh())

    def set_runs(self, runs: Sequence[CompareRun]) -> None:
        """The runs that can be compared (those with snapshots); keeps the choice when it still exists."""
        runs = [run for run in runs if run.snapshots]
        previous = (self.a_box.currentData(), self.b_box.currentData())
        self._runs = {run.key: run for run in runs}
        for box in (self.a_box, self.b_box):
            box.blockSignals(True)
            box.clear()
            for run in runs:
                box.addItem(run.label, run.key)
            box.blockSignals(False)
        keys = [run.key for run in runs]
        a = previous[0] if previous[0] in keys else (keys[0] if keys else None)
        b = previous[1] if previous[1] in keys and previous[1] != a else next((k for k in keys if k != a), None)
        self._select(a, b)

    def choose(self, a: str, b: str, layers: tuple[str, str] | None = None) -> None:
        """Compare run ``a`` with run ``b`` (keys given to :meth:`set_runs`), at ``layers`` if given."""
        self._select(a, b)
        if layers is not None:
            found = [i for i, pair in enumerate(self.layers()) if tuple(pair) == tuple(layers)]
            index = found[0] if found else -1      # (findData does not match a tuple item)
            if index < 0:
                raise ValueError(f"no layers {layers} in common; common: {self.layers()}")
            self.layer_box.setCurrentIndex(index)
            self._refresh()

    def layers(self) -> list[tuple[str, str]]:
        return [self.layer_box.itemData(i) for i in range(self.layer_box.count())]

    def _select(self, a: str | None, b: str | None) -> None:
        for box, key in ((self.a_box, a), (self.b_box, b)):
            box.setCurrentIndex(box.findData(key) if key is not None else -1)
        self._runs_picked()

    def _runs_picked(self) -> None:
        a, b = self._runs.get(self.a_box.currentData()), self._runs.get(self.b_box.currentData())
        previous = self.layer_box.currentData()
        self.layer_box.clear()
        if a is not None and b is not None and a.key != b.key:
            for layers in common_layers(a.snapshots, b.snapshots):
                self.layer_box.addItem(f"{layers[0]} ↔ {layers[1]}", layers)
            index = self.layer_box.findData(previous)
            self.layer_box.setCurrentIndex(index if index >= 0 else 0)
        self._refresh()

    def _refresh(self) -> None:
        a, b = self._runs.get(self.a_box.currentData()), self._runs.get(self.b_box.currentData())
        layers = self.layer_box.currentData()
        if a is None or b is None or a.key == b.key:
            self._say(NEEDS_TWO)
            return
        if layers is None:
            self._say(f"{a.label} and {b.label} recorded no maps of the same layers.")
            return
        try:
            snaps = paired_snapshots(a, b, layers)
        except CompareError as error:
            self._say(f"Cannot compare: {error}.")
            return
        self.view.set_snapshots(snaps)

    def _say(self, text: str) -> None:
        self.view.set_waiting_text(text)
        self.view.clear()

    def message(self) -> str:
        """What the panel says instead of maps ("" when it shows maps)."""
        return "" if self.view.snapshot_count() else self.view.waiting_text()
