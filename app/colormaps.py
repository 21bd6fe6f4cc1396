"""Colours, colour maps and the plot theme shared by the window's live-view widgets.

One light theme for every widget: white plot background, dark text, thin light-grey grid. Curve
colours come from the Okabe–Ito palette (Okabe & Ito, "Color Universal Design", 2008), which stays
distinguishable for the common forms of colour blindness. Attention maps use a perceptually uniform
sequential map (viridis); differences use a diverging blue–white–red map centred on zero, so "no
difference" is white and the sign reads at a glance.

Nothing here touches global pyqtgraph options: widgets pass the theme to each item explicitly.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

BACKGROUND = "#ffffff"
FOREGROUND = "#202020"          # axis lines, tick labels, titles
MUTED = "#707070"               # secondary text, reference lines
GRID_ALPHA = 0.25               # grid line opacity, 0..1
CELL_BORDER = "#c8c8c8"         # frame around each image panel

# Okabe–Ito, black left out (used for "total"), reordered so the first few are the most distinct.
PALETTE = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#882255",  # wine (stands in for Okabe–Ito yellow, which is illegible on white)
)
TOTAL_COLOUR = "#000000"

SEQUENTIAL_MAP = "viridis"      # attention maps (teacher and student share it)
DIVERGING_MAP = "CET-D1"        # difference, student − teacher (blue < 0 < red, white at 0)
LUT_SIZE = 256                  # entries of every look-up table given to an ImageItem
SIDE_LEGEND_MIN_PX = 110        # the legend right of the loss plot is at least this wide
ACCURACY_LEGEND_MIN_PX = 100    # ... and the accuracy plot's (train, test and teacher fit: no relayout at the student stage)


def palette_colour(index: int) -> str:
    """The ``index``-th curve colour, cycling through :data:`PALETTE`."""
    return PALETTE[index % len(PALETTE)]


@cache
def sequential_colormap() -> pg.ColorMap:
    """The colour map for attention maps (low = dark blue, high = yellow).

    Read from pyqtgraph's files once and shared (the colour-map functions are cached): do not modify it.
    """
    return pg.colormap.get(SEQUENTIAL_MAP)


@cache
def diverging_colormap() -> pg.ColorMap:
    """The colour map for differences: blue for negative, white for zero, red for positive (shared, cached)."""
    return pg.colormap.get(DIVERGING_MAP)


def lookup_table(cmap: pg.ColorMap):
    """A :data:`LUT_SIZE`-entry uint8 RGBA look-up table of ``cmap`` for an ImageItem."""
    return cmap.getLookupTable(nPts=LUT_SIZE, alpha=True)


_NATIVE = QtGui.QImage.Format.Format_ARGB32_Premultiplied     # what Qt's raster engine paints with
WIDEST_LEFT_LABEL = "0.0005"     # the tick label the plots' left axes have room for (longer ones stick out left)


class MapImage(pg.ImageItem):
    """An ImageItem that renders its picture straight into the raster engine's own pixel format.

    pyqtgraph renders a map with a lookup table as an 8-bit indexed image (building its 256-entry colour
    table in Python at every render) and an RGB image as non-premultiplied ARGB, which Qt converted
    again at every paint of the scaled picture. And it renders lazily, in the paint: a snapshot's
    repaint of a dozen maps spent ~2.4 ms of its ~6 ms rendering them (build machine, idle). Here the
    two cases the window draws — a float map with levels and a uint8 lookup table, a uint8 RGB image
    with levels (0, 255) — are one numpy lookup into premultiplied 32-bit pixels (NaN transparent,
    as pyqtgraph draws it); anything else is pyqtgraph's own rendering, converted once.
    """

    _argb = None            # the pixels the QImage shows (it does not copy them)
    _table = (None, None)   # (lookup table, its premultiplied words): made again only for another table

    def render(self):
        pixels = _argb_pixels(self.image, self._words(), self.levels)
        if pixels is None or not hasattr(self, "_renderRequired"):
            super().render()
            if self.qimage is not None and self.qimage.format() != _NATIVE:
                self.qimage = self.qimage.convertToFormat(_NATIVE)
            return
        self._argb = pixels
        height, width = pixels.shape
        self.qimage = QtGui.QImage(pixels.data, width, height, 4 * width, _NATIVE)
        self._renderRequired = False
        self._unrenderable = False

    def _words(self):
        """The lookup table's premultiplied words (made once per table), or None for no table, or
        one this cannot map with."""
        lut = self.lut
        if not isinstance(lut, np.ndarray) or not _usable_lut(lut):
            return None
        if self._table[0] is not lut:
            self._table = (lut, _premultiplied_table(lut))
        return self._table[1]


def _usable_lut(lut: np.ndarray) -> bool:
    """Whether ``lut`` is a table :func:`_argb_pixels` maps with: n RGB(A) uint8 entries."""
    return lut.dtype == np.uint8 and lut.ndim == 2 and lut.shape[1] in (3, 4)


def _argb_pixels(image, table, levels):
    """``image`` as premultiplied ARGB32 pixels (a (H, W) uint32 array), or None for what pyqtgraph
    should render itself. A 2-D float map takes the colour of the lookup table at
    ``floor((value − low) · n / (high − low))`` clipped to [0, n − 1], as pyqtgraph indexes it
    (``table``: its n entries as :func:`_premultiplied_table` words, then a transparent one); a NaN
    is transparent. A (H, W, 3) uint8 image with levels (0, 255) is shown as it is."""
    if image is None or image.size == 0 or levels is None or np.ndim(levels) != 1:
        return None
    low, high = float(levels[0]), float(levels[1])
    if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 and (low, high) == (0.0, 255.0):
        rgb = image.astype(np.uint32)
        return (0xFF000000 | (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]).astype(np.uint32)
    if image.ndim != 2 or image.dtype.kind != "f" or table is None or not high > low:
        return None
    n = len(table) - 1
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = (image.astype(np.float64) - low) * (n / (high - low))
        index = np.clip(scaled, 0, n - 1)
    index = np.where(np.isnan(index), n, index).astype(np.intp)     # n: the transparent entry
    return table[index]


def _premultiplied_table(lut: np.ndarray) -> np.ndarray:
    """``lut``'s entries as premultiplied ARGB32 words, and a transparent one after them."""
    rgba = np.empty((len(lut), 4), np.uint32)
    rgba[:, :3] = lut[:, :3]
    rgba[:, 3] = lut[:, 3] if lut.shape[1] == 4 else 255
    alpha = rgba[:, 3]
    premultiplied = (rgba[:, :3] * alpha[:, None] + 127) // 255
    words = (alpha << 24) | (premultiplied[:, 0] << 16) | (premultiplied[:, 1] << 8) | premultiplied[:, 2]
    return np.append(words.astype(np.uint32), np.uint32(0))


