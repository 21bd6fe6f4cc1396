"""The main window end to end (pytest-qt, offscreen): start, watch, pause, stop, close, files.

Runs are the demo made tiny (150 generated images, one short epoch per stage) so each takes seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6 import QtCore, QtWidgets

from featdistill_core import Stage, Trainer, demo_config, load_config, load_run, save_config

from app import settings as app_settings
from app.follow import POLL_S
from app.main_window import PROGRESS_STEPS, MainWindow

RUN_TIMEOUT_MS = 90_000
OBJECT_NAMES = ("startButton", "stopButton", "pauseButton", "lossPlot", "attentionView", "layerPairTable",
                "teacherLayerTree", "studentLayerTree", "progressBar")


def tiny_config(tmp_path: Path, epochs: int = 1):
    config = demo_config(output_dir=str(tmp_path / "runs"))
    config.name = "tiny"
    config.device = "cpu"
    config.data.demo_train = 150
    config.data.demo_test = 60
    config.teacher.train_epochs = 1
    config.epochs = epochs
    config.batch_size = 25          # 6 steps per epoch
    config.monitor.log_every = 1
    config.monitor.snapshot_every = 3
    config.monitor.probe_images = 2
    return config


@pytest.fixture
def settings_file(tmp_path, monkeypatch):
    path = tmp_path / "settings.ini"
    monkeypatch.setenv(app_settings.SETTINGS_ENV, str(path))
    return path


@pytest.fixture
def window(qtbot, tmp_path, settings_file):
    win = MainWindow(config=tiny_config(tmp_path))
    win.show_error_dialogs = False
    win.prompt_unsaved = False
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: not win.form.layers_busy(), timeout=20000)
    yield win
    win.shutdown(30)


def test_constructible_without_arguments_with_named_widgets(qtbot, settings_file):
    win = MainWindow()
    qtbot.addWidget(win)
    for name in OBJECT_NAMES:
        assert win.findChild(QtWidgets.QWidget, name) is not None, name
    assert win.form.config() == demo_config()          # opens on the demo, ready to press Start
    assert win.start_button.isEnabled() and not win.stop_button.isEnabled()
    assert "Press Start" in win.status_text()
    win.shutdown(30)


def test_a_run_shows_progress_curves_and_attention_then_its_folder_reopens(qtbot, window):
    progress, formats = [], []
    window.worker.progressChanged.connect(lambda p: progress.append(p.fraction))
    window.worker.progressChanged.connect(lambda p: formats.append(window.progress_bar.format()))
    with qtbot.waitSignal(window.runEnded, timeout=RUN_TIMEOUT_MS):
        assert window.start_run()
        assert not window.start_button.isEnabled() and window.stop_button.isEnabled()
    assert "Finished" in window.status_text(), window.status_text()
    assert window.progress_bar.value() == PROGRESS_STEPS
    assert progress and progress == sorted(progress) and progress[-1] == 1.0
    # the core's stage plan, stage by stage
    assert any(f.startswith("Stage 1 of 2 — Training the teacher · epoch 1/1") for f in formats), formats
    assert any(f.startswith("Stage 2 of 2 — Distilling the student · epoch 1/1") for f in formats), formats
    # 6 steps per epoch (150 images / 25), logged every step: both stages have their curves
    x, y = window.loss_plot.curve_data("total")
    assert list(x) == list(range(1, 7)) and all(v > 0 for v in y)
    components = {"ce"} | {pair.name for pair in window.form.config().pairs}    # e.g. "at:layer2<-layer2"
    assert components <= set(window.loss_plot.curve_names())
    assert len(window.loss_plot.curve_data("teacher total")[0]) == 6
    assert window.accuracy_plot.series("test")[0].tolist() == [1]
    snapshots = window.attention_view.snapshot_count()
    assert snapshots == 2                       # steps 3 and 6 (the epoch's end)
    assert window.start_button.isEnabled() and not window.pause_button.isEnabled()

    run_dir = Path(window.worker.run_dir)
    record = load_run(run_dir)
    assert record.finished is not None and not record.finished.stopped
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    totals = [line["total"] for line in lines if line["type"] == "step" and line["stage"] == "student"]
    assert window.loss_plot.curve_data("total")[1].tolist() == pytest.approx(totals)

    window.new_run()
    assert window.loss_plot.curve_names() == [] and window.attention_view.snapshot_count() == 0
    assert window.open_run_folder(run_dir)
    assert list(window.loss_plot.curve_data("total")[0]) == list(range(1, 7))
    assert window.attention_view.snapshot_count() == len(record.snapshots) == snapshots
    assert window.form.config() == record.config
    assert "Showing the saved run" in window.status_text()


def test_pause_resume_and_stop(qtbot, window, tmp_path):
    window.form.set_config(tiny_config(tmp_path, epochs=200))
    steps = []
    window.worker.stepsReceived.connect(lambda batch: steps.extend(batch))
    assert window.start_run()
    qtbot.waitUntil(lambda: len(steps) >= 2, timeout=RUN_TIMEOUT_MS)
    window.pause_button.click()
    assert window.worker.paused and window.pause_button.text() == "Resume"
    # The training process holds at its next step; what it wrote before arrives within one reading of
    # its folder (app.follow.POLL_S), so wait that out before counting.
    qtbot.wait(int(3000 * POLL_S))
    window.worker.drain()
    held = len(steps)
    qtbot.wait(int(3000 * POLL_S))
    window.worker.drain()
    assert len(steps) <= held + 1
    assert "PAUSED" in window.progress_bar.format()
    window.pause_button.click()
    assert not window.worker.paused and window.pause_button.text() == "Pause"
    qtbot.waitUntil(lambda: len(steps) > held + 2, timeout=RUN_TIMEOUT_MS)
    with qtbot.waitSignal(window.runEnded, timeout=RUN_TIMEOUT_MS):
        window.stop_button.click()
    assert window.status_text().startswith("Stopped.")
    assert not window.worker.running and window.start_button.isEnabled()
    run_dir = Path(window.worker.run_dir)
    trained = "student" if any(s.stage == "student" for s in steps) else "teacher"
    assert (run_dir / f"{trained}.safetensors").is_file()  # what was trained is kept (and only that)
    assert (run_dir / "checkpoint-last.pt").is_file()


def test_closing_during_a_run_stops_it_cleanly(qtbot, window, tmp_path, settings_file):
    window.form.set_config(tiny_config(tmp_path, epochs=200))
    steps = []
    window.worker.stepsReceived.connect(lambda batch: steps.extend(batch))
    assert window.start_run()
    qtbot.waitUntil(lambda: len(steps) >= 1, timeout=RUN_TIMEOUT_MS)
    assert window.close()
    assert not window.worker.running
    # the layout was remembered on the way out
    stored = QtCore.QSettings(str(settings_file), QtCore.QSettings.Format.IniFormat)
    assert not stored.value(app_settings.WINDOW_GEOMETRY).isEmpty()


class ExplodingTrainer(Trainer):
    """The real trainer, failing at the student's first step."""

    def _losses(self, planned, batch, progress):
        if planned.stage is Stage.STUDENT:
            raise RuntimeError("the loss exploded (test)")
        return super()._losses(planned, batch, progress)


