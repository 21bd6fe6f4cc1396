"""The run form, the layer pickers and the pair table, driven as a user would (pytest-qt, offscreen)."""

from __future__ import annotations

import html

import pytest

from featdistill_core import (
    METHODS, ConfigError, LayerCount, Method, PairCheck, PairConfig, Problem, Taps, available_devices, demo_config,
)
from featdistill_core.losses.registry import Refusal

from app.config_form import FIELDS, LAYERS_TAB, TRAINING_TAB, ConfigForm
from app.method_help import method_help_html
from app.pair_table import PairOptionsDialog, describe_check, options_summary


@pytest.fixture
def form(qtbot):
    widget = ConfigForm()
    qtbot.addWidget(widget)
    widget.set_config(demo_config())
    widget.wait_for_layers()
    yield widget
    widget.wait_for_layers()


def choose_model(qtbot, form, side: str, name: str) -> None:
    combo = form.teacher_arch if side == "teacher" else form.student_arch
    with qtbot.waitSignal(form.layersLoaded, timeout=20000):
        combo.setCurrentText(name)
        combo.modelChosen.emit()


def select(picker, paths):
    picker.select_paths(paths)
    assert picker.selected_paths() == paths


# ---- the form ------------------------------------------------------------------------------------

def test_form_shows_and_returns_the_same_config(form):
    config = demo_config()
    assert form.config() == config
    assert form.teacher_train.isChecked() and not form.teacher_weights.isEnabled()
    assert not form.data_path.isEnabled()            # the demo needs no folder


def test_every_field_has_a_tooltip(form):
    for name, (box, _tab) in form._boxes.items():
        assert box.editor.toolTip().strip(), f"{name} has no tooltip"


def test_a_number_field_with_text_is_marked_at_the_field(form):
    form.lr.setText("fast")
    error = form.check_quick()
    assert isinstance(error, ConfigError) and error.field == "optim.lr"
    assert "must be a number" in form.field_error("optim.lr")
    assert form.lr.property("invalid") == "true"
    form.lr.setText("0.1")
    assert form.check_quick() is None
    assert form.field_error("optim.lr") == ""
    assert form.lr.property("invalid") == "false"


def test_core_range_check_is_shown_at_its_field_and_its_tab(form):
    form.lr.setText("0")
    form.setCurrentIndex(0)
    with pytest.raises(ConfigError) as caught:
        form.check_before_start()
    assert caught.value.field == "optim.lr"
    assert form.field_error("optim.lr") == "Learning rate must be greater than 0; got 0."
    assert form.currentIndex() == TRAINING_TAB


def test_teacher_without_weights_and_not_trained_is_refused_at_the_weights_field(form):
    form.teacher_train.setChecked(False)
    assert form.teacher_weights.isEnabled()
    with pytest.raises(ConfigError):
        form.check_before_start()
    assert "give its weights file" in form.field_error("teacher.weights")


def test_edits_are_checked_shortly_after_typing(qtbot, form):
    with qtbot.waitSignal(form.validityChanged, timeout=3000) as signal:
        form.momentum.setText("1.5")
    assert signal.args[0].startswith("Momentum must be below 1")        # by its label, not its key
    assert "must be below 1" in form.field_error("optim.momentum")


def test_device_combo_enables_only_present_devices(form):
    options = available_devices()
    model = form.device.model()
    shown = {form.device.itemData(i): model.item(i).isEnabled() for i in range(form.device.count())}
    assert shown == {option.spec: option.available for option in options}
    assert shown["cpu"] and shown["auto"]


def test_dataset_choice_enables_its_fields(form):
    form.data_name.set_value("imagefolder")
    assert form.data_path.isEnabled() and form.image_size.isEnabled()
    assert not form.demo_train.isEnabled()
    with pytest.raises(ConfigError) as caught:
        form.check_before_start()
    assert caught.value.field == "data.path"
    assert "needs the folder" in form.field_error("data.path")


# ---- layer pickers --------------------------------------------------------------------------------