class CachedAxis(pg.AxisItem):
    """An axis that Qt keeps as a pixmap and repaints only when it changes.

    An axis also draws the grid across the view, so with pyqtgraph's AxisItem every new point on a
    curve repainted it, replaying its tick labels and grid lines (most of a live repaint). Cached,
    it is blitted until its range, size or style changes; and as ``paint`` then runs only for a
    change, it draws straight to the cache instead of recording a QPicture and replaying it.
    """

    def __init__(self, orientation: str, **kwargs):
        super().__init__(orientation, **kwargs)
        self.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)
        if orientation == "left":
            # A fixed width: pyqtgraph's fits its tick labels, so a label one digit longer (a log
            # axis, a loss falling to 0.05) laid the whole plot out again and repainted it.
            self.setWidth(self._room_for(WIDEST_LEFT_LABEL))

    def _room_for(self, text: str) -> int:
        metrics = QtGui.QFontMetricsF(self.style["tickFont"] or QtGui.QFont())
        return math.ceil(metrics.horizontalAdvance(text) + self.style["tickTextOffset"][0]
                         + max(0, self.style["tickLength"]) + 1.6 * metrics.height())

    def logTickValues(self, minVal, maxVal, size, stdTicks):  # noqa: N802 (pyqtgraph override)
        """On a log axis: the decades, and when fewer than three show, 2× and 5× between them, labelled;
        pyqtgraph's own labels every 1×–9× there, which crowd into each other."""
        low, high = math.floor(minVal), math.ceil(maxVal)
        decades = [float(k) for k in range(low, high + 1) if minVal <= k <= maxVal]
        if len(decades) >= 3:
            return [(1.0, decades)]
        between = [k + math.log10(m) for k in range(low, high + 1) for m in (2.0, 5.0)]
        return [(1.0, decades), (None, [v for v in between if minVal <= v <= maxVal])]

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (pyqtgraph override)
        """On a log axis, the values themselves (0.01, 2, 10), not 10 with a superscript."""
        if self.logMode:
            return [f"{10 ** v:g}" for v in values]
        return super().tickStrings(values, scale, spacing)

    def paint(self, painter: QtGui.QPainter, *args) -> None:
        painter.save()
        if self.style["tickFont"]:
            painter.setFont(self.style["tickFont"])
        specs = self.generateDrawSpecs(painter)
        if specs is not None:
            self.drawPicture(painter, *specs)
        painter.restore()


