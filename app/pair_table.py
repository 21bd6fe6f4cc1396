"""The table of distilled layer pairs: one row per (teacher layer(s) ↔ student layer(s), method).

Each row shows at once whether its layers can be matched, using the core's
:func:`featdistill_core.check_term_layers` on the two models' layers (their outputs, or their inputs
for a method that taps a layer's input; nothing for a method on the logits):

* ``✓ direct`` — the shapes match as they are;
* ``✓ via …`` — they match through an adapter, which the text names (a 1×1 conv regressor, pooling);
* ``✗ …`` — they cannot be matched, and why.

A row's method can be changed in place; its weight is edited in the row; its options (and its
stage: with the task loss, or only in the initialisation stage) through the row's "Options…" button;
its "?" explains the method. Every list, help text and option editor comes from the method registry
(:data:`featdistill_core.METHODS`): the table names no method itself.

A problem found by the run's validation can be shown in a row (:meth:`PairTable.mark_row`) until
the row changes or :meth:`PairTable.clear_marks`.

A weight may be ``"auto"`` (:data:`featdistill_core.AUTO_WEIGHT`: chosen by the run from its first
batches): :class:`WeightSpin` shows it below 0. The *Balance* column shows how each term starts next
to the cross-entropy, as the core measured it (:meth:`PairTable.show_balance`, from
:func:`featdistill_core.measure_run`), with its warning, until the row changes.
"""

from __future__ import annotations

import copy
import html
import math
from dataclasses import dataclass

from PySide6 import QtCore, QtGui, QtWidgets

from featdistill_core import (
    AUTO_WEIGHT, METHODS, PAIR_STAGES, LayerInfo, PairCheck, PairConfig, Stage, check_term_layers, validate_options,
)

from app.method_help import show_method_help

OK_COLOUR = "#1b7f3b"
ADAPTER_COLOUR = "#8a5a00"
REFUSED_COLOUR = "#b00020"
PENDING_COLOUR = "#707070"

STAGE_LABELS = {
    Stage.STUDENT.value: "with the task loss (main stage)",
    Stage.INIT.value: "only in the initialisation stage (before the main stage)",
}
NO_LAYERS_TEXT = "(logits)"


class WeightSpin(QtWidgets.QDoubleSpinBox):
    """A term's weight: a number from 0, or ``"auto"`` (shown one step below 0; typing "auto" works)."""

    AUTO_VALUE = -1.0

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setRange(self.AUTO_VALUE, 1e6)
        self.setDecimals(3)
        self.setSpecialValueText(AUTO_WEIGHT)

    def weight(self) -> float | str:
        return AUTO_WEIGHT if self.value() <= self.AUTO_VALUE else float(self.value())

    def set_weight(self, weight) -> None:
        self.setValue(self.AUTO_VALUE if weight == AUTO_WEIGHT else float(weight))

    def is_auto(self) -> bool:
        return self.weight() == AUTO_WEIGHT


AUTO_TIP = (f' "{AUTO_WEIGHT}" (type it, or step below 0): the run chooses the weight from its first training '
            "batches, so that the term's gradient starts at a set fraction of the cross-entropy's.")


def balance_text(term) -> tuple[str, str]:
    """(cell text, tooltip) for a term's measured balance (a ``TermBalance``)."""
    if term.note and not math.isfinite(term.grad_ratio):
        return "–", term.describe()
    weight = f"auto → {term.weight:.3g}, " if term.auto else ""
    text = f"{weight}{term.loss_ratio:.2g}× CE (grad {term.grad_ratio:.2g}×)"
    return (f"⚠ {text}" if term.warning else text), term.describe()


def method_label(key: str) -> str:
    """A method's key and title for combo boxes, e.g. ``"key — Title"``."""
    return f"{key} — {METHODS[key].title}"


def methods_tooltip(intro: str) -> str:
    """``intro`` followed by one line per registered method: its key, title and layers per side."""
    lines = [f"{key}: {info.title} — {info.layers.describe()}" for key, info in METHODS.items()]
    return intro + "\n" + "\n".join(lines)


def init_stage_methods() -> str:
    """The titles of the methods whose reference recipe uses them in the initialisation stage."""
    return ", ".join(info.title for info in METHODS.values() if info.default_stage == Stage.INIT) or "none"


def layers_text(paths: list[str]) -> str:
    """A pair's layers of one side as the table shows them."""
    return "\n".join(paths) if paths else NO_LAYERS_TEXT


