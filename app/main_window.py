"""The workbench window: the run's set-up on the left, the live view of training on the right.

Left, :class:`~app.config_form.ConfigForm` (tabs "Models & data", "Layers & pairs", "Training").
Right, the run controls (Start, Pause/Resume, Stop), a progress bar and a status line, the loss and
accuracy curves, and the teacher/student attention maps. Training runs in
:class:`~app.worker.TrainingWorker`'s background thread; its events reach the widgets in batches,
at most 10 times a second (:data:`~app.worker.DRAIN_HZ`).

``MainWindow()`` needs no argument: it opens on the embedded demo (:func:`featdistill_core.demo.demo_config`),
ready to press Start.
"""

from __future__ import annotations

import html
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from featdistill_core import (
    METHODS, ConfigError, Failed, Finished, Progress, RunConfig, RunFolderError, Stage, StageStarted, demo_config,
    format_duration, load_config, load_run, plan_stages, save_config,
)

from app import settings as app_settings
from app.attention_view import AttentionView
from app.config_form import ConfigForm
from app.fields import INVALID_STYLE
from app.method_help import show_method_help
from app.plots import AccuracyPlot, LossPlot
from app.worker import TrainingWorker, config_error_from_failed

WINDOW_TITLE = "featdistill — feature-distillation workbench"
RUN_FILE_FILTER = "Run files (*.toml);;All files (*)"
STATUS_COLOURS = {"info": "#202020", "ok": "#1b7f3b", "error": "#b00020", "busy": "#0b5394"}
PROGRESS_STEPS = 1000
VALIDITY_LINES = 4        # problems listed under the form; more are counted


def problems_text(error: ConfigError, shown: int = 3) -> str:
    """Every problem of ``error`` on one line: ``field: message; field: message …``."""
    problems = [str(problem) for problem in error.problems]
    if len(problems) == 1:
        return problems[0]
    more = f"; and {len(problems) - shown} more" if len(problems) > shown else ""
    return f"{len(problems)} problems — " + "; ".join(problems[:shown]) + more


