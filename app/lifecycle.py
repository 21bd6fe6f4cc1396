"""The window's side of a run's life after Start: resume it, follow it live, train it in other processes.

:class:`RunLifecycle` is a part of :class:`app.main_window.MainWindow` (a mixin; it uses the window's
widgets, worker and status line):

* **Resume** (:meth:`~RunLifecycle.resume_run_folder`; Runs ▸ right-click ▸ *Resume this run* for a
  folder that :func:`featdistill_core.run_status` calls interrupted, stopped or failed and resumable):
  the worker continues the run on its thread (:meth:`app.worker.TrainingWorker.start_resume`); the
  plots and maps show the run's history, then continue live.
* **Follow** (:meth:`~RunLifecycle.follow_run_folder`; File ▸ *Follow run folder…*, opening a folder
  another process is writing, Runs ▸ *Follow it live*, ``featdistill-gui --follow RUN_DIR``): the run
  folder is read as it grows (:mod:`app.follow`) and shown by the same path as a run trained here.
* **Other processes** (:meth:`~RunLifecycle.start_in_subprocess`): with *all N GPUs* chosen as the
  device, Start saves the run file, starts ``torchrun`` into a new run folder and follows it; Stop stops
  every rank. Run ▸ *Run elsewhere…* shows the commands for another machine (:mod:`app.launch`).
"""

from __future__ import annotations

from pathlib import Path

from PySide6 import QtWidgets

from featdistill_core import (
    ConfigError, RunConfig, RunFolderError, RunProcess, RunRecord, WriteError, load_config, new_run_folder,
    plan_stages, run_status,
)

from app.config_form import problems_summary
from app.launch import RunElsewhereDialog, chosen_processes, process_command
from app.plots import PRIMARY
from app.runs_panel import RunEntry, folder_key

RESUMABLE_STATES = ("interrupted", "stopped", "failed")