def describe_check(check: PairCheck) -> tuple[str, str]:
    """(state, text) for a check: state is ``"direct"``, ``"adapter"`` or ``"refused"``."""
    if not check.ok:
        return "refused", f"✗ {check.reason}"
    if check.adapter in ("", "none"):
        return "direct", "✓ direct: the shapes match as they are"
    return "adapter", f"✓ via {check.adapter}"


def options_summary(pair: PairConfig) -> str:
    """Short text for the options button: choices by value, numbers as name=value, e.g. ``"p=2, l2"``;
    ``"init stage"`` when the pair is used only in the initialisation stage."""
    parts = []
    for name, value in pair.options.items():
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, float):
            parts.append(f"{name}={value:g}")
        else:
            parts.append(f"{name}={value}")
    if pair.stage != Stage.STUDENT:
        parts.append(f"{pair.stage} stage")
    return ", ".join(parts) or "(none)"


class PairOptionsDialog(QtWidgets.QDialog):
    """Edit one pair's method options and stage. Widgets are built from the method's option specs."""

    def __init__(self, pair: PairConfig, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("pairOptionsDialog")
        info = METHODS[pair.method]
        self.setWindowTitle(f"Options of {info.title}")
        self._method = pair.method
        self._editors: dict[str, QtWidgets.QWidget] = {}
        form = QtWidgets.QFormLayout()
        options = validate_options(pair.method, pair.options)
        for name, spec in info.options.items():
            editor = self._make_editor(spec, options[name])
            editor.setToolTip(spec.help)
            label = QtWidgets.QLabel(name)
            label.setToolTip(spec.help)
            form.addRow(label, editor)
            self._editors[name] = editor
        if not info.options:
            form.addRow(QtWidgets.QLabel(f"{info.title} has no options."))
        self.stage_combo = QtWidgets.QComboBox()
        for stage in PAIR_STAGES:
            self.stage_combo.addItem(STAGE_LABELS.get(stage, stage), stage)
        self.stage_combo.setCurrentIndex(max(0, self.stage_combo.findData(pair.stage)))
        self.stage_combo.setToolTip(
            "When this loss is used: together with the task loss during the main stage, or only in a "
            "distillation-only initialisation stage before it (the original recipe of: "
            f"{init_stage_methods()}; set its length with 'Initialisation epochs' on the Training tab)."
        )
        form.addRow("stage", self.stage_combo)
        buttons = QtWidgets.QDialogButtonBox(
            QtWidgets.QDialogButtonBox.StandardButton.Ok | QtWidgets.QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        where = ("on the two networks' logits" if info.on_logits else
                 f"teacher {' + '.join(pair.teacher) or '–'} ↔ student {' + '.join(pair.student) or '–'}")
        header = QtWidgets.QLabel(f"<b>{html.escape(info.title)}</b>: {html.escape(where)}."
                                  "<br>Hover an option for what it does.")
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(header)
        layout.addLayout(form)
        layout.addWidget(buttons)

    @staticmethod
    def _make_editor(spec, value) -> QtWidgets.QWidget:
        if spec.choices:
            combo = QtWidgets.QComboBox()
            for choice in spec.choices:
                combo.addItem(str(choice), choice)
            combo.setCurrentIndex(max(0, combo.findData(value)))
            return combo
        if spec.type is bool:
            box = QtWidgets.QCheckBox()
            box.setChecked(bool(value))
            return box
        if spec.type is int:
            spin = QtWidgets.QSpinBox()
            spin.setRange(int(spec.minimum) if spec.minimum is not None else -10**9,
                          int(min(spec.maximum, 2**31 - 1)) if spec.maximum is not None else 10**9)
            spin.setValue(int(value))
            return spin
        if spec.type is float:
            spin = QtWidgets.QDoubleSpinBox()
            spin.setDecimals(4)
            spin.setRange(spec.minimum if spec.minimum is not None else -1e9,
                          spec.maximum if spec.maximum is not None else 1e9)
            spin.setValue(float(value))
            return spin
        edit = QtWidgets.QLineEdit(str(value))
        return edit

    def options(self) -> dict:
        values = {}
        for name, editor in self._editors.items():
            if isinstance(editor, QtWidgets.QComboBox):
                values[name] = editor.currentData()
            elif isinstance(editor, QtWidgets.QCheckBox):
                values[name] = editor.isChecked()
            elif isinstance(editor, (QtWidgets.QSpinBox, QtWidgets.QDoubleSpinBox)):
                values[name] = editor.value()
            else:
                values[name] = editor.text()
        return validate_options(self._method, values)

    def stage(self) -> str:
        return self.stage_combo.currentData()


@dataclass
class _Row:
    pair: PairConfig
    check: PairCheck
    method_combo: QtWidgets.QComboBox
    weight_spin: QtWidgets.QDoubleSpinBox
    options_button: QtWidgets.QPushButton
    side: str = ""                 # the side the check faults ("teacher", "student" or "")
    mark: str = ""                 # a problem shown from outside (validation), until the row changes
    put_aside: tuple | None = None  # the layers kept while the row's method takes none


class PairTable(QtWidgets.QTableWidget):
    """The distilled pairs. ``pairs()`` gives them back as the run file's ``PairConfig``s."""

    pairsChanged = QtCore.Signal()
    checksUpdated = QtCore.Signal()     # a row's match cell changed
    COLUMNS = ("Method", "Teacher", "Student", "Weight", "Options", "Match", "", "", "Balance")
    MATCH_COLUMN = 5
    BALANCE_COLUMN = 8

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(0, len(self.COLUMNS), parent)
        self.setObjectName("layerPairTable")
        self.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setWordWrap(False)
        self.setTextElideMode(QtCore.Qt.TextElideMode.ElideRight)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(28)
        header = self.horizontalHeader()
        for column in range(len(self.COLUMNS)):
            mode = (QtWidgets.QHeaderView.ResizeMode.Stretch if column == self.MATCH_COLUMN
                    else QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
            header.setSectionResizeMode(column, mode)
        header.moveSection(self.BALANCE_COLUMN, 4)        # shown beside the weight it measures
        for column, width in ((3, 80), (4, 112)):
            header.setSectionResizeMode(column, QtWidgets.QHeaderView.ResizeMode.Fixed)
            self.setColumnWidth(column, width)
        self.setToolTip(
            "The layer pairs to distil. Match tells whether the shapes fit as they are (✓ direct), through "
            "an adapter the trainer adds (✓ via …), or not at all (✗, with the reason). "
            "'?' explains the method; ✕ removes the pair."
        )
        self._rows: list[_Row] = []
        self._teacher_layers: dict[str, LayerInfo] = {}
        self._student_layers: dict[str, LayerInfo] = {}
        self._names = ("the teacher", "the student")
        self.pending = False          # True while the layer lists are being computed
        self.options_dialog: PairOptionsDialog | None = None

    # ---- layers ----------------------------------------------------------------------------
    def set_layers(self, teacher_layers: dict[str, LayerInfo], student_layers: dict[str, LayerInfo],
                   teacher_name: str = "the teacher", student_name: str = "the student") -> None:
        """The current models' layers by path (and the models' names, for messages); every row is
        checked again."""
        self.pending = False
        self._teacher_layers = dict(teacher_layers)
        self._student_layers = dict(student_layers)
        self._names = (teacher_name, student_name)
        for index in range(len(self._rows)):
            self._recheck(index)

    def set_pending(self) -> None:
        """The models changed and their layers are being listed: rows say so until :meth:`set_layers`."""
        self.pending = True
        for index in range(len(self._rows)):
            self._recheck(index)

    def check(self, pair: PairConfig) -> PairCheck:
        """Whether ``pair`` would work with the current models (without adding it)."""
        return self._check(pair)[0]

    def _check(self, pair: PairConfig) -> tuple[PairCheck, str]:
        return check_term_layers(pair.method, pair.teacher, pair.student, pair.options,
                                 self._teacher_layers, self._student_layers, *self._names)

    def faulty_side(self, index: int) -> str:
        """``"teacher"``/``"student"`` when row ``index``'s check faults that side's layers, else ``""``."""
        return self._rows[index].side

    # ---- rows ------------------------------------------------------------------------------
    def pairs(self) -> list[PairConfig]:
        return [copy.deepcopy(row.pair) for row in self._rows]

    def checks(self) -> list[PairCheck]:
        return [row.check for row in self._rows]

    def set_pairs(self, pairs: list[PairConfig]) -> None:
        self.blockSignals(True)
        try:
            self.setRowCount(0)
            self._rows.clear()
            for pair in pairs:
                self._append(copy.deepcopy(pair))
        finally:
            self.blockSignals(False)
        self.pairsChanged.emit()

    def add_pair(self, pair: PairConfig) -> PairCheck:
        """Append ``pair`` (whatever its check says; the row shows it) and return its check."""
        self._append(copy.deepcopy(pair))
        self.pairsChanged.emit()
        return self._rows[-1].check

    def remove_pair(self, index: int) -> None:
        self._rows.pop(index)
        self.removeRow(index)
        self.pairsChanged.emit()

    def row_state(self, index: int) -> tuple[str, str]:
        """(state, text) of row ``index``'s match cell: ``"direct"``, ``"adapter"``, ``"refused"``
        (see :func:`describe_check`) or ``"pending"`` while the layers are being listed."""
        item = self.item(index, self.MATCH_COLUMN)
        return item.data(QtCore.Qt.ItemDataRole.UserRole), item.text()

    def mark_row(self, index: int, message: str) -> bool:
        """Show a problem found outside the row (the run's validation) in row ``index``'s match cell,
        until the row changes or :meth:`clear_marks`; False when there is no such row."""
        if not 0 <= index < len(self._rows):
            return False
        self._rows[index].mark = message
        self._show_state(index)
        return True

    # ---- loss balance ------------------------------------------------------------------------
    def show_balance(self, report) -> list[str]:
        """Show a ``LossBalance`` (every stage's terms, :func:`featdistill_core.measure_run`) in the rows it
        measured (by the terms' fields, ``pairs[i]``); returns the lines of terms that are not rows (``kd``)."""
        others = []
        for index in range(len(self._rows)):
            self._set_balance(index, None)
        for term in report.terms:
            index = self._pair_index(term.field)
            if index is None:
                others.append(balance_text(term)[1])
            else:
                self._set_balance(index, term)
        return others

    @staticmethod
    def _pair_index(field: str) -> int | None:
        if field.startswith("pairs[") and field.endswith("]"):
            try:
                return int(field[len("pairs["):-1])
            except ValueError:
                return None
        return None

    def balance_of(self, index: int):
        """The measured ``TermBalance`` of row ``index`` (None when not measured since it changed)."""
        item = self.item(index, self.BALANCE_COLUMN)
        return None if item is None else item.data(QtCore.Qt.ItemDataRole.UserRole)

    def _set_balance(self, index: int, term) -> None:
        if not 0 <= index < len(self._rows):
            return
        item = self.item(index, self.BALANCE_COLUMN)
        if term is None:
            item.setText("")
            item.setToolTip("Check balance (below the trees) measures how this term starts next to the "
                            "cross-entropy.")
            item.setData(QtCore.Qt.ItemDataRole.UserRole, None)
            return
        text, tip = balance_text(term)
        item.setText(text)
        item.setToolTip(tip)
        item.setForeground(QtGui.QBrush(QtGui.QColor(REFUSED_COLOUR if term.warning else OK_COLOUR)))
        item.setData(QtCore.Qt.ItemDataRole.UserRole, term)

    def clear_marks(self) -> None:
        """Every row shows its own check again."""
        for index, row in enumerate(self._rows):
            if row.mark:
                row.mark = ""
                self._show_state(index)

    def _append(self, pair: PairConfig) -> None:
        index = self.rowCount()
        self.insertRow(index)
        method_combo = QtWidgets.QComboBox()
        for key, info in METHODS.items():
            method_combo.addItem(key, key)
            method_combo.setItemData(method_combo.count() - 1, f"{info.title} — {info.layers.describe()}",
                                     QtCore.Qt.ItemDataRole.ToolTipRole)
        method_combo.setCurrentIndex(method_combo.findData(pair.method))
        method_combo.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        method_combo.setToolTip(methods_tooltip("The distillation method of this pair:"))
        weight_spin = WeightSpin()
        weight_spin.setButtonSymbols(QtWidgets.QAbstractSpinBox.ButtonSymbols.NoButtons)
        weight_spin.set_weight(pair.weight)
        weight_spin.setToolTip("Multiplies this pair's loss before it is added to the total." + AUTO_TIP)
        options_button = QtWidgets.QPushButton(options_summary(pair))
        options_button.setToolTip("Edit this method's options and when the loss is used (stage).")
        help_button = QtWidgets.QToolButton()
        help_button.setText("?")
        help_button.setToolTip("What this method does: formula, paper, options.")
        remove_button = QtWidgets.QToolButton()
        remove_button.setText("✕")
        remove_button.setToolTip("Remove this pair.")

        row = _Row(pair, PairCheck(ok=False), method_combo, weight_spin, options_button)
        self._rows.append(row)
        for column in (1, 2):
            self.setItem(index, column, QtWidgets.QTableWidgetItem())
        self._show_layers(index)
        self.setCellWidget(index, 0, method_combo)
        self.setCellWidget(index, 3, weight_spin)
        self.setCellWidget(index, 4, options_button)
        self.setItem(index, self.MATCH_COLUMN, QtWidgets.QTableWidgetItem())
        self.setCellWidget(index, 6, help_button)
        self.setCellWidget(index, 7, remove_button)
        self.setItem(index, self.BALANCE_COLUMN, QtWidgets.QTableWidgetItem())

        method_combo.currentIndexChanged.connect(lambda _i, r=row: self._method_changed(r))
        weight_spin.valueChanged.connect(lambda value, r=row: self._weight_changed(r, value))
        options_button.clicked.connect(lambda _c=False, r=row: self.edit_options(self._rows.index(r)))
        help_button.clicked.connect(lambda _c=False, r=row: self.show_help(self._rows.index(r)))
        remove_button.clicked.connect(lambda _c=False, r=row: self.remove_pair(self._rows.index(r)))
        self._recheck(index)

    def _show_layers(self, index: int) -> None:
        pair = self._rows[index].pair
        for column, paths in ((1, pair.teacher), (2, pair.student)):
            item = self.item(index, column)
            item.setText(layers_text(paths))
            item.setToolTip(layers_text(paths) if paths else "This method works on the logits: no layers.")

    def _recheck(self, index: int) -> None:
        row = self._rows[index]
        if self.pending:
            row.check, row.side = PairCheck(ok=False, reason="the models' layers are being listed"), ""
        else:
            row.check, row.side = self._check(row.pair)
        self._show_state(index)

    def _show_state(self, index: int) -> None:
        row = self._rows[index]
        if row.mark:
            self._set_match(index, "refused", f"✗ {row.mark}")
        elif self.pending:
            self._set_match(index, "pending", "… checking (listing the models' layers)")
        else:
            self._set_match(index, *describe_check(row.check))

    def _changed(self, row: _Row) -> None:
        """Row ``row``'s pair was edited: its mark goes, it is checked again."""
        row.mark = ""
        index = self._rows.index(row)
        self._set_balance(index, None)          # measured for the pair as it was
        self._recheck(index)
        self.pairsChanged.emit()

    def _set_match(self, index: int, state: str, text: str) -> None:
        colour = {"direct": OK_COLOUR, "adapter": ADAPTER_COLOUR, "pending": PENDING_COLOUR}.get(state, REFUSED_COLOUR)
        item = self.item(index, self.MATCH_COLUMN)
        item.setText(text)
        item.setToolTip(text)
        item.setForeground(QtGui.QBrush(QtGui.QColor(colour)))
        item.setData(QtCore.Qt.ItemDataRole.UserRole, state)
        self.checksUpdated.emit()

    def _method_changed(self, row: _Row) -> None:
        method = row.method_combo.currentData()
        if method == row.pair.method:
            return
        pair = row.pair
        if METHODS[method].on_logits and (pair.teacher or pair.student):
            row.put_aside = (pair.teacher, pair.student)      # kept for a later method that takes layers
            pair.teacher, pair.student = [], []
        elif not METHODS[method].on_logits and not (pair.teacher or pair.student) and row.put_aside:
            pair.teacher, pair.student = row.put_aside
        pair.method = method
        pair.options = validate_options(method, {})
        self._show_layers(self._rows.index(row))
        row.weight_spin.blockSignals(True)
        row.weight_spin.setValue(METHODS[method].default_weight)   # scales differ by orders of magnitude
        row.weight_spin.blockSignals(False)
        pair.weight = row.weight_spin.weight()
        row.options_button.setText(options_summary(pair))
        self._changed(row)

    def _weight_changed(self, row: _Row, _value: float) -> None:
        row.pair.weight = row.weight_spin.weight()
        self._changed(row)

    # ---- dialogs ---------------------------------------------------------------------------
    def edit_options(self, index: int) -> PairOptionsDialog:
        """Open the options dialog of row ``index`` (non-blocking); OK applies it."""
        row = self._rows[index]
        dialog = PairOptionsDialog(row.pair, self)
        dialog.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)

        def apply() -> None:
            if row not in self._rows:
                return
            row.pair.options = dialog.options()
            row.pair.stage = dialog.stage()
            row.options_button.setText(options_summary(row.pair))
            self._changed(row)

        dialog.accepted.connect(apply)
        self.options_dialog = dialog
        dialog.open()
        return dialog

    def show_help(self, index: int) -> QtWidgets.QDialog:
        dialog = show_method_help(self._rows[index].pair.method, self)
        return dialog
