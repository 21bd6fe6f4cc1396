"""The "Layers & pairs" page: the teacher's and the student's layer trees, the pair table, and KD.

To add a pair, select a layer in each tree (two for FSP), choose the method and press "Add pair".
A pair whose shapes no adapter can match is refused with the reason, before it reaches the table.
"Suggest pairs" pairs the last layer of each stage of equal spatial size
(:func:`featdistill_core.layers.suggest_pairs`).
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from featdistill_core.config import PairConfig
from featdistill_core.layers import LayerInfo, suggest_pairs
from featdistill_core.losses.methods import METHODS, PairCheck, validate_options

from app.fields import FieldBox
from app.layer_picker import LayerPicker
from app.method_help import show_method_help
from app.pair_table import ADAPTER_COLOUR, OK_COLOUR, REFUSED_COLOUR, PairTable, method_label


class LayersPanel(QtWidgets.QWidget):
    changed = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.teacher_picker = LayerPicker("teacher")
        self.student_picker = LayerPicker("student")
        trees = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        trees.setObjectName("layerTreesSplitter")
        trees.addWidget(self.teacher_picker)
        trees.addWidget(self.student_picker)
        trees.setChildrenCollapsible(False)

        self.method_combo = QtWidgets.QComboBox()
        self.method_combo.setObjectName("pairMethodCombo")
        for key in METHODS:
            self.method_combo.addItem(method_label(key), key)
        self.method_combo.setCurrentIndex(self.method_combo.findData("at"))
        self.method_combo.setSizeAdjustPolicy(
            QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.method_combo.setMinimumContentsLength(14)
        self.method_combo.setToolTip(
            "How the selected layers are matched: hint (FitNets: reproduce the teacher's features through "
            "a regressor), at (attention transfer: match where the layers look), fsp (flow between two "
            "layers: select two layers in each tree)."
        )
        self.method_help_button = QtWidgets.QToolButton()
        self.method_help_button.setText("?")
        self.method_help_button.setToolTip("What the chosen method does: formula, paper, options.")
        self.method_help_button.clicked.connect(lambda: show_method_help(self.method_combo.currentData(), self))
        self.weight_spin = QtWidgets.QDoubleSpinBox()
        self.weight_spin.setObjectName("pairWeightSpin")
        self.weight_spin.setRange(0.0, 1e6)
        self.weight_spin.setDecimals(3)
        self.weight_spin.setMaximumWidth(110)
        self.weight_spin.setToolTip("Weight of the new pair's loss. Each method starts at the weight of its "
                                    "CIFAR reference recipe (hint 100, at 1000, fsp 1).")
        self.method_combo.currentIndexChanged.connect(self._method_changed)
        self._method_changed()
        self.add_button = QtWidgets.QPushButton("Add pair")
        self.add_button.setObjectName("addPairButton")
        self.add_button.setToolTip("Pair the layer(s) selected in the teacher tree with those selected in the "
                                   "student tree, using the chosen method. Refused if the shapes cannot be matched.")
        self.add_button.clicked.connect(self.add_selected_pair)
        self.suggest_button = QtWidgets.QPushButton("Suggest pairs")
        self.suggest_button.setObjectName("suggestPairsButton")
        self.suggest_button.setToolTip("Pair the last layer of each stage of equal spatial size in both networks, "
                                       "with the chosen method.")
        self.suggest_button.clicked.connect(self.suggest)

        controls = QtWidgets.QHBoxLayout()
        controls.addWidget(QtWidgets.QLabel("Method"))
        controls.addWidget(self.method_combo, 1)
        controls.addWidget(self.method_help_button)
        controls.addWidget(QtWidgets.QLabel("Weight"))
        controls.addWidget(self.weight_spin)
        controls.addWidget(self.add_button)
        controls.addWidget(self.suggest_button)

        self.message = QtWidgets.QLabel()
        self.message.setObjectName("pairMessage")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)

        self.pair_table = PairTable()
        self.pair_table.pairsChanged.connect(self.changed)
        self.pair_details = QtWidgets.QLabel()
        self.pair_details.setObjectName("pairDetails")
        self.pair_details.setWordWrap(True)
        self.pair_details.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        for signal in (self.pair_table.pairsChanged, self.pair_table.checksUpdated,
                       self.pair_table.itemSelectionChanged):
            signal.connect(self._update_pair_details)

        self.kd_weight = QtWidgets.QDoubleSpinBox()
        self.kd_weight.setRange(0.0, 1e6)
        self.kd_weight.setDecimals(3)
        self.kd_temperature = QtWidgets.QDoubleSpinBox()
        self.kd_temperature.setRange(0.0, 1000.0)
        self.kd_temperature.setDecimals(2)
        self.kd_weight_box = FieldBox(self.kd_weight, "Weight of the logit distillation term "
                                      "KL(softmax(t/T) ‖ softmax(s/T))·T² (Hinton et al. 2015). 0 turns it off.")
        self.kd_temperature_box = FieldBox(self.kd_temperature, "Temperature T that softens both networks' "
                                           "class probabilities (4 in the CIFAR recipes).")
        kd_group = QtWidgets.QGroupBox("Logit distillation (KD) — optional, on top of the pairs")
        kd_layout = QtWidgets.QHBoxLayout(kd_group)
        kd_layout.addWidget(QtWidgets.QLabel("Weight"))
        kd_layout.addWidget(self.kd_weight_box)
        kd_layout.addSpacing(12)
        kd_layout.addWidget(QtWidgets.QLabel("Temperature"))
        kd_layout.addWidget(self.kd_temperature_box)
        kd_layout.addStretch(1)
        self.kd_weight.valueChanged.connect(self.changed)
        self.kd_temperature.valueChanged.connect(self.changed)

        hint = QtWidgets.QLabel("Select a layer in each tree (two for FSP, with Ctrl+click), choose a method, "
                                "then <b>Add pair</b>.")
        hint.setWordWrap(True)
        pairs_label = QtWidgets.QLabel("<b>Distilled pairs</b>")

        upper = QtWidgets.QWidget()
        upper_layout = QtWidgets.QVBoxLayout(upper)
        upper_layout.setContentsMargins(0, 0, 0, 0)
        upper_layout.addWidget(hint)
        upper_layout.addWidget(trees, 1)
        upper_layout.addLayout(controls)
        upper_layout.addWidget(self.message)
        lower = QtWidgets.QWidget()
        lower_layout = QtWidgets.QVBoxLayout(lower)
        lower_layout.setContentsMargins(0, 0, 0, 0)
        lower_layout.addWidget(pairs_label)
        lower_layout.addWidget(self.pair_table, 1)
        lower_layout.addWidget(self.pair_details)
        lower_layout.addWidget(kd_group)
        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        split.setObjectName("layersPairsSplitter")
        split.addWidget(upper)
        split.addWidget(lower)
        split.setChildrenCollapsible(False)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(split)

    # ---- models ----------------------------------------------------------------------------
    def set_models(self, teacher: tuple[str, list[LayerInfo] | None, str],
                   student: tuple[str, list[LayerInfo] | None, str]) -> None:
        """Show each model's layers: ``(arch, layers or None, error message)`` per side."""
        for picker, (arch, layers, error) in ((self.teacher_picker, teacher), (self.student_picker, student)):
            picker.set_title(f"<b>{picker.role.capitalize()}</b> · {arch or '(none)'}")
            picker.set_layers(layers, error)
        self.pair_table.set_shapes(self.teacher_picker.shapes(), self.student_picker.shapes())

    # ---- adding pairs ------------------------------------------------------------------------
    def add_selected_pair(self) -> PairCheck:
        """Add a pair from the trees' selections; refuse (and say why) when it cannot work."""
        method = self.method_combo.currentData()
        info = METHODS[method]
        teacher = self.teacher_picker.selected_paths()
        student = self.student_picker.selected_paths()
        count = info.layers_per_side
        if len(teacher) != count or len(student) != count:
            layers = "one layer" if count == 1 else f"{count} layers"
            return self._refuse(PairCheck(ok=False, reason=(
                f"{info.title} needs {layers} selected in each tree; "
                f"selected {len(teacher)} in the teacher and {len(student)} in the student")))
        pair = PairConfig(method=method, teacher=teacher, student=student,
                          weight=self.weight_spin.value(), options=validate_options(method, {}))
        check = self.pair_table.check(pair)
        if not check.ok:
            return self._refuse(check)
        self.pair_table.add_pair(pair)
        self._say(f"Added {method}: {' + '.join(teacher)} ↔ {' + '.join(student)} "
                  f"({'direct' if check.adapter in ('', 'none') else 'via ' + check.adapter}).", OK_COLOUR)
        return check

    def suggest(self) -> list[PairConfig]:
        """Add the suggested pairs (those not in the table yet) with the chosen method."""
        method = self.method_combo.currentData()
        if METHODS[method].layers_per_side != 1:
            self._say(f"Suggestions pair single layers; choose hint or at (not {method}).", REFUSED_COLOUR)
            return []
        teacher_layers = list(self.teacher_picker.layers().values())
        student_layers = list(self.student_picker.layers().values())
        existing = {(p.method, tuple(p.teacher), tuple(p.student)) for p in self.pair_table.pairs()}
        added = []
        for teacher, student in suggest_pairs(teacher_layers, student_layers):
            if (method, (teacher,), (student,)) in existing:
                continue
            pair = PairConfig(method=method, teacher=[teacher], student=[student],
                              weight=self.weight_spin.value(), options=validate_options(method, {}))
            if self.pair_table.check(pair).ok:
                self.pair_table.add_pair(pair)
                added.append(pair)
        if added:
            names = ", ".join(f"{p.teacher[0]}↔{p.student[0]}" for p in added)
            self._say(f"Suggested {len(added)} {method} pair(s): {names}.", OK_COLOUR)
        else:
            self._say("No new pairs to suggest: no further stages of equal spatial size in both networks.",
                      REFUSED_COLOUR)
        return added

    def _update_pair_details(self) -> None:
        """Below the table, the full match text of the selected row (or of the first refused one)."""
        table = self.pair_table
        count = table.rowCount()
        selected = [index.row() for index in table.selectionModel().selectedRows()]
        refused = [i for i in range(count) if table.row_state(i)[0] == "refused"]
        if count == 0:
            text, colour = ("No pairs yet: the student learns from the labels only (and from the teacher's "
                            "logits if the KD weight below is above 0)."), "#707070"
        elif selected or refused:
            index = selected[0] if selected else refused[0]
            state, match = table.row_state(index)
            text = f"Pair {index + 1}: {match}"
            colour = {"direct": OK_COLOUR, "adapter": ADAPTER_COLOUR, "refused": REFUSED_COLOUR}.get(state, "#707070")
        else:
            text, colour = f"{count} pair(s), all can be matched. Select a row to see how.", "#707070"
        self.pair_details.setStyleSheet(f"color: {colour};")
        self.pair_details.setText(text)

    def _refuse(self, check: PairCheck) -> PairCheck:
        self._say(f"Not added: {check.reason}", REFUSED_COLOUR)
        return check

    def clear_message(self) -> None:
        self.message.clear()

    def _say(self, text: str, colour: str) -> None:
        self.message.setStyleSheet(f"color: {colour};")
        self.message.setText(text)

    def _method_changed(self) -> None:
        self.weight_spin.setValue(METHODS[self.method_combo.currentData()].default_weight)