def test_layer_trees_show_module_paths_with_output_shapes(form):
    teacher = form.layers.teacher_picker
    tree = teacher.tree
    assert tree.objectName() == "teacherLayerTree"
    assert form.layers.student_picker.tree.objectName() == "studentLayerTree"
    shapes = teacher.shapes()
    # demo_teacher: 16-channel stem at 32×32, then three stages halving the size, doubling the width
    assert shapes["layer1"] == (16, 32, 32)
    assert shapes["layer2"] == (32, 16, 16)
    assert shapes["layer3"] == (64, 8, 8)
    assert shapes["fc"] == (10,)
    top = [tree.topLevelItem(i).text(0) for i in range(tree.topLevelItemCount())]
    assert top[:3] == ["conv1", "bn1", "layer1"]
    layer2 = tree.topLevelItem(top.index("layer2"))
    assert layer2.text(2) == "32×16×16"


def test_filter_box_keeps_matches_and_their_parents(form):
    picker = form.layers.student_picker
    picker.set_filter("bn2")
    visible = picker.visible_paths()
    assert visible and all("bn2" in p or any(v.startswith(p + ".") for v in visible) for p in visible)
    assert "fc" not in visible and "layer2" in visible   # layer2 stays: it holds layer2.0.bn2
    picker.set_filter("")
    assert len(picker.visible_paths()) == len(picker.layers())


def test_choosing_another_model_rebuilds_its_tree(qtbot, form):
    choose_model(qtbot, form, "teacher", "resnet8x4")
    shapes = form.layers.teacher_picker.shapes()
    assert shapes["layer3"] == (256, 8, 8)     # resnet8x4: widths 64/128/256 at 32/16/8
    assert form.config().teacher.arch == "resnet8x4"
    # the demo pairs are re-checked against the new teacher: layer2 is now 128×16×16, AT still works
    assert form.layers.pair_table.row_state(0)[0] in ("direct", "adapter")


def test_unknown_model_is_marked_at_its_field(qtbot, form):
    choose_model(qtbot, form, "student", "resnet_does_not_exist")
    assert "unknown model" in form.field_error("student.arch")
    assert form.layers.student_picker.layers() == {}
    assert form.layers.pair_table.row_state(0)[0] == "refused"


# ---- pairs ----------------------------------------------------------------------------------------

def test_add_pair_from_selected_layers(form):
    panel = form.layers
    table = panel.pair_table
    before = table.rowCount()
    panel.method_combo.setCurrentIndex(panel.method_combo.findData("hint"))
    assert panel.weight_spin.value() == METHODS["hint"].default_weight
    select(panel.teacher_picker, ["layer2"])
    select(panel.student_picker, ["layer2"])
    check = panel.add_selected_pair()
    assert check.ok
    assert table.rowCount() == before + 1
    added = table.pairs()[-1]
    assert (added.method, added.teacher, added.student, added.weight) == ("hint", ["layer2"], ["layer2"], 100.0)
    state, text = table.row_state(before)
    # teacher layer2 is 32 channels, student layer2 16: a regressor is needed and named
    assert state == "adapter" and "16→32" in text
    assert form.config().pairs[-1] == added


def test_impossible_pair_is_refused_with_the_reason(form):
    panel = form.layers
    before = panel.pair_table.rowCount()
    panel.method_combo.setCurrentIndex(panel.method_combo.findData("at"))
    select(panel.teacher_picker, ["layer3"])      # a 128×8×8 map
    select(panel.student_picker, ["fc"])          # a 10-vector
    check = panel.add_selected_pair()
    assert not check.ok
    assert panel.pair_table.rowCount() == before
    assert "4-D feature maps" in panel.message.text() and "(10,)" in panel.message.text()


def test_fsp_needs_two_layers_on_each_side(form):
    panel = form.layers
    table = panel.pair_table
    before = table.rowCount()
    panel.method_combo.setCurrentIndex(panel.method_combo.findData("fsp"))
    select(panel.teacher_picker, ["layer2"])
    select(panel.student_picker, ["layer2"])
    assert not panel.add_selected_pair().ok
    assert "takes 2 layers on each side: select them in each tree" in panel.message.text()
    assert table.rowCount() == before
    select(panel.teacher_picker, ["layer1", "layer2"])
    select(panel.student_picker, ["layer1", "layer2"])
    check = panel.add_selected_pair()
    assert check.ok and table.rowCount() == before + 1
    assert table.pairs()[-1].teacher == ["layer1", "layer2"]


