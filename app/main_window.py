"""The workbench window: panels to set a run up, train it, watch it and compare it with other runs.

Every panel is a dock that can be moved, stacked as tabs or floated, and the window remembers where
(View ▸ Reset layout restores the default):

* **Set up the run** (left) — :class:`~app.config_form.ConfigForm`, with one line under it saying
  whether every field is valid;
* **Runs** (left, a tab beside the set-up) — :class:`~app.runs_panel.RunsPanel`: the run folders in
  the output folder; ticking one lays its curves over the plots;
* **Loss** and **Accuracy** (top) — :class:`~app.plots.LossPlot`, :class:`~app.plots.AccuracyPlot`;
* in the middle, the **Attention maps** of the run shown (:class:`~app.attention_view.AttentionView`)
  and, as a second tab, **Two runs** side by side (:class:`~app.attention_compare.AttentionCompare`).

The run controls (Start, Pause/Resume, Stop, "+ baseline", the progress bar, speed and ETA) are a
toolbar; the status line at the bottom says what is happening, in words, and never outlives its
cause. Training runs in :class:`~app.worker.TrainingWorker`'s background thread; its events reach
the widgets in batches, at most 4 times a second (:data:`~app.worker.DRAIN_HZ`).

*The run shown* is the window's primary run: the one training, or the run folder opened. With
"+ baseline" ticked, a run with distillation terms is followed by the same student trained without a
teacher (:func:`featdistill_core.baseline_config`, what ``featdistill demo`` does), drawn over the run
on the plots as it trains.

Resuming a run folder, following one that another process writes, starting a run as a torchrun
subprocess and "Run elsewhere…" are :class:`app.lifecycle.RunLifecycle`, a part of this class.

``MainWindow()`` needs no argument: it opens on the embedded demo (:func:`featdistill_core.demo_config`),
ready to press Start.
"""

from __future__ import annotations

import html
import sys
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from featdistill_core import (
    METHODS, ConfigError, Failed, Finished, Progress, RunConfig, RunFolderError, RunRecord, Stage, StageStarted,
    baseline_config, demo_config, format_duration, load_config, load_run, plan_stages, save_config,
)

from app import settings as app_settings
from app.attention_compare import AttentionCompare, CompareRun
from app.attention_view import AttentionView
from app.config_form import ConfigForm, problem_sentence, problems_summary
from app.fields import INVALID_STYLE, grey_disabled_placeholders
from app.guide import show_about, show_guide
from app.insight import Insight
from app.lifecycle import RunLifecycle
from app.method_help import show_method_help
from app.pacing import repaint_later
from app.plots import PRIMARY, AccuracyPlot, LossPlot
from app.runs_panel import RunsPanel, folder_key
from app.worker import TrainingWorker, config_error_from_failed

APP_NAME = "featdistill"
WINDOW_TITLE = "featdistill — feature-distillation workbench"
RUN_FILE_FILTER = "Run files (*.toml);;All files (*)"
STATUS_COLOURS = {"info": "#202020", "ok": "#1b7f3b", "error": "#b00020", "busy": "#0b5394"}
VALID_COLOUR = "#707070"
PROGRESS_STEPS = 1000
VALIDITY_LINES = 2        # lines under the form: always this many, so nothing moves when problems come and go
DEFAULT_SMOOTHING = 0.6   # the loss curves' EMA in the window (raw values drawn faintly underneath)
LAYOUT_VERSION = 2        # of the docked layout in the settings (0.1's splitters are not restored)
SETUP_WIDTH = (420, 0.36, 560)   # default width of the set-up: this share of the window, within these pixels
PLOTS_HEIGHT = 240
ACCURACY_SHARE = 0.42     # of the plots' width
MAIN, BASELINE = "main", "baseline"
GIL_SWITCH_S = 0.001       # sys.setswitchinterval while the window lives (see MainWindow.__init__)


def problems_text(error: ConfigError, shown: int = 3) -> str:
    """Every problem of ``error`` in plain words on one line (by the fields' labels)."""
    return problems_summary(error.problems, shown)


