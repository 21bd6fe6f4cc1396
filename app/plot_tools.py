"""What the loss and accuracy plots share: the hover read-out, the PNG/CSV export buttons, and the rule
that turns the log axis on.

* :class:`HoverReadout` — under the mouse, the nearest point of any curve on the plot, named: its x
  (step or epoch), its value, its component and its run. The plot gives the points it shows
  (:class:`Series`); the read-out finds the nearest in screen pixels (within :data:`HOVER_PX`).
* :class:`ExportButtons` — "PNG" and "CSV" next to a plot. Each asks where (starting in the folder the
  window says, the run folder when there is one), writes, and emits ``exported(what, path)`` so the
  window can say where it wrote.
* :func:`spans_decades` — whether curves differ by orders of magnitude, so a linear axis would flatten
  the small ones onto zero.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from app import colormaps

HOVER_PX = 24            # the read-out shows the nearest point within this many screen pixels
HOVER_RATE_HZ = 30       # mouse moves are looked at this often at most
LOG_SPAN = 100.0         # curves whose positive values span at least this factor get a log axis


def spans_decades(lows: Iterable[float], highs: Iterable[float], span: float = LOG_SPAN) -> bool:
    """Whether the smallest positive value and the largest differ by ``span`` or more."""
    low = min((value for value in lows if value > 0 and math.isfinite(value)), default=math.inf)
    high = max((value for value in highs if math.isfinite(value)), default=-math.inf)
    return math.isfinite(low) and high > 0 and high / low >= span


@dataclass(frozen=True)
class Series:
    """Points the plot shows, for the read-out: x and y in data units (y as drawn: smoothed, clipped)."""

    label: str              # the component or series: "at:layer2", "test"
    run: str                # the run's label
    x: np.ndarray
    y: np.ndarray
    raw: np.ndarray | None = None    # the unsmoothed values, when they differ from y


def format_value(value: float) -> str:
    """A loss or accuracy with 4 significant digits (scientific below 1e-3)."""
    if not math.isfinite(value):
        return str(value)
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.3e}"
    return f"{value:.4g}"


class HoverReadout(QtCore.QObject):
    """The nearest shown point to the mouse, with a dot on it and a line of text beside it.

    ``series()`` returns the :class:`Series` on the plot now; ``x_name`` names the x axis ("step",
    "epoch"); ``log_y()`` says whether the y axis is logarithmic (pyqtgraph's view then holds log10 y).
    """

    def __init__(self, plot_item: pg.PlotItem, series: Callable[[], Sequence[Series]], x_name: str,
                 log_y: Callable[[], bool] = lambda: False, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self._plot = plot_item
        self._series = series
        self._x_name = x_name
        self._log_y = log_y
        self.text = ""
        self._dot = pg.ScatterPlotItem(size=8, pen=pg.mkPen(colormaps.FOREGROUND), brush=pg.mkBrush(255, 255, 255))
        self._dot.setZValue(20)
        self._label = pg.TextItem(color=colormaps.FOREGROUND, fill=pg.mkBrush(255, 255, 255, 230),
                                  border=pg.mkPen(colormaps.CELL_BORDER), anchor=(0, 1))
        self._label.setZValue(21)
        for item in (self._dot, self._label):      # in the view's own coordinates (log10 y on a log axis)
            item.setVisible(False)
            plot_item.getViewBox().addItem(item, ignoreBounds=True)
        self._proxy = pg.SignalProxy(plot_item.scene().sigMouseMoved, rateLimit=HOVER_RATE_HZ, slot=self._moved)

    def _moved(self, args) -> None:
        position = args[0]
        view = self._plot.getViewBox()
        if not view.sceneBoundingRect().contains(position):
            self.hide()
            return
        point = view.mapSceneToView(position)
        self.show_near(point.x(), point.y())

    def nearest(self, x: float, y_view: float) -> tuple[Series, int] | None:
        """The shown point nearest to ``(x, y_view)`` (view coordinates) within :data:`HOVER_PX`."""
        view = self._plot.getViewBox()
        px_w, px_h = view.viewPixelSize()
        px_w, px_h = px_w or 1.0, px_h or 1.0
        log = self._log_y()
        best, best_distance = None, HOVER_PX
        for series in self._series():
            if not series.x.size:
                continue
            index = int(np.searchsorted(series.x, x))
            for i in (index - 1, index):
                if not 0 <= i < series.x.size:
                    continue
                value = float(series.y[i])
                if not math.isfinite(value) or (log and value <= 0):
                    continue
                vy = math.log10(value) if log else value
                distance = math.hypot((float(series.x[i]) - x) / px_w, (vy - y_view) / px_h)
                if distance <= best_distance:
                    best, best_distance = (series, i), distance
        return best

    def show_near(self, x: float, y_view: float) -> str:
        """Show the read-out for the point nearest to ``(x, y_view)``; returns its text ("" if none)."""
        found = self.nearest(x, y_view)
        if found is None:
            self.hide()
            return ""
        series, i = found
        value = float(series.y[i])
        text = f"{self._x_name} {float(series.x[i]):g}: {series.label} = {format_value(value)}"
        if series.raw is not None and float(series.raw[i]) != value:
            text += f" (raw {format_value(float(series.raw[i]))})"
        if series.run:
            text += f"\nrun: {series.run}"
        y_drawn = math.log10(value) if self._log_y() else value
        self._dot.setData([float(series.x[i])], [y_drawn])
        self._label.setText(text)
        self._label.setPos(float(series.x[i]), y_drawn)
        view_range = self._plot.getViewBox().viewRange()
        right_half = float(series.x[i]) > (view_range[0][0] + view_range[0][1]) / 2
        low_half = y_drawn < (view_range[1][0] + view_range[1][1]) / 2
        self._label.setAnchor((1.05 if right_half else -0.05, 1.1 if low_half else -0.1))
        self._dot.setVisible(True)
        self._label.setVisible(True)
        self.text = text
        return text

    def hide(self) -> None:
        if self._label.isVisible():
            self._dot.setVisible(False)
            self._label.setVisible(False)
        self.text = ""


def write_csv(path, header: Sequence[str], rows: Iterable[Sequence]) -> Path:
    """A CSV file with ``header`` and ``rows``; OSError names the file if it cannot be written."""
    path = Path(path)
    try:
        with open(path, "w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(header)
            writer.writerows(rows)
    except OSError as exc:
        raise OSError(f"could not write {path}: {exc.strerror or exc}") from None
    return path


def save_widget_png(widget: QtWidgets.QWidget, path) -> Path:
    """``widget`` as it is drawn, saved as a PNG."""
    path = Path(path)
    QtWidgets.QApplication.processEvents(QtCore.QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents)
    if not widget.grab().save(str(path), "PNG"):
        raise OSError(f"could not write the PNG file {path}")
    return path


class ExportButtons(QtCore.QObject):
    """Two small buttons, "PNG" and "CSV", for a plot's controls row.

    ``png(path)`` and ``csv(path)`` write the files; ``directory()`` gives the folder the file dialog
    starts in (the run folder); ``name`` is the file's stem (``loss``). ``exported(what, path)`` is
    emitted after a file was written, ``failed(message)`` when it could not be.
    """

    exported = QtCore.Signal(str, str)
    failed = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget, name: str, png: Callable[[Path], Path],
                 csv_writer: Callable[[Path], Path], directory: Callable[[], str] = lambda: ""):
        super().__init__(parent)
        self._parent = parent
        self.name = name
        self._png, self._csv = png, csv_writer
        self.directory = directory
        self.png_button = self._button("PNG", f"Save the {name} plot as a PNG image, as it is drawn.")
        self.csv_button = self._button("CSV", f"Save the {name} plot's data (every point, raw and as drawn) as CSV.")
        self.png_button.clicked.connect(lambda: self.ask("png"))
        self.csv_button.clicked.connect(lambda: self.ask("csv"))

    def _button(self, text: str, tip: str) -> QtWidgets.QToolButton:
        button = QtWidgets.QToolButton()
        button.setText(text)
        button.setToolTip(tip)
        button.setObjectName(f"{self.name}Export{text.capitalize()}")
        button.setAutoRaise(False)
        return button

    def buttons(self) -> tuple[QtWidgets.QToolButton, QtWidgets.QToolButton]:
        return self.png_button, self.csv_button

    def default_path(self, kind: str) -> Path:
        folder = self.directory() or str(Path.cwd())
        return Path(folder) / f"{self.name}.{kind}"

    def ask(self, kind: str) -> Path | None:
        """Ask for a file (starting at :meth:`default_path`) and write it; the path, or None."""
        filters = {"png": "PNG image (*.png)", "csv": "CSV table (*.csv)"}
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self._parent, f"Save the {self.name} plot",
                                                        str(self.default_path(kind)), filters[kind])
        return self.write(kind, path) if path else None

    def write(self, kind: str, path) -> Path | None:
        path = Path(path)
        if path.suffix.lower() != f".{kind}":
            path = path.with_name(path.name + f".{kind}")
        try:
            written = (self._png if kind == "png" else self._csv)(path)
        except (OSError, ValueError) as error:
            self.failed.emit(str(error))
            return None
        self.exported.emit(f"the {self.name} plot ({kind.upper()})", str(written))
        return written
