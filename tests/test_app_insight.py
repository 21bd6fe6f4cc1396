"""The window's analyses (pytest-qt, offscreen): the CKA map that chooses pairs, Export student…, the
run summary, the leaderboard of a compare folder, and the loss balance in the pair table."""

from __future__ import annotations

import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from featdistill_core import default_pair_count

from app.config_form import ConfigForm
from app.layers_panel import BY_CKA

from tests._tiny import tiny_config

LEFT = QtCore.Qt.MouseButton.LeftButton


@pytest.fixture
def tiny_form(qtbot, tmp_path):
    widget = ConfigForm()
    qtbot.addWidget(widget)
    widget.set_config(tiny_config(tmp_path))
    widget.wait_for_layers()
    widget.resize(560, 760)
    widget.show()
    qtbot.waitExposed(widget)
    yield widget
    widget.layers.shutdown()
    widget.wait_for_layers()


def hover_over(cka_map, i, j):
    """A real mouse-move event over cell (i, j) (QTest.mouseMove moves no mouse on the offscreen platform)."""
    viewport = cka_map.viewport()
    local = QtCore.QPointF(cka_map.cell_position(i, j))
    event = QtGui.QMouseEvent(QtCore.QEvent.Type.MouseMove, local, QtCore.QPointF(viewport.mapToGlobal(local)),
                              QtCore.Qt.MouseButton.NoButton, QtCore.Qt.MouseButton.NoButton,
                              QtCore.Qt.KeyboardModifier.NoModifier)
    QtWidgets.QApplication.sendEvent(viewport, event)


def computed_map(qtbot, form):
    panel = form.layers.cka_panel
    form.layers.layer_tabs.setCurrentWidget(panel)
    panel.probe_spin.setValue(16)
    with qtbot.waitSignal(panel.computed, timeout=60000):
        assert panel.compute()
        assert panel.compute_button.text() == "Cancel"        # the window goes on while it computes
        assert not panel.compute()                             # one at a time
    qtbot.waitUntil(lambda: not panel.task.running, timeout=5000)
    return panel


def test_cka_map_click_selects_both_layers_and_add_pair_adds_them(qtbot, tiny_form):
    panel = computed_map(qtbot, tiny_form)
    cka_map = tiny_form.findChild(QtWidgets.QWidget, "ckaMap")
    assert cka_map is panel.map
    result = panel.result
    assert result.matrix.shape == (len(result.teacher_layers), len(result.student_layers))
    assert "16 test images" in panel.status.text() and "Rows: " in panel.status.text() and panel.compute_button.text() == "Compute"
    layers = tiny_form.layers
    i, j = result.teacher_paths.index("layer1"), result.student_paths.index("layer3")
    qtbot.mouseClick(cka_map.viewport(), LEFT, pos=cka_map.cell_position(i, j))
    assert layers.teacher_picker.selected_paths() == ["layer1"]
    assert layers.student_picker.selected_paths() == ["layer3"]
    assert cka_map.selected == (i, j)
    hover = layers.cka_panel.hover.text()
    t, s = result.teacher_layers[i], result.student_layers[j]
    assert f"teacher layer1 ({'×'.join(map(str, t.shape))})" in hover
    assert f"student layer3 ({'×'.join(map(str, s.shape))})" in hover and f"CKA {result.matrix[i, j]:.3f}" in hover

    i, j = result.teacher_paths.index("layer2"), result.student_paths.index("layer2")
    hover_over(cka_map, i, j)
    qtbot.waitUntil(lambda: layers.cka_panel.hover.text().startswith("teacher layer2 ("), timeout=3000)
    qtbot.mouseClick(cka_map.viewport(), LEFT, pos=cka_map.cell_position(i, j))
    layers.method_combo.setCurrentIndex(layers.method_combo.findData("hint"))
    before = layers.pair_table.rowCount()
    check = layers.add_selected_pair()
    assert check.ok
    added = layers.pair_table.pairs()[-1]
    assert layers.pair_table.rowCount() == before + 1
    assert (added.method, added.teacher, added.student) == ("hint", ["layer2"], ["layer2"])


