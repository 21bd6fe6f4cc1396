"""The window as an instrument (pytest-qt, offscreen): runs side by side, the baseline after a run,
nothing discarded, no stale message, room at 1366×768, never silent, exports that say where they went."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets

from featdistill_core import PairConfig, Progress, Stage, Trainer, demo_config, load_run, save_config

from app import settings as app_settings
from app.main_window import MainWindow
from app.plots import PRIMARY
from app.runs_panel import folder_key
from tests._tiny import tiny_config

RUN_TIMEOUT_MS = 120_000
SHOTS = Path("/tmp/featdistill_shots")


@pytest.fixture(scope="module")
def runs_folder(tmp_path_factory):
    """Three finished tiny runs in one output folder: AT+hint, AT alone (a different weight), a baseline."""
    root = tmp_path_factory.mktemp("instrument")
    folders = {}
    for name, pairs in (("both", None),
                        ("at-only", [PairConfig("at", ["layer2"], ["layer2"], 100.0, "student", {})]),
                        ("baseline", [])):
        config = tiny_config(root)
        config.name = name
        if pairs is not None:
            config.pairs = pairs
        if name == "baseline":
            config.teacher.train_epochs = 0
        folders[name] = Path(Trainer(config).run().run_dir)
    return root / "runs", folders


@pytest.fixture
def settings_file(tmp_path, monkeypatch):
    path = tmp_path / "settings.ini"
    monkeypatch.setenv(app_settings.SETTINGS_ENV, str(path))
    return path


def make_window(qtbot, config=None, size=(1400, 900)):
    win = MainWindow(config=config)
    win.show_error_dialogs = False
    win.prompt_unsaved = False
    qtbot.addWidget(win)
    win.resize(*size)
    win.show()
    qtbot.waitExposed(win)
    qtbot.waitUntil(lambda: not win.form.layers_busy(), timeout=20000)
    return win


def window_config(tmp_path, epochs=1):
    config = demo_config(output_dir=str(tmp_path / "runs"))
    config.name = "tiny"
    config.device = "cpu"
    config.data.demo_train, config.data.demo_test = 150, 60
    config.teacher.train_epochs = 1
    config.epochs = epochs
    config.batch_size = 25
    config.monitor.log_every, config.monitor.snapshot_every, config.monitor.probe_images = 1, 3, 2
    return config


# ---- runs side by side --------------------------------------------------------------------------------


def test_the_runs_panel_lists_the_output_folder_and_ticked_runs_overlay_the_plots(qtbot, settings_file,
                                                                                  runs_folder):
    output, folders = runs_folder
    win = make_window(qtbot)
    win.form.output_dir.setText(str(output))
    panel = win.runs_panel
    assert panel.objectName() == "runsPanel"
    entries = {entry.name.split("-")[0]: entry for entry in panel.entries()}
    assert set(entries) == {"both", "at", "baseline"}
    both = entries["both"]
    assert both.state == "finished" and both.models == "demo_teacher → demo_student"
    assert both.methods == "at, hint" and both.accuracy is not None and both.started
    assert entries["baseline"].models == "demo_student alone" and entries["baseline"].methods == "none (baseline)"

    assert win.open_run_folder(folders["both"])                      # the run shown
    bold = [panel.table.item(r, 0).text() for r in range(panel.table.rowCount()) if panel.table.item(r, 0).font().bold()]
    assert bold == [folders["both"].name + "  (shown)"]
    panel.set_ticked(str(folders["baseline"]))
    panel.set_ticked(str(folders["at-only"]))
    baseline, at_only = folder_key(folders["baseline"]), folder_key(folders["at-only"])
    assert win.loss_plot.runs() == [PRIMARY, baseline, at_only]
    assert win.loss_plot.comparing() and win.accuracy_plot.comparing()
    shown = win.loss_plot.shown_curves()
    assert sorted(run for run, _, _ in shown) == sorted([PRIMARY, baseline, at_only])
    assert {component for _, _, component in shown} == {"total"}
    labels = win.loss_plot.legend_labels()
    assert len(labels) == 3 and labels[0].startswith("both · ") and labels[1].startswith("baseline · ")
    colours = {win.loss_plot.curve_item(run, "student", "total").opts["pen"].color().name() for run, _, _ in shown}
    assert len(colours) == 3                                          # one colour per run
    record = load_run(folders["baseline"])
    np.testing.assert_allclose(win.loss_plot.curve_data("total", baseline)[1], [e.total for e in record.steps])
    np.testing.assert_allclose(win.accuracy_plot.series("test", baseline)[1],
                               [e.test_acc for e in record.epochs if e.stage == "student"])
    assert win.loss_plot.readout_at(2.0, float(record.steps[1].total))

    panel.set_ticked(str(folders["at-only"]), False)                 # unticked: off the plots
    assert win.loss_plot.runs() == [PRIMARY, baseline]


def test_two_runs_attention_maps_side_by_side_on_the_same_probe_and_layer(qtbot, settings_file, runs_folder):
    output, folders = runs_folder
    win = make_window(qtbot)
    win.open_run_folder(folders["both"])
    win.runs_panel.set_ticked(str(folders["at-only"]))
    win.runs_panel.set_ticked(str(folders["baseline"]))             # no maps: not offered
    win.central_tabs.setCurrentWidget(win.attention_compare)
    compare = win.attention_compare
    assert [compare.a_box.itemText(i).split(" ·")[0] for i in range(compare.a_box.count())] == ["both", "at-only"]
    assert compare.layers() == [("layer2", "layer2")]                 # the layers both recorded
    compare.choose(compare.a_box.itemData(0), compare.a_box.itemData(1), ("layer2", "layer2"))
    assert tuple(compare.layer_box.currentData()) == ("layer2", "layer2")     # chosen by its layers
    with pytest.raises(ValueError, match="no layers"):
        compare.choose(compare.a_box.itemData(0), compare.a_box.itemData(1), ("layer3", "layer3"))
    view = compare.view
    assert view.snapshot_count() == load_run(folders["both"]).snapshots.__len__()
    names = [name for name, role in view.image_items() if role == "student"]
    assert len(names) == 2 and names[0].startswith("both") and names[1].startswith("at-only")
    mine, theirs = load_run(folders["both"]).snapshots[-1], load_run(folders["at-only"]).snapshots[-1]
    np.testing.assert_array_equal(view.displayed_array(names[0], 1, "student"),
                                  next(p for p in mine.pairs if p.student_layer == "layer2").student[1])
    np.testing.assert_array_equal(view.displayed_array(names[1], 1, "student"),
                                  next(p for p in theirs.pairs if p.student_layer == "layer2").student[1])
    np.testing.assert_array_equal(view.displayed_array(names[0], 1, "image"), view.displayed_array(names[1], 1, "image"))
    win.runs_panel.set_ticked(str(folders["at-only"]), False)
    assert "Tick a second run" in compare.message()


def test_the_demo_trains_the_baseline_too_and_shows_both_on_one_accuracy_plot(qtbot, settings_file, tmp_path):
    win = make_window(qtbot, window_config(tmp_path))
    win.baseline_box.setChecked(True)
    ended = []
    win.runEnded.connect(lambda: ended.append(True))
    with qtbot.waitSignal(win.runEnded, timeout=2 * RUN_TIMEOUT_MS):
        assert win.start_run()
    assert len(ended) == 1                                            # one end, after the baseline
    names = sorted(entry.name.rsplit("-", 2)[0] for entry in win.runs_panel.entries())
    assert names == ["tiny", "tiny-baseline"]
    baseline = next(entry for entry in win.runs_panel.entries() if "baseline" in entry.name)
    assert baseline.key in win.runs_panel.ticked() and baseline.methods == "none (baseline)"
    assert win.accuracy_plot.comparing() and baseline.key in win.accuracy_plot.runs()
    assert win.accuracy_plot.series("test", baseline.key)[0].size == 1
    assert win.attention_view.snapshot_count() > 0                    # the distilled run's maps stay shown
    assert "Finished the baseline" in win.status_text() and "points" in win.status_text()
    assert win.speed_label.text() == ""


# ---- nothing discarded --------------------------------------------------------------------------------


def test_unsaved_changes_are_asked_about_on_new_open_and_close(qtbot, settings_file, tmp_path, monkeypatch):
    win = make_window(qtbot)
    win.prompt_unsaved = True
    assert not win.isWindowModified() and win.windowTitle().startswith("demo run[*]")
    answers, asked = [], []

    def ask(doing):
        asked.append(doing)
        return answers.pop(0)

    monkeypatch.setattr(win, "ask_unsaved", ask)
    win.form.lr.setText("0.01")
    qtbot.waitUntil(win.isWindowModified, timeout=2000)                # the title's modified marker
    other = tmp_path / "other.toml"
    save_config(window_config(tmp_path), other)

    answers.append("cancel")
    assert not win.new_run() and win.form.lr.text() == "0.01"
    answers.append("cancel")
    assert not win.open_run_file(other) and win.form.lr.text() == "0.01"
    answers.append("cancel")
    assert not win.close() and win.isVisible()                         # closing is refused too
    answers.append("save")
    monkeypatch.setattr(win, "ask_save_run_file_as", lambda: win.save_run_file_to(tmp_path / "mine.toml"))
    assert win.open_run_file(other)                                    # saved first, then opened
    assert (tmp_path / "mine.toml").is_file()
    assert "0.01" in (tmp_path / "mine.toml").read_text()
    assert not win.isWindowModified() and win.windowTitle().startswith("other.toml[*]")
    win.form.lr.setText("0.2")
    answers.append("discard")
    assert win.new_run() and win.form.lr.text() != "0.2"
    assert asked == ["starting over from the demo", "opening another run file", "closing the window",
                     "opening another run file", "starting over from the demo"]
    win.form.lr.setText(win.form.lr.text())                            # the same value: nothing to ask
    assert win.new_run() and len(asked) == 5


def test_the_unsaved_changes_dialog_offers_save_discard_and_cancel(qtbot, settings_file):
    win = make_window(qtbot)
    seen = {}

    def answer():
        box = QtWidgets.QApplication.activeModalWidget()
        seen["buttons"] = sorted(b.text().replace("&", "") for b in box.buttons())
        box.button(QtWidgets.QMessageBox.StandardButton.Discard).click()

    QtCore.QTimer.singleShot(50, answer)
    assert win.ask_unsaved("closing the window") == "discard"
    assert seen["buttons"] == ["Cancel", "Discard", "Save"]


def test_a_launch_opens_the_demo_unless_reopening_the_last_file_is_ticked(qtbot, settings_file, tmp_path):
    path = tmp_path / "mine.toml"
    config = window_config(tmp_path)
    save_config(config, path)
    win = make_window(qtbot)
    assert win.open_run_file(path)
    win.new_run()                                                     # New (demo) and quit
    win.close()
    again = make_window(qtbot)
    assert not again.open_on_launch() and again.form.config() == demo_config()
    again.reopen_action.setChecked(True)                               # File ▸ Reopen the last run file
    again.close()
    third = make_window(qtbot)
    assert third.reopen_action.isChecked() and third.open_on_launch()
    assert third.run_file == path


def test_exports_start_in_the_run_folder_and_say_where_they_wrote(qtbot, settings_file, runs_folder):
    _output, folders = runs_folder
    win = make_window(qtbot)
    win.open_run_folder(folders["both"])
    assert win.export_directory() == str(folders["both"])
    assert win.loss_plot.export.default_path("png") == folders["both"] / "loss.png"
    target = folders["both"] / "exported-loss.csv"
    win.loss_plot.export.write("csv", target)
    assert target.is_file() and win.status_text() == f"Saved the loss plot (CSV) to {target}"
    win.attention_view.exported.emit("the attention maps (PNG)", "/x/attention.png")
    assert win.status_text() == "Saved the attention maps (PNG) to /x/attention.png"
    target.unlink()


# ---- no stale message ---------------------------------------------------------------------------------


def test_a_refusal_follows_the_fixes_and_goes_when_nothing_is_left(qtbot, settings_file, tmp_path):
    win = make_window(qtbot, window_config(tmp_path))
    table = win.form.layers.pair_table
    win.form.batch_size.setValue(0)
    table.cellWidget(1, 0).setCurrentIndex(table.cellWidget(1, 0).findData("fsp"))   # pair 2: fsp needs 2 layers
    assert not win.start_run()
    assert "Cannot start" in win.status_text() and "Pair 2" in win.status_text() and "pairs[" not in win.status_text()
    assert table.row_state(1)[0] == "refused"
    assert win.form.layers.pair_details.text().startswith("Pair 2: ")          # the table numbers pairs the same
    win.form.batch_size.setValue(25)                                   # one fixed: the line follows
    win.form.check_quick()
    assert "Batch size" not in win.status_text() and "Pair 2" in win.status_text()
    table.remove_pair(1)                                               # the cause is gone: so is the message
    win.form.check_quick()
    assert win.status_text().startswith("Ready. Press Start") and win.status_kind == "info"
    assert win.validity_label.text() == "✓ Every field is valid."


def test_a_failed_start_leaves_the_run_shown_and_stop_clears_the_eta(qtbot, settings_file, tmp_path, runs_folder):
    _output, folders = runs_folder
    win = make_window(qtbot, window_config(tmp_path))
    win.open_run_folder(folders["both"])
    steps_before = len(win.loss_plot.curve_data("total")[0])
    snaps_before = win.attention_view.snapshot_count()
    garbage = tmp_path / "bad.pt"
    garbage.write_bytes(b"not weights")
    win.form.student_weights.setText(str(garbage))                     # found only by the run's full check
    with qtbot.waitSignal(win.runEnded, timeout=RUN_TIMEOUT_MS):
        assert win.start_run()
    assert "Cannot start" in win.status_text()
    assert len(win.loss_plot.curve_data("total")[0]) == steps_before        # the previous run is still shown
    assert win.attention_view.snapshot_count() == snaps_before
    win.form.student_weights.setText("")
    win.form.check_quick()
    config = win.form.config()
    config.epochs = 3
    win.form.set_config(config)
    with qtbot.waitSignal(win.runEnded, timeout=RUN_TIMEOUT_MS):
        assert win.start_run()
        qtbot.waitUntil(lambda: "ETA" in win.speed_label.text() or "measuring" in win.speed_label.text(),
                        timeout=RUN_TIMEOUT_MS)
        win.stop_run()
    assert win.status_text().startswith("Stopped.") and win.speed_label.text() == ""


# ---- never silent ---------------------------------------------------------------------------------------


def progress(stage, images_per_sec=0.0, eta=None, stage_eta=None, step=3):
    return Progress(stage=stage, stage_index=1, stage_count=2, epoch=1, epochs=8, step=step, total_steps=1000,
                    images_per_sec=images_per_sec, eta_seconds=eta, stage_eta_seconds=stage_eta, fraction=0.01)


def test_the_teacher_stage_says_when_the_maps_will_come_and_speed_is_measured_first(qtbot, settings_file):
    win = make_window(qtbot)
    win._live_config = win.form.config()
    win._show_progress(progress(Stage.TEACHER))
    assert win.speed_label.text() == "measuring speed…"
    assert "Training the teacher first" in win.attention_view.waiting_text()
    assert "measuring its speed" in win.attention_view.waiting_text()
    win._show_progress(progress(Stage.TEACHER, 640.0, eta=150, stage_eta=95))
    assert win.speed_label.text() == "640 img/s · ETA 2:30"
    assert "in about 1:35" in win.attention_view.waiting_text()
    assert "in about 1:35" in win.attention_view.scene.title_text()
    win._show_progress(progress(Stage.STUDENT, 640.0, eta=20, stage_eta=20))
    assert "first attention snapshot comes at step 50" in win.attention_view.waiting_text()
    config = win.form.config()
    config.pairs = []
    win._live_config = config
    win._show_progress(progress(Stage.STUDENT, 640.0, eta=20, stage_eta=20))
    assert "no attention maps to show" in win.attention_view.waiting_text()


def test_help_has_a_guide_and_about(qtbot, settings_file):
    win = make_window(qtbot)
    help_menu = next(a.menu() for a in win.menuBar().actions() if a.text() == "&Help")
    titles = [a.text() for a in help_menu.actions()]
    assert "&Guide…" in titles and "&About featdistill…" in titles
    next(a for a in help_menu.actions() if a.text() == "&Guide…").trigger()
    guide = win.findChild(QtWidgets.QDialog, "guideDialog")
    text = guide.findChild(QtWidgets.QTextBrowser).toPlainText()
    for words in ("Feature distillation", "Attention maps", "Runs", "Where runs are saved", "metrics.jsonl"):
        assert words in text
    guide.close()
    next(a for a in help_menu.actions() if a.text() == "&About featdistill…").trigger()
    about = win.findChild(QtWidgets.QMessageBox, "aboutDialog")
    assert "featdistill" in about.text() and "PySide6" in about.text()
    about.close()


# ---- room for what matters --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1366, 768), (1400, 900)])
def test_every_control_is_reachable_and_the_maps_show_two_probe_rows(qtbot, settings_file, runs_folder, size):
    _output, folders = runs_folder
    win = make_window(qtbot, size=size)
    win.open_run_folder(folders["both"])
    win.attention_view.set_probe_indices([0, 1, 2, 3])
    QtWidgets.QApplication.processEvents()
    assert win.size().toTuple() == size                                 # the window fits the screen
    shot = win.grab()
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert shot.save(str(SHOTS / f"window_{size[0]}x{size[1]}.png"))
    assert (shot.width(), shot.height()) == size
    view = win.attention_view
    assert view.visible_probe_rows() >= 2                               # two full probe rows, no scrolling
    viewport = view.scroll.viewport()
    assert viewport.height() >= 300 and viewport.width() >= 500
    window_rect = win.rect()
    for widget in (win.start_button, win.pause_button, win.stop_button, win.baseline_box, win.progress_bar,
                   win.loss_plot.export.png_button, win.accuracy_plot.export.csv_button, view.play_button,
                   view.scale_box, view.export_button, win.loss_plot.log_box, win.loss_plot.smoothing_box):
        assert widget.isVisible(), widget.objectName()
        corner = widget.mapTo(win, QtCore.QPoint(widget.width() - 1, widget.height() - 1))
        assert window_rect.contains(corner), (widget.objectName(), corner)
    assert win.loss_plot.plot_widget.height() >= 150


def test_the_layout_is_remembered_across_launches(qtbot, settings_file):
    win = make_window(qtbot)
    win.tabifyDockWidget(win.loss_dock, win.accuracy_dock)             # the user stacks the plots as tabs
    win.central_tabs.setCurrentIndex(1)
    win.close()
    again = make_window(qtbot)
    assert again.accuracy_dock in again.tabifiedDockWidgets(again.loss_dock)
    assert again.central_tabs.currentIndex() == 1
    again.reset_layout()
    assert again.accuracy_dock not in again.tabifiedDockWidgets(again.loss_dock)


def test_the_layers_buttons_stay_put_when_the_message_grows(qtbot, settings_file):
    win = make_window(qtbot)
    win.form.setCurrentIndex(1)
    panel = win.form.layers
    QtWidgets.QApplication.processEvents()
    before = panel.add_button.mapTo(panel, QtCore.QPoint(0, 0))
    panel._say("one line", "#000")
    QtWidgets.QApplication.processEvents()
    panel._say("a long message " * 30, "#000")
    QtWidgets.QApplication.processEvents()
    assert panel.add_button.mapTo(panel, QtCore.QPoint(0, 0)) == before
    assert panel.pair_table.mapTo(panel, QtCore.QPoint(0, 0)).y() >= before.y()


def test_locked_fields_keep_grey_placeholders(qtbot, settings_file):
    win = make_window(qtbot)
    win.form.set_editable(False)
    edit = win.form.teacher_weights.line_edit
    palette = edit.palette()
    group, role = palette.ColorGroup, palette.ColorRole
    assert palette.color(group.Disabled, role.PlaceholderText) == palette.color(group.Disabled, role.Text)