def plot_axes() -> dict[str, CachedAxis]:
    """Axes for a new plot: ``pg.PlotWidget(axisItems=plot_axes())``."""
    return {name: CachedAxis(name) for name in ("left", "bottom")}


def style_plot_item(plot: pg.PlotItem, *, x_label: str, y_label: str, title: str | None = None) -> None:
    """Apply the shared light theme to ``plot``: dark axes and labels, a faint grid, axis titles.

    ``x_label``/``y_label`` should carry the unit, e.g. ``"step"``, ``"top-1 accuracy (%)"``.
    """
    text_pen = pg.mkPen(FOREGROUND)
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen(text_pen)
        axis.setTextPen(text_pen)
        axis.setStyle(maxTickLevel=0)   # grid lines at the labelled ticks only: lighter to look at and to paint
    label_style = {"color": FOREGROUND, "font-size": "10pt"}
    plot.setLabel("bottom", x_label, **label_style)
    plot.setLabel("left", y_label, **label_style)
    if title:
        plot.setTitle(title, color=FOREGROUND, size="11pt")
    plot.showGrid(x=True, y=True, alpha=GRID_ALPHA)


LEGEND_SAMPLE_PX = 20           # the width of a legend entry's line sample (pyqtgraph's ItemSample)


class SideLegend(pg.LegendItem):
    """A legend in its own column of the plot's grid, right of the axes, so it never covers a curve.

    It is hidden while it has no entry, or while :meth:`set_wanted` says so: an empty legend, or
    one for a plot with no data yet, says nothing. Hidden, it keeps its room, so the plot keeps its
    size (no relayout and full repaint when a run starts or a stage changes). pyqtgraph's LegendItem sizes
    and places itself as a floating item; here the plot's layout does both, from the legend's own
    layout. ``min_width`` keeps the plot's width steady when the entries change (a new stage).
    """

    def __init__(self, min_width: int = 0):
        super().__init__(brush=None, pen=None, labelTextColor=FOREGROUND, labelTextSize="9pt", verSpacing=-6)
        policy = QtWidgets.QSizePolicy(QtWidgets.QSizePolicy.Policy.Fixed, QtWidgets.QSizePolicy.Policy.Fixed)
        policy.setRetainSizeWhenHidden(True)    # showing or hiding it never re-lays out (and repaints) the plot
        self.setSizePolicy(policy)
        self._min_width = min_width
        self._entry_widths: dict[str, float] = {}
        self.setMinimumWidth(min_width)
        self._wanted = True
        self.setVisible(False)

    def set_wanted(self, wanted: bool) -> None:
        """Show the legend only when ``wanted`` (and it has entries)."""
        self._wanted = bool(wanted)
        self.setVisible(self._wanted and bool(self.items))

    def updateSize(self) -> None:       # called by LegendItem whenever entries come or go
        self.setVisible(self._wanted and bool(self.items))
        self.updateGeometry()

    def make_room_for(self, names) -> None:
        """Widen the legend now, once, to fit the widest of ``names`` (entries about to come one by one):
        an entry wider than the legend widened it as it came, and the plot beside it was laid out and
        repainted whole again (14–21 ms on the build machine, idle). It never narrows again until
        :meth:`reset_room`, so a later stage's narrower entries change nothing either."""
        widest = max((self._entry_width(name) for name in names), default=0.0)
        if widest > self.minimumWidth():
            self.setMinimumWidth(math.ceil(widest))

    def reset_room(self) -> None:
        """Back to the width the legend was made with (a new run)."""
        if self.minimumWidth() != self._min_width:
            self.setMinimumWidth(self._min_width)

    def _entry_width(self, name: str) -> float:
        """How wide the legend is with an entry named ``name``: its sample, the spacing and its label,
        as pyqtgraph lays them out, within the layout's margins."""
        width = self._entry_widths.get(name)
        if width is None:
            label = pg.LabelItem(name, color=self.opts["labelTextColor"], justify="left",
                                 size=self.opts["labelTextSize"])
            left, _top, right, _bottom = self.layout.getContentsMargins()
            width = (LEGEND_SAMPLE_PX + self.layout.horizontalSpacing() + label.minimumWidth() + left + right)
            self._entry_widths[name] = width
        return width


def make_side_legend(plot: pg.PlotItem, min_width: int = 0) -> SideLegend:
    """A :class:`SideLegend` right of ``plot``'s view, top-aligned; the plot adds named curves to it."""
    legend = SideLegend(min_width)
    plot.layout.addItem(legend, 2, 3)
    plot.layout.setAlignment(legend, QtCore.Qt.AlignmentFlag.AlignTop | QtCore.Qt.AlignmentFlag.AlignLeft)
    plot.legend = legend
    return legend
