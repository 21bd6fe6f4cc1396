"""Where the window remembers things between launches: the last run file, whether to reopen it, and
the layout (window geometry and where each panel is docked).

The settings live in Qt's per-user store (``QSettings("featdistill", "featdistill")``: the registry
on Windows, a plist on macOS, ``~/.config/featdistill/featdistill.conf`` on Linux). Setting the
environment variable ``FEATDISTILL_SETTINGS`` to a file path stores them in that INI file instead;
tests and benchmarks use it so they never read or change a user's settings.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6 import QtCore

SETTINGS_ENV = "FEATDISTILL_SETTINGS"
ORGANISATION = "featdistill"
APPLICATION = "featdistill"

LAST_RUN_FILE = "files/last_run_file"
LAST_DIRECTORY = "files/last_directory"
REOPEN_LAST = "files/reopen_last"       # open the last run file at launch (else: the demo)
WINDOW_GEOMETRY = "layout/geometry"
WINDOW_STATE = "layout/docks"           # QMainWindow.saveState of the docked panels (0.1's "layout/state" is ignored)
CONFIG_TAB = "layout/config_tab"
CENTRAL_TAB = "layout/central_tab"


def open_settings() -> QtCore.QSettings:
    """The settings store: the INI file named by ``$FEATDISTILL_SETTINGS``, else the user's."""
    path = os.environ.get(SETTINGS_ENV)
    if path:
        return QtCore.QSettings(path, QtCore.QSettings.Format.IniFormat)
    return QtCore.QSettings(ORGANISATION, APPLICATION)


def last_run_file(settings: QtCore.QSettings) -> Path | None:
    """The run file opened or saved last, if it still exists."""
    value = settings.value(LAST_RUN_FILE, "", type=str)
    if value and Path(value).is_file():
        return Path(value)
    return None


def remember_run_file(settings: QtCore.QSettings, path: str | Path) -> None:
    path = Path(path).resolve()
    settings.setValue(LAST_RUN_FILE, str(path))
    settings.setValue(LAST_DIRECTORY, str(path.parent))


def last_directory(settings: QtCore.QSettings) -> str:
    """The folder of the last file chosen, for file dialogs to start in ("" when none)."""
    value = settings.value(LAST_DIRECTORY, "", type=str)
    return value if value and Path(value).is_dir() else ""


def reopen_last(settings: QtCore.QSettings) -> bool:
    """Whether a launch without a run file reopens the last one (False: it opens on the demo)."""
    return settings.value(REOPEN_LAST, False, type=bool)


def set_reopen_last(settings: QtCore.QSettings, on: bool) -> None:
    settings.setValue(REOPEN_LAST, bool(on))