def test_suggest_pairs_by_cka_adds_depth_ordered_pairs(qtbot, tiny_form):
    layers = tiny_form.layers
    layers.pair_table.set_pairs([])
    layers.method_combo.setCurrentIndex(layers.method_combo.findData("hint"))
    assert layers.suggest(BY_CKA) == [] and "Compute" in layers.message.text()   # no map yet
    panel = computed_map(qtbot, tiny_form)
    layers.suggest_combo.setCurrentIndex(layers.suggest_combo.findData(BY_CKA))
    layers.suggest_button.click()
    pairs = layers.pair_table.pairs()
    k = default_pair_count(layers.teacher_picker.layers().values(), layers.student_picker.layers().values())
    assert 0 < len(pairs) <= k and all(p.method == "hint" for p in pairs)
    rows = [panel.result.teacher_paths.index(p.teacher[0]) for p in pairs]
    cols = [panel.result.student_paths.index(p.student[0]) for p in pairs]
    assert rows == sorted(set(rows)) and cols == sorted(set(cols))       # depth order, each layer once
    assert panel.map.marked == list(zip(rows, cols))                      # outlined on the map
    assert "by CKA" in layers.message.text()


def test_cka_map_reports_a_run_that_cannot_start_and_clears_for_other_models(qtbot, tiny_form, tmp_path):
    panel = tiny_form.layers.cka_panel
    good = panel.config_source

    def broken():
        raise ValueError("the form cannot be read")

    panel.config_source = broken
    assert not panel.compute() and "Cannot compute: the form cannot be read" in panel.status.text()
    assert not panel.task.running
    config = tiny_config(tmp_path)
    config.teacher.weights = str(tmp_path / "missing.safetensors")      # refused by the core's validation
    panel.config_source = lambda: (config, None)
    with qtbot.waitSignal(panel.task.ended, timeout=60000):
        assert panel.compute()
    assert panel.status.text().startswith("Cannot compute the map:") and panel.result is None
    panel.config_source = good
    computed_map(qtbot, tiny_form)
    assert panel.result is not None
    tiny_form.layers.set_models(("demo_student", None, ""), ("demo_student", None, ""))
    assert panel.result is None and panel.map.result is None and "press Compute" in panel.status.text()


# ---- Export student… ------------------------------------------------------------------------------

def test_export_dialog_writes_a_torchscript_that_loads_and_says_where(qtbot, tiny_trained_run, tmp_path):
    import torch

    from featdistill_core import onnx_available

    from app.export_dialog import ExportDialog

    dialog = ExportDialog(tiny_trained_run)
    qtbot.addWidget(dialog)
    onnx_index = dialog.format_combo.findData("onnx")
    assert dialog.format_combo.model().item(onnx_index).isEnabled() == onnx_available()[0]
    dialog.format_combo.setCurrentIndex(dialog.format_combo.findData("torchscript"))
    dialog.out_edit.setText(str(tmp_path / "shipped"))          # the shared run folder stays as it is
    with qtbot.waitSignal(dialog.task.ended, timeout=120000):
        assert dialog.start()
        assert not dialog.export_button.isEnabled()
    result = dialog.result
    assert result is not None and result.path == tmp_path / "shipped" / "student.pt"
    assert str(result.path) in dialog.message.text() and "Model card" in dialog.message.text()
    model = torch.jit.load(str(result.path))
    images = torch.randn(3, 3, 32, 32)
    assert model(images).shape == (3, 10)
    assert (tmp_path / "shipped" / "MODEL_CARD.md").is_file() and dialog.export_button.isEnabled()


def test_export_dialog_says_why_it_cannot_export(qtbot, tmp_path):
    from app.export_dialog import ExportDialog

    (tmp_path / "empty").mkdir()
    dialog = ExportDialog(tmp_path / "empty")
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.task.ended, timeout=30000):
        dialog.start()
    assert dialog.result is None and dialog.message.text().startswith("Not exported:")
    assert "Traceback" not in dialog.message.text()


