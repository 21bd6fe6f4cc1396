"""``featdistill-gui --self-test``: open the window on a short demo run, train it, check what arrived.

The run is the embedded demo made small (a few hundred generated images, one teacher epoch and one
student epoch, frequent logging and snapshots), written to a temporary folder that is removed
afterwards; the user's settings are not touched. The test passes when the run finished and the loss
curves, the accuracy plot and the attention view all received data. With ``screenshot`` the main
window is saved as a PNG at the end.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from featdistill_core import RunConfig, demo_config

from app.config_form import LAYERS_TAB

DEFAULT_TIMEOUT_S = 300.0


def self_test_config(output_dir: str) -> RunConfig:
    """The demo run, shortened to a few seconds of training."""
    config = demo_config(seed=0, output_dir=output_dir)
    config.name = "self-test"
    config.data.demo_train = 384
    config.data.demo_test = 128
    config.teacher.train_epochs = 1
    config.epochs = 2
    config.batch_size = 32
    config.monitor.log_every = 2
    config.monitor.snapshot_every = 4
    config.monitor.probe_images = 4
    return config


@dataclass
class SelfTestResult:
    ok: bool
    message: str
    seconds: float


def run_self_test(screenshot: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> SelfTestResult:
    """Run the self-test in the running QApplication; never raises for a failed check."""
    from app.main_window import MainWindow

    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="featdistill-selftest-"))
    settings = QtCore.QSettings(str(workdir / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    window = MainWindow(config=self_test_config(str(workdir / "runs")), settings=settings)
    window.show_error_dialogs = False
    window.prompt_unsaved = False
    outcome: dict = {}
    window.worker.finished.connect(lambda event: outcome.setdefault("finished", event))
    window.worker.failed.connect(lambda event: outcome.setdefault("failed", event))
    window.worker.refused.connect(lambda error: outcome.setdefault("refused", error))
    try:
        window.show()
        _wait(lambda: not window.form.layers_busy(), 60)
        if not window.start_run():
            return _result(False, f"the demo run was refused: {window.status_text()}", started)
        _wait(lambda: not window.worker.running, timeout_s)
        if window.worker.running:
            return _result(False, f"the run did not end within {timeout_s:.0f} s", started)
        message = _check(window, outcome)
        if screenshot:
            window.form.setCurrentIndex(LAYERS_TAB)      # the pairs being distilled, next to their maps
            QtWidgets.QApplication.processEvents()
            path = Path(screenshot)
            path.parent.mkdir(parents=True, exist_ok=True)
            if not window.grab().save(str(path)):
                return _result(False, f"could not save the screenshot to {path}", started)
        return _result(message is None, message or "ok", started)
    finally:
        window.close()
        window.deleteLater()
        QtWidgets.QApplication.processEvents()
        shutil.rmtree(workdir, ignore_errors=True)


def _check(window, outcome: dict) -> str | None:
    """None when everything arrived, else what is missing."""
    if "refused" in outcome:
        return f"the demo run was refused: {outcome['refused']}"
    if "failed" in outcome:
        return f"training failed: {outcome['failed'].error}"
    finished = outcome.get("finished")
    if finished is None or finished.stopped:
        return "the run did not finish"
    if not any(len(window.loss_plot.curve_data(name)[0]) for name in window.loss_plot.curve_names()):
        return "the loss plot received no data"
    if not window.accuracy_plot.series_names():
        return "the accuracy plot received no data"
    if window.attention_view.snapshot_count() == 0:
        return "the attention view received no snapshot"
    return None


def _wait(condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        QtWidgets.QApplication.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.005)


def _result(ok: bool, message: str, started: float) -> SelfTestResult:
    return SelfTestResult(ok, message, time.perf_counter() - started)
