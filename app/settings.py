"""Where the window remembers things between launches: the last run file and its layout.

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
WINDOW_GEOMETRY = "layout/geometry"
WINDOW_STATE = "layout/state"
MAIN_SPLITTER = "layout/main_splitter"
LIVE_SPLITTER = "layout/live_splitter"
CONFIG_TAB = "layout/config_tab"


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
