"""A compare folder (written by ``featdistill compare``) as a leaderboard: a table and a bar chart.

The core reads the folder and ranks the methods (:func:`featdistill_core.read_compare`, its ``rows``:
mean ± std test top-1 over the seeds, gain over the undistilled baseline, time per epoch, and a note
for an entry that failed, stopped or could not be placed); the panel shows that table and a bar chart
of each method's gain over the baseline (pyqtgraph ``BarGraphItem``; green above zero, red below).
Ticking a row lays its runs' curves over the loss and accuracy plots (``overlayChanged``; the
window adds them as it adds ticked runs of the Runs panel).

The core's comparison module (it imports the trainer) is loaded when a folder is first opened, not
with the window.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from featdistill_core import format_duration

from app import colormaps

GAIN_COLOURS = {"up": "#1b7f3b", "down": "#b00020", "zero": "#707070"}
COLUMNS = ("", "Rank", "Method", "Top-1 (mean ± std)", "Gain over baseline", "Time / epoch", "Runs", "Status")
TICK_COLUMN = 0


def top1_text(mean, std) -> str:
    if mean is None:
        return "–"
    return f"{mean:.2f} ± {std:.2f} %" if std is not None else f"{mean:.2f} %"


def gain_text(gain, std) -> str:
    if gain is None:
        return "–"
    return f"{gain:+.2f} ± {std:.2f} points" if std is not None else f"{gain:+.2f} points"


def status_text(row) -> str:
    if row.note:
        return row.note
    return "done" if row.runs == row.seeds else f"{row.runs} of {row.seeds} done"


class Leaderboard(QtWidgets.QWidget):
    """``open_folder(path)`` shows a compare folder; ``ticked_runs()`` gives the ticked rows' run folders."""

    overlayChanged = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("leaderboard")
        self.result = None                 # the CompareResult shown
        self.rows: list = []
        self.heights: list[float] = []
        self._filling = False

        self.heading = QtWidgets.QLabel("Open a compare folder (File ▸ Open compare folder…) written by "
                                        "featdistill compare to see which method worked best here.")
        self.heading.setObjectName("leaderboardHeading")
        self.heading.setWordWrap(True)
        self.heading.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("leaderboardTable")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        for column in range(len(COLUMNS)):
            mode = (QtWidgets.QHeaderView.ResizeMode.Stretch if column == len(COLUMNS) - 1
                    else QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
            header.setSectionResizeMode(column, mode)
        self.table.horizontalHeaderItem(TICK_COLUMN).setToolTip("Tick to lay this method's runs over the plots.")
        self.table.itemChanged.connect(self._item_changed)

        self.chart = pg.PlotWidget(background=colormaps.BACKGROUND)
        self.chart.setObjectName("leaderboardChart")
        plot = self.chart.getPlotItem()
        plot.setMenuEnabled(False)
        plot.hideButtons()
        plot.setMouseEnabled(False, False)
        plot.showGrid(x=False, y=True, alpha=colormaps.GRID_ALPHA)
        for name in ("left", "bottom"):
            plot.getAxis(name).setPen(colormaps.FOREGROUND)
            plot.getAxis(name).setTextPen(colormaps.FOREGROUND)
        plot.setLabel("left", "gain over baseline (points of top-1)")
        plot.setTitle("Gain over the baseline, mean over seeds", color=colormaps.FOREGROUND)
        self.zero_line = pg.InfiniteLine(pos=0, angle=0, pen=pg.mkPen(colormaps.MUTED, width=1))
        plot.addItem(self.zero_line)
        self.bars: pg.BarGraphItem | None = None
        self.chart.setMinimumHeight(150)

        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.chart)
        split.setChildrenCollapsible(False)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(split, 1)

    # ---- content --------------------------------------------------------------------------------
    def open_folder(self, folder: str | Path) -> CompareResult:
        """Read and show a compare folder; CompareFolderError (a ValueError) when it is not one."""
        from featdistill_core import read_compare

        result = read_compare(folder)
        self.show_result(result)
        return result

    def show_result(self, result) -> None:
        """Show a ``CompareResult``."""
        self.result = result
        self.rows = list(result.rows)
        config = result.config
        state = "finished" if result.finished else ("stopped" if result.stopped else "not finished (or still running)")
        teacher = result.teacher.test_acc if result.teacher is not None else None
        teacher_text = f", teacher {teacher:.2f} %" if teacher is not None else ""
        seeds = ", ".join(str(s) for s in result.seeds)
        self.heading.setText(f"<b>{Path(result.folder).name}</b> — {config.teacher.arch} → {config.student.arch} on "
                             f"{config.data.name}, seeds {seeds}{teacher_text}; {state}. Tick a method to lay its "
                             "runs over the plots.")
        self._filling = True
        try:
            self.table.setRowCount(len(self.rows))
            for index, row in enumerate(self.rows):
                tick = QtWidgets.QTableWidgetItem()
                runs = self.run_dirs(row.key)
                if runs:
                    tick.setFlags(QtCore.Qt.ItemFlag.ItemIsUserCheckable | QtCore.Qt.ItemFlag.ItemIsEnabled)
                    tick.setCheckState(QtCore.Qt.CheckState.Unchecked)
                    tick.setToolTip(f"Lay the {len(runs)} run(s) of {row.key} over the plots.")
                else:
                    tick.setFlags(QtCore.Qt.ItemFlag.ItemIsEnabled)
                    tick.setToolTip("No finished run to show.")
                tick.setData(QtCore.Qt.ItemDataRole.UserRole, row.key)
                cells = [tick, str(row.rank) if row.rank is not None else "–", row.key,
                         top1_text(row.mean, row.std), gain_text(row.gain, row.gain_std),
                         format_duration(row.seconds_per_epoch) if row.seconds_per_epoch else "–",
                         f"{row.runs}/{row.seeds}", status_text(row)]
                for column, cell in enumerate(cells):
                    item = cell if isinstance(cell, QtWidgets.QTableWidgetItem) else QtWidgets.QTableWidgetItem(cell)
                    if column == 2:
                        item.setToolTip(f"{row.title}\nlayers: {row.layers or '–'}\nweight: {row.weight or '–'}"
                                        + (f"\nchosen weights: {row.weights}" if row.weights else ""))
                    elif column > 0:
                        item.setToolTip(cell)
                    if column == 4 and row.gain is not None:
                        item.setForeground(QtGui.QBrush(QtGui.QColor(self._gain_colour(row.gain))))
                    self.table.setItem(index, column, item)
        finally:
            self._filling = False
        self._draw_bars()

    @staticmethod
    def _gain_colour(gain: float) -> str:
        return GAIN_COLOURS["up" if gain > 0 else "down" if gain < 0 else "zero"]

    def _draw_bars(self) -> None:
        plot = self.chart.getPlotItem()
        if self.bars is not None:
            plot.removeItem(self.bars)
            self.bars = None
        from featdistill_core import BASELINE

        shown = [row for row in self.rows if row.key != BASELINE]
        self.heights = [row.gain if row.gain is not None and math.isfinite(row.gain) else 0.0 for row in shown]
        if not shown:
            plot.getAxis("bottom").setTicks([[]])
            return
        x = np.arange(len(shown), dtype=float)
        brushes = [pg.mkBrush(self._gain_colour(h) if row.gain is not None else "#d0d0d0")
                   for h, row in zip(self.heights, shown)]
        self.bars = pg.BarGraphItem(x=x, height=np.asarray(self.heights, dtype=float), width=0.6, brushes=brushes,
                                    pen=pg.mkPen(None))
        plot.addItem(self.bars)
        plot.getAxis("bottom").setTicks([[(float(i), row.key) for i, row in enumerate(shown)]])
        low, high = min(self.heights + [0.0]), max(self.heights + [0.0])
        pad = max(0.5, 0.1 * (high - low))
        plot.setRange(xRange=(-0.6, len(shown) - 0.4), yRange=(low - pad, high + pad), padding=0.0)

    # ---- ticking --------------------------------------------------------------------------------
    def run_dirs(self, key: str) -> list[tuple[str, str]]:
        """(run folder, label) of each finished run of candidate ``key``."""
        if self.result is None:
            return []
        return [(entry.run_dir, f"{key} · seed {entry.seed}") for entry in self.result.entries
                if entry.candidate == key and entry.run_dir and entry.status == "done" and Path(entry.run_dir).is_dir()]

    def set_ticked(self, key: str, ticked: bool) -> None:
        for index in range(self.table.rowCount()):
            item = self.table.item(index, TICK_COLUMN)
            if item.data(QtCore.Qt.ItemDataRole.UserRole) == key and item.flags() & QtCore.Qt.ItemFlag.ItemIsUserCheckable:
                item.setCheckState(QtCore.Qt.CheckState.Checked if ticked else QtCore.Qt.CheckState.Unchecked)

    def ticked(self) -> list[str]:
        keys = []
        for index in range(self.table.rowCount()):
            item = self.table.item(index, TICK_COLUMN)
            if item is not None and item.checkState() == QtCore.Qt.CheckState.Checked:
                keys.append(item.data(QtCore.Qt.ItemDataRole.UserRole))
        return keys

    def ticked_runs(self) -> list[tuple[str, str]]:
        """(run folder, label) of every run of every ticked method."""
        return [run for key in self.ticked() for run in self.run_dirs(key)]

    def _item_changed(self, item: QtWidgets.QTableWidgetItem) -> None:
        if not self._filling and item.column() == TICK_COLUMN:
            self.overlayChanged.emit()


__all__ = ["Leaderboard"]