def test_a_training_error_shows_a_dialog_and_keeps_the_files(qtbot, window):
    window.show_error_dialogs = True
    window.worker.trainer_factory = ExplodingTrainer
    with qtbot.waitSignal(window.errorShown, timeout=RUN_TIMEOUT_MS) as shown:
        assert window.start_run()
    assert "the loss exploded (test)" in shown.args[0]
    qtbot.waitUntil(lambda: not window.worker.running, timeout=10000)
    box = window.error_box
    assert box is not None and box.isVisible() and "the loss exploded" in box.text()
    assert "RuntimeError" in box.detailedText()
    run_dir = Path(window.worker.run_dir)
    assert (run_dir / "error.txt").is_file() and (run_dir / "metrics.jsonl").is_file()
    assert window.start_button.isEnabled()          # the window stays usable
    box.close()


def test_start_is_refused_for_an_invalid_form(qtbot, window):
    window.form.batch_size.setValue(0)
    assert not window.start_run()
    assert not window.worker.running
    assert "Batch size must be at least 1" in window.status_text()       # by its label, not "batch_size"
    assert "must be at least 1" in window.form.field_error("batch_size")


def test_every_problem_found_by_the_run_check_is_marked_at_its_field(qtbot, window, tmp_path):
    from featdistill_core import create_model, save_weights

    other = tmp_path / "wrn.safetensors"                          # weights of another network
    save_weights(create_model("wrn_16_1", 10), other)
    garbage = tmp_path / "student.pt"
    garbage.write_bytes(b"not a pytorch file")
    window.form.teacher_train.setChecked(False)
    window.form.teacher_weights.setText(str(other))
    window.form.student_weights.setText(str(garbage))
    with qtbot.waitSignal(window.runEnded, timeout=RUN_TIMEOUT_MS):
        assert window.start_run()
        assert window.progress_bar.format() == "Checking the run…"     # checked on the worker thread
    teacher = window.form.field_error("teacher.weights")
    assert teacher.startswith("Teacher weights file: weights file") and "is for a different network" in teacher
    assert "\n" not in teacher and "layer1.0.conv1.weight" not in teacher    # one line; the keys are in the details
    assert window.form.field_error("student.weights").startswith("Student starting weights")
    assert "Cannot start" in window.status_text() and "2 problems" in window.status_text()
    assert "missing keys" in window.status_details() and "details…" in window.status_label.text()
    assert window.validity_label.text().startswith("⚠ 2 to fix:")
    assert not (tmp_path / "runs").exists()
    window.form.student_weights.setText("")                             # fixed: its mark goes
    window.form.check_quick()
    assert window.form.field_error("student.weights") == "" and window.form.field_error("teacher.weights")


