"""The window's analyses, wired into :class:`~app.main_window.MainWindow` from one place.

* File ▸ Export student… — :class:`~app.export_dialog.ExportDialog` for the run folder shown;
* File ▸ Open compare folder… — :class:`~app.leaderboard.Leaderboard`, a tab in the middle; a compare
  folder opened as a run folder opens there too; ticking a method lays its runs over the plots;
* the *Run summary* tab — :class:`~app.run_summary.RunSummary` of the run shown (after a run ends, or a
  run folder opened);
* the CKA map of the *Layers & pairs* tab compares the networks of the run folder shown when the
  set-up is still that run's.

The main window calls :meth:`Insight.run_shown` when a run folder becomes the run shown,
:meth:`Insight.overlay_runs` when it lays ticked runs over the plots, and :meth:`Insight.shutdown`.
"""

from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from app.export_dialog import ExportDialog
from app.leaderboard import Leaderboard
from app.run_summary import RunSummary
from app.runs_panel import folder_key


class Insight(QtCore.QObject):
    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.summary = RunSummary()
        self.leaderboard = Leaderboard()
        self.export_dialog: ExportDialog | None = None
        tabs = window.central_tabs
        self.summary_index = tabs.addTab(self.summary, "Run summary")
        tabs.setTabToolTip(self.summary_index, "How the run shown ended: accuracies, each pair's CKA before and "
                                               "after, per-class accuracy of teacher and student.")
        self.leaderboard_index = tabs.addTab(self.leaderboard, "Leaderboard")
        tabs.setTabToolTip(self.leaderboard_index, "A compare folder (featdistill compare): which method worked "
                                                   "best here.")
        tabs.setTabVisible(self.leaderboard_index, False)
        tabs.currentChanged.connect(self._tab_changed)
        self.leaderboard.overlayChanged.connect(window._ticked_changed)
        window.form.layers.cka_panel.config_source = self._cka_source

        self.export_action = QtGui.QAction("&Export student…", window)
        self.export_action.setObjectName("exportStudentAction")
        self.export_action.setToolTip("Write the student of the run shown as TorchScript, safetensors or ONNX, "
                                      "checked against the PyTorch student, with a model card.")
        self.export_action.setStatusTip(self.export_action.toolTip())
        self.export_action.triggered.connect(self.ask_export)
        self.compare_action = QtGui.QAction("Open &compare folder…", window)
        self.compare_action.setObjectName("openCompareAction")
        self.compare_action.setToolTip("Show a folder written by featdistill compare as a leaderboard.")
        self.compare_action.setStatusTip(self.compare_action.toolTip())
        self.compare_action.triggered.connect(self.ask_open_compare)
        menu = window.file_menu
        anchor = window.open_folder_action
        actions = menu.actions()
        after = actions[actions.index(anchor) + 1] if anchor in actions and actions.index(anchor) + 1 < len(actions) else None
        menu.insertAction(after, self.compare_action)
        menu.insertAction(after, self.export_action)

    def _tab_changed(self, index: int) -> None:
        """The leaderboard tab stays hidden until a compare folder is opened (a remembered tab index may
        point at it)."""
        tabs = self.window.central_tabs
        if index == self.leaderboard_index and not tabs.isTabVisible(index):
            tabs.setCurrentIndex(0)

    # ---- the run shown -------------------------------------------------------------------------
    def shown_run_dir(self) -> Path | None:
        """The run folder shown: the one opened, else the last one trained here."""
        w = self.window
        for folder in (w.viewed_run, w.last_run_dir):
            if folder is not None and Path(folder).is_dir():
                return Path(folder)
        return None

    def run_shown(self, run_dir: str | Path, record=None) -> None:
        """A run folder became the run shown (opened, or a run trained here ended): summarise it
        (``record``: what it holds, if read already)."""
        self.summary.show_run(run_dir, record)

    def _cka_source(self):
        """The run the CKA map compares: the form's; with the run folder shown while the form is its set-up."""
        w = self.window
        config = w.form.config(check=True)
        run_dir = w.viewed_run if w.viewed_run is not None and not w.is_modified() else None
        return config, run_dir

    # ---- export --------------------------------------------------------------------------------
    def ask_export(self) -> ExportDialog | None:
        run_dir = self.shown_run_dir()
        if run_dir is None:
            self.window.report_error("Nothing to export", "Open a run folder (File ▸ Open run folder…) or train a "
                                     "run first: the student of the run shown is exported.")
            return None
        if self.export_dialog is not None and self.export_dialog.task.running:
            self.export_dialog.raise_()
            return self.export_dialog
        dialog = ExportDialog(run_dir, self.window)
        dialog.exported.connect(lambda result: self.window.set_status(
            f"Exported the student to {result.path} (model card {result.card_markdown}).", "ok"))
        self.export_dialog = dialog
        dialog.show()
        return dialog

    # ---- compare folders -----------------------------------------------------------------------
    def ask_open_compare(self) -> None:
        start = str(self.window.runs_panel.folder() or "") or self.window._start_dir()
        path = QtWidgets.QFileDialog.getExistingDirectory(self.window, "Open compare folder", start)
        if path:
            self.open_compare(path)

    def open_compare(self, path: str | Path, report: bool = True) -> bool:
        """Show a compare folder as the leaderboard tab; False (reported when ``report``) if it is not one."""
        from featdistill_core import CompareFolderError

        try:
            result = self.leaderboard.open_folder(path)
        except (CompareFolderError, OSError) as error:
            if report:
                self.window.report_error("Cannot open the compare folder", str(error))
            return False
        tabs = self.window.central_tabs
        tabs.setTabVisible(self.leaderboard_index, True)
        tabs.setCurrentIndex(self.leaderboard_index)
        done = sum(1 for row in result.rows if row.mean is not None)
        self.window.set_status(f"Showing the leaderboard of {path}: {len(result.rows)} entries, {done} with results. "
                               "Tick a method to lay its runs over the plots.", "ok")
        self.window._ticked_changed()
        return True

    def overlay_runs(self) -> dict[str, str]:
        """Run-folder key → label of every run ticked in the leaderboard."""
        return {folder_key(path): label for path, label in self.leaderboard.ticked_runs()}

    def shutdown(self, timeout: float = 60.0) -> bool:
        ended = self.summary.shutdown(timeout) and self.window.form.layers.shutdown(timeout)
        if self.export_dialog is not None:
            ended = self.export_dialog.task.wait(timeout) and ended
        return ended