def test_changing_a_rows_method_rechecks_it(form):
    table = form.layers.pair_table
    combo = table.cellWidget(0, 0)
    combo.setCurrentIndex(combo.findData("fsp"))
    state, text = table.row_state(0)
    assert state == "refused" and "takes 2" in text
    assert table.pairs()[0].weight == METHODS["fsp"].default_weight
    with pytest.raises(ConfigError) as caught:
        form.check_before_start()
    assert caught.value.field == "pairs[0].teacher"      # the core's form check: two layers per side
    assert form.currentIndex() == LAYERS_TAB
    assert "Teacher layers: " in table.row_state(0)[1] and "takes 2 layers on each side" in table.row_state(0)[1]


def test_suggest_pairs_matches_stages_of_equal_size(form):
    panel = form.layers
    panel.pair_table.set_pairs([])
    panel.method_combo.setCurrentIndex(panel.method_combo.findData("at"))
    added = panel.suggest()
    # both demo networks have stages at 32×32, 16×16 and 8×8 named layer1..layer3
    assert [(p.teacher, p.student) for p in added] == [(["layer1"], ["layer1"]), (["layer2"], ["layer2"]),
                                                        (["layer3"], ["layer3"])]
    assert panel.suggest() == []          # nothing new the second time
    assert panel.pair_table.rowCount() == 3


def test_remove_button_removes_the_row(form):
    table = form.layers.pair_table
    count = table.rowCount()
    second = table.pairs()[1]
    table.cellWidget(0, 7).click()
    assert table.rowCount() == count - 1
    assert table.pairs()[0] == second


def test_pair_options_dialog_edits_options_and_stage(qtbot, form):
    table = form.layers.pair_table
    dialog = table.edit_options(0)
    assert isinstance(dialog, PairOptionsDialog)
    combo = dialog._editors["normalize"]
    combo.setCurrentIndex(combo.findData("l1"))
    dialog._editors["p"].setValue(3.0)
    dialog.stage_combo.setCurrentIndex(dialog.stage_combo.findData("init"))
    dialog.accept()
    pair = table.pairs()[0]
    assert pair.options == {"p": 3.0, "normalize": "l1"} and pair.stage == "init"
    assert table.cellWidget(0, 4).text() == "p=3, l1, init stage"
    # an init-stage pair needs init epochs: the core's check names the field
    error = form.check_quick()
    assert error is not None and error.field == "init_epochs"


def test_method_help_shows_formula_and_paper(qtbot, form):
    dialog = form.layers.pair_table.show_help(0)
    qtbot.addWidget(dialog)
    text = method_help_html("at")
    assert "Zagoruyko" in text and "mean_c |F_c|^p" in text
    assert dialog.isVisible()
    dialog.close()


def test_describe_check_and_options_summary():
    assert describe_check(PairCheck(ok=True, adapter="none"))[0] == "direct"
    assert describe_check(PairCheck(ok=True, adapter="1×1 conv"))[1] == "✓ via 1×1 conv"
    assert describe_check(PairCheck(ok=False, reason="no"))[1] == "✗ no"
    pair = PairConfig(method="hint", teacher=["a"], student=["b"], options={"regressor": "conv"})
    assert options_summary(pair) == "conv"