# ---- the run summary ------------------------------------------------------------------------------

def test_run_summary_shows_the_runs_numbers(qtbot, tiny_trained_run):
    from featdistill_core import evaluate_run, load_run, read_pair_cka

    from app.run_summary import RunSummary

    summary = RunSummary()
    qtbot.addWidget(summary)
    assert summary.show_run(tiny_trained_run)
    metrics = load_run(tiny_trained_run).finished.metrics
    text = summary.accuracy.text()
    assert f"teacher {metrics['teacher_test_acc']:.1f} %" in text and f"student {metrics['student_test_acc']:.1f} %" in text
    pair_cka = read_pair_cka(tiny_trained_run)
    table = summary.pair_table
    assert table.rowCount() == len(pair_cka.pairs) == 2
    for row, pair in enumerate(pair_cka.pairs):
        assert table.item(row, 0).text() == f"{pair.teacher} ↔ {pair.student}"
        assert table.item(row, 2).text() == f"{pair.before:.3f}" and table.item(row, 3).text() == f"{pair.after:.3f}"
        assert table.item(row, 4).text() == f"{pair.after - pair.before:+.3f}"
    assert "hint:layer3" in summary.balance_label.text()
    with qtbot.waitSignal(summary.evaluated, timeout=60000):
        summary.show()                       # evaluated once shown, in the background
    expected = evaluate_run(tiny_trained_run)
    names = expected.class_names
    assert summary.class_table.rowCount() == len(names)
    for row, name in enumerate(names):
        t, s = expected.per_class("teacher")[row], expected.per_class("student")[row]
        assert summary.class_table.item(row, 0).text() == name
        assert summary.class_table.item(row, 1).text() == f"{t:.1f} %"
        assert summary.class_table.item(row, 2).text() == f"{s:.1f} %"
        assert summary.class_table.item(row, 3).text() == f"{s - t:+.1f} points"
    assert not summary.evaluate()                # once per run
    summary.shutdown()


def test_run_summary_of_a_folder_that_is_not_a_run(qtbot, tmp_path):
    from app.run_summary import RunSummary

    summary = RunSummary()
    qtbot.addWidget(summary)
    assert not summary.show_run(tmp_path)
    assert summary.heading.text().startswith("Cannot summarise") and not summary.evaluate_button.isEnabled()


# ---- the leaderboard ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compare_folder(tmp_path_factory):
    from featdistill_core import CompareRunner, plan_compare

    base = tmp_path_factory.mktemp("compare")
    config = tiny_config(base)
    config.pairs = []
    plan = plan_compare(config, "at,kd", "0", folder=base / "cmp")
    CompareRunner(plan).run()
    return plan.folder


def test_leaderboard_table_and_bars_come_from_the_compare_folder(qtbot, compare_folder):
    from featdistill_core import BASELINE, read_compare

    from app.leaderboard import Leaderboard

    board = Leaderboard()
    qtbot.addWidget(board)
    result = board.open_folder(compare_folder)
    rows = read_compare(compare_folder).rows
    table = board.table
    assert table.rowCount() == len(rows) == 3
    assert [table.item(i, 2).text() for i in range(3)] == [r.key for r in rows]
    for i, row in enumerate(rows):
        assert table.item(i, 3).text() == f"{row.mean:.2f} ± {row.std:.2f} %"
        assert table.item(i, 4).text() == f"{row.gain:+.2f} ± {row.gain_std:.2f} points"
        assert table.item(i, 7).text() == "done"
    gains = [r.gain for r in rows if r.key != BASELINE]
    assert board.bars is not None
    heights = list(board.bars.opts["height"])
    assert heights == pytest.approx(gains) and board.heights == pytest.approx(gains)
    assert result.folder == compare_folder


