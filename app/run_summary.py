"""The run summary: how a run ended, what distillation did to each pair, and accuracy class by class.

For the run shown (after it trained, or a run folder opened) the panel shows

* the final test accuracies of teacher and student (the run folder's end record, ``load_run``);
* each distilled pair's CKA before and after distillation (the run folder's ``pair_cka.json``, read by
  :func:`featdistill_core.read_pair_cka`): did distillation make the student's layers more like the
  teacher's?
* the loss balance the run measured (how each term started next to the cross-entropy);
* per-class test accuracy of teacher and student side by side, evaluated by the core
  (:func:`featdistill_core.evaluate_run`) on a background thread when the panel is shown.
"""

from __future__ import annotations

import math
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from featdistill_core import (
    ConfigError, RunEvaluation, RunFolderError, RunRecord, evaluate_run, load_run, read_pair_cka,
)

from app.background import BackgroundTask

GOOD, BAD, MUTED, BUSY, ERROR = "#1b7f3b", "#b00020", "#707070", "#0b5394", "#b00020"


def percent(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f} %"


def signed(value, digits: int = 3, unit: str = "") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.{digits}f}{unit}"


def _item(text: str, colour: str | None = None, align_right: bool = False) -> QtWidgets.QTableWidgetItem:
    item = QtWidgets.QTableWidgetItem(text)
    item.setToolTip(text)
    if colour:
        item.setForeground(QtGui.QBrush(QtGui.QColor(colour)))
    if align_right:
        item.setTextAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
    return item


