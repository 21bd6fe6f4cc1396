"""The "Layers & pairs" page: the teacher's and the student's layer trees, the pair table, and the
``[kd]`` shorthand's fields.

To add a pair, choose a method, select its layers in each tree (as many as the method takes: one,
two, or several in the model's order; none for a method on the logits) and press "Add pair". A pair
whose layers the method cannot match is refused with the reason, before it reaches the table.
"Suggest pairs" places the chosen method at its reference layers (:func:`featdistill_core.place_method`:
every shared stage, the middle stage, consecutive stages, the embedding or the logits) or, "by CKA",
at the depth-ordered layers of greatest similarity on the *CKA map* tab (:mod:`app.cka_panel`;
:func:`featdistill_core.suggest_pairs_by_cka`). Clicking a cell of the map selects its two layers.

Everything the page says about a method comes from :data:`featdistill_core.METHODS`.
"""

from __future__ import annotations

import html

from PySide6 import QtCore, QtWidgets

from featdistill_core import (
    KD_METHOD, METHODS, LayerInfo, PairCheck, PairConfig, PlacementError, Taps, default_pair_count, measure_run,
    place_method, suggest_pairs_by_cka, validate_options, validate_run,
)

from app.background import BackgroundTask

from app.cka_panel import CKAPanel

from app.layer_picker import LayerPicker
from app.method_help import show_method_help
from app.pair_table import (
    ADAPTER_COLOUR, AUTO_TIP, OK_COLOUR, REFUSED_COLOUR, PairTable, WeightSpin, method_label, methods_tooltip,
)

MUTED_COLOUR = "#707070"
DEFAULT_PLACEMENT = "stages"       # the method first chosen: the first one placed at every shared stage
RULE, BY_CKA = "rule", "cka"       # how "Suggest pairs" chooses the layers


def default_method() -> str:
    """The method the page starts with: the first registered one placed at every shared stage."""
    return next((key for key, info in METHODS.items() if info.placement == DEFAULT_PLACEMENT), next(iter(METHODS)))


