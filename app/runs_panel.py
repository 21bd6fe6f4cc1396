"""The runs panel: every run folder under the output folder, to open one or tick several to compare.

Each row is one run folder (:func:`featdistill_core.run_folders`, read with
:func:`featdistill_core.load_run` without its snapshots): its name, when it started, teacher →
student, its distillation methods, its final accuracy and how it ended
(:func:`featdistill_core.run_state`: finished, stopped, failed, interrupted — or *running*, for the
run the window is training or following, and for a folder another process is writing). Tick runs to lay their curves over the plots (and to compare their
attention maps); double-click one (or "Open" in its menu) to show it as the window's run.

A folder is read again only when its log changed since the last look, so refreshing the list
after every run costs one ``stat`` per folder. The right-click menu is built by
:meth:`RunsPanel.context_menu`, which takes extra entries from :attr:`RunsPanel.menu_entries` (a
place for actions that other parts of featdistill add later, e.g. resuming an interrupted run).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from featdistill_core import ConfigError, RunFolderError, RunRecord, load_run, run_folders, run_state, run_status

COLUMNS = ("Run", "Accuracy", "State", "Methods", "Teacher → student", "Started")
STATE_COLUMN = 2
STATE_COLOURS = {"finished": "#1b7f3b", "stopped": "#8a5a00", "failed": "#b00020", "interrupted": "#8a5a00",
                 "running": "#0b5394"}
RUNNING = "running"


def folder_key(path: str | Path) -> str:
    """The one name of a run folder inside the window (its absolute path)."""
    return str(Path(path).resolve())


@dataclass(frozen=True)
class RunEntry:
    """What the panel shows of one run folder."""

    key: str
    path: Path
    name: str
    started: str
    models: str
    methods: str
    accuracy: float | None
    state: str
    error: str = ""
    label: str = ""            # short, for legends: the run's name and start time

    @property
    def accuracy_text(self) -> str:
        return f"{self.accuracy:.1f} %" if self.accuracy is not None else "–"


def describe_run(record: RunRecord, started: float) -> RunEntry:
    """A :class:`RunEntry` from a run folder's record and the time its run file was written."""
    config = record.config
    when = dt.datetime.fromtimestamp(started)
    uses_teacher = config.uses_teacher or config.trains_teacher
    models = f"{config.teacher.arch} → {config.student.arch}" if uses_teacher else f"{config.student.arch} alone"
    methods = ", ".join(dict.fromkeys(term.method for term in config.terms)) or "none (baseline)"
    accuracy = None
    metrics = (record.finished.metrics if record.finished is not None else {}) or {}
    if "student_test_acc" in metrics:
        accuracy = float(metrics["student_test_acc"])
    else:
        student = [e for e in record.epochs if e.stage != "teacher"]
        if student:
            accuracy = float(student[-1].test_acc)
    state = run_state(record)
    error = record.failed.error if record.failed is not None else ""
    return RunEntry(key=folder_key(record.path), path=Path(record.path), name=Path(record.path).name,
                    started=when.strftime("%Y-%m-%d %H:%M"), models=models, methods=methods, accuracy=accuracy,
                    state=state, error=error, label=f"{config.name} · {when.strftime('%H:%M')}")


