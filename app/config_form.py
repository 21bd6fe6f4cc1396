"""The run's configuration as forms: "Models & data", "Layers & pairs" and "Training" tabs.

One table, :data:`FIELDS`, names every field of the run file the form shows — its path in the run
file (``"optim.lr"``), its label, editor, tooltip, tab and group, and when it applies — and drives
all three things the form does with fields: building the pages, showing a config
(:meth:`ConfigForm.set_config`) and reading one back (:meth:`ConfigForm.config`). A setting the form
does not show (one a newer featdistill added, say) keeps the value of the config last shown.

Validation is the core's. The quick form checks (:func:`featdistill_core.check_values`) run as the
user types; the full check (:func:`featdistill_core.validate_run`: models, weights files, layers,
pairs, device) runs in the training worker before Start. Both report every problem with its field
(``Problem.field``, e.g. ``optim.lr`` or ``pairs[1].teacher``): every one is marked at once — a red
border and the message at the field, a pair's row in the table — and a mark goes when its field is
edited (or, for the quick checks, as soon as the problem is gone).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from PySide6 import QtCore, QtWidgets

from featdistill_core import (
    DATASET_TITLES, DATASETS, FIXED_IMAGE_SIZES, KD_METHOD, METHODS, NEEDS_PATH, ConfigError, DatasetError,
    KDConfig, Problem, Problems, RunConfig, check_files, check_values, dataset_classes,
    field_parts, list_models,
)

from app.fields import (
    CheckField, ChoiceCombo, FieldBox, FloatEdit, FloatSpin, IntListEdit, IntSpin, PathEdit, TextField,
)
from app.launch import device_combo
from app.layer_picker import LayerLoader
from app.layers_panel import LayersPanel
from app.pair_table import init_stage_methods

OPTIMIZER_LABELS = [("sgd", "SGD with momentum"), ("adamw", "AdamW")]
SCHEDULE_LABELS = [
    ("constant", "constant"),
    ("step", "step: × gamma at the milestones"),
    ("cosine", "cosine annealing to 0"),
]
WEIGHTS_FILTER = "Weights (*.safetensors *.pt *.pth);;All files (*)"
PAIRS = "pairs"                  # the run file's list of terms: its problems are marked in the pair table
DEFAULT_CLASSES = 10             # while a data set's classes cannot be counted yet
SUGGESTED_TEACHER_EPOCHS = 5     # shown when the teacher is not trained, for when the box gets ticked

MODELS_TAB, LAYERS_TAB, TRAINING_TAB = 0, 1, 2
LABEL_WIDTH = 150         # the same label column on every page, so fields line up
_KEEP = object()


class ModelCombo(QtWidgets.QComboBox):
    """The registry's models; editable, so ``package.module:function`` or ``timm:NAME`` can be typed."""

    modelChosen = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setEditable(True)
        self.setInsertPolicy(QtWidgets.QComboBox.InsertPolicy.NoInsert)
        self.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        self.setMaxVisibleItems(20)
        for info in list_models():
            self.addItem(info.name)
            self.setItemData(self.count() - 1, f"{info.family}: {info.description}",
                             QtCore.Qt.ItemDataRole.ToolTipRole)
        self.activated.connect(lambda _i: self.modelChosen.emit())
        self.lineEdit().editingFinished.connect(self.modelChosen)

    def value(self) -> str:
        return self.currentText().strip()

    def set_value(self, name: str) -> None:
        self.setCurrentText(name)


def _device_combo() -> ChoiceCombo:
    return device_combo()                    # with "all N GPUs" (torchrun) when there are several