def selection_hint(key: str) -> str:
    """What to select in the trees for method ``key``, in words."""
    info = METHODS[key]
    if info.on_logits:
        return f"<b>{html.escape(info.title)}</b> works on the logits: no layers to select; press <b>Add pair</b>."
    layers = info.layers
    several = layers.maximum is None or layers.maximum > 1
    what = "input" if info.taps == Taps.INPUT else "output"
    how = " (Ctrl+click for more than one; they are taken in the model's order)" if several else ""
    return (f"<b>{html.escape(info.title)}</b> takes {html.escape(layers.describe())}, reading each layer's "
            f"{what}: select them in each tree{how}, then <b>Add pair</b>.")


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
        for key, info in METHODS.items():
            self.method_combo.addItem(method_label(key), key)
            self.method_combo.setItemData(self.method_combo.count() - 1, info.summary,
                                          QtCore.Qt.ItemDataRole.ToolTipRole)
        self.method_combo.setCurrentIndex(self.method_combo.findData(default_method()))
        self.method_combo.setSizeAdjustPolicy(
            QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.method_combo.setMinimumContentsLength(14)
        self.method_combo.setToolTip(methods_tooltip("How the selected layers are matched ('?' explains the chosen one):"))
        self.method_help_button = QtWidgets.QToolButton()
        self.method_help_button.setText("?")
        self.method_help_button.setToolTip("What the chosen method does: formula, paper, options.")
        self.method_help_button.clicked.connect(lambda: show_method_help(self.method_combo.currentData(), self))
        self.weight_spin = WeightSpin()
        self.weight_spin.setObjectName("pairWeightSpin")
        self.weight_spin.setMaximumWidth(110)
        weights = ", ".join(f"{key} {info.default_weight:g}" for key, info in METHODS.items())
        self.weight_spin.setToolTip("Weight of the new pair's loss. Each method starts at the weight of its "
                                    f"reference recipe ({weights})." + AUTO_TIP)
        self.add_button = QtWidgets.QPushButton("Add pair")
        self.add_button.setObjectName("addPairButton")
        self.add_button.setToolTip("Pair the layer(s) selected in the teacher tree with those selected in the "
                                   "student tree (none for a method on the logits), using the chosen method. "
                                   "Refused if the method cannot match them.")
        self.add_button.clicked.connect(self.add_selected_pair)
        self.suggest_button = QtWidgets.QPushButton("Suggest pairs")
        self.suggest_button.setObjectName("suggestPairsButton")
        self.suggest_button.setToolTip("Add the chosen method at its reference layers on these two networks "
                                       "(e.g. every stage of equal spatial size in both).")
        self.suggest_button.clicked.connect(lambda: self.suggest())
        self.suggest_combo = QtWidgets.QComboBox()
        self.suggest_combo.setObjectName("suggestRuleCombo")
        self.suggest_combo.addItem("by rule", RULE)
        self.suggest_combo.addItem("by CKA", BY_CKA)
        self.suggest_combo.setItemData(0, "Where the method's recipe puts it (e.g. every stage of equal spatial "
                                       "size in both networks).", QtCore.Qt.ItemDataRole.ToolTipRole)
        self.suggest_combo.setItemData(1, "The depth-ordered layer pairs of greatest summed CKA on the CKA map tab "
                                       "(as many as the rule finds), among those the method accepts.",
                                       QtCore.Qt.ItemDataRole.ToolTipRole)
        self.suggest_combo.setToolTip("How Suggest pairs chooses the layers.")
        self.cka_panel = CKAPanel()
        self.cka_panel.pairChosen.connect(self.select_pair)

        controls = QtWidgets.QGridLayout()          # two rows, so the page stays narrow (1366-px screens)
        controls.setContentsMargins(0, 0, 0, 0)
        controls.addWidget(QtWidgets.QLabel("Method"), 0, 0)
        controls.addWidget(self.method_combo, 0, 1, 1, 3)
        controls.addWidget(self.method_help_button, 0, 4)
        controls.addWidget(QtWidgets.QLabel("Weight"), 1, 0)
        controls.addWidget(self.weight_spin, 1, 1)
        controls.addWidget(self.add_button, 1, 2)
        controls.addWidget(self.suggest_button, 1, 3)
        controls.addWidget(self.suggest_combo, 1, 4)
        controls.setColumnStretch(1, 1)

        self.message = QtWidgets.QLabel()
        self.message.setObjectName("pairMessage")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setAlignment(QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignTop)
        # always two lines high: a message of one line or two never moves the buttons above it
        self.message.setFixedHeight(2 * self.message.fontMetrics().lineSpacing() + 2)

        self.pair_table = PairTable()
        self.pair_table.pairsChanged.connect(self.changed)
        self.pair_details = QtWidgets.QLabel()
        self.pair_details.setObjectName("pairDetails")
        self.pair_details.setWordWrap(True)
        self.pair_details.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        for signal in (self.pair_table.pairsChanged, self.pair_table.checksUpdated,
                       self.pair_table.itemSelectionChanged):
            signal.connect(self._update_pair_details)

        shorthand = METHODS[KD_METHOD]
        self.shorthand_group = QtWidgets.QGroupBox(f"{shorthand.title} — optional, on top of the pairs")
        self.shorthand_group.setToolTip(f"The run file's [kd] table: a shorthand for one {shorthand.short_name} "
                                        "term (the same as adding it to the pairs).")
        self._shorthand_layout = QtWidgets.QHBoxLayout(self.shorthand_group)
        self._shorthand_layout.addStretch(1)

        self.selection_label = QtWidgets.QLabel()
        self.selection_label.setObjectName("pairSelectionHint")
        self.selection_label.setWordWrap(True)
        pairs_label = QtWidgets.QLabel("<b>Distilled pairs</b>")
        self.balance_button = QtWidgets.QPushButton("Check balance")
        self.balance_button.setObjectName("checkBalanceButton")
        self.balance_button.setToolTip("Measure, on the run's first training batches, how strongly each term starts "
                                       "next to the cross-entropy (in the background); the Balance column shows it, "
                                       "with a warning for a term that would swamp the task loss.")
        self.balance_button.clicked.connect(self.check_balance)
        self.balance_task = BackgroundTask("balance", self)
        self.balance_task.succeeded.connect(self._balance_measured)
        self.balance_task.failed.connect(lambda message: self._say(f"Cannot check the balance: {message}",
                                                                   REFUSED_COLOUR))
        self.balance_task.cancelled.connect(lambda: self._say("Balance check cancelled.", MUTED_COLOUR))
        self.balance_task.ended.connect(lambda: self.balance_button.setEnabled(True))
        self._balance_pairs: list[PairConfig] = []
        self.balance_report = None
        self.balance_lines: list[str] = []     # measured terms that are no row (the [kd] shorthand)
        pairs_header = QtWidgets.QHBoxLayout()
        pairs_header.addWidget(pairs_label)
        pairs_header.addStretch(1)
        pairs_header.addWidget(self.balance_button)

        upper = QtWidgets.QWidget()
        upper_layout = QtWidgets.QVBoxLayout(upper)
        upper_layout.setContentsMargins(0, 0, 0, 0)
        upper_layout.addWidget(self.selection_label)
        self.layer_tabs = QtWidgets.QTabWidget()
        self.layer_tabs.setObjectName("layerViewTabs")
        self.layer_tabs.setDocumentMode(True)
        self.layer_tabs.addTab(trees, "Layer trees")
        self.layer_tabs.addTab(self.cka_panel, "CKA map")
        self.layer_tabs.setTabToolTip(1, "How similar each teacher layer is to each student layer (linear CKA); "
                                         "click a cell to select both layers.")
        upper_layout.addWidget(self.layer_tabs, 1)
        upper_layout.addLayout(controls)
        upper_layout.addWidget(self.message)
        lower = QtWidgets.QWidget()
        lower_layout = QtWidgets.QVBoxLayout(lower)
        lower_layout.setContentsMargins(0, 0, 0, 0)
        lower_layout.addLayout(pairs_header)
        lower_layout.addWidget(self.pair_table, 1)
        lower_layout.addWidget(self.pair_details)
        lower_layout.addWidget(self.shorthand_group)
        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        split.setObjectName("layersPairsSplitter")
        split.addWidget(upper)
        split.addWidget(lower)
        split.setChildrenCollapsible(False)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(split)

        self.method_combo.currentIndexChanged.connect(self._method_changed)
        self._method_changed()

    # ---- the [kd] shorthand's fields (built by the form from its field table) -----------------
    def add_shorthand_field(self, label: str, box: QtWidgets.QWidget, tooltip: str) -> None:
        """Place one field of the ``[kd]`` shorthand in its group (before the closing stretch)."""
        label_widget = QtWidgets.QLabel(label)
        label_widget.setToolTip(tooltip)
        at = self._shorthand_layout.count() - 1
        if at > 0:
            self._shorthand_layout.insertSpacing(at, 12)
            at += 1
        self._shorthand_layout.insertWidget(at, label_widget)
        self._shorthand_layout.insertWidget(at + 1, box)

    # ---- models ----------------------------------------------------------------------------
    def set_models(self, teacher: tuple[str, list[LayerInfo] | None, str],
                   student: tuple[str, list[LayerInfo] | None, str]) -> None:
        """Show each model's layers: ``(arch, layers or None, error message)`` per side."""
        for picker, (arch, layers, error) in ((self.teacher_picker, teacher), (self.student_picker, student)):
            picker.set_title(f"<b>{picker.role.capitalize()}</b> · {arch or '(none)'}")
            picker.set_layers(layers, error)
        self.pair_table.set_layers(self.teacher_picker.layers(), self.student_picker.layers(),
                                   teacher[0] or "the teacher", student[0] or "the student")
        self.cka_panel.models_changed(teacher[0], student[0])

    def select_pair(self, teacher: str, student: str) -> None:
        """Select one layer in each tree (a click on the CKA map), ready for *Add pair*."""
        self.teacher_picker.select_paths([teacher])
        self.student_picker.select_paths([student])
        got = (self.teacher_picker.selected_paths(), self.student_picker.selected_paths())
        if got == ([teacher], [student]):
            cka = self.cka_panel.result.value(teacher, student) if self.cka_panel.result is not None else float("nan")
            value = f" (CKA {cka:.3f})" if cka == cka else ""
            self._say(f"Selected teacher {teacher} and student {student}{value}: press Add pair to pair them "
                      "with the chosen method.", OK_COLOUR)
        else:
            self._say(f"{teacher} ↔ {student} cannot be selected in the trees for this method (it reads "
                      "other tensors of the layers).", REFUSED_COLOUR)

    # ---- adding pairs ------------------------------------------------------------------------
    def add_selected_pair(self) -> PairCheck:
        """Add a pair of the chosen method from the trees' selections (none for a method on the
        logits); refuse (and say why) when it cannot work."""
        method = self.method_combo.currentData()
        info = METHODS[method]
        if info.on_logits:
            teacher, student = [], []
        else:
            teacher = self.teacher_picker.selected_paths()
            student = self.student_picker.selected_paths()
            if len(teacher) != len(student) or not info.layers.allows(len(teacher)):
                return self._refuse(PairCheck(ok=False, reason=(
                    f"{info.title} takes {info.layers.describe()}: select them in each tree; "
                    f"selected {len(teacher)} in the teacher and {len(student)} in the student")))
        pair = self._new_pair(method, teacher, student)
        check = self.pair_table.check(pair)
        if not check.ok:
            return self._refuse(check)
        self.pair_table.add_pair(pair)
        where = "on the logits" if info.on_logits else f"{' + '.join(teacher)} ↔ {' + '.join(student)}"
        self._say(f"Added {method}: {where} "
                  f"({'direct' if check.adapter in ('', 'none') else 'via ' + check.adapter}).", OK_COLOUR)
        return check

    def suggest(self, rule: str | None = None) -> list[PairConfig]:
        """Add the chosen method at its reference placement, or ``rule="cka"`` at the pairs of greatest
        summed CKA on the map (default: the rule chosen beside the button); only pairs not in the table yet."""
        method = self.method_combo.currentData()
        rule = rule or self.suggest_combo.currentData()
        teacher_layers = list(self.teacher_picker.layers().values())
        student_layers = list(self.student_picker.layers().values())
        if rule == BY_CKA:
            result = self.cka_panel.result
            if result is None:
                self._say("No CKA map yet: press Compute on the CKA map tab first.", REFUSED_COLOUR)
                self.layer_tabs.setCurrentWidget(self.cka_panel)
                return []
            try:
                terms = suggest_pairs_by_cka(result, method, default_pair_count(teacher_layers, student_layers),
                                             validate_options(method, {}))
            except ValueError as exc:
                self._say(f"No pairs to suggest by CKA: {exc}.", REFUSED_COLOUR)
                return []
            self.cka_panel.map.mark_cells([(result.teacher_paths.index(t[0]), result.student_paths.index(s[0]))
                                           for t, s in terms])
        else:
            try:
                terms = place_method(method, teacher_layers, student_layers)
            except PlacementError as exc:
                self._say(f"No pairs to suggest: {exc}.", REFUSED_COLOUR)
                return []
        existing = {(p.method, tuple(p.teacher), tuple(p.student)) for p in self.pair_table.pairs()}
        added = []
        for teacher, student in terms:
            if (method, tuple(teacher), tuple(student)) in existing:
                continue
            pair = self._new_pair(method, teacher, student)
            if self.pair_table.check(pair).ok:
                self.pair_table.add_pair(pair)
                added.append(pair)
        if added:
            names = ", ".join(f"{'+'.join(p.teacher)}↔{'+'.join(p.student)}" if p.teacher else "logits"
                              for p in added)
            how = " by CKA" if rule == BY_CKA else ""
            self._say(f"Suggested{how} {len(added)} {method} pair(s): {names}.", OK_COLOUR)
        else:
            where = "pair the CKA map suggests" if rule == BY_CKA else "place its recipe puts it on these networks"
            self._say(f"No new pairs to suggest: the table has {METHODS[method].title} at every {where}.",
                      REFUSED_COLOUR)
        return added

    # ---- loss balance ---------------------------------------------------------------------------
    def check_balance(self) -> bool:
        """Measure how each term starts next to the cross-entropy (the core's :func:`measure_run`, in the
        background: a few training steps' worth). False (and why) when it cannot start."""
        if self.balance_task.running:
            return False
        source = self.cka_panel.config_source
        try:
            config, _run_dir = source() if source is not None else (None, None)
        except Exception as exc:       # noqa: BLE001 - a form that cannot be read: say so, in words
            from app.background import one_line
            self._say(f"Cannot check the balance: {one_line(exc)}", REFUSED_COLOUR)
            return False
        if config is None:
            return False
        if not config.terms:
            self._say("No distillation term to balance: add a pair first.", REFUSED_COLOUR)
            return False
        self._balance_pairs = self.pair_table.pairs()

        def work(_progress, _cancel):
            run = validate_run(config)
            return measure_run(run, device=run.device)

        self.balance_task.start(work)
        self.balance_button.setEnabled(False)
        self._say(f"Checking the balance: building the models and measuring each term on the first "
                  f"{config.balance.batches} training batch(es)…", "#0b5394")
        return True

    def _balance_measured(self, report) -> None:
        if self.pair_table.pairs() != self._balance_pairs:
            self._say("The pairs changed while the balance was measured: press Check balance again.", MUTED_COLOUR)
            return
        self.balance_report = report
        others = self.pair_table.show_balance(report)
        self._update_pair_details()
        if not report.terms:
            self._say("Nothing measured: the run has no term the balance check can measure now.", MUTED_COLOUR)
            return
        warned = [t for t in report.terms if t.warning]
        untrained = "" if report.teacher_trained else ", teacher untrained"
        head = f"Balance ({report.batches} batch{'es' if report.batches != 1 else ''}{untrained}): "
        full = "\n".join(line for line in report.lines())
        if warned:
            first = warned[0]
            self._say(head + f"⚠ {len(warned)} term(s) may swamp the task loss: {first.name} starts at "
                      f"{first.grad_ratio:.2g}× the cross-entropy's gradient. Try a smaller weight or \"auto\".",
                      REFUSED_COLOUR)
        else:
            self._say(head + "every term starts at or below the warning ratio (see the Balance column).", OK_COLOUR)
        self.message.setToolTip(full)
        self.balance_lines = others

    def shutdown(self, timeout: float = 60.0) -> bool:
        return self.balance_task.wait(timeout) and self.cka_panel.shutdown(timeout)

    def _new_pair(self, method: str, teacher: list[str], student: list[str]) -> PairConfig:
        return PairConfig(method=method, teacher=list(teacher), student=list(student),
                          weight=self.weight_spin.weight(), options=validate_options(method, {}))

    def _update_pair_details(self) -> None:
        """Below the table, the full match text of the selected row (or of the first refused one)."""
        table = self.pair_table
        count = table.rowCount()
        selected = [index.row() for index in table.selectionModel().selectedRows()]
        refused = [i for i in range(count) if table.row_state(i)[0] == "refused"]
        warned = [i for i in range(count) if table.balance_of(i) is not None and table.balance_of(i).warning]
        if count == 0:
            shorthand = METHODS[KD_METHOD]
            text, colour = ("No pairs yet: the student learns from the labels only (and from the "
                            f"{shorthand.short_name} term below if its weight is above 0)."), MUTED_COLOUR
        elif selected or refused or warned:
            index = selected[0] if selected else refused[0] if refused else warned[0]
            state, match = table.row_state(index)
            text = f"Pair {index + 1}: {match}"
            balance = table.balance_of(index)
            if balance is not None:
                text += (f" · ⚠ its gradient starts at {balance.grad_ratio:.2g}× the cross-entropy's" if balance.warning
                         else f" · starts at {balance.loss_ratio:.2g}× the cross-entropy")
            colour = {"direct": OK_COLOUR, "adapter": ADAPTER_COLOUR, "refused": REFUSED_COLOUR}.get(state, MUTED_COLOUR)
        else:
            text, colour = f"{count} pair(s), all can be matched. Select a row to see how.", MUTED_COLOUR
        self.pair_details.setStyleSheet(f"color: {colour};")
        self.pair_details.setText(text)

    def _refuse(self, check: PairCheck) -> PairCheck:
        self._say(f"Not added: {check.reason}", REFUSED_COLOUR)
        return check

    def clear_message(self) -> None:
        self.message.clear()
        self.message.setToolTip("")

    def _say(self, text: str, colour: str) -> None:
        self.message.setStyleSheet(f"color: {colour};")
        self.message.setText(text)
        self.message.setToolTip(text)          # the whole of it, when it is longer than two lines

    def _method_changed(self) -> None:
        key = self.method_combo.currentData()
        info = METHODS[key]
        self.weight_spin.setValue(info.default_weight)
        self.selection_label.setText(selection_hint(key))
        for picker in (self.teacher_picker, self.student_picker):
            picker.set_taps(info.taps)
