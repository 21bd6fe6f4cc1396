"""Colours, colour maps and the plot theme shared by the window's live-view widgets.

One light theme for every widget: white plot background, dark text, thin light-grey grid. Curve
colours come from the Okabe–Ito palette (Okabe & Ito, "Color Universal Design", 2008), which stays
distinguishable for the common forms of colour blindness. Attention maps use a perceptually uniform
sequential map (viridis); differences use a diverging blue–white–red map centred on zero, so "no
difference" is white and the sign reads at a glance.

Nothing here touches global pyqtgraph options: widgets pass the theme to each item explicitly.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6 import QtGui

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


def palette_colour(index: int) -> str:
    """The ``index``-th curve colour, cycling through :data:`PALETTE`."""
    return PALETTE[index % len(PALETTE)]


def sequential_colormap() -> pg.ColorMap:
    """The colour map for attention maps (low = dark blue, high = yellow)."""
    return pg.colormap.get(SEQUENTIAL_MAP)


def diverging_colormap() -> pg.ColorMap:
    """The colour map for differences: blue for negative, white for zero, red for positive."""
    return pg.colormap.get(DIVERGING_MAP)


def lookup_table(cmap: pg.ColorMap):
    """A :data:`LUT_SIZE`-entry uint8 RGBA look-up table of ``cmap`` for an ImageItem."""
    return cmap.getLookupTable(nPts=LUT_SIZE, alpha=True)


def style_plot_item(plot: pg.PlotItem, *, x_label: str, y_label: str, title: str | None = None) -> None:
    """Apply the shared light theme to ``plot``: dark axes and labels, a faint grid, axis titles.

    ``x_label``/``y_label`` should carry the unit, e.g. ``"step"``, ``"top-1 accuracy (%)"``.
    """
    text_pen = pg.mkPen(FOREGROUND)
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen(text_pen)
        axis.setTextPen(text_pen)
        axis.setStyle(maxTickLevel=1)   # major and minor grid lines only: lighter to look at and to paint
    label_style = {"color": FOREGROUND, "font-size": "10pt"}
    plot.setLabel("bottom", x_label, **label_style)
    plot.setLabel("left", y_label, **label_style)
    if title:
        plot.setTitle(title, color=FOREGROUND, size="11pt")
    plot.showGrid(x=True, y=True, alpha=GRID_ALPHA)


def make_legend(plot: pg.PlotItem) -> pg.LegendItem:
    """A legend in the plot's top-right corner with a translucent white box and dark text."""
    return plot.addLegend(
        offset=(-10, 10),
        brush=pg.mkBrush(255, 255, 255, 210),
        pen=pg.mkPen(CELL_BORDER),
        labelTextColor=FOREGROUND,
        labelTextSize="9pt",
    )


def text_colour() -> QtGui.QColor:
    """The theme's foreground as a QColor (for Qt widgets drawn next to the plots)."""
    return QtGui.QColor(FOREGROUND)