# ---- the table -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One field of the run file on the form.

    ``enabled(form)`` says when it applies (else it is greyed out); a field with ``unused`` set then
    gives the run file that value instead of the editor's (and shows ``suggested`` when the run file
    holds ``unused``). ``attr`` names the editor as an attribute of the form.
    """

    path: str
    attr: str
    label: str
    editor: Callable[[], QtWidgets.QWidget]
    tooltip: str
    tab: int
    group: str
    enabled: Callable[["ConfigForm"], bool] | None = None
    unused: object = _KEEP
    suggested: object = _KEEP
    name: str = ""           # what messages call it, when the label alone would be unclear ("Teacher weights file")

    @property
    def title(self) -> str:
        return self.name or self.label


def _trains_teacher(form: "ConfigForm") -> bool:
    return form.teacher_train.isChecked()


def _dataset(form: "ConfigForm") -> str:
    return form.data_name.value()


TEACHER, STUDENT, DATA = ("Teacher — the trained network to learn from", "Student — the network being trained",
                          "Dataset")
LENGTH, OPTIM, TASK, RUN, LIVE = "Length", "Optimizer", "Task loss", "Run", "Live view"
SHORTHAND = "shorthand"          # the [kd] table's fields, placed on the Layers page


def _shorthand_fields() -> list[Field]:
    """The ``[kd]`` table's fields: its weight, then each of its method's options it holds."""
    method = METHODS[KD_METHOD]
    fields = [Field("kd.weight", "kd_weight", "Weight", lambda: FloatSpin(0.0, 1e6, 3),
                    f"Weight of one {method.short_name} term, {method.formula} ({method.paper}). "
                    "0 turns it off.", LAYERS_TAB, SHORTHAND, name=f"{method.short_name} weight")]
    for spec_field in dataclasses.fields(KDConfig):
        spec = method.options.get(spec_field.name)
        if spec is None:
            continue
        top = spec.maximum if spec.maximum is not None else 1e6
        fields.append(Field(f"kd.{spec_field.name}", f"kd_{spec_field.name}", spec_field.name.capitalize(),
                            lambda top=top: FloatSpin(0.0, top, 2), spec.help[:1].upper() + spec.help[1:] + ".",
                            LAYERS_TAB, SHORTHAND, name=f"{method.short_name} {spec_field.name}"))
    return fields


def _fields() -> tuple[Field, ...]:
    m, t = MODELS_TAB, TRAINING_TAB
    return (
        Field("teacher.arch", "teacher_arch", "Architecture", ModelCombo,
              "The teacher's architecture: a built-in model (see `featdistill models`), or your own factory as "
              "package.module:function (called with num_classes), or torchvision:NAME / timm:NAME.", m, TEACHER,
              name="Teacher architecture"),
        Field("teacher.train_epochs", "teacher_epochs", "Teacher epochs", lambda: IntSpin(1, 100000),
              "How many epochs to train the teacher first.", m, TEACHER,
              enabled=_trains_teacher, unused=0, suggested=SUGGESTED_TEACHER_EPOCHS),
        Field("teacher.weights", "teacher_weights", "Weights file",
              lambda: PathEdit(folder=False, caption="Teacher weights", file_filter=WEIGHTS_FILTER,
                               placeholder="a .safetensors or state-dict .pt/.pth file"),
              "The trained teacher's weights: .safetensors, or a state-dict .pt/.pth (loaded with "
              "weights_only=True, so a file can never run code).", m, TEACHER,
              enabled=lambda form: not _trains_teacher(form), unused="", name="Teacher weights file"),
        Field("student.arch", "student_arch", "Architecture", ModelCombo,
              "The student's architecture: a built-in model, package.module:function, or torchvision:NAME / "
              "timm:NAME.", m, STUDENT, name="Student architecture"),
        Field("student.weights", "student_weights", "Starting weights",
              lambda: PathEdit(folder=False, caption="Student weights", file_filter=WEIGHTS_FILTER,
                               placeholder="optional; empty = random initialisation"),
              "Optional weights to start the student from (.safetensors or state-dict .pt/.pth).", m, STUDENT,
              name="Student starting weights"),
        Field("data.name", "data_name", "Dataset",
              lambda: ChoiceCombo([(name, DATASET_TITLES.get(name, name)) for name in DATASETS]),
              "What to train on. The demo is generated, nothing is downloaded; CIFAR needs its python-version "
              "folder (cifar-10-batches-py / cifar-100-python); an image folder has one sub-folder per class "
              "(optionally inside train/ and test/).", m, DATA),
        Field("data.path", "data_path", "Folder",
              lambda: PathEdit(folder=True, caption="Dataset folder", placeholder="the dataset's folder"),
              "The folder the CIFAR files or the class sub-folders are in. Not used by the demo.", m, DATA,
              enabled=lambda form: _dataset(form) in NEEDS_PATH, name="Dataset folder"),
        Field("data.image_size", "image_size", "Image size", lambda: IntSpin(8, 4096, " px"),
              "Image-folder images are resized to this square size; CIFAR and the demo are 32×32.", m, DATA,
              enabled=lambda form: _dataset(form) in NEEDS_PATH and _dataset(form) not in FIXED_IMAGE_SIZES),
        Field("data.augment", "augment", "", lambda: CheckField("Augment training images"),
              "Random crop with 4 pixels of padding and horizontal flip on the training split.", m, DATA,
              name="Augmentation"),
        Field("data.demo_train", "demo_train", "Demo training images", lambda: IntSpin(0, 10**7),
              "How many demo images to generate for training.", m, DATA,
              enabled=lambda form: _dataset(form) not in NEEDS_PATH),
        Field("data.demo_test", "demo_test", "Demo test images", lambda: IntSpin(0, 10**7),
              "How many demo images to generate for testing.", m, DATA,
              enabled=lambda form: _dataset(form) not in NEEDS_PATH),
        *_shorthand_fields(),
        Field("epochs", "epochs", "Epochs", lambda: IntSpin(0, 100000),
              "Epochs of the student's main stage (0 only trains the teacher).", t, LENGTH),
        Field("batch_size", "batch_size", "Batch size", lambda: IntSpin(0, 65536), "Images per training step.",
              t, LENGTH),
        Field("init_epochs", "init_epochs", "Initialisation epochs", lambda: IntSpin(0, 100000),
              "Epochs of the distillation-only stage for pairs whose stage is 'init' (the original recipe of: "
              f"{init_stage_methods()}); 0 for none.", t, LENGTH),
        Field("optim.name", "optimizer", "Optimizer", lambda: ChoiceCombo(OPTIMIZER_LABELS),
              "SGD with momentum (the CIFAR recipes) or AdamW.", t, OPTIM),
        Field("optim.lr", "lr", "Learning rate", FloatEdit,
              "Initial learning rate, e.g. 0.05 for SGD on CIFAR, 1e-3 for AdamW.", t, OPTIM),
        Field("optim.momentum", "momentum", "Momentum", FloatEdit, "SGD momentum, between 0 and 1 (0.9 usually).",
              t, OPTIM, enabled=lambda form: form.optimizer.value() == "sgd"),
        Field("optim.weight_decay", "weight_decay", "Weight decay", FloatEdit,
              "L2 penalty (SGD) or decoupled decay (AdamW); 5e-4 in the CIFAR recipes.", t, OPTIM),
        Field("optim.schedule", "schedule", "Schedule", lambda: ChoiceCombo(SCHEDULE_LABELS),
              "How the learning rate changes over the epochs.", t, OPTIM),
        Field("optim.milestones", "milestones", "Milestones", IntListEdit,
              "For the step schedule: epochs at which the learning rate is multiplied by gamma, e.g. 150, 180, 210.",
              t, OPTIM, enabled=lambda form: form.schedule.value() == "step"),
        Field("optim.gamma", "gamma", "Gamma", FloatEdit,
              "For the step schedule: the factor applied at each milestone (0.1 usually).", t, OPTIM,
              enabled=lambda form: form.schedule.value() == "step"),
        Field("ce_weight", "ce_weight", "Cross-entropy weight", FloatEdit,
              "Weight of the student's cross-entropy on the labels (1 usually; 0 for distillation only).", t, TASK),
        Field("name", "run_name", "Run name", TextField, "Names the run folder: OUTPUT/NAME-date-time.", t, RUN),
        Field("output_dir", "output_dir", "Output folder",
              lambda: PathEdit(folder=True, caption="Output folder", placeholder="runs"),
              "Where run folders are written (metrics, snapshots, weights).", t, RUN),
        Field("device", "device", "Device", _device_combo, "Where to train. auto = the first CUDA GPU, else "
              "Apple MPS, else the CPU. Devices this machine lacks are greyed out.", t, RUN),
        Field("mixed_precision", "mixed_precision", "",
              lambda: CheckField("Mixed precision"),
              "Autocast: float16 on CUDA, bfloat16 on the CPU. Faster training on GPUs; the losses are still "
              "computed in float32.", t, RUN,
              name="Mixed precision"),
        Field("seed", "seed", "Seed", lambda: IntSpin(0, 2**31 - 1),
              "Seeds the data order, augmentation and initialisation: the same seed gives the same run on the CPU.",
              t, RUN),
        Field("monitor.log_every", "log_every", "Log every", lambda: IntSpin(0, 10**6, " steps"),
              "Steps between two points of the loss curves (losses are averaged over them).", t, LIVE),
        Field("monitor.snapshot_every", "snapshot_every", "Attention snapshot every",
              lambda: IntSpin(0, 10**6, " steps"),
              "Steps between two attention-map snapshots (0: only at epoch ends).", t, LIVE),
        Field("monitor.probe_images", "probe_images", "Probe images", lambda: IntSpin(0, 256),
              "How many fixed test images the attention maps are recorded on.", t, LIVE),
    )


FIELDS: tuple[Field, ...] = _fields()
TAB_TITLES = {MODELS_TAB: "Models && data", LAYERS_TAB: "Layers && pairs", TRAINING_TAB: "Training"}
TAB_TOOLTIPS = {MODELS_TAB: "Teacher, student and dataset.", LAYERS_TAB: "Which layers to distil, and how.",
                TRAINING_TAB: "Epochs, optimizer, device, output folder."}
_CHANGE_SIGNALS = ("valueChanged", "currentIndexChanged", "textChanged", "toggled", "changed")


def _get(config, path: str):
    for part in path.split("."):
        config = getattr(config, part)
    return config


def _set(config, path: str, value) -> None:
    *parents, name = path.split(".")
    for part in parents:
        config = getattr(config, part)
    setattr(config, name, value)


# ---- problems in words ---------------------------------------------------------------------------------

PAIR_PARTS = {"teacher": "teacher layers", "student": "student layers", "weight": "weight", "method": "method",
              "options": "options", "stage": "stage"}
_PREDICATES = ("must", "is", "are", "needs", "need", "has", "have", "takes", "cannot", "can", "does", "do",
               "should", "was", "were", "found", "holds", "names", "expects", "lacks")
_TITLES = {field.path: field.title for field in FIELDS}
_SECTIONS = {"teacher": "Teacher", "student": "Student", "data": "Dataset", "optim": "Optimizer",
             "monitor": "Live view", "kd": METHODS[KD_METHOD].short_name}


def field_title(field: str) -> str:
    """What the window calls a run-file field: its label on the form (``"teacher.weights"`` →
    ``"Teacher weights file"``), pair fields by their 1-based number as the pair table shows them
    (``"pairs[7].teacher"`` → ``"Pair 8, teacher layers"``); "" for the run file as a whole."""
    if not field:
        return ""
    if field in _TITLES:
        return _TITLES[field]
    parts = field_parts(field)
    if len(parts) >= 2 and parts[0] == PAIRS and isinstance(parts[1], int):
        rest = ".".join(str(part) for part in parts[2:])
        head = f"Pair {parts[1] + 1}"
        if not rest:
            return head
        return f"{head}, {PAIR_PARTS.get(rest.split('.')[0], rest)}" + (f" {rest.split('.', 1)[1]}" if "." in rest else "")
    if parts and parts[0] == PAIRS:
        return "Pairs"
    inside = next((title for path, title in _TITLES.items() if path.startswith(field + ".")), None)
    if inside is not None and str(parts[0]) in _SECTIONS:
        return f"The {_SECTIONS[str(parts[0])]} settings"
    return field


def sentence(subject: str, message: str) -> str:
    """``subject`` and ``message`` as one sentence: "Batch size must be at least 1; got 0." — a message
    that does not start with a verb gets a colon ("Dataset folder: … does not exist.")."""
    message = message.strip()
    if not subject:
        text = message
    elif message.split(" ", 1)[0] in _PREDICATES:
        text = f"{subject} {message}"
    else:
        text = f"{subject}: {message}"
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?", ")")) or text.endswith("…") else text + "."


def problem_sentence(problem: Problem) -> str:
    """A problem in plain words, naming its field by its label (see :func:`field_title`)."""
    return sentence(field_title(problem.field), problem.message)


def problems_summary(problems, shown: int = 3) -> str:
    """Problems as sentences on one line; beyond ``shown``, how many more."""
    texts = [problem_sentence(problem) for problem in problems]
    if len(texts) <= 1:
        return texts[0] if texts else ""
    more = f" And {len(texts) - shown} more, marked in red." if len(texts) > shown else ""
    return f"{len(texts)} problems: " + " ".join(texts[:shown]) + more


# ---- the form ------------------------------------------------------------------------------------------


class ConfigForm(QtWidgets.QTabWidget):
    """Every setting of a run. ``changed`` fires on any edit."""

    changed = QtCore.Signal()
    validityChanged = QtCore.Signal(str)      # "" when no problem is marked, else one line per problem
    layersLoaded = QtCore.Signal()            # the layer trees and pair checks are up to date

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("configForm")
        self._boxes: dict[str, tuple[FieldBox, int]] = {}
        self._editors: dict[str, QtWidgets.QWidget] = {}
        self._config = RunConfig()
        self._loading = False
        self._layers_key: tuple | None = None
        self._model_errors: dict[str, str] = {}   # models that cannot be built stay marked
        self._found: list[Problem] = []           # problems found by the run's validation, until edited
        self._marked: list[Problem] = []          # what is marked now
        self._layers_pending = False
        self._quick_timer = QtCore.QTimer(self)       # the quick check runs 250 ms after the last edit
        self._quick_timer.setSingleShot(True)
        self._quick_timer.setInterval(250)
        self._quick_timer.timeout.connect(self.check_quick)
        self._loader = LayerLoader(self)
        self._loader.loaded.connect(self._layers_loaded)
        self.layers = LayersPanel()
        self.layers.cka_panel.config_source = lambda: (self.config(check=True), None)   # the window adds its run folder
        self._build_pages()
        self.layers.changed.connect(self._pairs_edited)
        self.set_config(RunConfig())

    # ---- building the pages ------------------------------------------------------------------
    def _build_pages(self) -> None:
        forms: dict[tuple[int, str], QtWidgets.QFormLayout] = {}
        pages: dict[int, QtWidgets.QVBoxLayout] = {}
        for tab in (MODELS_TAB, LAYERS_TAB, TRAINING_TAB):
            if tab == LAYERS_TAB:
                self.addTab(self.layers, TAB_TITLES[tab])
            else:
                pages[tab] = self._page(TAB_TITLES[tab])
            self.setTabToolTip(tab, TAB_TOOLTIPS[tab])
        for field in FIELDS:
            editor = field.editor()
            if isinstance(editor, (QtWidgets.QAbstractSpinBox, FloatEdit, IntListEdit)) and field.tab != LAYERS_TAB:
                editor.setMaximumWidth(220)      # numbers need no full-width boxes
            box = FieldBox(editor, field.tooltip)
            self._boxes[field.path] = (box, field.tab)
            self._editors[field.path] = editor
            setattr(self, field.attr, editor)
            if field.tab == LAYERS_TAB:
                self.layers.add_shorthand_field(field.label, box, field.tooltip)
            else:
                form = forms.get((field.tab, field.group))
                if form is None:
                    form = forms[(field.tab, field.group)] = self._group(pages[field.tab], field.group)
                form.addRow(self._label(field.label, field.tooltip, editor), box)
                if field.path == "teacher.arch":
                    self._add_teacher_toggle(form)
            for signal_name in _CHANGE_SIGNALS:
                signal = getattr(editor, signal_name, None)
                if isinstance(signal, QtCore.SignalInstance):
                    signal.connect(lambda *_args, path=field.path: self._edited(path))
        for layout in pages.values():
            layout.addStretch(1)
        for path, slot in (("data.name", self._update_enabled), ("optim.name", self._update_enabled),
                           ("optim.schedule", self._update_enabled)):
            self._editors[path].currentIndexChanged.connect(slot)
        self.data_name.currentIndexChanged.connect(self._data_shape_changed)
        self.image_size.valueChanged.connect(self._data_shape_changed)
        self.data_path.line_edit.editingFinished.connect(self._data_shape_changed)
        self.teacher_arch.modelChosen.connect(self.refresh_layers)
        self.student_arch.modelChosen.connect(self.refresh_layers)

    def _add_teacher_toggle(self, form: QtWidgets.QFormLayout) -> None:
        """The box that says whether the teacher is trained first (no weights file), or loaded."""
        self.teacher_train = QtWidgets.QCheckBox("Train the teacher first")
        self.teacher_train.setObjectName("trainTeacherCheck")
        self.teacher_train.setToolTip("Train the teacher from scratch on the dataset before distilling, for "
                                      "when you have no trained teacher (then no weights file is needed).")
        spacer = QtWidgets.QLabel()
        spacer.setMinimumWidth(LABEL_WIDTH)
        form.addRow(spacer, self.teacher_train)
        self.teacher_train.toggled.connect(lambda *_: self._edited("teacher.train_epochs", "teacher.weights"))
        self.teacher_train.toggled.connect(self._update_enabled)

    def _page(self, title: str) -> QtWidgets.QVBoxLayout:
        inner = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(inner)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        scroll.setWidget(inner)
        self.addTab(scroll, title)
        return layout

    @staticmethod
    def _group(layout: QtWidgets.QVBoxLayout, title: str) -> QtWidgets.QFormLayout:
        group = QtWidgets.QGroupBox(title)
        form = QtWidgets.QFormLayout(group)
        form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        layout.addWidget(group)
        return form

    @staticmethod
    def _label(text: str, tooltip: str, editor: QtWidgets.QWidget) -> QtWidgets.QLabel:
        label = QtWidgets.QLabel(text)
        label.setMinimumWidth(LABEL_WIDTH)
        label.setToolTip(tooltip)
        label.setBuddy(editor)
        return label

    # ---- reading and writing a config --------------------------------------------------------
    def set_config(self, config: RunConfig) -> None:
        """Show ``config`` in the forms (the layer trees are rebuilt for its models)."""
        self._loading = True
        try:
            self._config = copy.deepcopy(config)
            for field in FIELDS:
                value = _get(config, field.path)
                if field.suggested is not _KEEP and value == field.unused:
                    value = field.suggested
                self._editors[field.path].set_value(value)
            self.teacher_train.setChecked(config.trains_teacher)
            self.layers.pair_table.set_pairs(config.pairs)
            self.layers.clear_message()
        finally:
            self._loading = False
        self._update_enabled()
        self._layers_key = None
        self.refresh_layers()
        self.clear_errors()
        self.check_quick()

    def config(self, check: bool = True) -> RunConfig:
        """The run the forms describe. Raises :class:`ConfigError` with every problem: the fields
        that cannot be read (a number typed as text) and, with ``check``, the quick checks'."""
        config, problems = self._read(check)
        if problems:
            raise ConfigError.from_problems(problems)
        return config

    def _read(self, check: bool) -> tuple[RunConfig, list[Problem]]:
        config = copy.deepcopy(self._config)       # keeps what the form does not show
        problems = Problems()
        for field in FIELDS:
            if field.unused is not _KEEP and not self._enabled(field):
                value = field.unused
            else:
                try:
                    value = self._editors[field.path].value()
                except ValueError as exc:
                    problems.add(field.path, str(exc))
                    continue
            _set(config, field.path, value)
        config.pairs = self.layers.pair_table.pairs()
        unreadable = {p.field for p in problems}
        if check:
            try:
                check_values(config)
            except ConfigError as error:
                for problem in error.problems:
                    if problem.field not in unreadable:
                        problems.add(problem.field, problem.message)
        return config, list(problems)

    # ---- validation --------------------------------------------------------------------------
    def check_quick(self) -> ConfigError | None:
        """Run the form checks (no model is built) and mark every problem, with those the last
        validation found that are not edited yet; returns the form checks' error (None if none)."""
        self._quick_timer.stop()
        config, problems = self._read(check=True)
        problems += self._file_problems(config, problems)
        self._mark(problems + [p for p in self._found if p not in problems])
        return ConfigError.from_problems(problems) if problems else None

    def _file_problems(self, config: RunConfig, known: list[Problem]) -> list[Problem]:
        """The core's file checks (weights files, the dataset folder) for fields without a problem yet."""
        marked = {p.field for p in known}
        return [p for p in check_files(config) if p.field not in marked]

    def check_before_start(self) -> RunConfig:
        """The form checks and every pair's layer check; marks every problem and raises them together.

        What needs the models built and the weights loaded (:func:`featdistill_core.validate_run`) is
        checked by the training worker off the GUI thread; its problems come back to :meth:`show_error`.
        """
        self.refresh_layers()            # a model name typed but not confirmed yet is picked up here
        self._found = []
        config, problems = self._read(check=True)
        problems += self._file_problems(config, problems)
        if not self._layers_pending:
            table = self.layers.pair_table
            marked = {field_parts(p.field)[1] for p in problems if self._pair_index(p.field) is not None}
            for index, check in enumerate(table.checks()):
                if not check.ok and index not in marked:
                    side = table.faulty_side(index)
                    problems.append(Problem(f"{PAIRS}[{index}]" + (f".{side}" if side else ""), check.reason))
        self._mark(problems, focus=True)
        if problems:
            raise ConfigError.from_problems(problems)
        return config

    def show_error(self, error: ConfigError, focus: bool = True) -> list[Problem]:
        """Mark every problem of ``error`` (from the run's validation) at its field, until that field
        is edited; returns the problems that name no field of the form (the file as a whole)."""
        self._found = list(error.problems)
        _config, quick = self._read(check=True)
        found_fields = {p.field for p in self._found}
        return self._mark(self._found + [p for p in quick if p.field not in found_fields], focus=focus)

    def clear_errors(self) -> None:
        """Remove every mark, except those of models that cannot be built (see :meth:`refresh_layers`)."""
        self._found = []
        self._mark([])

    def field_error(self, field: str) -> str:
        """The message shown at ``field`` ("" when none): for tests and automation."""
        entry = self._boxes.get(field)
        return entry[0].error if entry else ""

    def field_widget(self, field: str) -> QtWidgets.QWidget | None:
        return self._editors.get(field)

    def _mark(self, problems: Iterable[Problem], focus: bool = False) -> list[Problem]:
        """Mark each problem at its field (or its pair's row), every other mark removed; returns the
        problems that name no field of the form."""
        problems = list(problems)
        self._marked = problems
        at_fields: dict[str, list[str]] = {}
        at_rows: dict[int, list[str]] = {}
        elsewhere: list[Problem] = []
        first_tab: tuple[int, QtWidgets.QWidget | None] | None = None
        for problem in problems:
            index = self._pair_index(problem.field)
            if index is not None:
                rest = ".".join(str(part) for part in field_parts(problem.field)[2:])
                part = PAIR_PARTS.get(rest.split(".")[0], rest) if rest else ""
                at_rows.setdefault(index, []).append(sentence(part, problem.message))
                first_tab = first_tab or (LAYERS_TAB, None)
                continue
            path = self._field_for(problem.field)
            if path is None:
                elsewhere.append(problem)
                continue
            at_fields.setdefault(path, []).append(problem_sentence(problem))
            first_tab = first_tab or (self._boxes[path][1], self._editors[path])
        for path, (box, _tab) in self._boxes.items():
            messages = at_fields.get(path) or ([sentence(_TITLES.get(path, path), self._model_errors[path])]
                                               if path in self._model_errors else [])
            if messages:
                box.show_error("\n".join(dict.fromkeys(messages)))
            else:
                box.clear_error()
        table = self.layers.pair_table
        table.clear_marks()
        for index, messages in at_rows.items():
            table.mark_row(index, "; ".join(dict.fromkeys(messages)))
        if focus and first_tab is not None:
            self.setCurrentIndex(first_tab[0])
            if first_tab[1] is not None:
                first_tab[1].setFocus()
        self.validityChanged.emit("\n".join(problem_sentence(p) for p in problems))
        return elsewhere

    def _pair_index(self, field: str) -> int | None:
        """The pair-table row a problem at ``field`` belongs to (``pairs[2].teacher`` → 2), or None."""
        parts = field_parts(field)
        if len(parts) >= 2 and parts[0] == PAIRS and isinstance(parts[1], int) \
                and parts[1] < self.layers.pair_table.rowCount():
            return parts[1]
        return None

    def _field_for(self, field: str) -> str | None:
        """The form field that shows a problem at ``field``: that field, or the first one inside it
        (a problem with the whole ``[kd]`` table is shown at its first field)."""
        if field in self._boxes:
            return field
        return next((path for path in self._boxes if field and path.startswith(field + ".")), None)

    # ---- reactions ----------------------------------------------------------------------------
    def _edited(self, *paths: str) -> None:
        if self._loading:
            return
        self._found = [p for p in self._found if self._field_for(p.field) not in paths]
        self._quick_timer.start()
        self.changed.emit()

    def _pairs_edited(self) -> None:
        if self._loading:
            return
        self._found = [p for p in self._found if field_parts(p.field)[:1] != (PAIRS,)]
        self._quick_timer.start()
        self.changed.emit()

    def _enabled(self, field: Field) -> bool:
        return field.enabled is None or field.enabled(self)

    def _update_enabled(self, *_args) -> None:
        for field in FIELDS:
            if field.enabled is not None:
                self._editors[field.path].setEnabled(field.enabled(self))

    def _data_shape_changed(self, *_args) -> None:
        if not self._loading:
            self.refresh_layers()

    def num_classes(self) -> int:
        """Classes of the chosen dataset, counted by the core (10 while they cannot be counted yet)."""
        try:
            return dataset_classes(self.data_name.value(), self.data_path.text() or None)
        except DatasetError:
            return DEFAULT_CLASSES

    def set_editable(self, editable: bool) -> None:
        """Lock the pages during a run; the tabs stay clickable so the set-up can still be read."""
        for index in range(self.count()):
            self.widget(index).setEnabled(editable)

    def wait_for_layers(self, timeout: float = 30.0) -> None:
        """Block until the layer trees are listed (for closing the window, and for tests)."""
        self._loader.wait(timeout)

    def layers_busy(self) -> bool:
        """True while the layer trees are being computed in the background."""
        return self._layers_pending

    def refresh_layers(self) -> None:
        """List the models' layers again when a model, the class count or the image size changed.

        Done in the background (:class:`~app.layer_picker.LayerLoader`), at the image size the run
        will use; ``layersLoaded`` fires when the trees and the pair checks are up to date.
        """
        archs = (self.teacher_arch.value(), self.student_arch.value())
        key = (archs, self.num_classes(), self.image_size.value())
        if key == self._layers_key:
            return
        self._layers_key = key
        self._layers_pending = True
        if not self._loader.request(*key):
            for picker in (self.layers.teacher_picker, self.layers.student_picker):
                picker.show_loading()
            self.layers.pair_table.set_pending()

    def _layers_loaded(self, key, results) -> None:
        if key != self._layers_key:
            return
        for field, (arch, _layers, error) in zip(("teacher.arch", "student.arch"), results):
            if error and arch:
                self._model_errors[field] = error
            else:
                self._model_errors.pop(field, None)
        self.layers.set_models(results[0], results[1])
        self._layers_pending = False
        self._mark(self._marked)
        self.layersLoaded.emit()