class MainWindow(RunLifecycle, QtWidgets.QMainWindow):
    """The featdistill window. ``errorShown(message)`` fires whenever an error is reported."""

    errorShown = QtCore.Signal(str)
    runEnded = QtCore.Signal()
    firstShown = QtCore.Signal()

    def __init__(self, config: RunConfig | None = None, settings: QtCore.QSettings | None = None,
                 parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("mainWindow")
        # Background threads here (following a run folder, the analyses) hold the interpreter lock
        # for their Python work; the GUI thread waits at most this long for it (Python's default: 5 ms).
        sys.setswitchinterval(GIL_SWITCH_S)
        self.settings = settings if settings is not None else app_settings.open_settings()
        self.run_file: Path | None = None
        self.viewed_run: Path | None = None      # the run folder opened (None while a run trains)
        self.last_run_dir: Path | None = None    # the folder of the last run trained here
        self.last_error = ""
        self.show_error_dialogs = True        # tests may turn the message boxes off
        self.prompt_unsaved = True            # ask before unsaved changes are replaced (tests turn it off)
        self.error_box: QtWidgets.QMessageBox | None = None
        self._shown_once = False
        self._plan: tuple = ()                # the stage plan of the run under way
        self._role = MAIN                     # what the run under way is: the main run or its baseline
        self._queue: list[RunConfig] = []     # runs to train after this one (its baseline)
        self._live_key = PRIMARY              # where the plots put the live run's events
        self._primary_key = ""                # the folder of the run shown
        self._live_config: RunConfig | None = None
        self._cleared_for_run = False
        self._records: dict[str, tuple[float, RunRecord]] = {}    # ticked runs read from disk
        self._saved_config: RunConfig | None = None
        self._status_reason = ""              # why the status line says what it says ("refused", ...)
        self._status_details = ""
        self._refusal_details: dict[str, str] = {}   # field -> details, from the last refused start
        self.status_kind = "info"

        self.setStyleSheet(INVALID_STYLE)
        grey_disabled_placeholders()
        self.form = ConfigForm()
        self.worker = TrainingWorker(self)
        self.runs_panel = RunsPanel()
        self._build_live_view()
        self._build_actions()
        self._build_docks()
        self.insight = Insight(self)          # export, compare folders, run summary, the CKA map's run folder
        self._connect()
        self._install_lifecycle()             # resume, follow, torchrun, run elsewhere (app/lifecycle.py)

        self.resize(1400, 900)
        self._default_state = self.saveState(LAYOUT_VERSION)
        self.set_config(config if config is not None else demo_config(), None)
        self.baseline_box.setChecked(config is None)
        self._restore_layout()
        self._update_controls()

    # ---- construction --------------------------------------------------------------------------
    def _build_live_view(self) -> None:
        style = self.style()
        sp = QtWidgets.QStyle.StandardPixmap
        self.start_button = QtWidgets.QPushButton(style.standardIcon(sp.SP_MediaPlay), "Start")
        self.start_button.setObjectName("startButton")
        self.start_button.setToolTip("Check the run and start training (F5).")
        self.pause_button = QtWidgets.QPushButton(style.standardIcon(sp.SP_MediaPause), "Pause")
        self.pause_button.setObjectName("pauseButton")
        self.pause_button.setToolTip("Pause training after the current step; press again to resume (F6).")
        self.stop_button = QtWidgets.QPushButton(style.standardIcon(sp.SP_MediaStop), "Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setToolTip("Stop training after the current step; what was trained is saved (Shift+F5).")
        self.start_button.setStyleSheet("QPushButton:enabled { font-weight: bold; }")
        self.start_button.clicked.connect(self.start_run)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button.clicked.connect(self.stop_run)
        self.baseline_box = QtWidgets.QCheckBox("+ baseline")
        self.baseline_box.setObjectName("baselineBox")
        self.baseline_box.setToolTip("After the run, train the same student without a teacher (the baseline, "
                                     "as `featdistill demo` does) and draw it over the run, so the plots show "
                                     "what distillation gained. Only for runs with distillation terms.")

        self.progress_bar = QtWidgets.QProgressBar()
        self.progress_bar.setObjectName("progressBar")
        self.progress_bar.setRange(0, PROGRESS_STEPS)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("Not started")
        self.progress_bar.setMinimumWidth(180)
        self.progress_bar.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        self.progress_bar.setToolTip("Progress of the whole run: stage, epoch, step.")
        self.speed_label = QtWidgets.QLabel()
        self.speed_label.setObjectName("speedLabel")
        self.speed_label.setToolTip("Training speed and the estimated time left for the whole run.")
        # As wide as its longest text from the start: a new text never lays the run controls out again
        # (and repaints them) while the run trains.
        widest = self.speed_label.fontMetrics().horizontalAdvance("99,999 img/s · ETA 99:59:59") + 8
        self.speed_label.setFixedWidth(max(170, widest))
        self.speed_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)

        self.status_label = QtWidgets.QLabel()
        self.status_label.setObjectName("statusLine")
        self.status_label.setWordWrap(True)
        self.status_label.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.status_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextBrowserInteraction)
        # two lines kept: a message of one line or two never re-lays out, and so redraws, the window
        self.status_label.setFixedHeight(2 * self.status_label.fontMetrics().lineSpacing() + 4)
        self.status_label.linkActivated.connect(self._link_activated)

        self.loss_plot = LossPlot(auto_log=True, smoothing=DEFAULT_SMOOTHING)
        self.accuracy_plot = AccuracyPlot()
        self.attention_view = AttentionView()
        self.attention_compare = AttentionCompare()
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.export.directory = self.export_directory
        self.attention_view.export_directory = self.export_directory
        self.attention_compare.view.export_directory = self.export_directory

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
                                         sp.SP_DirOpenIcon, "Show the curves and attention maps of a saved run.")
        self.reopen_action = QtGui.QAction("Reopen the last run file at launch", self)
        self.reopen_action.setCheckable(True)
        self.reopen_action.setChecked(app_settings.reopen_last(self.settings))
        self.reopen_action.setToolTip("Unticked, the window opens on the demo; ticked, on the run file opened or "
                                      "saved last.")
        self.reopen_action.toggled.connect(lambda on: app_settings.set_reopen_last(self.settings, on))
        self.quit_action = action("&Quit", self.close, QtGui.QKeySequence.StandardKey.Quit)
        self.start_action = action("&Start", self.start_run, "F5", sp.SP_MediaPlay, "Check the run and start training.")
        self.pause_action = action("&Pause / Resume", self.toggle_pause, "F6", sp.SP_MediaPause)
        self.stop_action = action("S&top", self.stop_run, "Shift+F5", sp.SP_MediaStop)
        self.reset_layout_action = action("&Reset layout", self.reset_layout, None, None,
                                          "Put every panel back where it starts.")

        file_menu = self.menuBar().addMenu("&File")
        self.file_menu = file_menu
        for act in (self.new_action, self.open_action, self.save_action, self.save_as_action):
            file_menu.addAction(act)
        file_menu.addSeparator()
        file_menu.addAction(self.open_folder_action)
        file_menu.addSeparator()
        file_menu.addAction(self.reopen_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        run_menu = self.menuBar().addMenu("&Run")
        self.run_menu = run_menu
        for act in (self.start_action, self.pause_action, self.stop_action):
            run_menu.addAction(act)
        self.view_menu = self.menuBar().addMenu("&View")
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction("&Guide…", lambda: show_guide(self), QtGui.QKeySequence.StandardKey.HelpContents)
        methods = help_menu.addMenu("&Methods")
        for key, info in METHODS.items():
            methods.addAction(f"{info.title}…", lambda k=key: show_method_help(k, self))
        help_menu.addSeparator()
        help_menu.addAction("&About featdistill…", lambda: show_about(self))

        files = self.addToolBar("Files")
        files.setObjectName("filesToolbar")
        files.setMovable(False)
        files.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonIconOnly)
        for act in (self.new_action, self.open_action, self.save_action, self.open_folder_action):
            files.addAction(act)
        run = self.addToolBar("Run")
        run.setObjectName("runToolbar")
        run.setMovable(False)
        for widget in (self.start_button, self.pause_button, self.stop_button, self.baseline_box):
            run.addWidget(widget)
        run.addSeparator()
        run.addWidget(self.progress_bar)
        run.addWidget(self.speed_label)
        self.run_toolbar = run

    def _dock(self, title: str, name: str, widget: QtWidgets.QWidget) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetFloatable
                         | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.view_menu.addAction(dock.toggleViewAction())
        return dock

    def _build_docks(self) -> None:
        setup = QtWidgets.QWidget()
        setup_layout = QtWidgets.QVBoxLayout(setup)
        setup_layout.setContentsMargins(4, 2, 2, 4)
        setup_layout.setSpacing(2)
        setup_layout.addWidget(self.form, 1)
        self.validity_label = QtWidgets.QLabel()
        self.validity_label.setObjectName("validityLine")
        self.validity_label.setWordWrap(True)
        self.validity_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignTop)
        self.validity_label.setFixedHeight(VALIDITY_LINES * self.validity_label.fontMetrics().lineSpacing() + 4)
        setup_layout.addWidget(self.validity_label)

        self.setDockNestingEnabled(True)
        self.setCorner(QtCore.Qt.Corner.TopLeftCorner, QtCore.Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(QtCore.Qt.Corner.BottomLeftCorner, QtCore.Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setTabPosition(QtCore.Qt.DockWidgetArea.LeftDockWidgetArea, QtWidgets.QTabWidget.TabPosition.North)
        self.setup_dock = self._dock("1 · Set up the run", "setupDock", setup)
        self.setup_dock.setToolTip("Hover any field for help")
        self.runs_dock = self._dock("Runs", "runsDock", self.runs_panel)
        self.runs_dock.setToolTip("Tick runs to compare them with the run shown")
        self.loss_dock = self._dock("Loss", "lossDock", self.loss_plot)
        self.accuracy_dock = self._dock("Accuracy", "accuracyDock", self.accuracy_plot)
        self.view_menu.addSeparator()
        self.view_menu.addAction(self.reset_layout_action)

        self.central_tabs = QtWidgets.QTabWidget()
        self.central_tabs.setObjectName("centralTabs")
        self.central_tabs.setDocumentMode(True)
        self.central_tabs.addTab(self.attention_view, "2 · Attention maps — the student's should come to resemble the teacher's")
        self.central_tabs.addTab(self.attention_compare, "Two runs side by side")
        self.central_tabs.setTabToolTip(0, "The run shown: teacher, student and their difference on probe images.")
        self.central_tabs.setTabToolTip(1, "The same probe images and layers from two runs (tick a run in Runs).")
        self.central_tabs.currentChanged.connect(lambda _i: self._update_compare())
        self.setCentralWidget(self.central_tabs)
        self._arrange_docks()

        status = QtWidgets.QStatusBar()
        status.setObjectName("statusBar")
        status.setSizeGripEnabled(True)
        status.addWidget(self.status_label, 1)
        self.setStatusBar(status)

    def _arrange_docks(self) -> None:
        """The default layout: set-up and runs as tabs on the left, the plots side by side on top."""
        left, top = QtCore.Qt.DockWidgetArea.LeftDockWidgetArea, QtCore.Qt.DockWidgetArea.TopDockWidgetArea
        for dock in (self.setup_dock, self.runs_dock, self.loss_dock, self.accuracy_dock):
            dock.setFloating(False)
            dock.show()
        self.addDockWidget(left, self.setup_dock)
        self.addDockWidget(left, self.runs_dock)
        self.tabifyDockWidget(self.setup_dock, self.runs_dock)
        self.setup_dock.raise_()
        self.addDockWidget(top, self.loss_dock)
        self.addDockWidget(top, self.accuracy_dock)
        self.splitDockWidget(self.loss_dock, self.accuracy_dock, QtCore.Qt.Orientation.Horizontal)
        low, share, high = SETUP_WIDTH
        setup = int(min(high, max(low, share * self.width())))
        width = max(self.width() - setup, 400)
        self.resizeDocks([self.setup_dock], [setup], QtCore.Qt.Orientation.Horizontal)
        self.resizeDocks([self.loss_dock, self.accuracy_dock],
                         [int(width * (1 - ACCURACY_SHARE)), int(width * ACCURACY_SHARE)],
                         QtCore.Qt.Orientation.Horizontal)
        self.resizeDocks([self.loss_dock], [PLOTS_HEIGHT], QtCore.Qt.Orientation.Vertical)

    def reset_layout(self) -> None:
        """Every panel back to the default layout."""
        self.restoreState(self._default_state, LAYOUT_VERSION)
        self._arrange_docks()
        self.central_tabs.setCurrentIndex(0)

    def _connect(self) -> None:
        w = self.worker
        w.runStarted.connect(self._run_started)
        w.stageStarted.connect(self._stage_started)
        w.stepsReceived.connect(lambda events: self.loss_plot.add_steps(events, self._live_key))
        w.epochsReceived.connect(lambda events: self.accuracy_plot.add_epochs(events, self._live_key))
        w.epochsReceived.connect(self._epochs_received)
        w.snapshotsReceived.connect(self._snapshots_received)
        w.progressChanged.connect(self._show_progress)
        w.finished.connect(self._run_finished)
        w.failed.connect(self._run_failed)
        w.refused.connect(self._run_refused)
        w.pausedChanged.connect(self._paused_changed)
        w.runEnded.connect(self._run_ended)
        self.form.validityChanged.connect(self._validity_changed)
        self.form.changed.connect(self._update_modified)
        self.form.output_dir.changed.connect(self._output_dir_changed)
        self.runs_panel.tickedChanged.connect(self._ticked_changed)
        self.runs_panel.openRequested.connect(self._open_requested)
        self.attention_view.snapshotShown.connect(self._snapshot_shown)
        for source in (self.loss_plot, self.accuracy_plot, self.attention_view, self.attention_compare.view):
            source.exported.connect(self._exported)
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.exportFailed.connect(lambda message: self.report_error("Export failed", message))

    # ---- the configuration ----------------------------------------------------------------------
    def set_config(self, config: RunConfig, run_file: str | Path | None) -> None:
        self.form.set_config(config)
        self.run_file = Path(run_file) if run_file else None
        self._saved_config = self._form_config()
        self._update_title()
        self._output_dir_changed()
        self.set_status(self._ready_text(config), "info")

    def config(self) -> RunConfig:
        """The run the forms describe (raises :class:`ConfigError` if it is not valid)."""
        return self.form.config(check=True)

    def _form_config(self) -> RunConfig | None:
        try:
            return self.form.config(check=False)
        except ConfigError:
            return None

    def is_modified(self) -> bool:
        """Whether the forms differ from the run file (or the demo) last opened or saved."""
        current = self._form_config()
        return current is None or current != self._saved_config

    def _update_modified(self) -> None:
        self.setWindowModified(self.is_modified())

    @staticmethod
    def _ready_text(config: RunConfig) -> str:
        """What Start will do: the run's stage plan (:func:`featdistill_core.plan_stages`) in words."""
        terms = ", ".join(term.method for term in config.terms) or "no distillation term"
        steps = []
        for planned in plan_stages(config):
            epochs = f"{planned.epochs} epoch{'s' if planned.epochs != 1 else ''}"
            if planned.stage is Stage.TEACHER:
                steps.append(f"train the teacher {config.teacher.arch} for {epochs}")
            elif planned.stage is Stage.INIT:
                steps.append(f"initialise {config.student.arch} for {epochs} with the init-stage terms")
            else:
                steps.append(f"distil {config.student.arch} for {epochs} ({terms})")
        return "Ready. Press Start to " + (" and then ".join(steps) or "check the run") + "."

    def _validity_changed(self, message: str) -> None:
        lines = [line for line in message.splitlines() if line]
        if lines:
            more = f" (+{len(lines) - 1} more, marked in red)" if len(lines) > 1 else ""
            self.validity_label.setStyleSheet(f"color: {STATUS_COLOURS['error']};")
            self.validity_label.setText(f"⚠ {len(lines)} to fix: {html.escape(lines[0])}{more}" if len(lines) > 1
                                        else f"⚠ {html.escape(lines[0])}")
            self.validity_label.setToolTip("\n".join(f"⚠ {line}" for line in lines))
        else:
            self.validity_label.setStyleSheet(f"color: {VALID_COLOUR};")
            self.validity_label.setText("✓ Every field is valid.")
            self.validity_label.setToolTip("")
        if self._status_reason == "refused" and not self.worker.running:
            # the refusal said what to fix: it follows the fixes, and goes when nothing is left
            if lines:
                problems = self.form_problems()
                self.set_status(f"Cannot start — fix the marked fields. {problems_summary(problems)}",
                                "error", reason="refused", details=self._details_of(problems))
            else:
                self.set_status(self._ready_text(self._form_config() or self.form._config), "info")
        self._update_modified()

    def form_problems(self):
        """The problems marked on the form now."""
        return list(self.form._marked)

    # ---- files ---------------------------------------------------------------------------------
    def ask_unsaved(self, doing: str) -> str:
        """Ask what to do with unsaved changes before ``doing``: "save", "discard" or "cancel"."""
        buttons = QtWidgets.QMessageBox.StandardButton
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Question, "Unsaved changes",
                                    f"The run set-up has changes that are not saved in a run file. "
                                    f"Save them before {doing}?",
                                    buttons.Save | buttons.Discard | buttons.Cancel, self)
        box.setObjectName("unsavedDialog")
        box.setDefaultButton(buttons.Save)
        answer = box.exec()
        return {buttons.Save: "save", buttons.Discard: "discard"}.get(buttons(answer), "cancel")

    def confirm_discard(self, doing: str) -> bool:
        """True when the forms may be replaced: nothing unsaved, or the user saved or discarded it."""
        if not self.prompt_unsaved or not self.is_modified():
            return True
        answer = self.ask_unsaved(doing)
        if answer == "save":
            return self.save_run_file()
        return answer == "discard"

    def new_run(self) -> bool:
        if self.worker.running or not self.confirm_discard("starting over from the demo"):
            return False
        self.set_config(demo_config(), None)
        self.baseline_box.setChecked(True)
        self.clear_live_view()
        self._set_primary("", "this run")
        self.viewed_run = None
        return True

    def ask_open_run_file(self) -> None:
        if not self.confirm_discard("opening another run file"):
            return
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open run file", self._start_dir(), RUN_FILE_FILTER)
        if path:
            self.open_run_file(path, confirmed=True)

    def open_run_file(self, path: str | Path, confirmed: bool = False) -> bool:
        """Load a run file into the forms; on a problem, report it and keep the current forms."""
        if self.worker.running:
            self.set_status("Stop the current run before opening a run file.", "error")
            return False
        if not confirmed and not self.confirm_discard("opening another run file"):
            return False
        try:
            config = load_config(path)
        except ConfigError as error:
            self.report_error("Cannot open the run file", f"{path}:\n" + "\n".join(
                problem_sentence(problem) + (f" (in the file: {problem.field})" if problem.field else "")
                for problem in error.problems))
            return False
        self.set_config(config, path)
        self.baseline_box.setChecked(False)
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
        self._saved_config = self._form_config()
        app_settings.remember_run_file(self.settings, path)
        self._update_title()
        self.set_status(f"Saved {path}. Run it headless with: featdistill train {path}", "ok")
        return True

    def ask_open_run_folder(self) -> None:
        start = str(self.runs_panel.folder() or "") or self._start_dir()
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Open run folder", start)
        if path:
            self.open_run_folder(path)

    def open_run_folder(self, path: str | Path) -> bool:
        """Show a saved run's (finished, stopped or failed) curves and attention evolution; its
        set-up goes into the forms (after asking about unsaved changes)."""
        if self.worker.running:
            self.set_status("Stop the current run before opening another one.", "error")
            return False
        followed = self._open_running_folder(path)     # another process is writing it: follow it live
        if followed is not None:
            return followed
        try:
            record = load_run(path)
        except (RunFolderError, ConfigError, OSError) as error:
            if self.insight.open_compare(path, report=False):     # a compare folder: its leaderboard
                return True
            self.report_error("Cannot open the run folder", str(error))
            return False
        if not self.confirm_discard("showing another run's set-up"):
            return False
        self.set_config(record.config, None)
        self._show_record(record)
        key = folder_key(path)
        if key in self.runs_panel.ticked():
            self.runs_panel.set_ticked(key, False)
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
        self.insight.run_shown(path)
        self.set_status(f"Showing the saved run {path} — {outcome}. {len(record.steps)} loss points, "
                        f"{len(record.snapshots)} attention snapshots.", kind)
        return True

    def _show_record(self, record: RunRecord) -> None:
        """Make ``record`` the run shown: its curves, accuracies and snapshots."""
        self.clear_live_view()
        key = folder_key(record.path)
        self._set_primary(key, self._label_of(record.path, record.config))
        self.loss_plot.add_steps(record.steps)
        self.accuracy_plot.add_epochs(record.epochs)
        self.attention_view.set_snapshots(record.snapshots)
        if not record.snapshots:
            self.attention_view.set_waiting_text(self._no_maps_text(record.config))
        self._update_compare()

    def _open_requested(self, path: str) -> None:
        self.open_run_folder(path)

    def _start_dir(self) -> str:
        return app_settings.last_directory(self.settings)

    def _update_title(self) -> None:
        name = self.run_file.name if self.run_file else "demo run"
        self.setWindowTitle(f"{name}[*] — {WINDOW_TITLE}")
        self._update_modified()

    def open_on_launch(self) -> bool:
        """What a launch without a run file opens: the demo (already shown), or the last run file when
        File ▸ Reopen the last run file at launch is ticked."""
        if app_settings.reopen_last(self.settings):
            return self.open_last_run_file()
        return False

    def open_last_run_file(self) -> bool:
        """Open the run file remembered from the last session, if there is one."""
        path = app_settings.last_run_file(self.settings)
        return self.open_run_file(path, confirmed=True) if path else False

    # ---- runs side by side ---------------------------------------------------------------------
    def _output_dir_changed(self) -> None:
        text = self.form.output_dir.text()
        self.runs_panel.set_folder(Path(text).expanduser().resolve() if text else None)

    def _label_of(self, path: str | Path, config: RunConfig) -> str:
        entry = self.runs_panel.entry(folder_key(path))
        if entry is not None and entry.label:
            return entry.label
        return Path(path).name if not config.name else config.name

    def _set_primary(self, key: str, label: str) -> None:
        self._primary_key = key
        self.runs_panel.set_primary(key)
        self.loss_plot.set_run_label(PRIMARY, label)
        self.accuracy_plot.set_run_label(PRIMARY, label)

    def _record(self, key: str) -> RunRecord | None:
        """A ticked run read from disk (again only if its log changed)."""
        path = Path(key)
        try:
            stamp = (path / "metrics.jsonl").stat().st_mtime
        except OSError:
            return None
        cached = self._records.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            record = load_run(path)
        except (RunFolderError, ConfigError, OSError, ValueError) as error:
            self.set_status(f"Cannot read the run folder {path}: {error}", "error")
            return None
        self._records[key] = (stamp, record)
        return record

    def _ticked_changed(self) -> None:
        """Lay the ticked runs over the plots (and offer them to the two-run view); take off the others."""
        overlay = self.insight.overlay_runs()            # runs ticked in the leaderboard
        wanted = [key for key in dict.fromkeys([*self.runs_panel.ticked(), *overlay]) if key != self._primary_key]
        live = self._live_key if self.worker.running else None
        for key in self.loss_plot.runs():
            if key not in (PRIMARY, live) and key not in wanted:
                self.loss_plot.remove_run(key)
                self.accuracy_plot.remove_run(key)
        for key in wanted:
            if key == live or key in self.loss_plot.runs() or key in self.accuracy_plot.runs():
                continue
            record = self._record(key)
            if record is None:
                continue
            label = overlay.get(key) or self._label_of(key, record.config)
            self.loss_plot.add_run(key, label, record.steps)
            self.accuracy_plot.add_run(key, label, record.epochs)
        self._update_compare()

    def _update_compare(self) -> None:
        """Offer the run shown and the ticked runs (those with snapshots) to the two-run view."""
        if self.central_tabs.currentWidget() is not self.attention_compare:
            return                         # brought up to date when it is shown
        runs = []
        primary_snaps = tuple(self.attention_view.state.snapshots)
        if primary_snaps:
            runs.append(CompareRun(self._primary_key or PRIMARY, self.loss_plot.run_label(PRIMARY), primary_snaps))
        for key in self.runs_panel.ticked():
            if key == self._primary_key:
                continue
            record = self._record(key)
            if record is not None and record.snapshots:
                runs.append(CompareRun(key, self._label_of(key, record.config), tuple(record.snapshots)))
        self.attention_compare.set_runs(runs)

    # ---- running ---------------------------------------------------------------------------------
    def start_run(self) -> bool:
        """Check the forms and start training in the background; False (and why) if refused.

        A refused start leaves the run shown as it was: it is cleared only once the new run passed
        its checks and its trainer exists."""
        if self.worker.running:
            return False
        if self.chosen_processes() > 1:                # "all N GPUs": torchrun, followed live
            return self.start_in_subprocess()
        try:
            config = self.form.check_before_start()
        except ConfigError as error:
            self.set_status(f"Cannot start — fix the marked fields. {problems_text(error)}", "error",
                            reason="refused")
            return False
        self._queue = [baseline_config(config)] if self.baseline_box.isChecked() and config.terms else []
        self._start(config, MAIN)
        return True

    def _start(self, config: RunConfig, role: str) -> None:
        self._role = role
        self._live_config = config
        self._cleared_for_run = False
        self._plan = plan_stages(config)
        self.worker.start(config)
        self.speed_label.clear()
        if role == MAIN:
            self.progress_bar.setFormat("Checking the run…")
            self.set_status("Checking the run (building the models, loading the weights, checking every pair)…",
                            "busy")
        else:
            self.progress_bar.setFormat("Baseline: checking…")
            self.set_status("Now the baseline: the same student without a teacher, for comparison…", "busy")
        self._update_controls()

    def toggle_pause(self) -> None:
        if not self.worker.running:
            return
        if self.worker.paused:
            self.worker.resume()
        else:
            self.worker.pause()

    def stop_run(self) -> None:
        if self.worker.running:
            self._queue = []
            self.worker.stop()
            if self.worker.following and self.worker.process is None:
                self.set_status("Stopping following…", "busy")
            else:
                self.set_status("Stopping after the current step…", "busy")
            self.stop_button.setEnabled(False)

    def clear_live_view(self) -> None:
        """Empty the run shown (runs ticked for comparison stay on the plots)."""
        self.loss_plot.clear_run()
        self.accuracy_plot.clear_run()
        self.attention_view.clear()
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("Not started")
        self.speed_label.clear()

    def stage_heading(self, stage) -> str:
        """``"Stage 2 of 3 — Distilling the student"``: a stage's place in the run's plan and its title."""
        stage = Stage(stage)
        order = [planned.stage for planned in self._plan]
        prefix = "Baseline: " if self._role == BASELINE else ""
        if stage not in order:
            return prefix + stage.title
        return f"{prefix}Stage {order.index(stage) + 1} of {len(order)} — {stage.title}"

    def _run_started(self, run_dir: str) -> None:
        key = folder_key(run_dir)
        config = self._live_config
        self.runs_panel.refresh()
        self.runs_panel.set_running(key)
        if self._role == MAIN:
            self.viewed_run = None
            self.clear_live_view()            # the checks passed: now the old run goes
            self._cleared_for_run = True
            self._live_key = PRIMARY
            self._set_primary(key, self._label_of(run_dir, config))
            self.attention_view.set_waiting_text("Loading the data…")
        else:
            self._live_key = key
            label = self._label_of(run_dir, config)
            self.loss_plot.set_run_label(key, label)
            self.accuracy_plot.set_run_label(key, label)
            self.runs_panel.set_ticked(key, True)
        self.last_run_dir = Path(run_dir)
        self.progress_bar.setFormat("Loading the data…")
        self.set_status(f"The run passed its checks; loading the data… Output: {run_dir}", "busy")

    def _stage_started(self, event: StageStarted) -> None:
        self.loss_plot.note_stage(event.stage)          # the stage boxes name it before its first point
        self.accuracy_plot.note_stage(event.stage)
        epochs = f"{event.epochs} epoch{'s' if event.epochs != 1 else ''}"
        self.set_status(f"{self.stage_heading(event.stage)}: {epochs} of {event.steps_per_epoch} steps. "
                        f"Output: {event.run_dir}", "busy")

    def _epochs_received(self, events: list) -> None:
        last = events[-1]
        who = "teacher" if Stage(last.stage) is Stage.TEACHER else "student"
        text = (f"{self.stage_heading(last.stage)} — epoch {last.epoch}/{last.epochs} done: "
                f"{who} train {last.train_acc:.1f} %, test {last.test_acc:.1f} %")
        if last.teacher_acc is not None:
            text += f" (teacher {last.teacher_acc:.1f} %)"
        self.set_status(text + ".", "busy")

    def _snapshots_received(self, snaps: list) -> None:
        if self._role == MAIN:
            self.attention_view.add_snapshots(snaps)

    def _snapshot_shown(self, index: int) -> None:
        snap = self.attention_view.state.snapshots[index] if 0 <= index < self.attention_view.snapshot_count() else None
        self.loss_plot.set_marker(snap.stage if snap is not None else None, snap.step if snap is not None else None)

    def _show_progress(self, p: Progress) -> None:
        """The progress bar, its text and the speed label (each touched only when it changes: every
        change repaints its widget while the run trains)."""
        value = int(p.fraction * PROGRESS_STEPS)
        if value != self.progress_bar.value():
            repaint_later(self.progress_bar, self.progress_bar.setValue, value)
        paused = " · PAUSED" if self.worker.paused else ""
        prefix = "Baseline · " if self._role == BASELINE else ("Following · " if self.worker.following else "")
        text = (f"{prefix}Stage {p.stage_index} of {p.stage_count} — {p.stage.title} · "
                f"epoch {p.epoch}/{p.epochs} · step {p.step}/{p.total_steps}{paused}")
        if text != self.progress_bar.format():
            self.progress_bar.setFormat(text)
        speed = (f"{p.images_per_sec:,.0f} img/s · ETA {format_duration(p.eta_seconds)}" if p.images_per_sec
                 else "measuring speed…")
        if speed != self.speed_label.text():
            self.speed_label.setText(speed)
        if self._role == MAIN and not self.attention_view.snapshot_count():
            self.attention_view.set_waiting_text(self._waiting_text(p))

    def _waiting_text(self, p: Progress) -> str:
        """What the attention view waits for while the run has sent no snapshot, and when it comes."""
        config = self._live_config
        if config is None or not config.pairs:
            return self._no_maps_text(config)
        if p.stage is Stage.TEACHER:
            when = (f"in about {format_duration(p.stage_eta_seconds)}" if p.stage_eta_seconds is not None
                    else "once the teacher is trained (measuring its speed…)")
            return (f"Training the teacher first (stage {p.stage_index} of {p.stage_count}, epoch {p.epoch}/"
                    f"{p.epochs}). The attention maps appear when the student starts learning from it, {when}.")
        every = config.monitor.snapshot_every
        at = f"at step {every}" if every else "at the end of the first epoch"
        return f"{p.stage.title}: the first attention snapshot comes {at}."

    @staticmethod
    def _no_maps_text(config: RunConfig | None) -> str:
        if config is not None and not config.pairs:
            return "This run distils no layer (no pairs), so it has no attention maps to show."
        return "This run recorded no attention snapshot."

    def _run_finished(self, event: Finished) -> None:
        self.speed_label.clear()
        if self._role == BASELINE and not event.stopped:
            self.progress_bar.setValue(PROGRESS_STEPS)
            self.progress_bar.setFormat("Finished, with the baseline")
            distilled = self.accuracy_plot.series("test")[1]
            base = event.metrics.get("student_test_acc")
            gain = (f" The distilled student: {distilled[-1]:.1f} %, the baseline: {base:.1f} % "
                    f"({distilled[-1] - base:+.1f} points)." if len(distilled) and base is not None else "")
            self.set_status(f"Finished the baseline.{gain} Run folder: {event.run_dir}", "ok")
            return
        if event.stopped:
            where = f" What was trained is saved in {event.run_dir}." if event.run_dir else ""
            self.set_status("Stopped." + where, "info")
            self.progress_bar.setFormat(self.progress_bar.format().replace(" · PAUSED", "") + " · stopped")
        else:
            self.progress_bar.setValue(PROGRESS_STEPS)
            self.progress_bar.setFormat("Finished")
            next_text = " Next: the baseline, for comparison." if self._queue else ""
            self.set_status(f"Finished: {self._metrics_text(event.metrics)}. Run folder: {event.run_dir}.{next_text}",
                            "ok")

    def _run_failed(self, event: Failed) -> None:
        self._queue = []
        self.speed_label.clear()
        config_error = config_error_from_failed(event)
        if config_error is not None:
            self.form.show_error(config_error)
        where = f"\n\nThe run's files are kept in {event.run_dir}." if event.run_dir else ""
        self.progress_bar.setFormat("Failed")
        self.set_status(f"Training failed: {event.error}", "error", details=event.details)
        self.report_error("Training failed", f"{event.error}{where}", event.details)

    def _run_refused(self, error: ConfigError) -> None:
        self._queue = []
        self.speed_label.clear()
        self.form.show_error(error, focus=True)
        self.progress_bar.setFormat("Not started" if self._role == MAIN else "Baseline refused")
        self._refusal_details = dict(error.details)
        self.set_status(f"Cannot start — fix the marked fields. {problems_text(error)}", "error",
                        reason="refused", details=self._details_of(error.problems))

    def _details_of(self, problems) -> str:
        """The longer texts (a weights file's keys that do not fit) of those ``problems`` that have one."""
        return "\n\n".join(f"{problem_sentence(p)}\n{self._refusal_details[p.field]}" for p in problems
                            if p.field in self._refusal_details)

    def _run_ended(self) -> None:
        ended = self.worker.ended_run         # its folder, read on the worker's thread after the run
        if ended is not None and ended.record is not None:
            self.runs_panel.remember(ended.run_dir, ended.stamp, ended.record)
        self.runs_panel.set_running("")
        self.runs_panel.refresh()
        self._records.clear()
        if self._queue and self._role == MAIN:
            self._start(self._queue.pop(0), BASELINE)
            return
        self._role = MAIN
        self._live_key = PRIMARY
        self._update_controls()
        self._update_compare()
        if self._cleared_for_run and self._primary_key:       # a run trained here became the run shown
            read = ended is not None and ended.record is not None and folder_key(ended.run_dir) == self._primary_key
            self.insight.run_shown(self._primary_key, ended.record if read else None)
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
        self.baseline_box.setEnabled(not running)
        self.pause_button.setEnabled(self.worker.pausable)
        self.pause_action.setEnabled(self.worker.pausable)
        self.stop_button.setEnabled(running)
        self.stop_action.setEnabled(running)
        self.form.set_editable(not running)
        for act in (self.new_action, self.open_action, self.open_folder_action, self.follow_action):
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

    # ---- exports ----------------------------------------------------------------------------------
    def export_directory(self) -> str:
        """Where export dialogs start: the folder of the run shown, else the output folder, else ""."""
        for folder in (self.viewed_run, Path(self.worker.run_dir) if self.worker.run_dir else None,
                       Path(self._primary_key) if self._primary_key else None, self.last_run_dir,
                       self.runs_panel.folder()):
            if folder is not None and Path(folder).is_dir():
                return str(folder)
        return ""

    def _exported(self, what: str, path: str) -> None:
        self.set_status(f"Saved {what} to {path}", "ok")

    # ---- messages --------------------------------------------------------------------------------
    def set_status(self, text: str, kind: str = "info", *, reason: str = "", details: str = "") -> None:
        """The status line: ``text`` in plain words; ``details`` behind a "details…" link."""
        self._status_reason = reason
        self._status_details = details
        self._status_text = text
        colour = STATUS_COLOURS.get(kind, STATUS_COLOURS["info"])
        rich = html.escape(text)
        if details:
            rich += ' &nbsp;<a href="details">details…</a>'
        self.status_label.setText(f'<span style="color:{colour}">{rich}</span>')
        self.status_label.setToolTip(text)
        self.status_kind = kind

    def status_text(self) -> str:
        return self._status_text

    def status_details(self) -> str:
        return self._status_details

    def _link_activated(self, link: str) -> None:
        if link == "details" and self._status_details:
            self.show_details("Details", self._status_text, self._status_details)

    def show_details(self, title: str, message: str, details: str) -> QtWidgets.QMessageBox:
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Information, title, message,
                                    QtWidgets.QMessageBox.StandardButton.Ok, self)
        box.setObjectName("detailsDialog")
        box.setDetailedText(details)
        box.setModal(False)
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        box.show()
        return box

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
            self.restoreState(state, LAYOUT_VERSION)
        tab = s.value(app_settings.CONFIG_TAB, 0, type=int)
        if 0 <= tab < self.form.count():
            self.form.setCurrentIndex(tab)
        central = s.value(app_settings.CENTRAL_TAB, 0, type=int)
        if 0 <= central < self.central_tabs.count():
            self.central_tabs.setCurrentIndex(central)

    def save_layout(self) -> None:
        s = self.settings
        s.setValue(app_settings.WINDOW_GEOMETRY, self.saveGeometry())
        s.setValue(app_settings.WINDOW_STATE, self.saveState(LAYOUT_VERSION))
        s.setValue(app_settings.CONFIG_TAB, self.form.currentIndex())
        s.setValue(app_settings.CENTRAL_TAB, self.central_tabs.currentIndex())
        s.sync()

    def shutdown(self, timeout: float = 60.0) -> bool:
        """Stop a run in progress and wait for every background thread; True when all have ended."""
        ended = True
        self._queue = []
        if self.worker.running:
            self.worker.stop()
            ended = self.worker.wait(timeout)
        self.form.wait_for_layers(timeout)
        return self.insight.shutdown(timeout) and ended

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 (Qt override)
        if not self.confirm_discard("closing the window"):
            event.ignore()
            return
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