class MainWindow(QtWidgets.QMainWindow):
    """The featdistill window. ``errorShown(message)`` fires whenever an error is reported."""

    errorShown = QtCore.Signal(str)
    runEnded = QtCore.Signal()
    firstShown = QtCore.Signal()

    def __init__(self, config: RunConfig | None = None, settings: QtCore.QSettings | None = None,
                 parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.settings = settings if settings is not None else app_settings.open_settings()
        self.run_file: Path | None = None
        self.viewed_run: Path | None = None
        self.last_error = ""
        self.show_error_dialogs = True        # tests may turn the message boxes off
        self.error_box: QtWidgets.QMessageBox | None = None
        self._shown_once = False
        self._plan: tuple = ()                # the stage plan of the run under way

        self.setStyleSheet(INVALID_STYLE)
        self.form = ConfigForm()
        self.worker = TrainingWorker(self)
        self._build_live_view()
        self._build_actions()
        self._build_layout()
        self._connect_worker()
        self.form.validityChanged.connect(self._validity_changed)

        self.resize(1400, 900)
        self.set_config(config if config is not None else demo_config(), None)
        self._restore_layout()
        self._update_controls()

    # ---- construction --------------------------------------------------------------------------
    def _build_live_view(self) -> None:
        style = self.style()
        self.start_button = QtWidgets.QPushButton(style.standardIcon(QtWidgets.QStyle.StandardPixmap.SP_MediaPlay), "Start")
        self.start_button.setObjectName("startButton")
        self.start_button.setToolTip("Check the run and start training (F5).")
        self.pause_button = QtWidgets.QPushButton(style.standardIcon(QtWidgets.QStyle.StandardPixmap.SP_MediaPause), "Pause")
        self.pause_button.setObjectName("pauseButton")
        self.pause_button.setToolTip("Pause training after the current step; press again to resume (F6).")
        self.stop_button = QtWidgets.QPushButton(style.standardIcon(QtWidgets.QStyle.StandardPixmap.SP_MediaStop), "Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setToolTip("Stop training after the current step; what was trained is saved (Shift+F5).")
        for button in (self.start_button, self.pause_button, self.stop_button):
            button.setMinimumHeight(30)
        self.start_button.setStyleSheet("QPushButton:enabled { font-weight: bold; }")
        self.start_button.clicked.connect(self.start_run)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button.clicked.connect(self.stop_run)

        self.progress_bar = QtWidgets.QProgressBar()
        self.progress_bar.setObjectName("progressBar")
        self.progress_bar.setRange(0, PROGRESS_STEPS)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("Not started")
        self.progress_bar.setMinimumHeight(24)
        self.progress_bar.setToolTip("Progress of the whole run: stage, epoch, step, speed and time left.")
        self.speed_label = QtWidgets.QLabel()
        self.speed_label.setObjectName("speedLabel")
        self.speed_label.setToolTip("Training speed and the estimated time left for the whole run.")
        self.speed_label.setMinimumWidth(190)
        self.speed_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
        self.status_label = QtWidgets.QLabel()
        self.status_label.setObjectName("statusLine")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        # two lines kept: a message of one line or two never re-lays out, and so redraws, the plots
        self.status_label.setMinimumHeight(2 * self.status_label.fontMetrics().lineSpacing())

        self.loss_plot = LossPlot()
        self.accuracy_plot = AccuracyPlot()
        self.attention_view = AttentionView()

    def _build_actions(self) -> None:
        style = self.style()
        sp = QtWidgets.QStyle.StandardPixmap

        def action(text, slot, shortcut=None, icon=None, tip=""):
            act = QtGui.QAction(style.standardIcon(icon) if icon is not None else QtGui.QIcon(), text, self)
            if shortcut:
                act.setShortcut(QtGui.QKeySequence(shortcut))
            act.setToolTip(tip or text)
            act.setStatusTip(tip or text)
            act.triggered.connect(slot)
            return act

        self.new_action = action("&New (demo)", self.new_run, QtGui.QKeySequence.StandardKey.New, sp.SP_FileIcon,
                                 "Start over from the embedded demo run.")
        self.open_action = action("&Open run file…", self.ask_open_run_file, QtGui.QKeySequence.StandardKey.Open,
                                  sp.SP_DialogOpenButton, "Load a run file (.toml) into the forms.")
        self.save_action = action("&Save run file", self.save_run_file, QtGui.QKeySequence.StandardKey.Save,
                                  sp.SP_DialogSaveButton, "Save the forms as a run file (the same TOML the CLI runs).")
        self.save_as_action = action("Save run file &as…", self.ask_save_run_file_as,
                                     QtGui.QKeySequence.StandardKey.SaveAs, None, "Save the forms to a new run file.")
        self.open_folder_action = action("Open run &folder…", self.ask_open_run_folder, "Ctrl+Shift+O",
                                         sp.SP_DirOpenIcon, "Show the curves and attention maps of a finished run.")
        self.quit_action = action("&Quit", self.close, QtGui.QKeySequence.StandardKey.Quit)
        self.start_action = action("&Start", self.start_run, "F5", sp.SP_MediaPlay, "Check the run and start training.")
        self.pause_action = action("&Pause / Resume", self.toggle_pause, "F6", sp.SP_MediaPause)
        self.stop_action = action("S&top", self.stop_run, "Shift+F5", sp.SP_MediaStop)

        file_menu = self.menuBar().addMenu("&File")
        for act in (self.new_action, self.open_action, self.save_action, self.save_as_action):
            file_menu.addAction(act)
        file_menu.addSeparator()
        file_menu.addAction(self.open_folder_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        run_menu = self.menuBar().addMenu("&Run")
        for act in (self.start_action, self.pause_action, self.stop_action):
            run_menu.addAction(act)
        help_menu = self.menuBar().addMenu("&Help")
        for key, info in METHODS.items():
            help_menu.addAction(f"About {info.title}…", lambda k=key: show_method_help(k, self))

        toolbar = self.addToolBar("Files")
        toolbar.setObjectName("filesToolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for act in (self.new_action, self.open_action, self.save_action, self.open_folder_action):
            toolbar.addAction(act)

    def _build_layout(self) -> None:
        left = QtWidgets.QWidget()
        left_layout = QtWidgets.QVBoxLayout(left)
        left_layout.setContentsMargins(6, 6, 2, 6)
        title = QtWidgets.QLabel("<b>1 · Set up the run</b> — hover any field for help")
        left_layout.addWidget(title)
        left_layout.addWidget(self.form, 1)
        self.validity_label = QtWidgets.QLabel()
        self.validity_label.setObjectName("validityLine")
        self.validity_label.setWordWrap(True)
        self.validity_label.setStyleSheet(f"color: {STATUS_COLOURS['error']};")
        self.validity_label.hide()
        left_layout.addWidget(self.validity_label)

        controls = QtWidgets.QHBoxLayout()
        controls.addWidget(self.start_button)
        controls.addWidget(self.pause_button)
        controls.addWidget(self.stop_button)
        controls.addStretch(1)
        controls.addWidget(self.speed_label)

        plots = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        plots.setObjectName("plotsSplitter")
        plots.addWidget(self.loss_plot)
        plots.addWidget(self.accuracy_plot)
        plots.setStretchFactor(0, 3)
        plots.setStretchFactor(1, 2)
        plots.setChildrenCollapsible(False)
        self.live_splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        self.live_splitter.setObjectName("liveSplitter")
        self.live_splitter.addWidget(plots)
        self.live_splitter.addWidget(self.attention_view)
        self.live_splitter.setStretchFactor(0, 2)
        self.live_splitter.setStretchFactor(1, 3)
        self.live_splitter.setChildrenCollapsible(False)

        right = QtWidgets.QWidget()
        right_layout = QtWidgets.QVBoxLayout(right)
        right_layout.setContentsMargins(2, 6, 6, 6)
        right_layout.addWidget(QtWidgets.QLabel("<b>2 · Train and watch</b> — the student's attention "
                                                "should come to resemble the teacher's"))
        right_layout.addLayout(controls)
        right_layout.addWidget(self.progress_bar)
        right_layout.addWidget(self.status_label)
        right_layout.addWidget(self.live_splitter, 1)

        self.main_splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        self.main_splitter.setObjectName("mainSplitter")
        self.main_splitter.addWidget(left)
        self.main_splitter.addWidget(right)
        self.main_splitter.setChildrenCollapsible(False)
        self.main_splitter.setStretchFactor(0, 0)
        self.main_splitter.setStretchFactor(1, 1)
        self.main_splitter.setSizes([620, 780])
        self.setCentralWidget(self.main_splitter)

    def _connect_worker(self) -> None:
        w = self.worker
        w.runStarted.connect(self._run_started)
        w.stageStarted.connect(self._stage_started)
        w.stepsReceived.connect(self.loss_plot.add_steps)
        w.epochsReceived.connect(self.accuracy_plot.add_epochs)
        w.epochsReceived.connect(self._epochs_received)
        w.snapshotsReceived.connect(self.attention_view.add_snapshots)
        w.progressChanged.connect(self._show_progress)
        w.finished.connect(self._run_finished)
        w.failed.connect(self._run_failed)
        w.refused.connect(self._run_refused)
        w.pausedChanged.connect(self._paused_changed)
        w.runEnded.connect(self._run_ended)

    # ---- the configuration ----------------------------------------------------------------------
    def set_config(self, config: RunConfig, run_file: str | Path | None) -> None:
        self.form.set_config(config)
        self.run_file = Path(run_file) if run_file else None
        self._update_title()
        self.set_status(self._ready_text(config), "info")

    def config(self) -> RunConfig:
        """The run the forms describe (raises :class:`ConfigError` if it is not valid)."""
        return self.form.config(check=True)

    @staticmethod
    def _ready_text(config: RunConfig) -> str:
        """What Start will do: the run's stage plan (:func:`featdistill_core.plan_stages`) in words."""
        terms = ", ".join(term.method for term in config.terms) or "no distillation term"
        steps = []
        for planned in plan_stages(config):
            if planned.stage is Stage.TEACHER:
                steps.append(f"train the teacher {config.teacher.arch} for {planned.epochs} epoch(s)")
            elif planned.stage is Stage.INIT:
                steps.append(f"initialise {config.student.arch} for {planned.epochs} epoch(s) "
                             "with the init-stage terms")
            else:
                steps.append(f"distil {config.student.arch} for {planned.epochs} epoch(s) ({terms})")
        return "Ready. Press Start to " + (" and then ".join(steps) or "check the run") + "."

    def _validity_changed(self, message: str) -> None:
        lines = [line for line in message.splitlines() if line]
        if lines:
            shown = lines[:VALIDITY_LINES]
            if len(lines) > VALIDITY_LINES:
                shown.append(f"… and {len(lines) - VALIDITY_LINES} more, marked in red")
            self.validity_label.setText("\n".join(f"⚠ {line}" for line in shown))
            self.validity_label.show()
        else:
            self.validity_label.hide()

    # ---- files ---------------------------------------------------------------------------------
    def new_run(self) -> None:
        if self.worker.running:
            return
        self.set_config(demo_config(), None)
        self.clear_live_view()

    def ask_open_run_file(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open run file", self._start_dir(), RUN_FILE_FILTER)
        if path:
            self.open_run_file(path)

    def open_run_file(self, path: str | Path) -> bool:
        """Load a run file into the forms; on a problem, report it and keep the current forms."""
        if self.worker.running:
            self.set_status("Stop the current run before opening a run file.", "error")
            return False
        try:
            config = load_config(path)
        except ConfigError as error:
            self.report_error("Cannot open the run file", f"{path}:\n{error}")
            return False
        self.set_config(config, path)
        app_settings.remember_run_file(self.settings, path)
        self.set_status(f"Opened {path}. " + self._ready_text(config), "info")
        return True

    def save_run_file(self) -> bool:
        if self.run_file is None:
            return self.ask_save_run_file_as()
        return self.save_run_file_to(self.run_file)

    def ask_save_run_file_as(self) -> bool:
        start = str(self.run_file) if self.run_file else str(Path(self._start_dir() or ".") / "run.toml")
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save run file", start, RUN_FILE_FILTER)
        return self.save_run_file_to(path) if path else False

    def save_run_file_to(self, path: str | Path) -> bool:
        """Write the forms as a run file; an invalid form is refused (and the field marked)."""
        try:
            config = self.form.config(check=True)
        except ConfigError as error:
            self.form.show_error(error)
            self.set_status(f"Not saved: {problems_text(error)}", "error")
            return False
        path = Path(path)
        if path.suffix == "":
            path = path.with_suffix(".toml")
        try:
            save_config(config, path)
        except OSError as exc:
            self.report_error("Cannot save the run file", f"{path}: {exc}")
            return False
        self.run_file = path
        app_settings.remember_run_file(self.settings, path)
        self._update_title()
        self.set_status(f"Saved {path}. Run it headless with: featdistill train {path}", "ok")
        return True

    def ask_open_run_folder(self) -> None:
        start = self.form.output_dir.text() or self._start_dir()
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Open run folder", start)
        if path:
            self.open_run_folder(path)

    def open_run_folder(self, path: str | Path) -> bool:
        """Show a finished (or stopped, or failed) run's curves and attention evolution."""
        if self.worker.running:
            self.set_status("Stop the current run before opening another one.", "error")
            return False
        try:
            record = load_run(path)
        except (RunFolderError, ConfigError, OSError) as error:
            self.report_error("Cannot open the run folder", str(error))
            return False
        self.set_config(record.config, None)
        self.clear_live_view()
        self.loss_plot.add_steps(record.steps)
        self.accuracy_plot.add_epochs(record.epochs)
        self.attention_view.set_snapshots(record.snapshots)
        self.viewed_run = Path(path)
        if record.failed is not None:
            outcome, kind = f"it failed: {record.failed.error}", "error"
        elif record.finished is not None and record.finished.stopped:
            outcome, kind = "it was stopped early", "info"
        elif record.finished is not None:
            outcome, kind = self._metrics_text(record.finished.metrics), "ok"
        else:
            outcome, kind = "it did not finish (no end record)", "info"
        self.progress_bar.setValue(PROGRESS_STEPS if record.finished else 0)
        self.progress_bar.setFormat("Saved run")
        self.set_status(f"Showing the saved run {path} — {outcome}. {len(record.steps)} loss points, "
                        f"{len(record.snapshots)} attention snapshots.", kind)
        return True

    def _start_dir(self) -> str:
        return app_settings.last_directory(self.settings)

    def _update_title(self) -> None:
        self.setWindowTitle(f"{self.run_file.name} — {WINDOW_TITLE}" if self.run_file else WINDOW_TITLE)

    # ---- running ---------------------------------------------------------------------------------
    def start_run(self) -> bool:
        """Check the forms and start training in the background; False (and why) if refused."""
        if self.worker.running:
            return False
        try:
            config = self.form.check_before_start()
        except ConfigError as error:
            self.set_status(f"Cannot start — fix the marked fields: {problems_text(error)}", "error")
            return False
        self.clear_live_view()
        self.viewed_run = None
        self._plan = plan_stages(config)
        self.worker.start(config)
        self.progress_bar.setFormat("Checking the run…")
        self.set_status("Checking the run (building the models, loading the weights, checking every pair)…",
                        "busy")
        self._update_controls()
        return True

    def toggle_pause(self) -> None:
        if not self.worker.running:
            return
        if self.worker.paused:
            self.worker.resume()
        else:
            self.worker.pause()

    def stop_run(self) -> None:
        if self.worker.running:
            self.worker.stop()
            self.set_status("Stopping after the current step…", "busy")
            self.stop_button.setEnabled(False)

    def clear_live_view(self) -> None:
        self.loss_plot.clear()
        self.accuracy_plot.clear()
        self.attention_view.clear()
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("Not started")
        self.speed_label.clear()

    def stage_heading(self, stage) -> str:
        """``"Stage 2 of 3 — Distilling the student"``: a stage's place in the run's plan and its title."""
        stage = Stage(stage)
        order = [planned.stage for planned in self._plan]
        if stage not in order:
            return stage.title
        return f"Stage {order.index(stage) + 1} of {len(order)} — {stage.title}"

    def _run_started(self, run_dir: str) -> None:
        self.progress_bar.setFormat("Loading the data…")
        self.set_status(f"The run passed its checks; loading the data… Output: {run_dir}", "busy")

    def _stage_started(self, event: StageStarted) -> None:
        self.loss_plot.note_stage(event.stage)          # the stage boxes name it before its first point
        self.accuracy_plot.note_stage(event.stage)
        self.set_status(f"{self.stage_heading(event.stage)}: {event.epochs} epoch(s) of {event.steps_per_epoch} "
                        f"steps. Output: {event.run_dir}", "busy")

    def _epochs_received(self, events: list) -> None:
        last = events[-1]
        who = "teacher" if Stage(last.stage) is Stage.TEACHER else "student"
        text = (f"{self.stage_heading(last.stage)} — epoch {last.epoch}/{last.epochs} done: "
                f"{who} train {last.train_acc:.1f} %, test {last.test_acc:.1f} %")
        if last.teacher_acc is not None:
            text += f" (teacher {last.teacher_acc:.1f} %)"
        self.set_status(text + ".", "busy")

    def _show_progress(self, p: Progress) -> None:
        self.progress_bar.setValue(int(p.fraction * PROGRESS_STEPS))
        paused = " · PAUSED" if self.worker.paused else ""
        self.progress_bar.setFormat(
            f"Stage {p.stage_index} of {p.stage_count} — {p.stage.title} · "
            f"epoch {p.epoch}/{p.epochs} · step {p.step}/{p.total_steps}{paused}"
        )
        speed = f"{p.images_per_sec:,.0f} img/s" if p.images_per_sec else "– img/s"
        self.speed_label.setText(f"{speed} · ETA {format_duration(p.eta_seconds)}")

    def _run_finished(self, event: Finished) -> None:
        if event.stopped:
            where = f" What was trained is saved in {event.run_dir}." if event.run_dir else ""
            self.set_status("Stopped." + where, "info")
            self.progress_bar.setFormat(self.progress_bar.format().replace(" · PAUSED", "") + " · stopped")
        else:
            self.progress_bar.setValue(PROGRESS_STEPS)
            self.progress_bar.setFormat("Finished")
            self.speed_label.clear()
            self.set_status(f"Finished: {self._metrics_text(event.metrics)}. Run folder: {event.run_dir}", "ok")

    def _run_failed(self, event: Failed) -> None:
        config_error = config_error_from_failed(event)
        if config_error is not None:
            self.form.show_error(config_error)
        where = f"\n\nThe run's files are kept in {event.run_dir}." if event.run_dir else ""
        self.progress_bar.setFormat("Failed")
        self.set_status(f"Training failed: {event.error}", "error")
        self.report_error("Training failed", f"{event.error}{where}", event.details)

    def _run_refused(self, error: ConfigError) -> None:
        self.form.show_error(error, focus=True)
        self.progress_bar.setFormat("Not started")
        self.set_status(f"Cannot start — fix the marked fields: {problems_text(error)}", "error")

    def _run_ended(self) -> None:
        self._update_controls()
        self.runEnded.emit()

    def _paused_changed(self, paused: bool) -> None:
        self.pause_button.setText("Resume" if paused else "Pause")
        icon = QtWidgets.QStyle.StandardPixmap.SP_MediaPlay if paused else QtWidgets.QStyle.StandardPixmap.SP_MediaPause
        self.pause_button.setIcon(self.style().standardIcon(icon))
        text = self.progress_bar.format().replace(" · PAUSED", "")
        self.progress_bar.setFormat(text + (" · PAUSED" if paused else ""))
        if paused:
            self.set_status("Paused. Press Resume to go on, or Stop.", "info")
        else:
            self.set_status("Resumed.", "busy")

    def _update_controls(self) -> None:
        running = self.worker.running
        self.start_button.setEnabled(not running)
        self.start_action.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.pause_action.setEnabled(running)
        self.stop_button.setEnabled(running)
        self.stop_action.setEnabled(running)
        self.form.set_editable(not running)
        for act in (self.new_action, self.open_action, self.open_folder_action):
            act.setEnabled(not running)
        if not running:
            self.pause_button.setText("Pause")
            self.pause_button.setIcon(self.style().standardIcon(QtWidgets.QStyle.StandardPixmap.SP_MediaPause))

    @staticmethod
    def _metrics_text(metrics: dict) -> str:
        parts = []
        if "student_test_acc" in metrics:
            parts.append(f"student test accuracy {metrics['student_test_acc']:.1f} %")
        if "teacher_test_acc" in metrics:
            parts.append(f"teacher {metrics['teacher_test_acc']:.1f} %")
        return ", ".join(parts) or "done"

    # ---- messages --------------------------------------------------------------------------------
    def set_status(self, text: str, kind: str = "info") -> None:
        self.status_label.setStyleSheet(f"color: {STATUS_COLOURS.get(kind, STATUS_COLOURS['info'])};")
        self.status_label.setText(text)
        self.status_kind = kind

    def status_text(self) -> str:
        return self.status_label.text()

    def report_error(self, title: str, message: str, details: str = "") -> None:
        """Tell the user about an error without blocking: a message box (unless turned off)."""
        self.last_error = message
        if self.show_error_dialogs:
            if self.error_box is not None:
                self.error_box.close()
            box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Critical, title, html.escape(message)
                                        .replace("\n", "<br>"), QtWidgets.QMessageBox.StandardButton.Ok, self)
            box.setObjectName("errorDialog")
            box.setTextFormat(QtCore.Qt.TextFormat.RichText)
            if details:
                box.setDetailedText(details)
            box.setModal(False)
            box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
            box.destroyed.connect(lambda *_: setattr(self, "error_box", None))
            self.error_box = box
            box.show()
        self.errorShown.emit(message)

    # ---- layout memory and closing -------------------------------------------------------------
    def _restore_layout(self) -> None:
        s = self.settings
        geometry = s.value(app_settings.WINDOW_GEOMETRY)
        if isinstance(geometry, QtCore.QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        state = s.value(app_settings.WINDOW_STATE)
        if isinstance(state, QtCore.QByteArray) and not state.isEmpty():
            self.restoreState(state)
        for key, splitter in ((app_settings.MAIN_SPLITTER, self.main_splitter),
                              (app_settings.LIVE_SPLITTER, self.live_splitter)):
            value = s.value(key)
            if isinstance(value, QtCore.QByteArray) and not value.isEmpty():
                splitter.restoreState(value)
        tab = s.value(app_settings.CONFIG_TAB, 0, type=int)
        if 0 <= tab < self.form.count():
            self.form.setCurrentIndex(tab)

    def save_layout(self) -> None:
        s = self.settings
        s.setValue(app_settings.WINDOW_GEOMETRY, self.saveGeometry())
        s.setValue(app_settings.WINDOW_STATE, self.saveState())
        s.setValue(app_settings.MAIN_SPLITTER, self.main_splitter.saveState())
        s.setValue(app_settings.LIVE_SPLITTER, self.live_splitter.saveState())
        s.setValue(app_settings.CONFIG_TAB, self.form.currentIndex())
        s.sync()

    def open_last_run_file(self) -> bool:
        """Open the run file remembered from the last session, if there is one."""
        path = app_settings.last_run_file(self.settings)
        return self.open_run_file(path) if path else False

    def shutdown(self, timeout: float = 60.0) -> bool:
        """Stop a run in progress and wait for every background thread; True when all have ended."""
        ended = True
        if self.worker.running:
            self.worker.stop()
            ended = self.worker.wait(timeout)
        self.form.wait_for_layers(timeout)
        return ended

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 (Qt override)
        self.save_layout()
        if self.worker.running:
            self.set_status("Stopping the run before closing…", "busy")
            QtWidgets.QApplication.processEvents()
        self.shutdown()
        if self.error_box is not None:
            self.error_box.close()
        super().closeEvent(event)

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:  # noqa: N802 (Qt override)
        super().paintEvent(event)
        if not self._shown_once:
            self._shown_once = True
            QtCore.QTimer.singleShot(0, self.firstShown.emit)