def test_a_compare_folder_opens_in_the_window_and_ticks_overlay_runs(qtbot, tmp_path, compare_folder, monkeypatch):
    from app import settings as app_settings
    from app.main_window import MainWindow
    from app.runs_panel import folder_key

    monkeypatch.setenv(app_settings.SETTINGS_ENV, str(tmp_path / "settings.ini"))
    win = MainWindow(config=tiny_config(tmp_path))
    win.show_error_dialogs = False
    win.prompt_unsaved = False
    qtbot.addWidget(win)
    win.show()
    try:
        assert win.open_run_folder(compare_folder)            # opened as a folder: the leaderboard
        board = win.insight.leaderboard
        assert win.central_tabs.currentWidget() is board and board.table.rowCount() == 3
        kd_runs = board.run_dirs("kd")
        assert len(kd_runs) == 1
        board.set_ticked("kd", True)
        key = folder_key(kd_runs[0][0])
        assert key in win.loss_plot.runs() and key in win.accuracy_plot.runs()
        assert win.loss_plot.run_label(key) == "kd · seed 0"
        board.set_ticked("kd", False)
        assert key not in win.loss_plot.runs()
        assert not win.insight.open_compare(tmp_path, report=False)
        assert any(a.objectName() == "exportStudentAction" for a in win.file_menu.actions())
    finally:
        win.shutdown(30)


# ---- loss balance in the pair table --------------------------------------------------------------

def test_check_balance_shows_each_terms_ratio_and_auto_weights(qtbot, tiny_form, tmp_path):
    from featdistill_core import AUTO_WEIGHT, measure_run, validate_run

    from app.pair_table import balance_text

    layers = tiny_form.layers
    table = layers.pair_table
    with qtbot.waitSignal(layers.balance_task.ended, timeout=120000):
        assert layers.check_balance()
        assert not layers.balance_button.isEnabled()
    expected = measure_run(validate_run(tiny_form.config()))
    assert [t.field for t in expected.terms] == ["pairs[0]", "pairs[1]"]
    for index, term in enumerate(expected.terms):
        text = table.item(index, table.BALANCE_COLUMN).text()
        assert text == balance_text(term)[0] and f"{term.loss_ratio:.2g}× CE" in text
        assert text.startswith("⚠") == bool(term.warning)
    assert any(t.warning for t in expected.terms)          # AT at 1000 swamps the tiny run's task loss
    assert "may swamp the task loss" in layers.message.text()
    table.selectRow(0)
    assert "the cross-entropy" in layers.pair_details.text()

    spin = table.cellWidget(1, 3)
    spin.set_weight(AUTO_WEIGHT)                          # "auto" in the row's weight editor
    assert spin.text() == AUTO_WEIGHT and table.pairs()[1].weight == AUTO_WEIGHT
    assert table.item(1, table.BALANCE_COLUMN).text() == ""      # measured for the old weight: gone
    assert tiny_form.config().pairs[1].weight == AUTO_WEIGHT
    with qtbot.waitSignal(layers.balance_task.ended, timeout=120000):
        layers.check_balance()
    assert table.item(1, table.BALANCE_COLUMN).text().startswith("auto → ")


def test_a_run_file_with_auto_weights_opens_in_the_pair_table(qtbot, tiny_form, tmp_path):
    from featdistill_core import AUTO_WEIGHT

    config = tiny_config(tmp_path)
    config.pairs[1].weight = AUTO_WEIGHT
    tiny_form.set_config(config)
    tiny_form.wait_for_layers()
    assert tiny_form.layers.pair_table.cellWidget(1, 3).text() == AUTO_WEIGHT
    assert tiny_form.config() == config


def test_a_remembered_leaderboard_tab_is_not_shown_without_a_compare_folder(qtbot, tmp_path, monkeypatch):
    from app import settings as app_settings
    from app.main_window import MainWindow

    monkeypatch.setenv(app_settings.SETTINGS_ENV, str(tmp_path / "settings.ini"))
    first = MainWindow(config=tiny_config(tmp_path))
    qtbot.addWidget(first)
    first.central_tabs.setTabVisible(first.insight.leaderboard_index, True)
    first.central_tabs.setCurrentIndex(first.insight.leaderboard_index)
    first.save_layout()
    first.shutdown(30)
    second = MainWindow(config=tiny_config(tmp_path))
    qtbot.addWidget(second)
    try:
        assert second.central_tabs.currentIndex() == 0
        assert not second.central_tabs.isTabVisible(second.insight.leaderboard_index)
    finally:
        second.shutdown(30)


