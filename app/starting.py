"""The window a launch shows first, while PyTorch loads (Linux): Qt only, no torch, no featdistill_core.

``import torch`` takes a second or more (several on a busy machine), and the workbench window needs it
(its forms list the models and methods). On Linux Qt may come first, so ``featdistill-gui`` shows this
window at once, in the place the workbench window will take, saying what it is doing, imports torch on a
background thread while this window stays responsive, then builds the workbench window and closes
this one. On Windows torch must be imported before Qt (``c10.dll`` fails to load after it), so there the
launch keeps that order and shows no starting window.
"""

from __future__ import annotations

import threading
import time

from PySide6 import QtCore, QtGui, QtWidgets

from app import settings as app_settings

TITLE = "featdistill — feature-distillation workbench"


class StartingWindow(QtWidgets.QWidget):
    """"Starting featdistill…", with a busy bar and what is being loaded."""

    painted = QtCore.Signal()

    def __init__(self, settings: QtCore.QSettings | None = None):
        super().__init__()
        self.setObjectName("startingWindow")
        self.setWindowTitle(TITLE)
        self._painted = False
        title = QtWidgets.QLabel("<h2>featdistill</h2>")
        title.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.step_label = QtWidgets.QLabel("Loading PyTorch…")
        self.step_label.setObjectName("startingStep")
        self.step_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        bar = QtWidgets.QProgressBar()
        bar.setRange(0, 0)                       # busy
        bar.setMaximumWidth(320)
        box = QtWidgets.QVBoxLayout(self)
        box.addStretch(1)
        box.addWidget(title)
        box.addWidget(self.step_label)
        box.addWidget(bar, 0, QtCore.Qt.AlignmentFlag.AlignHCenter)
        box.addStretch(1)
        self.resize(1400, 900)
        settings = settings if settings is not None else app_settings.open_settings()
        geometry = settings.value(app_settings.WINDOW_GEOMETRY)
        if isinstance(geometry, QtCore.QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)          # where the workbench window will be

    def say(self, text: str) -> None:
        self.step_label.setText(text)
        QtWidgets.QApplication.processEvents(QtCore.QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents)

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:  # noqa: N802 (Qt override)
        super().paintEvent(event)
        if not self._painted:
            self._painted = True
            QtCore.QTimer.singleShot(0, self.painted.emit)


def import_in_background(modules: tuple[str, ...], poll_s: float = 0.02) -> None:
    """Import ``modules`` on a background thread while the GUI thread keeps handling events; returns
    when they are imported (re-raises the import's error on this thread)."""
    import importlib

    failure: list[BaseException] = []

    def load() -> None:
        try:
            for name in modules:
                importlib.import_module(name)
        except BaseException as exc:  # noqa: BLE001 - handed to the GUI thread
            failure.append(exc)

    thread = threading.Thread(target=load, name="featdistill-import", daemon=True)
    thread.start()
    while thread.is_alive():
        QtWidgets.QApplication.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 10)
        thread.join(poll_s)
        time.sleep(0)
    if failure:
        raise failure[0]
