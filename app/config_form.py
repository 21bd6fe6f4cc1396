"""The run's configuration as forms: "Models & data", "Layers & pairs" and "Training" tabs.

:class:`ConfigForm` shows a :class:`~featdistill_core.config.RunConfig` (:meth:`ConfigForm.set_config`)
and reads one back (:meth:`ConfigForm.config`). Validation is the core's: the quick form checks of
:func:`~featdistill_core.config.check_values` run as the user types; the full check
(:func:`~featdistill_core.validate.validate_run`: models, weights files, layers, pairs, device) runs
before Start. Either one raises a :class:`~featdistill_core.config.ConfigError` whose ``field``
(e.g. ``optim.lr``, ``pairs[1].teacher``) says which widget gets the red border and the message.
"""

from __future__ import annotations

import re

from PySide6 import QtCore, QtWidgets

from featdistill_core.config import (
    ConfigError, DataConfig, KDConfig, MonitorConfig, OptimConfig, RunConfig, StudentConfig, TeacherConfig,
    check_values,
)
from featdistill_core.device import available_devices
from featdistill_core.models import list_models
from featdistill_core.validate import count_classes

from app.fields import ChoiceCombo, FieldBox, FloatEdit, IntListEdit, PathEdit, int_spin
from app.layer_picker import LayerLoader
from app.layers_panel import LayersPanel

DATASET_LABELS = [
    ("demo", "Demo shapes (built in, generated from the seed)"),
    ("cifar10", "CIFAR-10 (its python-version folder)"),
    ("cifar100", "CIFAR-100 (its python-version folder)"),
    ("imagefolder", "Image folder (one sub-folder per class)"),
]
OPTIMIZER_LABELS = [("sgd", "SGD with momentum"), ("adamw", "AdamW")]
SCHEDULE_LABELS = [
    ("constant", "constant"),
    ("step", "step: × gamma at the milestones"),
    ("cosine", "cosine annealing to 0"),
]
WEIGHTS_FILTER = "Weights (*.safetensors *.pt *.pth);;All files (*)"
_KNOWN_CLASS_COUNTS = {"demo": 10, "cifar10": 10, "cifar100": 100}
_PAIR_FIELD = re.compile(r"^pairs\[(\d+)\]")

MODELS_TAB, LAYERS_TAB, TRAINING_TAB = 0, 1, 2
LABEL_WIDTH = 175         # the same label column on every page, so fields line up


class ModelCombo(QtWidgets.QComboBox):
    """The registry's models; editable, so ``package.module:function`` or ``timm:NAME`` can be typed."""

    modelChosen = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setEditable(True)
        self.setInsertPolicy(QtWidgets.QComboBox.InsertPolicy.NoInsert)
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