def _table(name: str, headers: tuple[str, ...]) -> QtWidgets.QTableWidget:
    table = QtWidgets.QTableWidget(0, len(headers))
    table.setObjectName(name)
    table.setHorizontalHeaderLabels(list(headers))
    table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().setVisible(False)
    table.setAlternatingRowColors(True)
    header = table.horizontalHeader()
    header.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Stretch)
    for column in range(1, len(headers)):
        header.setSectionResizeMode(column, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
    return table


class RunSummary(QtWidgets.QWidget):
    """``show_run(run_dir)`` fills it; per-class accuracies are evaluated once the panel is visible."""

    evaluated = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("runSummary")
        self.run_dir: Path | None = None
        self.evaluation: RunEvaluation | None = None
        self.final: dict = {}
        self._evaluated_for: Path | None = None
        self.task = BackgroundTask("evaluate", self)
        self.task.progressed.connect(lambda done, total: self._say_classes(
            f"Evaluating teacher and student on the test split: {done} of {total} images…", BUSY))
        self.task.succeeded.connect(self._evaluated)
        self.task.failed.connect(lambda message: self._say_classes(f"Cannot evaluate per class: {message}", ERROR))
        self.task.cancelled.connect(lambda: self._say_classes("Per-class evaluation cancelled.", MUTED))
        self.task.ended.connect(self._ended)

        self.heading = QtWidgets.QLabel("No run shown yet: the summary appears when a run ends or a run folder is "
                                        "opened.")
        self.heading.setObjectName("summaryHeading")
        self.heading.setWordWrap(True)
        self.heading.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.accuracy = QtWidgets.QLabel()
        self.accuracy.setObjectName("summaryAccuracy")
        self.accuracy.setWordWrap(True)
        self.pairs_note = QtWidgets.QLabel()
        self.pairs_note.setWordWrap(True)
        self.pair_table = _table("summaryPairCka", ("Distilled pair", "Method", "CKA before", "CKA after", "Change"))
        self.pair_table.setToolTip("Linear CKA of each distilled (teacher layer, student layer) on probe test images: "
                                   "with the student as it started (before) and as it ended (after). A rise means "
                                   "distillation made the student's layer more like the teacher's.")
        self.balance_label = QtWidgets.QLabel()
        self.balance_label.setObjectName("summaryBalance")
        self.balance_label.setWordWrap(True)
        self.balance_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.evaluate_button = QtWidgets.QPushButton("Evaluate per class")
        self.evaluate_button.setObjectName("summaryEvaluateButton")
        self.evaluate_button.setToolTip("Evaluate the run's teacher and student on its test split, class by class "
                                        "(in the background).")
        self.evaluate_button.clicked.connect(self.evaluate)
        self.classes_note = QtWidgets.QLabel()
        self.classes_note.setObjectName("summaryClassesNote")
        self.classes_note.setWordWrap(True)
        self.class_table = _table("summaryPerClass", ("Class", "Teacher", "Student", "Student − teacher"))
        self.class_table.setToolTip("Test accuracy of each class, teacher and student side by side.")

        left = QtWidgets.QWidget()
        left_layout = QtWidgets.QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(QtWidgets.QLabel("<b>Each distilled pair: CKA before → after</b>"))
        left_layout.addWidget(self.pairs_note)
        left_layout.addWidget(self.pair_table, 1)
        left_layout.addWidget(QtWidgets.QLabel("<b>Loss balance at the start</b>"))
        left_layout.addWidget(self.balance_label)
        right = QtWidgets.QWidget()
        right_layout = QtWidgets.QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("<b>Per-class test accuracy</b>"))
        row.addStretch(1)
        row.addWidget(self.evaluate_button)
        right_layout.addLayout(row)
        right_layout.addWidget(self.classes_note)
        right_layout.addWidget(self.class_table, 1)
        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setChildrenCollapsible(False)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.accuracy)
        layout.addWidget(split, 1)
        self._clear()

    # ---- content --------------------------------------------------------------------------------
    def _clear(self) -> None:
        self.pair_table.setRowCount(0)
        self.class_table.setRowCount(0)
        self.accuracy.clear()
        self.pairs_note.clear()
        self.balance_label.clear()
        self.evaluation = None
        self._evaluated_for = None
        self.evaluate_button.setEnabled(False)
        self._say_classes("", MUTED)

    def show_run(self, run_dir: str | Path, record: RunRecord | None = None) -> bool:
        """Summarise the run folder ``run_dir`` (``record``: what it holds, read already; else it is
        read here); False (and why, in the heading) when it cannot be read."""
        if self.task.running:
            self.task.cancel()
            self.task.wait()
        self._clear()
        self.run_dir = Path(run_dir)
        try:
            record = record if record is not None else load_run(self.run_dir, snapshots=False)
        except (RunFolderError, ConfigError, OSError, ValueError) as error:
            self.heading.setText(f"Cannot summarise {self.run_dir}: {error}")
            self.run_dir = None
            return False
        config = record.config
        if record.failed is not None:
            outcome = f"failed: {record.failed.error}"
        elif record.finished is not None:
            outcome = "stopped early" if record.finished.stopped else "finished"
        else:
            outcome = "did not finish"
        methods = ", ".join(dict.fromkeys(term.method for term in config.terms)) or "no distillation"
        self.heading.setText(f"<b>{self.run_dir.name}</b> — {config.teacher.arch} → {config.student.arch} "
                             f"({methods}), {config.data.name}; {outcome}.")
        metrics = dict(record.finished.metrics) if record.finished is not None else {}
        self.final = {"teacher": metrics.get("teacher_test_acc"), "student": metrics.get("student_test_acc")}
        self.accuracy.setText(f"Final test accuracy: teacher {percent(self.final['teacher'])}, "
                              f"student {percent(self.final['student'])}.")
        self._show_pairs()
        self._show_balance(record.balance)
        self.evaluate_button.setEnabled(True)
        self._say_classes("Per-class accuracies are evaluated when this panel is shown.", MUTED)
        if self.isVisible():
            self.evaluate()
        return True

    def _show_pairs(self) -> None:
        try:
            pair_cka = read_pair_cka(self.run_dir)
        except ValueError as error:
            self.pairs_note.setText(str(error))
            return
        if pair_cka is None:
            self.pairs_note.setText("This run folder holds no pair CKA (no layer pairs, or the run did not finish).")
            return
        if pair_cka.error:
            self.pairs_note.setText(f"Pair CKA not measured: {pair_cka.error}")
            return
        self.pairs_note.setText(f"On {pair_cka.probe_size} test images.")
        self.pair_table.setRowCount(len(pair_cka.pairs))
        for row, pair in enumerate(pair_cka.pairs):
            tap = " (input)" if pair.taps == "input" else ""
            change = pair.change
            colour = None if change is None else (GOOD if change > 0 else BAD if change < 0 else None)
            cells = [_item(f"{pair.teacher}{tap} ↔ {pair.student}{tap}"), _item(pair.method),
                     _item("–" if pair.before is None else f"{pair.before:.3f}", align_right=True),
                     _item("–" if pair.after is None else f"{pair.after:.3f}", align_right=True),
                     _item(signed(change), colour, align_right=True)]
            for column, item in enumerate(cells):
                self.pair_table.setItem(row, column, item)

    def _show_balance(self, reports) -> None:
        lines = []
        for report in reports:
            for term in report.terms:
                line = (f"{term.name}: starts at {term.loss_ratio:.3g}× the cross-entropy "
                        f"(gradient {term.grad_ratio:.3g}×), weight {term.weight:.4g}{' (auto)' if term.auto else ''}")
                lines.append(f"⚠ {line} — {term.warning}" if term.warning else line)
        self.balance_label.setText("\n".join(lines) if lines else "Not measured (no terms, or an older run).")

    # ---- per class --------------------------------------------------------------------------------
    def evaluate(self) -> bool:
        if self.run_dir is None or self.task.running or self._evaluated_for == self.run_dir:
            return False
        run_dir = self.run_dir
        self.evaluate_button.setEnabled(False)
        self._say_classes("Loading the test split and the run's teacher and student…", BUSY)
        return self.task.start(lambda progress, cancel: evaluate_run(run_dir, progress=progress, cancel=cancel))

    def _evaluated(self, evaluation: RunEvaluation) -> None:
        if evaluation.run_dir != self.run_dir:
            return
        self.evaluation = evaluation
        self._evaluated_for = evaluation.run_dir
        teacher, student = evaluation.per_class("teacher"), evaluation.per_class("student")
        names = evaluation.class_names
        self.class_table.setRowCount(len(names))
        for row, name in enumerate(names):
            t = teacher[row] if teacher is not None else None
            s = student[row] if student is not None else None
            diff = None if t is None or s is None or math.isnan(t) or math.isnan(s) else s - t
            colour = None if diff is None or diff == 0 else (GOOD if diff > 0 else BAD)
            for column, item in enumerate((_item(name), _item(percent(t), align_right=True),
                                           _item(percent(s), align_right=True),
                                           _item(signed(diff, 1, " points"), colour, align_right=True))):
                self.class_table.setItem(row, column, item)
        overall = ", ".join(f"{role} top-1 {e.top1:.1f} % over {e.count} images"
                            for role, e in evaluation.evaluations.items())
        missing = "".join(f" No {role}: {why}." for role, why in evaluation.missing.items())
        self._say_classes(f"{overall}.{missing}" if overall else missing.strip(), MUTED)
        self.evaluated.emit()

    def _ended(self) -> None:
        self.evaluate_button.setEnabled(self.run_dir is not None and self._evaluated_for != self.run_dir)

    def _say_classes(self, text: str, colour: str) -> None:
        self.classes_note.setStyleSheet(f"color: {colour};")
        self.classes_note.setText(text)

    def showEvent(self, event: QtGui.QShowEvent) -> None:  # noqa: N802 (Qt override)
        super().showEvent(event)
        if self.run_dir is not None and self._evaluated_for != self.run_dir:
            QtCore.QTimer.singleShot(0, self.evaluate)

    def shutdown(self, timeout: float = 60.0) -> bool:
        if self.task.running:
            self.task.cancel()
        return self.task.wait(timeout)