class RunsPanel(QtWidgets.QWidget):
    """The run folders under one folder; ``tickedChanged`` when the ticked runs change,
    ``openRequested(path)`` when the user asks to show one."""

    tickedChanged = QtCore.Signal()
    openRequested = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("runsPanel")
        self._folder: Path | None = None
        self._entries: list[RunEntry] = []
        self._cache: dict[str, tuple[float, RunEntry]] = {}
        self._ticked: list[str] = []
        self._primary = ""
        self._running = ""
        self.menu_entries: list[Callable[[QtWidgets.QMenu, RunEntry], None]] = []

        self.folder_label = QtWidgets.QLabel()
        self.folder_label.setObjectName("runsFolder")
        self.folder_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.folder_label.setWordWrap(True)
        self.refresh_button = QtWidgets.QToolButton()
        self.refresh_button.setText("Refresh")
        self.refresh_button.setToolTip("Read the output folder again")
        self.refresh_button.clicked.connect(self.refresh)

        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("runsTable")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(QtCore.Qt.TextElideMode.ElideMiddle)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.table.setColumnWidth(0, 250)
        self.table.setContextMenuPolicy(QtCore.Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._menu_at)
        self.table.itemChanged.connect(self._item_changed)
        self.table.cellDoubleClicked.connect(lambda row, _col: self.openRequested.emit(str(self._entries[row].path)))
        self.table.setToolTip("Tick runs to compare their curves (and attention maps) with the run shown; "
                              "double-click a run to show it. Right-click for more.")

        self.empty_label = QtWidgets.QLabel()
        self.empty_label.setObjectName("runsEmpty")
        self.empty_label.setWordWrap(True)
        self.empty_label.setStyleSheet("color: #707070;")

        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.folder_label, 1)
        top.addWidget(self.refresh_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.empty_label)
        hint = QtWidgets.QLabel("Tick runs to lay their curves over the plots; double-click to show one.")
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #707070;")
        layout.addWidget(hint)

    # ---- what is listed -----------------------------------------------------------------------
    def set_folder(self, folder: str | Path | None) -> None:
        """List the run folders in ``folder`` (the output folder)."""
        folder = Path(folder).expanduser().resolve() if folder else None
        if folder != self._folder:
            self._folder = folder
            self.refresh()

    def folder(self) -> Path | None:
        return self._folder

    def refresh(self) -> None:
        """Read the folder again (each run folder only if its log changed)."""
        entries = []
        for path in run_folders(self._folder) if self._folder is not None else []:
            entry = self._entry(path)
            if entry is not None:
                entries.append(self._written_elsewhere(entry))
        self._entries = entries
        present = {entry.key for entry in entries}
        ticked_before = list(self._ticked)
        self._ticked = [key for key in self._ticked if key in present]
        self._fill()
        if self._ticked != ticked_before:
            self.tickedChanged.emit()

    def remember(self, path: str | Path, stamp: float, record: RunRecord) -> None:
        """Take ``record`` as what run folder ``path`` holds while its log's modification time is
        ``stamp`` (a run that just ended, read on the worker's thread): the next :meth:`refresh`
        does not read it again."""
        path = Path(path)
        try:
            started = (path / "run.toml").stat().st_mtime
        except OSError:
            return
        self._cache[folder_key(path)] = (stamp, describe_run(record, started))

    def _entry(self, path: Path) -> RunEntry | None:
        key = folder_key(path)
        try:
            stamp = (path / "metrics.jsonl").stat().st_mtime
            started = (path / "run.toml").stat().st_mtime
        except OSError:
            return None
        cached = self._cache.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            entry = describe_run(load_run(path, snapshots=False), started)
        except (RunFolderError, ConfigError, OSError, ValueError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            entry = RunEntry(key=key, path=path, name=path.name, started="", models="", methods="", accuracy=None,
                             state="unreadable", error=first, label=path.name)
        self._cache[key] = (stamp, entry)
        return entry

    def _written_elsewhere(self, entry: RunEntry) -> RunEntry:
        """An entry whose log has no end yet says "running" while another process holds its lock
        (:func:`featdistill_core.run_status`), looked at on every refresh (a kill changes no file)."""
        if entry.state != "interrupted" or entry.key == self._running:
            return entry
        try:
            state = run_status(entry.path).state
        except (RunFolderError, OSError, ValueError):
            return entry
        return dataclasses.replace(entry, state=RUNNING) if state == RUNNING else entry

    def entries(self) -> list[RunEntry]:
        return list(self._entries)

    def entry(self, key: str) -> RunEntry | None:
        return next((entry for entry in self._entries if entry.key == key), None)

    # ---- ticks, the run shown, the run training ---------------------------------------------------
    def ticked(self) -> list[str]:
        """The keys of the ticked runs, in the order they were ticked."""
        return list(self._ticked)

    def set_ticked(self, key: str, ticked: bool = True) -> None:
        key = folder_key(key)
        if ticked and key not in self._ticked:
            self._ticked.append(key)
        elif not ticked and key in self._ticked:
            self._ticked.remove(key)
        else:
            return
        self._fill()
        self.tickedChanged.emit()

    def set_primary(self, key: str) -> None:
        """The run the window shows (drawn in bold)."""
        key = folder_key(key) if key else ""
        if key != self._primary:
            self._primary = key
            self._fill()

    def set_running(self, key: str) -> None:
        """The run the window is training now ("running"; "" when none)."""
        key = folder_key(key) if key else ""
        if key != self._running:
            self._running = key
            self._fill()

    def state_of(self, key: str) -> str:
        entry = self.entry(key)
        if entry is None:
            return ""
        return RUNNING if entry.key == self._running else entry.state

    # ---- drawing ---------------------------------------------------------------------------------
    def _fill(self) -> None:
        table = self.table
        table.blockSignals(True)
        table.setRowCount(len(self._entries))
        bold = QtGui.QFont(table.font())
        bold.setBold(True)
        for row, entry in enumerate(self._entries):
            state = self.state_of(entry.key)
            shown = entry.key == self._primary
            cells = (entry.name + ("  (shown)" if shown else ""), entry.accuracy_text, state, entry.methods,
                     entry.models, entry.started)
            for column, text in enumerate(cells):
                item = table.item(row, column)
                if item is None:
                    item = QtWidgets.QTableWidgetItem()
                    table.setItem(row, column, item)
                item.setText(text)
                item.setFont(bold if shown else table.font())
                tip = str(entry.path) if column == 0 else text
                if column == STATE_COLUMN and entry.error:
                    tip = f"{state}: {entry.error}"
                item.setToolTip(tip)
            first = table.item(row, 0)
            first.setFlags(first.flags() | QtCore.Qt.ItemFlag.ItemIsUserCheckable)
            first.setCheckState(QtCore.Qt.CheckState.Checked if entry.key in self._ticked
                                else QtCore.Qt.CheckState.Unchecked)
            first.setData(QtCore.Qt.ItemDataRole.UserRole, entry.key)
            table.item(row, STATE_COLUMN).setForeground(QtGui.QBrush(QtGui.QColor(STATE_COLOURS.get(state, "#707070"))))
        table.blockSignals(False)
        if self._folder is None:
            where = "no output folder"
        else:
            where = f"Runs in <b>{self._folder}</b>"
        self.folder_label.setText(where)
        self.empty_label.setVisible(not self._entries)
        self.empty_label.setText("No run folder here yet: press Start, and each run's folder appears here."
                                 if self._folder is not None else "")

    def _item_changed(self, item: QtWidgets.QTableWidgetItem) -> None:
        if item.column() != 0:
            return
        key = item.data(QtCore.Qt.ItemDataRole.UserRole)
        self.set_ticked(key, item.checkState() == QtCore.Qt.CheckState.Checked)

    # ---- the context menu ------------------------------------------------------------------------
    def context_menu(self, row: int) -> QtWidgets.QMenu:
        """The menu of row ``row``: open, compare, copy path, and any :attr:`menu_entries`."""
        entry = self._entries[row]
        menu = QtWidgets.QMenu(self)
        menu.addAction("Show this run", lambda: self.openRequested.emit(str(entry.path)))
        ticked = entry.key in self._ticked
        menu.addAction("Stop comparing it" if ticked else "Compare with the run shown",
                       lambda: self.set_ticked(entry.key, not ticked))
        menu.addSeparator()
        menu.addAction("Open its folder",
                       lambda: QtGui.QDesktopServices.openUrl(QtCore.QUrl.fromLocalFile(str(entry.path))))
        menu.addAction("Copy its path", lambda: QtWidgets.QApplication.clipboard().setText(str(entry.path)))
        for add in self.menu_entries:
            add(menu, entry)
        return menu

    def _menu_at(self, position: QtCore.QPoint) -> None:
        row = self.table.rowAt(position.y())
        if 0 <= row < len(self._entries):
            self.context_menu(row).popup(self.table.viewport().mapToGlobal(position))
