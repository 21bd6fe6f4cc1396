"""Saving the attention view: one snapshot as a PNG, every snapshot as an animated GIF or a numbered
PNG sequence, and the "Export" button that asks where.

The frames are what the view draws (:meth:`app.attention_view.AttentionView.render_frames`), so an
export looks exactly like the window. GIFs are written with Pillow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from app import colormaps

MAX_GIF_FPS = 50


def qimage_to_pil(image: QtGui.QImage):
    """A copy of ``image`` as a Pillow RGB image."""
    from PIL import Image

    rgba = image.convertToFormat(QtGui.QImage.Format.Format_RGBA8888)
    width, height = rgba.width(), rgba.height()
    buffer = np.frombuffer(rgba.constBits(), dtype=np.uint8, count=rgba.sizeInBytes())
    array = buffer.reshape(height, rgba.bytesPerLine())[:, : width * 4].reshape(height, width, 4)
    return Image.fromarray(array[..., :3].copy(), "RGB")


def same_size(frames: list) -> list:
    """Pillow frames padded with white to the largest width and height (the layout can change over a run)."""
    from PIL import Image

    width = max(frame.width for frame in frames)
    height = max(frame.height for frame in frames)
    padded = []
    for frame in frames:
        if frame.size != (width, height):
            canvas = Image.new("RGB", (width, height), colormaps.BACKGROUND)
            canvas.paste(frame, (0, 0))
            frame = canvas
        padded.append(frame)
    return padded


def save_png(image: QtGui.QImage, path) -> Path:
    path = Path(path)
    if not image.save(str(path), "PNG"):
        raise OSError(f"could not write the PNG file {path}")
    return path


def save_png_sequence(images: Sequence[QtGui.QImage], folder) -> list[Path]:
    """``attention_0001.png``, ``attention_0002.png`` … in ``folder`` (made if missing)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [save_png(image, folder / f"attention_{number:04d}.png") for number, image in enumerate(images, start=1)]


def check_fps(fps: float) -> None:
    if not 0 < fps <= MAX_GIF_FPS:
        raise ValueError(f"GIF frame rate must be above 0 and at most {MAX_GIF_FPS} frames per second, got {fps}")


def save_gif(images: Sequence[QtGui.QImage], path, fps: float = 4) -> Path:
    """An animated GIF of ``images``, looping, ``fps`` frames a second."""
    check_fps(fps)
    path = Path(path)
    frames = same_size([qimage_to_pil(image) for image in images])
    duration = max(20, int(round(1000 / fps)))      # GIF delays are in 10 ms units; 20 ms is the floor
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:],
                   duration=duration, loop=0, disposal=1)
    return path


class ExportButton(QtWidgets.QToolButton):
    """"Export" with a menu: this snapshot as PNG, all as GIF, all as PNG sequence.

    Each entry asks for a file or folder, starting in ``view.export_directory()`` (the run folder,
    when the window knows one), and calls the matching ``export_*`` of ``view``; then the view emits
    ``exported(what, path)`` so the window can say where it wrote. A failure (a folder that cannot
    be written) is shown in a message box.
    """

    def __init__(self, view, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._view = view
        self.setObjectName("attentionExport")
        self.setText("Export")
        self.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.setPopupMode(QtWidgets.QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QtWidgets.QMenu(self)
        self.png_action = menu.addAction("This snapshot as PNG…")
        self.gif_action = menu.addAction("All snapshots as animated GIF…")
        self.sequence_action = menu.addAction("All snapshots as PNG sequence…")
        self.setMenu(menu)
        self.setEnabled(False)
        self.png_action.triggered.connect(self._ask_png)
        self.gif_action.triggered.connect(self._ask_gif)
        self.sequence_action.triggered.connect(self._ask_sequence)

    def _start(self, name: str = "") -> str:
        folder = Path(self._view.export_directory() or Path.cwd())
        return str(folder / name) if name else str(folder)

    def _ask_png(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save attention maps as PNG",
                                                        self._start("attention.png"), "PNG image (*.png)")
        if path:
            self._run(lambda: self._view.export_png(path), "the attention maps (PNG)", path)

    def _ask_gif(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save attention evolution as GIF",
                                                        self._start("attention.gif"), "GIF animation (*.gif)")
        if path:
            self._run(lambda: self._view.export_gif(path), "the attention evolution (GIF)", path)

    def _ask_sequence(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Folder for the PNG sequence",
                                                            self._start())
        if folder:
            self._run(lambda: self._view.export_png_sequence(folder), "every snapshot (PNG sequence)", folder)

    def _run(self, export: Callable[[], object], what: str = "", where: str = "") -> bool:
        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
        try:
            export()
        except (OSError, ValueError) as error:
            QtWidgets.QMessageBox.warning(self, "Export failed", str(error))
            return False
        finally:
            QtWidgets.QApplication.restoreOverrideCursor()
        self._view.exported.emit(what, str(where))
        return True
