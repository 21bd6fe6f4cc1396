"""MapImage: the window's own rendering of maps and probe images gives pyqtgraph's pixels, faster."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

import pyqtgraph as pg  # noqa: E402
from PySide6 import QtGui  # noqa: E402

from app import colormaps  # noqa: E402


def premultiplied_pixels(image: QtGui.QImage) -> np.ndarray:
    image = image.convertToFormat(QtGui.QImage.Format.Format_ARGB32_Premultiplied)
    return np.array([[image.pixel(x, y) for x in range(image.width())] for y in range(image.height())], np.uint32)


def rendered(item_class, data, levels, lut=None) -> QtGui.QImage:
    item = item_class(axisOrder="row-major")
    item.setImage(data, autoLevels=False, levels=levels)
    if lut is not None:
        item.setLookupTable(lut)
    item_class.render(item) if item_class is pg.ImageItem else item.render()
    return item.qimage


@pytest.mark.parametrize("cmap", [colormaps.sequential_colormap, colormaps.diverging_colormap])
@pytest.mark.parametrize("levels", [(0.0, 1.0), (-0.3, 2.5)])
def test_a_map_renders_to_the_same_pixels_as_pyqtgraph(qapp, cmap, levels):
    rng = np.random.default_rng(0)
    data = rng.normal(0.5, 0.8, (13, 17)).astype(np.float32)      # beyond the levels both ways
    data[0, :3] = levels[0], levels[1], np.nan                     # the ends exactly, and a NaN
    lut = colormaps.lookup_table(cmap())
    mine = rendered(colormaps.MapImage, data, levels, lut)
    assert mine.format() == QtGui.QImage.Format.Format_ARGB32_Premultiplied
    np.testing.assert_array_equal(premultiplied_pixels(mine),
                                  premultiplied_pixels(rendered(pg.ImageItem, data, levels, lut)))
    assert premultiplied_pixels(mine)[0, 2] == 0                   # NaN: transparent


def test_an_rgb_image_renders_to_the_same_pixels_as_pyqtgraph(qapp):
    data = np.random.default_rng(1).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    mine = rendered(colormaps.MapImage, data, (0, 255))
    np.testing.assert_array_equal(premultiplied_pixels(mine),
                                  premultiplied_pixels(rendered(pg.ImageItem, data, (0, 255))))


def test_what_it_does_not_render_itself_pyqtgraph_renders(qapp):
    data = np.random.default_rng(2).integers(0, 1000, (5, 6)).astype(np.uint16)    # an integer map
    mine = rendered(colormaps.MapImage, data, (0, 1000), colormaps.lookup_table(colormaps.sequential_colormap()))
    assert mine.format() == QtGui.QImage.Format.Format_ARGB32_Premultiplied
    np.testing.assert_array_equal(
        premultiplied_pixels(mine),
        premultiplied_pixels(rendered(pg.ImageItem, data, (0, 1000),
                                      colormaps.lookup_table(colormaps.sequential_colormap()))))