class RunLifecycle:
    """Resume, follow and start-in-another-process for :class:`~app.main_window.MainWindow`."""

    def _install_lifecycle(self) -> None:
        """Actions, menu entries and the worker's follow signals (called once by the window)."""
        self.follow_action = self._make_action("Follow run &folder…", self.ask_follow_run_folder,
                                               "Show a run folder live while another process writes it "
                                               "(featdistill train, torchrun, a shared or synced folder).")
        self.elsewhere_action = self._make_action("Run &elsewhere…", self.show_run_elsewhere,
                                                  "The commands that train the saved run file on another machine "
                                                  "(torchrun on several GPUs or machines), to copy.")
        self.file_menu.insertAction(self.open_folder_action, self.follow_action)
        self.file_menu.removeAction(self.open_folder_action)
        self.file_menu.insertAction(self.follow_action, self.open_folder_action)
        self.run_menu.addSeparator()
        self.run_menu.addAction(self.elsewhere_action)
        self.runs_panel.menu_entries.append(self._runs_menu_entries)
        self.worker.configKnown.connect(self._config_known)
        self.worker.runStarted.connect(self._other_run_started)      # after the window's own slot
        self.worker.historyReceived.connect(self._history_received)
        self.worker.followEnded.connect(self._follow_ended)

    def _make_action(self, text: str, slot, tip: str):
        from PySide6 import QtGui

        act = QtGui.QAction(text, self)
        act.setToolTip(tip)
        act.setStatusTip(tip)
        act.triggered.connect(slot)
        return act

    # ---- resume ------------------------------------------------------------------------------------
    def resume_run_folder(self, path: str | Path) -> bool:
        """Continue the run in ``path`` from its last checkpoint, in the window; False (and why) if not."""
        if self.worker.running:
            self.set_status("Stop the current run before resuming another one.", "error")
            return False
        try:
            status = run_status(path)
        except (RunFolderError, OSError) as error:
            self.report_error("Cannot resume the run", str(error))
            return False
        if status.state not in RESUMABLE_STATES or not status.resumable:
            self.set_status(f"Cannot resume {path}: it is {status.message}.", "error")
            return False
        try:
            config = load_config(Path(path) / "run.toml")
        except ConfigError as error:
            self.report_error("Cannot resume the run", f"{path}: {error}")
            return False
        if not self.confirm_discard("resuming another run"):
            return False
        self.set_config(config, None)
        self._begin_other_run(config)
        self.worker.start_resume(str(path))
        self.progress_bar.setFormat("Resuming…")
        self.set_status(f"Resuming {path} ({status.message})…", "busy")
        self._update_controls()
        return True

    # ---- follow --------------------------------------------------------------------------------------
    def ask_follow_run_folder(self) -> None:
        start = str(self.runs_panel.folder() or "") or self._start_dir()
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Follow run folder", start)
        if path:
            self.follow_run_folder(path)

    def follow_run_folder(self, path: str | Path, process: RunProcess | None = None) -> bool:
        """Show the run folder ``path`` live while another process writes it (``process``: one the window
        started, stopped by Stop), until its run ends."""
        if self.worker.running:
            self.set_status("Stop the current run before following another one.", "error")
            return False
        if process is None and not self.confirm_discard("showing another run's set-up"):
            return False
        path = Path(path).absolute()
        self._begin_other_run(None)
        self.worker.start_follow(str(path), process)
        self.clear_live_view()
        self.viewed_run = None
        self._set_primary(folder_key(path), path.name)
        self.attention_view.set_waiting_text(f"Waiting for the run in {path}…")
        self.progress_bar.setFormat("Following: waiting for the run…")
        who = "the process started" if process is not None else "another process"
        self.set_status(f"Following {path}: waiting for its run file ({who} writes it)…", "busy")
        self._update_controls()
        return True

    def _begin_other_run(self, config: RunConfig | None) -> None:
        self._role = "main"
        self._queue = []
        self._live_config = config
        self._plan = plan_stages(config) if config is not None else ()
        self._cleared_for_run = False

    def _config_known(self, config: RunConfig) -> None:
        self._live_config = config
        self._plan = plan_stages(config)
        if self.worker.mode == "follow" and self.worker.process is None:
            self.set_config(config, None)         # the followed run's set-up, as for a folder opened

    def _other_run_started(self, run_dir: str) -> None:
        """What the status line says once a followed or resumed run's folder is known."""
        if self.worker.mode == "follow":
            who = "the process started here" if self.worker.process is not None else "another process"
            self.progress_bar.setFormat("Following…")
            self.set_status(f"Following {run_dir} live, as {who} writes it.", "busy")
        elif self.worker.mode == "resume":
            self.progress_bar.setFormat("Resuming…")
            self.set_status(f"Resuming {run_dir} from its last checkpoint…", "busy")

    def _history_received(self, record: RunRecord) -> None:
        """Draw the live run again from ``record`` (a resumed run's history, a followed folder so far, what
        a training process had written when following it began): the run shown, or a baseline being
        trained, laid over it (whose maps are not shown)."""
        key = self._live_key
        self.loss_plot.clear_run(key)
        self.accuracy_plot.clear_run(key)
        self.loss_plot.add_steps(record.steps, key)
        self.accuracy_plot.add_epochs(record.epochs, key)
        if key == PRIMARY:
            self.attention_view.clear()
            if record.snapshots:
                self.attention_view.set_snapshots(record.snapshots)
        self._update_compare()

    def _follow_ended(self, message: str, kind: str) -> None:
        self.speed_label.clear()
        self.progress_bar.setFormat(self.progress_bar.format().split(" · ")[0] + " · not followed")
        self.set_status(message, kind)

    def _open_running_folder(self, path) -> bool | None:
        """Opening a folder another process is writing follows it (None: not such a folder)."""
        try:
            state = run_status(path).state
        except (RunFolderError, OSError):
            return None
        if state != "running":
            return None
        return self.follow_run_folder(path)

    # ---- the runs panel's menu -------------------------------------------------------------------------
    def _runs_menu_entries(self, menu: QtWidgets.QMenu, entry: RunEntry) -> None:
        if self.worker.running and folder_key(self.worker.run_dir or ".") == entry.key:
            return
        try:
            status = run_status(entry.path)
        except (RunFolderError, OSError):
            return
        menu.addSeparator()
        if status.state == "running":
            act = menu.addAction("Follow it live", lambda: self.follow_run_folder(entry.path))
        elif status.state in RESUMABLE_STATES and status.resumable:
            act = menu.addAction("Resume this run", lambda: self.resume_run_folder(entry.path))
            act.setToolTip(f"Continue it from its last checkpoint in the same folder ({status.message}).")
        else:
            return
        act.setObjectName("resumeAction" if status.state != "running" else "followAction")
        act.setEnabled(not self.worker.running)

    def _resumable_shown(self) -> Path | None:
        """The folder of the run shown, when it could be resumed (for Run elsewhere's resume command)."""
        if not self._primary_key or self.worker.running:
            return None
        try:
            status = run_status(self._primary_key)
        except (RunFolderError, OSError):
            return None
        return Path(self._primary_key) if status.resumable and status.state in RESUMABLE_STATES else None

    # ---- training in other processes ------------------------------------------------------------------
    def chosen_processes(self) -> int:
        """Processes the Device field asks for (several: *all N GPUs*)."""
        return chosen_processes(self.form.device)

    def start_in_subprocess(self, processes: int | None = None, torchrun: bool | None = None) -> bool:
        """Save the run file, start it as ``featdistill train`` / ``torchrun`` into a new run folder and
        follow that folder; False (and why) if refused."""
        if self.worker.running:
            return False
        processes = self.chosen_processes() if processes is None else processes
        try:
            config = self.form.check_before_start()
        except ConfigError as error:
            self.set_status(f"Cannot start — fix the marked fields. {problems_summary(error.problems, 3)}", "error",
                            reason="refused")
            return False
        if (self.run_file is None or self.is_modified()) and not self.save_run_file():
            self.set_status("Not started: a run in other processes needs the run file saved.", "error")
            return False
        try:
            run_dir = new_run_folder(config)
        except (WriteError, OSError) as error:
            self.report_error("Cannot start the run", str(error))
            return False
        command = process_command(self.run_file, run_dir, processes, torchrun)
        try:
            process = RunProcess(command).start()
        except OSError as error:
            self.report_error("Cannot start the run", f"{command[0]}: {error}")
            return False
        self._last_command = command
        return self.follow_run_folder(run_dir, process)

    def show_run_elsewhere(self) -> QtWidgets.QDialog | None:
        """The Run elsewhere dialog for the saved run file (saved first, when it is not)."""
        if (self.run_file is None or self.is_modified()) and not self.save_run_file():
            self.set_status("Run elsewhere needs the run file saved: its commands name it.", "error")
            return None
        dialog = RunElsewhereDialog(self.run_file, run_dir=self._resumable_shown(), parent=self)
        dialog.setModal(False)
        dialog.show()
        self.elsewhere_dialog = dialog
        return dialog