class ConfigForm(QtWidgets.QTabWidget):
    """Every setting of a run. ``changed`` fires on any edit."""

    changed = QtCore.Signal()
    validityChanged = QtCore.Signal(str)      # "" when the quick check passes, else the message
    layersLoaded = QtCore.Signal()            # the layer trees and pair checks are up to date

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("configForm")
        self._boxes: dict[str, tuple[FieldBox, int]] = {}
        self._config = RunConfig()
        self._loading = False
        self._layers_key: tuple | None = None
        self._model_errors: dict[str, str] = {}   # models that cannot be built stay marked
        self._layers_pending = False
        self._quick_timer = QtCore.QTimer(self)       # the quick check runs 250 ms after the last edit
        self._quick_timer.setSingleShot(True)
        self._quick_timer.setInterval(250)
        self._quick_timer.timeout.connect(self.check_quick)
        self._loader = LayerLoader(self)
        self._loader.loaded.connect(self._layers_loaded)
        self._build_models_page()
        self.layers = LayersPanel()
        self._register("kd.weight", self.layers.kd_weight_box, LAYERS_TAB)
        self._register("kd.temperature", self.layers.kd_temperature_box, LAYERS_TAB)
        self.layers.changed.connect(self._edited)
        self._build_training_page()
        self.insertTab(LAYERS_TAB, self.layers, "Layers && pairs")
        self.setTabToolTip(MODELS_TAB, "Teacher, student and dataset.")
        self.setTabToolTip(LAYERS_TAB, "Which layers to distil, and how.")
        self.setTabToolTip(TRAINING_TAB, "Epochs, optimizer, device, output folder.")
        self.set_config(RunConfig())

    # ---- building the pages ------------------------------------------------------------------
    def _page(self, title: str) -> tuple[QtWidgets.QVBoxLayout, QtWidgets.QScrollArea]:
        inner = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(inner)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        scroll.setWidget(inner)
        self.addTab(scroll, title)
        return layout, scroll

    def _group(self, layout: QtWidgets.QVBoxLayout, title: str) -> QtWidgets.QFormLayout:
        group = QtWidgets.QGroupBox(title)
        form = QtWidgets.QFormLayout(group)
        form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        layout.addWidget(group)
        return form

    def _field(self, form: QtWidgets.QFormLayout, label: str, name: str, editor: QtWidgets.QWidget,
               tooltip: str, tab: int) -> QtWidgets.QWidget:
        if isinstance(editor, (QtWidgets.QAbstractSpinBox, FloatEdit, IntListEdit)):
            editor.setMaximumWidth(220)      # numbers need no full-width boxes
        box = FieldBox(editor, tooltip)
        label_widget = QtWidgets.QLabel(label)
        label_widget.setMinimumWidth(LABEL_WIDTH)
        label_widget.setToolTip(tooltip)
        label_widget.setBuddy(editor)
        form.addRow(label_widget, box)
        self._register(name, box, tab)
        for signal_name in ("valueChanged", "currentIndexChanged", "textChanged", "toggled", "changed"):
            signal = getattr(editor, signal_name, None)
            if isinstance(signal, QtCore.SignalInstance):
                signal.connect(self._edited)
        return editor

    def _register(self, name: str, box: FieldBox, tab: int) -> None:
        self._boxes[name] = (box, tab)

    def _build_models_page(self) -> None:
        layout, _ = self._page("Models && data")
        tab = MODELS_TAB

        teacher = self._group(layout, "Teacher — the trained network to learn from")
        self.teacher_arch = self._field(teacher, "Architecture", "teacher.arch", ModelCombo(),
            "The teacher's architecture: a built-in model (see `featdistill models`), or your own factory as "
            "package.module:function (called with num_classes), or torchvision:NAME / timm:NAME.", tab)
        self.teacher_train = QtWidgets.QCheckBox("Train the teacher first (no weights file)")
        self.teacher_train.setObjectName("trainTeacherCheck")
        self.teacher_train.setToolTip("Train the teacher from scratch on the dataset before distilling; "
                                      "for when you have no trained teacher.")
        spacer = QtWidgets.QLabel()
        spacer.setMinimumWidth(LABEL_WIDTH)
        teacher.addRow(spacer, self.teacher_train)
        self.teacher_train.toggled.connect(self._edited)
        self.teacher_train.toggled.connect(self._update_enabled)
        self.teacher_epochs = self._field(teacher, "Teacher epochs", "teacher.train_epochs", int_spin(0, 100000),
            "How many epochs to train the teacher first.", tab)
        self.teacher_weights = self._field(teacher, "Weights file", "teacher.weights",
            PathEdit(folder=False, caption="Teacher weights", file_filter=WEIGHTS_FILTER,
                     placeholder="a .safetensors or state-dict .pt/.pth file"),
            "The trained teacher's weights: .safetensors, or a state-dict .pt/.pth (loaded with "
            "weights_only=True, so a file can never run code).", tab)

        student = self._group(layout, "Student — the network being trained")
        self.student_arch = self._field(student, "Architecture", "student.arch", ModelCombo(),
            "The student's architecture: a built-in model, package.module:function, or torchvision:NAME / "
            "timm:NAME.", tab)
        self.student_weights = self._field(student, "Starting weights", "student.weights",
            PathEdit(folder=False, caption="Student weights", file_filter=WEIGHTS_FILTER,
                     placeholder="optional; empty = random initialisation"),
            "Optional weights to start the student from (.safetensors or state-dict .pt/.pth).", tab)
        self.teacher_arch.modelChosen.connect(self.refresh_layers)
        self.student_arch.modelChosen.connect(self.refresh_layers)

        data = self._group(layout, "Dataset")
        self.data_name = self._field(data, "Dataset", "data.name", ChoiceCombo(DATASET_LABELS),
            "What to train on. The demo is generated, nothing is downloaded; CIFAR needs its python-version "
            "folder (cifar-10-batches-py / cifar-100-python); an image folder has one sub-folder per class "
            "(optionally inside train/ and test/).", tab)
        self.data_path = self._field(data, "Folder", "data.path",
            PathEdit(folder=True, caption="Dataset folder", placeholder="the dataset's folder"),
            "The folder the CIFAR files or the class sub-folders are in. Not used by the demo.", tab)
        self.image_size = self._field(data, "Image size", "data.image_size", int_spin(8, 4096, " px"),
            "Image-folder images are resized to this square size; CIFAR and the demo are 32×32.", tab)
        self.augment = self._field(data, "", "data.augment", QtWidgets.QCheckBox("Augment training images"),
            "Random crop with 4 pixels of padding and horizontal flip on the training split.", tab)
        self.demo_train = self._field(data, "Demo training images", "data.demo_train", int_spin(0, 10**7),
            "How many demo images to generate for training.", tab)
        self.demo_test = self._field(data, "Demo test images", "data.demo_test", int_spin(0, 10**7),
            "How many demo images to generate for testing.", tab)
        self.data_name.currentIndexChanged.connect(self._update_enabled)
        self.data_name.currentIndexChanged.connect(self._data_shape_changed)
        self.image_size.valueChanged.connect(self._data_shape_changed)
        self.data_path.line_edit.editingFinished.connect(self._data_shape_changed)
        layout.addStretch(1)

    def _build_training_page(self) -> None:
        layout, _ = self._page("Training")
        tab = TRAINING_TAB

        length = self._group(layout, "Length")
        self.epochs = self._field(length, "Epochs", "epochs", int_spin(0, 100000),
            "Epochs of the student's main stage (0 only trains the teacher).", tab)
        self.batch_size = self._field(length, "Batch size", "batch_size", int_spin(0, 65536),
            "Images per training step.", tab)
        self.init_epochs = self._field(length, "Initialisation epochs", "init_epochs", int_spin(0, 100000),
            "Epochs of the distillation-only stage for pairs whose stage is 'init' (FSP's recipe); 0 for none.", tab)

        optim = self._group(layout, "Optimizer")
        self.optimizer = self._field(optim, "Optimizer", "optim.name", ChoiceCombo(OPTIMIZER_LABELS),
            "SGD with momentum (the CIFAR recipes) or AdamW.", tab)
        self.lr = self._field(optim, "Learning rate", "optim.lr", FloatEdit(),
            "Initial learning rate, e.g. 0.05 for SGD on CIFAR, 1e-3 for AdamW.", tab)
        self.momentum = self._field(optim, "Momentum", "optim.momentum", FloatEdit(),
            "SGD momentum, between 0 and 1 (0.9 usually).", tab)
        self.weight_decay = self._field(optim, "Weight decay", "optim.weight_decay", FloatEdit(),
            "L2 penalty (SGD) or decoupled decay (AdamW); 5e-4 in the CIFAR recipes.", tab)
        self.schedule = self._field(optim, "Schedule", "optim.schedule", ChoiceCombo(SCHEDULE_LABELS),
            "How the learning rate changes over the epochs.", tab)
        self.milestones = self._field(optim, "Milestones", "optim.milestones", IntListEdit(),
            "For the step schedule: epochs at which the learning rate is multiplied by gamma, e.g. 150, 180, 210.", tab)
        self.gamma = self._field(optim, "Gamma", "optim.gamma", FloatEdit(),
            "For the step schedule: the factor applied at each milestone (0.1 usually).", tab)
        self.optimizer.currentIndexChanged.connect(self._update_enabled)
        self.schedule.currentIndexChanged.connect(self._update_enabled)

        losses = self._group(layout, "Task loss")
        self.ce_weight = self._field(losses, "Cross-entropy weight", "ce_weight", FloatEdit(),
            "Weight of the student's cross-entropy on the labels (1 usually; 0 for distillation only).", tab)

        run = self._group(layout, "Run")
        self.run_name = self._field(run, "Run name", "name", QtWidgets.QLineEdit(),
            "Names the run folder: OUTPUT/NAME-date-time.", tab)
        self.output_dir = self._field(run, "Output folder", "output_dir",
            PathEdit(folder=True, caption="Output folder", placeholder="runs"),
            "Where run folders are written (metrics, snapshots, weights).", tab)
        self.device = self._field(run, "Device", "device", ChoiceCombo(), "Where to train. auto = the first "
            "CUDA GPU, else Apple MPS, else the CPU. Devices this machine lacks are greyed out.", tab)
        for option in available_devices():
            self.device.addItem(option.label, option.spec)
            if not option.available:
                self.device.model().item(self.device.count() - 1).setEnabled(False)
        self.mixed_precision = self._field(run, "", "mixed_precision",
            QtWidgets.QCheckBox("Mixed precision (float16 on CUDA, bfloat16 on CPU)"),
            "Faster training on GPUs with autocast; the losses are still computed in float32.", tab)
        self.seed = self._field(run, "Seed", "seed", int_spin(0, 2**31 - 1),
            "Seeds the data order, augmentation and initialisation: the same seed gives the same run on the CPU.", tab)

        monitor = self._group(layout, "Live view")
        self.log_every = self._field(monitor, "Log every", "monitor.log_every", int_spin(0, 10**6, " steps"),
            "Steps between two points of the loss curves (losses are averaged over them).", tab)
        self.snapshot_every = self._field(monitor, "Attention snapshot every", "monitor.snapshot_every",
            int_spin(0, 10**6, " steps"), "Steps between two attention-map snapshots (0: only at epoch ends).", tab)
        self.probe_images = self._field(monitor, "Probe images", "monitor.probe_images", int_spin(0, 256),
            "How many fixed test images the attention maps are recorded on.", tab)
        layout.addStretch(1)

    # ---- reading and writing a config --------------------------------------------------------
    def set_config(self, config: RunConfig) -> None:
        """Show ``config`` in the forms (the layer trees are rebuilt for its models)."""
        self._loading = True
        try:
            c = config
            self._config = c
            self.teacher_arch.set_value(c.teacher.arch)
            self.teacher_train.setChecked(c.trains_teacher)
            self.teacher_epochs.setValue(c.teacher.train_epochs if c.teacher.train_epochs > 0 else 5)
            self.teacher_weights.setText(c.teacher.weights)
            self.student_arch.set_value(c.student.arch)
            self.student_weights.setText(c.student.weights)
            self.data_name.set_value(c.data.name)
            self.data_path.setText(c.data.path)
            self.image_size.setValue(c.data.image_size)
            self.augment.setChecked(c.data.augment)
            self.demo_train.setValue(c.data.demo_train)
            self.demo_test.setValue(c.data.demo_test)
            self.epochs.setValue(c.epochs)
            self.batch_size.setValue(c.batch_size)
            self.init_epochs.setValue(c.init_epochs)
            self.optimizer.set_value(c.optim.name)
            self.lr.set_value(c.optim.lr)
            self.momentum.set_value(c.optim.momentum)
            self.weight_decay.set_value(c.optim.weight_decay)
            self.schedule.set_value(c.optim.schedule)
            self.milestones.set_value(c.optim.milestones)
            self.gamma.set_value(c.optim.gamma)
            self.ce_weight.set_value(c.ce_weight)
            self.run_name.setText(c.name)
            self.output_dir.setText(c.output_dir)
            self.device.set_value(c.device)
            self.mixed_precision.setChecked(c.mixed_precision)
            self.seed.setValue(c.seed)
            self.log_every.setValue(c.monitor.log_every)
            self.snapshot_every.setValue(c.monitor.snapshot_every)
            self.probe_images.setValue(c.monitor.probe_images)
            self.layers.kd_weight.setValue(c.kd.weight)
            self.layers.kd_temperature.setValue(c.kd.temperature)
            self.layers.pair_table.set_pairs(c.pairs)
            self.layers.clear_message()
        finally:
            self._loading = False
        self._update_enabled()
        self._layers_key = None
        self.refresh_layers()
        self.clear_errors()
        self.check_quick()

    def config(self, check: bool = True) -> RunConfig:
        """The run the forms describe. With ``check``, the quick checks run (:class:`ConfigError`)."""
        trains_teacher = self.teacher_train.isChecked()
        config = RunConfig(
            name=self.run_name.text().strip(),
            seed=self.seed.value(),
            device=self.device.value(),
            mixed_precision=self.mixed_precision.isChecked(),
            epochs=self.epochs.value(),
            batch_size=self.batch_size.value(),
            ce_weight=self.ce_weight.value("ce_weight"),
            init_epochs=self.init_epochs.value(),
            output_dir=self.output_dir.text(),
            teacher=TeacherConfig(
                arch=self.teacher_arch.value(),
                weights="" if trains_teacher else self.teacher_weights.text(),
                train_epochs=self.teacher_epochs.value() if trains_teacher else 0,
            ),
            student=StudentConfig(arch=self.student_arch.value(), weights=self.student_weights.text()),
            data=DataConfig(
                name=self.data_name.value(),
                path=self.data_path.text(),
                image_size=self.image_size.value(),
                augment=self.augment.isChecked(),
                demo_train=self.demo_train.value(),
                demo_test=self.demo_test.value(),
            ),
            optim=OptimConfig(
                name=self.optimizer.value(),
                lr=self.lr.value("optim.lr"),
                momentum=self.momentum.value("optim.momentum"),
                weight_decay=self.weight_decay.value("optim.weight_decay"),
                schedule=self.schedule.value(),
                milestones=self.milestones.value("optim.milestones"),
                gamma=self.gamma.value("optim.gamma"),
            ),
            kd=KDConfig(weight=self.layers.kd_weight.value(), temperature=self.layers.kd_temperature.value()),
            monitor=MonitorConfig(
                log_every=self.log_every.value(),
                snapshot_every=self.snapshot_every.value(),
                probe_images=self.probe_images.value(),
            ),
            pairs=self.layers.pair_table.pairs(),
        )
        if check:
            check_values(config)
        return config

    # ---- validation --------------------------------------------------------------------------
    def check_quick(self) -> ConfigError | None:
        """Run the form checks (no model is built); mark the first problem at its field."""
        self._quick_timer.stop()
        try:
            self.config(check=True)
        except ConfigError as error:
            self.show_error(error, focus=False)
            self.validityChanged.emit(str(error))
            return error
        self.clear_errors()
        self.validityChanged.emit("")
        return None

    def check_before_start(self) -> RunConfig:
        """The form checks and every pair's shape check; marks and raises the first problem.

        What needs the models built and the weights loaded (:func:`validate_run`) is checked by the
        training worker off the GUI thread; its error comes back to :meth:`show_error`.
        """
        self.refresh_layers()            # a model name typed but not confirmed yet is picked up here
        try:
            config = self.config(check=True)
            if not self._layers_pending:
                for index, check in enumerate(self.layers.pair_table.checks()):
                    if not check.ok:
                        raise ConfigError(f"pairs[{index}]", check.reason)
        except ConfigError as error:
            self.show_error(error, focus=True)
            self.validityChanged.emit(str(error))
            raise
        self.clear_errors()
        self.validityChanged.emit("")
        return config

    def show_error(self, error: ConfigError, focus: bool = True) -> bool:
        """Mark ``error`` at its field (red border and message); True when a field was found."""
        self.clear_errors()
        field = error.field
        match = _PAIR_FIELD.match(field)
        if match:
            self.layers.pair_table.mark_row(int(match.group(1)), error.reason)
            if focus:
                self.setCurrentIndex(LAYERS_TAB)
            return True
        entry = self._boxes.get(field)
        if entry is None:
            return False
        box, tab = entry
        box.show_error(error.reason)
        if focus:
            self.setCurrentIndex(tab)
            box.editor.setFocus()
        return True

    def clear_errors(self) -> None:
        """Remove every mark, except those of models that cannot be built (see :meth:`refresh_layers`)."""
        for field, (box, _tab) in self._boxes.items():
            if field in self._model_errors:
                box.show_error(self._model_errors[field])
            else:
                box.clear_error()

    def field_error(self, field: str) -> str:
        """The message shown at ``field`` ("" when none): for tests and automation."""
        entry = self._boxes.get(field)
        return entry[0].error if entry else ""

    def field_widget(self, field: str) -> QtWidgets.QWidget | None:
        entry = self._boxes.get(field)
        return entry[0].editor if entry else None

    # ---- reactions ----------------------------------------------------------------------------
    def _edited(self, *_args) -> None:
        if self._loading:
            return
        self._quick_timer.start()
        self.changed.emit()

    def _update_enabled(self, *_args) -> None:
        trains = self.teacher_train.isChecked()
        self.teacher_epochs.setEnabled(trains)
        self.teacher_weights.setEnabled(not trains)
        dataset = self.data_name.value()
        self.data_path.setEnabled(dataset != "demo")
        self.image_size.setEnabled(dataset == "imagefolder")
        self.demo_train.setEnabled(dataset == "demo")
        self.demo_test.setEnabled(dataset == "demo")
        self.momentum.setEnabled(self.optimizer.value() == "sgd")
        step = self.schedule.value() == "step"
        self.milestones.setEnabled(step)
        self.gamma.setEnabled(step)

    def _data_shape_changed(self, *_args) -> None:
        if not self._loading:
            self.refresh_layers()

    def num_classes(self) -> int:
        """Classes of the chosen dataset (10 when an image folder cannot be read yet)."""
        name = self.data_name.value()
        if name in _KNOWN_CLASS_COUNTS:
            return _KNOWN_CLASS_COUNTS[name]
        try:
            return count_classes(RunConfig(data=DataConfig(name=name, path=self.data_path.text())))
        except ConfigError:
            return 10

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

        Done in the background (:class:`~app.layer_picker.LayerLoader`); ``layersLoaded`` fires when
        the trees and the pair checks are up to date.
        """
        size = self.image_size.value() if self.data_name.value() == "imagefolder" else 32
        archs = (self.teacher_arch.value(), self.student_arch.value())
        key = (archs, self.num_classes(), size)
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
        for field, (arch, layers, error) in zip(("teacher.arch", "student.arch"), results):
            if error and arch:
                self._model_errors[field] = error
                self._boxes[field][0].show_error(error)
            else:
                self._model_errors.pop(field, None)
                self._boxes[field][0].clear_error()
        self.layers.set_models(results[0], results[1])
        self._layers_pending = False
        self.layersLoaded.emit()