def test_own_model_factory_can_be_typed_in(qtbot, form, tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "from torch import nn\n"
        "def tiny(num_classes):\n"
        "    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),\n"
        "                         nn.Flatten(), nn.Linear(6, num_classes))\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    choose_model(qtbot, form, "student", "my_models:tiny")
    shapes = form.layers.student_picker.shapes()
    assert shapes["0"] == (6, 32, 32) and shapes["4"] == (10,)
    assert form.field_error("student.arch") == ""
    assert form.config().student.arch == "my_models:tiny"


# ---- every problem at its field -------------------------------------------------------------------

def test_every_problem_is_marked_at_once_and_each_goes_when_fixed(form):
    table = form.layers.pair_table
    form.lr.setText("fast")
    form.batch_size.setValue(0)
    combo = table.cellWidget(0, 0)
    two_layer = next(key for key, info in METHODS.items() if info.layers.minimum == info.layers.maximum == 2)
    combo.setCurrentIndex(combo.findData(two_layer))
    error = form.check_quick()
    assert {"optim.lr", "batch_size", "pairs[0].teacher"} <= {p.field for p in error.problems}
    assert "must be a number" in form.field_error("optim.lr")
    assert "must be at least 1" in form.field_error("batch_size")
    assert table.row_state(0)[0] == "refused" and "takes 2 layers" in table.row_state(0)[1]
    form.lr.setText("0.01")
    form.check_quick()
    assert form.field_error("optim.lr") == "" and "must be at least 1" in form.field_error("batch_size")
    form.batch_size.setValue(32)
    combo.setCurrentIndex(combo.findData(form.config(check=False).pairs[1].method))
    assert form.check_quick() is None
    assert form.field_error("batch_size") == "" and table.row_state(0)[0] in ("direct", "adapter")


def test_problems_found_by_validation_stay_until_their_field_is_edited(form):
    table = form.layers.pair_table
    error = ConfigError.from_problems([
        Problem("teacher.weights", "cannot be read: not a weights file"),
        Problem("pairs[1].student", "no layer 'x' in demo_student"),
        Problem("kd", "the shorthand cannot be built"),
        Problem("", "the run file as a whole"),
    ])
    elsewhere = form.show_error(error, focus=True)
    assert elsewhere == [Problem("", "the run file as a whole")]       # no field: the caller says it
    assert form.field_error("teacher.weights") == "Teacher weights file cannot be read: not a weights file."
    assert form.field_error("kd.weight") == "The logit KD settings: the shorthand cannot be built."   # a section: at its first field
    assert table.row_state(1) == ("refused", "✗ Student layers: no layer 'x' in demo_student.")
    assert form.currentIndex() == 0                                     # the first problem's tab
    form.check_quick()                                                  # another check keeps them
    assert form.field_error("teacher.weights") and table.row_state(1)[0] == "refused"
    form.teacher_weights.setText("/elsewhere/teacher.safetensors")      # edited: its mark goes
    form.check_quick()
    assert form.field_error("teacher.weights") == "" and table.row_state(1)[0] == "refused"
    table.cellWidget(1, 3).setValue(2.0)                                # the row changes: its mark goes
    form.check_quick()
    assert table.row_state(1)[0] in ("direct", "adapter")
    assert form.field_error("kd.weight")                                # not edited yet


def test_the_form_table_drives_showing_and_reading_every_field(form):
    config = demo_config()
    config.name, config.seed, config.device, config.mixed_precision = "other", 7, "cpu", True
    config.epochs, config.batch_size, config.ce_weight, config.init_epochs = 3, 16, 0.5, 2
    config.output_dir = "/tmp/elsewhere"
    config.teacher.train_epochs = 3
    config.student.weights = "/tmp/student.pt"
    config.data.augment, config.data.demo_train, config.data.demo_test = True, 300, 100
    config.optim.name, config.optim.lr, config.optim.momentum = "sgd", 0.1, 0.8
    config.optim.weight_decay, config.optim.schedule, config.optim.milestones, config.optim.gamma = 1e-4, "step", [2, 3], 0.5
    config.kd.weight, config.kd.temperature = 0.5, 2.0
    config.monitor.log_every, config.monitor.snapshot_every, config.monitor.probe_images = 3, 7, 5
    form.set_config(config)
    assert form.config() == config
    for field in FIELDS:
        assert form.field_widget(field.path) is getattr(form, field.attr)
        assert field.tooltip and form.field_widget(field.path).toolTip() == field.tooltip
    # the teacher box decides which of its two fields reaches the run file
    form.teacher_train.setChecked(False)
    form.teacher_weights.setText("/tmp/teacher.safetensors")
    read = form.config(check=False)
    assert (read.teacher.weights, read.teacher.train_epochs) == ("/tmp/teacher.safetensors", 0)


# ---- methods come from the registry ---------------------------------------------------------------

def first_method(condition) -> str:
    return next(key for key, info in METHODS.items() if condition(info))


def test_a_method_on_the_logits_is_added_without_choosing_layers(form):
    panel = form.layers
    table = panel.pair_table
    before = table.rowCount()
    logits = first_method(lambda info: info.on_logits)
    panel.method_combo.setCurrentIndex(panel.method_combo.findData(logits))
    assert "no layers to select" in panel.selection_label.text()
    select(panel.teacher_picker, ["layer2"])          # a selection is ignored
    check = panel.add_selected_pair()
    assert check.ok and table.rowCount() == before + 1
    added = form.config().pairs[-1]
    assert (added.method, added.teacher, added.student) == (logits, [], [])
    assert table.item(before, 1).text() == "(logits)"
    assert form.check_quick() is None


def test_switching_a_row_to_a_method_on_the_logits_puts_its_layers_aside(form):
    table = form.layers.pair_table
    combo = table.cellWidget(0, 0)
    layered = table.pairs()[0]
    combo.setCurrentIndex(combo.findData(first_method(lambda info: info.on_logits)))
    assert table.pairs()[0].teacher == [] and table.row_state(0)[0] == "direct"
    combo.setCurrentIndex(combo.findData(layered.method))
    assert (table.pairs()[0].teacher, table.pairs()[0].student) == (layered.teacher, layered.student)


def _fake_method(monkeypatch, key, layers, taps, check):
    import torch

    method = Method(key=key, title=f"Test method {key}", paper="-", formula="-", summary="for a test",
                    options={}, layers=layers, taps=taps, default_weight=1.0, check=check,
                    build=lambda context: torch.nn.Identity())
    monkeypatch.setitem(METHODS, key, method)
    return method


def _panel_on_demo_models(qtbot):
    from app.layer_picker import cached_layers
    from app.layers_panel import LayersPanel

    panel = LayersPanel()
    qtbot.addWidget(panel)
    panel.set_models(("demo_teacher", list(cached_layers("demo_teacher", 10, 32)), ""),
                     ("demo_student", list(cached_layers("demo_student", 10, 32)), ""))
    return panel


def test_a_method_with_a_layer_range_takes_several_layers_on_each_side(qtbot, monkeypatch):
    _fake_method(monkeypatch, "many_layers_test", LayerCount(1, None), Taps.OUTPUT, lambda s, t, o: "none")
    panel = _panel_on_demo_models(qtbot)
    panel.method_combo.setCurrentIndex(panel.method_combo.findData("many_layers_test"))
    assert "1 or more layers on each side" in panel.selection_label.text()
    assert "Ctrl+click" in panel.selection_label.text()
    select(panel.teacher_picker, ["layer1", "layer2", "layer3"])
    select(panel.student_picker, ["layer1", "layer2"])
    assert not panel.add_selected_pair().ok
    assert "selected 3 in the teacher and 2 in the student" in panel.message.text()
    select(panel.student_picker, ["layer1", "layer2", "layer3"])
    assert panel.add_selected_pair().ok
    assert panel.pair_table.pairs()[-1].student == ["layer1", "layer2", "layer3"]


def test_a_method_tapping_layer_inputs_is_checked_on_the_inputs(qtbot, monkeypatch):
    def vectors_only(student, teacher, options):
        if any(len(shape) != 1 for shape in student + teacher):
            raise Refusal("needs flat vectors")
        return f"linear {student[0][0]}→{teacher[0][0]}"

    _fake_method(monkeypatch, "inputs_test", LayerCount(1, 1), Taps.INPUT, vectors_only)
    panel = _panel_on_demo_models(qtbot)
    panel.method_combo.setCurrentIndex(panel.method_combo.findData("inputs_test"))
    tree = panel.teacher_picker.tree
    assert tree.headerItem().text(2) == "Input shape"
    fc = next(tree.topLevelItem(i) for i in range(tree.topLevelItemCount()) if tree.topLevelItem(i).text(0) == "fc")
    assert fc.text(2) == "64"                           # what fc receives, not its 10 outputs
    select(panel.teacher_picker, ["fc"])
    select(panel.student_picker, ["fc"])
    check = panel.add_selected_pair()
    assert check.ok and check.adapter == "linear 32→64"
    select(panel.teacher_picker, ["layer3"])
    select(panel.student_picker, ["layer3"])
    assert not panel.add_selected_pair().ok and "needs flat vectors" in panel.message.text()
    first = first_method(lambda info: info.taps == Taps.OUTPUT)
    panel.method_combo.setCurrentIndex(panel.method_combo.findData(first))
    assert tree.headerItem().text(2) == "Output shape" and fc.text(2) == "10"


def test_suggest_places_each_method_at_its_reference_layers(form):
    panel = form.layers
    panel.pair_table.set_pairs([])
    logits = first_method(lambda info: info.placement == "logits")
    panel.method_combo.setCurrentIndex(panel.method_combo.findData(logits))
    assert [(p.teacher, p.student) for p in panel.suggest()] == [([], [])]
    middle = first_method(lambda info: info.placement == "middle_stage")
    panel.method_combo.setCurrentIndex(panel.method_combo.findData(middle))
    assert [(p.teacher, p.student) for p in panel.suggest()] == [(["layer2"], ["layer2"])]
    pairs = first_method(lambda info: info.placement == "stage_pairs")
    panel.method_combo.setCurrentIndex(panel.method_combo.findData(pairs))
    added = panel.suggest()
    assert [p.teacher for p in added] == [["layer1", "layer2"], ["layer2", "layer3"]]
    assert panel.pair_table.rowCount() == 4


def test_method_lists_and_help_come_from_the_registry(form):
    panel = form.layers
    keys = [panel.method_combo.itemData(i) for i in range(panel.method_combo.count())]
    assert keys == list(METHODS)
    row_combo = panel.pair_table.cellWidget(0, 0)
    assert [row_combo.itemData(i) for i in range(row_combo.count())] == list(METHODS)
    for key, info in METHODS.items():
        assert info.title in panel.method_combo.toolTip()
        text = method_help_html(key)
        assert html.escape(info.paper) in text and html.escape(info.layers.describe()) in text


def test_a_weights_file_is_checked_as_it_is_typed(qtbot, form, tmp_path):
    form.teacher_train.setChecked(False)
    with qtbot.waitSignal(form.validityChanged, timeout=3000):
        form.teacher_weights.setText(str(tmp_path / "teacher.safetensors"))
    assert form.field_error("teacher.weights") == (
        f"Teacher weights file: weights file not found: {tmp_path / 'teacher.safetensors'}.")
    from featdistill_core import create_model, save_weights
    save_weights(create_model("demo_teacher", 10), tmp_path / "teacher.safetensors")
    with qtbot.waitSignal(form.validityChanged, timeout=3000):
        form.teacher_weights.setText(str(tmp_path / "teacher.safetensors") + " ")     # typed again: found now
    assert form.field_error("teacher.weights") == ""
    form.data_name.setCurrentIndex(form.data_name.findData("cifar10"))
    form.data_path.setText(str(tmp_path / "no-cifar"))
    form.check_quick()
    assert "Dataset folder" in form.field_error("data.path") and "does not exist" in form.field_error("data.path")


def test_field_titles_and_sentences_name_fields_by_their_labels():
    from app.config_form import field_title, problem_sentence, problems_summary

    assert field_title("teacher.train_epochs") == "Teacher epochs"
    assert field_title("teacher.weights") == "Teacher weights file"
    assert field_title("pairs[7].teacher") == "Pair 8, teacher layers"       # 1-based, as the table shows it
    assert field_title("pairs[0]") == "Pair 1"
    assert field_title("") == ""
    assert problem_sentence(Problem("batch_size", "must be at least 1; got 0")) == "Batch size must be at least 1; got 0."
    assert problem_sentence(Problem("", "the run file is empty")) == "The run file is empty."
    text = problems_summary([Problem("optim.lr", "must be greater than 0; got 0"),
                             Problem("pairs[7].student", "needs as many layers as the teacher side")])
    assert text == ("2 problems: Learning rate must be greater than 0; got 0. "
                    "Pair 8, student layers needs as many layers as the teacher side.")
    assert "pairs[" not in text and "optim." not in text