def test_an_opened_run_folder_is_summarised_and_exportable_from_the_window(qtbot, tmp_path, tiny_trained_run,
                                                                            monkeypatch):
    from app import settings as app_settings
    from app.main_window import MainWindow

    monkeypatch.setenv(app_settings.SETTINGS_ENV, str(tmp_path / "settings.ini"))
    win = MainWindow(config=tiny_config(tmp_path))
    win.show_error_dialogs = False
    win.prompt_unsaved = False
    qtbot.addWidget(win)
    try:
        assert win.insight.ask_export() is None and "Nothing to export" not in win.status_text()
        assert "Open a run folder" in win.last_error                  # said, not a traceback
        assert win.open_run_folder(tiny_trained_run)
        assert win.insight.summary.run_dir == tiny_trained_run and win.insight.summary.pair_table.rowCount() == 2
        dialog = win.insight.ask_export()
        assert dialog.run_dir == tiny_trained_run and dialog.out_edit.text() == str(tiny_trained_run / "export")
        assert win.insight._cka_source()[1] == tiny_trained_run      # the map compares the trained networks
        dialog.close()
    finally:
        win.shutdown(30)


def test_a_run_trained_in_the_window_is_summarised_when_it_ends(qtbot, tmp_path, monkeypatch):
    """... from the one reading of its folder the worker's thread made after the run: the window does
    not read it again on the GUI thread (that held the window up 30–45 ms at every run's end)."""
    import threading

    from app import run_summary, runs_panel
    from app import settings as app_settings
    from app.main_window import MainWindow

    readings = []                                   # (thread, run ended yet) of each reading in the window

    def reading(load):
        def load_run(path, **kwargs):
            readings.append((threading.current_thread(), ending))
            return load(path, **kwargs)
        return load_run

    ending = False
    monkeypatch.setattr(run_summary, "load_run", reading(run_summary.load_run))
    monkeypatch.setattr(runs_panel, "load_run", reading(runs_panel.load_run))
    monkeypatch.setenv(app_settings.SETTINGS_ENV, str(tmp_path / "settings.ini"))
    win = MainWindow(config=tiny_config(tmp_path))
    win.show_error_dialogs = False
    win.prompt_unsaved = False
    win.baseline_box.setChecked(False)
    qtbot.addWidget(win)
    win.show()
    try:
        qtbot.waitUntil(lambda: not win.form.layers_busy(), timeout=20000)

        def run_finished(_event) -> None:
            nonlocal ending
            ending = True

        win.worker.finished.connect(run_finished)   # the last hand-over: the run's end is handled after it
        with qtbot.waitSignal(win.runEnded, timeout=120000):
            assert win.start_run()
        summary = win.insight.summary
        assert summary.run_dir == win.last_run_dir and summary.pair_table.rowCount() == 2
        assert "student" in summary.accuracy.text() and "–" not in summary.accuracy.text()
        assert win.worker.ended_run is not None and win.worker.ended_run.record.finished is not None
        entry = win.runs_panel.entry(str(win.last_run_dir.resolve()))
        assert entry is not None and entry.state == "finished" and entry.accuracy is not None
        assert [thread for thread, ended in readings if ended] == []
    finally:
        win.shutdown(30)


def test_a_damaged_compare_folder_is_named_not_a_traceback(qtbot, tmp_path):
    from featdistill_core import CompareFolderError

    from app.leaderboard import Leaderboard

    folder = tmp_path / "cmp"
    folder.mkdir()
    (folder / "compare.json").write_text("{not json", encoding="utf-8")
    board = Leaderboard()
    qtbot.addWidget(board)
    with pytest.raises(CompareFolderError, match="damaged"):
        board.open_folder(folder)
    assert board.table.rowCount() == 0 and board.bars is None