def test_save_and_open_a_run_file_and_remember_it(qtbot, window, tmp_path, settings_file):
    path = tmp_path / "mine.toml"
    window.form.lr.setText("0.02")
    assert window.save_run_file_to(path)
    saved = load_config(path)
    assert saved.optim.lr == 0.02 and saved == window.form.config()
    assert window.windowTitle().startswith("mine.toml")

    other = tiny_config(tmp_path)
    other.student.arch = "resnet8"
    other_path = save_config(other, tmp_path / "other.toml")
    assert window.open_run_file(other_path)
    assert window.form.config() == other
    window.save_layout()

    second = MainWindow()
    qtbot.addWidget(second)
    assert second.open_last_run_file()
    assert second.run_file == other_path.resolve()
    assert second.form.config() == other
    second.shutdown(30)


def test_a_broken_run_file_shows_the_error_and_keeps_the_form(qtbot, window, tmp_path):
    before = window.form.config()
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "x"\nepochs = "many"\n', encoding="utf-8")
    errors = []
    window.errorShown.connect(errors.append)
    assert not window.open_run_file(broken)
    assert len(errors) == 1 and "Epochs must be a whole number; got 'many'. (in the file: epochs)" in errors[0]
    assert window.form.config() == before
    not_toml = tmp_path / "garbage.toml"
    not_toml.write_text("this is [not toml", encoding="utf-8")
    assert not window.open_run_file(not_toml)
    assert "not valid TOML" in window.last_error


def test_opening_a_folder_that_is_not_a_run_is_an_error(qtbot, window, tmp_path):
    assert not window.open_run_folder(tmp_path)
    assert "is not a run folder" in window.last_error


def test_error_dialog_is_not_blocking(qtbot, window, tmp_path):
    window.show_error_dialogs = True
    assert not window.open_run_folder(tmp_path)        # returns at once: the box does not block
    box = window.error_box
    assert box.isVisible() and not box.isModal()
    box.close()
