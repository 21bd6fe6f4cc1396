"""LossPlot and AccuracyPlot: data kept raw, EMA and log clipping on display, stages, legend toggling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6 import QtCore  # noqa: E402

from app.plots import (  # noqa: E402
    LOG_FLOOR, REDRAW_INTERVAL_S, AccuracyPlot, GrowableArray, LossPlot, ema, round_above, round_box,
)
from featdistill_core.events import EpochEvent, StepEvent  # noqa: E402

SHOTS = Path("/tmp/featdistill_shots")


def reference_ema(values, alpha, initial=None):
    """The textbook loop, to check the vectorised version against."""
    out, previous = [], initial
    for value in values:
        previous = value if previous is None else alpha * previous + (1 - alpha) * value
        out.append(previous)
    return np.array(out)


def steps(stage, first, count, components=("ce", "kd"), value=lambda name, step: 1.0 / step, total_steps=10**6):
    events = []
    for step in range(first, first + count):
        losses = {name: value(name, step) for name in components}
        events.append(StepEvent(stage=stage, step=step, epoch=1 + step // 10, total_steps=total_steps, losses=losses,
                                total=sum(losses.values()), lr=0.05, images_per_sec=100.0))
    return events


@pytest.fixture
def loss_plot(qtbot):
    """A shown plot that hands every batch over at once (the 4 Hz throttle has its own test)."""
    widget = LossPlot()
    qtbot.addWidget(widget)
    widget.resize(640, 360)
    widget.redraw_interval_s = 0.0
    widget.show()
    qtbot.waitExposed(widget)
    return widget


@pytest.fixture
def accuracy_plot(qtbot):
    widget = AccuracyPlot()
    qtbot.addWidget(widget)
    widget.resize(640, 360)
    return widget


# -- helpers ----------------------------------------------------------------------------------------


def test_growable_array_keeps_every_value_across_growth():
    array = GrowableArray(capacity=2)
    array.extend([1, 2, 3])
    array.extend(np.arange(4, 101))
    np.testing.assert_array_equal(array.view(), np.arange(1, 101))
    assert len(array) == 100
    assert array.last() == 100.0


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.9, 0.999])
def test_ema_matches_the_textbook_loop(alpha):
    values = np.random.default_rng(1).normal(size=5000)
    np.testing.assert_allclose(ema(values, alpha), reference_ema(values, alpha), rtol=1e-9, atol=1e-12)


def test_ema_continues_from_an_initial_value():
    values = np.random.default_rng(2).random(300)
    whole = ema(values, 0.8)
    first = ema(values[:120], 0.8)
    rest = ema(values[120:], 0.8, initial=first[-1])
    np.testing.assert_allclose(np.concatenate([first, rest]), whole, rtol=1e-12)


def test_ema_skips_non_finite_values_and_keeps_them_visible():
    values = np.array([1.0, np.nan, 3.0, np.inf, 5.0])
    smoothed = ema(values, 0.5)
    assert np.isnan(smoothed[1]) and np.isinf(smoothed[3])
    np.testing.assert_allclose(smoothed[[0, 2, 4]], reference_ema([1.0, 3.0, 5.0], 0.5))


def test_ema_rejects_a_factor_out_of_range():
    with pytest.raises(ValueError, match=r"smoothing must be between 0 and 0.999, got 1.0"):
        ema([1.0, 2.0], 1.0)


# -- LossPlot ---------------------------------------------------------------------------------------


def test_loss_curves_appear_as_components_arrive_and_keep_raw_values(loss_plot):
    loss_plot.add_steps(steps("student", 1, 5))
    loss_plot.add_steps(steps("student", 6, 5, components=("ce", "kd", "at:layer2"),
                              value=lambda name, step: step * (3.0 if name == "at:layer2" else 1.0)))
    assert loss_plot.curve_names() == ["total", "ce", "kd", "at:layer2"]

    x, y = loss_plot.curve_data("ce")
    np.testing.assert_array_equal(x, np.arange(1, 11))
    np.testing.assert_allclose(y, [1 / s for s in range(1, 6)] + list(range(6, 11)))
    x, y = loss_plot.curve_data("at:layer2")
    np.testing.assert_array_equal(x, np.arange(6, 11))
    np.testing.assert_allclose(y, 3.0 * np.arange(6, 11))
    _, total = loss_plot.curve_data("total")
    np.testing.assert_allclose(total[-1], 10 + 10 + 30)


def test_curves_hand_their_data_to_pyqtgraph(loss_plot):
    loss_plot.add_steps(steps("student", 1, 20))
    item = loss_plot.plot_items()["kd"]
    np.testing.assert_allclose(item.getData()[1], 1.0 / np.arange(1, 21))
    assert item in loss_plot.plot_item.items


def test_unknown_curve_name_is_reported_with_the_known_ones(loss_plot):
    loss_plot.add_steps(steps("student", 1, 2))
    with pytest.raises(KeyError, match=r"no loss curve named 'fsp'; curves: total, ce, kd"):
        loss_plot.curve_data("fsp")


def test_teacher_stage_curves_are_prefixed_and_the_student_stage_is_shown(loss_plot):
    loss_plot.add_steps(steps("teacher", 1, 10, components=("ce",)))
    assert loss_plot.stage() == "teacher"          # the only stage so far: follow it
    loss_plot.add_steps(steps("student", 1, 10))
    assert loss_plot.curve_names() == ["teacher total", "teacher ce", "total", "ce", "kd"]
    assert loss_plot.stage() == "student"
    items = loss_plot.plot_items()
    assert items["ce"] in loss_plot.plot_item.items
    assert items["teacher ce"] not in loss_plot.plot_item.items

    loss_plot.set_stage("teacher")
    assert items["teacher ce"] in loss_plot.plot_item.items
    assert items["ce"] not in loss_plot.plot_item.items
    np.testing.assert_allclose(items["teacher ce"].getData()[1], 1.0 / np.arange(1, 11))
    # a stage picked by hand stays picked while the run goes on
    loss_plot.add_steps(steps("student", 11, 5))
    assert loss_plot.stage() == "teacher"
    with pytest.raises(ValueError, match=r"unknown stage 'init'; stages seen: teacher, student"):
        loss_plot.set_stage("init")


def test_smoothing_changes_what_is_drawn_not_the_stored_data(loss_plot):
    rng = np.random.default_rng(3)
    noise = rng.random(400)
    loss_plot.add_steps(steps("student", 1, 200, value=lambda name, step: float(noise[step - 1])))
    loss_plot.set_smoothing(0.9)
    loss_plot.add_steps(steps("student", 201, 200, value=lambda name, step: float(noise[step - 1])))

    _, raw = loss_plot.curve_data("ce")
    np.testing.assert_allclose(raw, noise)
    _, shown = loss_plot.displayed_data("ce")
    np.testing.assert_allclose(shown, reference_ema(noise, 0.9), rtol=1e-9)
    np.testing.assert_allclose(loss_plot.plot_items()["ce"].getData()[1], shown)
    assert loss_plot.smoothing_box.value() == pytest.approx(0.9)

    loss_plot.set_smoothing(0.0)
    np.testing.assert_allclose(loss_plot.displayed_data("ce")[1], noise)
    with pytest.raises(ValueError, match="smoothing must be between 0 and 0.999"):
        loss_plot.set_smoothing(-0.1)


def test_smoothing_box_drives_the_plot(loss_plot):
    loss_plot.add_steps(steps("student", 1, 50))
    loss_plot.smoothing_box.setValue(0.5)
    assert loss_plot.smoothing() == 0.5
    np.testing.assert_allclose(loss_plot.displayed_data("kd")[1], reference_ema(1.0 / np.arange(1, 51), 0.5))


def test_log_axis_clips_values_that_have_no_logarithm(loss_plot):
    values = {1: 2.0, 2: 0.0, 3: -1.0, 4: 1e-9, 5: 0.5}
    loss_plot.add_steps(steps("student", 1, 5, components=("ce",), value=lambda name, step: values[step]))
    loss_plot.set_log_y(True)
    assert loss_plot.log_box.isChecked()
    _, shown = loss_plot.displayed_data("ce")
    np.testing.assert_allclose(shown, [2.0, LOG_FLOOR, LOG_FLOOR, LOG_FLOOR, 0.5])
    np.testing.assert_allclose(loss_plot.curve_data("ce")[1], [2.0, 0.0, -1.0, 1e-9, 0.5])
    # pyqtgraph draws log10 of what it is given: every point must stay finite
    drawn = loss_plot.plot_items()["ce"].getData()[1]
    assert np.isfinite(drawn).all()
    np.testing.assert_allclose(drawn, np.log10(shown))
    # later points are clipped too, and switching back restores the raw values
    loss_plot.add_steps(steps("student", 6, 1, components=("ce",), value=lambda name, step: 0.0))
    assert loss_plot.displayed_data("ce")[1][-1] == LOG_FLOOR
    loss_plot.set_log_y(False)
    np.testing.assert_allclose(loss_plot.displayed_data("ce")[1], [2.0, 0.0, -1.0, 1e-9, 0.5, 0.0])


class _LeftClick:
    """The parts of a pyqtgraph MouseClickEvent that a legend sample reads."""

    accepted = False

    def button(self):
        return QtCore.Qt.MouseButton.LeftButton

    def accept(self):
        self.accepted = True


def test_new_points_reach_pyqtgraph_at_most_once_a_second(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    assert plot.redraw_interval_s == REDRAW_INTERVAL_S == 1.0
    plot.add_steps(steps("student", 1, 5))
    item = plot.plot_items()["ce"]
    plot.add_steps(steps("student", 6, 5))                       # hidden: not handed over
    assert item.getData()[0].size == 5 and plot.curve_data("ce")[0].size == 10
    plot.show()
    qtbot.waitExposed(plot)
    assert item.getData()[0].size == 10                         # caught up when shown
    plot.add_steps(steps("student", 11, 5))
    plot.add_steps(steps("student", 16, 5))
    assert item.getData()[0].size < 20                          # within 1 s of the last hand-over
    qtbot.waitUntil(lambda: item.getData()[0].size == 20, timeout=2500)   # the catch-up timer
    plot.add_steps(steps("student", 21, 1, components=("ce", "kd", "fsp")))
    qtbot.waitUntil(lambda: plot.plot_items()["fsp"].getData()[0].size == 1, timeout=300)   # a new curve: at once


def test_auto_range_fits_a_round_box_that_moves_only_when_the_data_leaves_it(loss_plot):
    loss_plot.add_steps(steps("student", 1, 90, components=("ce",), value=lambda name, step: 1.0 / step))
    loss_plot.flush()                                            # the hand-over's redraw (next turn) now
    box = loss_plot._anchor.box
    assert box == pytest.approx((1, 100, 0.0, 1.0))             # total = ce = 1/step ≤ 1, in steps of 0.2
    view = loss_plot.plot_item.getViewBox()
    view.updateAutoRange()                                       # what the next repaint does
    before = view.viewRange()
    assert before[0][0] <= 1 and before[0][1] >= 100 and before[1][0] <= 0 and before[1][1] >= 1
    loss_plot.add_steps(steps("student", 91, 9, components=("ce",), value=lambda name, step: 1.0 / step))
    loss_plot.flush()                                            # the hand-over's redraw (next turn) now
    assert loss_plot._anchor.box == box                          # still inside: the range stays
    view.updateAutoRange()
    assert view.viewRange() == before
    loss_plot.add_steps(steps("student", 100, 2, components=("ce",), value=lambda name, step: 1.0 / step))
    loss_plot.flush()                                            # the hand-over's redraw (next turn) now
    assert loss_plot._anchor.box[1] == 200                      # step 101 > 100: the next round end
    loss_plot.set_log_y(True)
    assert loss_plot._anchor.box == pytest.approx((1, 200, -2.25, 0.0))    # log10 1/101 ≈ −2.004
    loss_plot.add_steps(steps("student", 102, 1, components=("ce",), total_steps=150))
    loss_plot.flush()
    assert loss_plot._anchor.box[1] == 150                      # not beyond the stage's planned steps


def test_round_numbers_for_the_box():
    assert [round_above(v) for v in (1, 7, 101, 0.013, 950, 2.5)] == [1, 10, 200, 0.02, 1000, 5]
    assert round_box(1, 90, 0.01, 1.0, False) == pytest.approx((1, 100, 0.0, 1.0))
    assert round_box(1, 90, 0.33, 0.71, False) == pytest.approx((1, 100, 0.0, 0.8))   # losses ≥ 0: from 0
    assert round_box(1, 90, 0.01, 0.71, False) == round_box(1, 90, 0.33, 0.71, False)  # a falling loss: no change
    assert round_box(1, 90, -0.33, 0.71, False) == pytest.approx((1, 100, -0.4, 0.8))  # below 0: to the step
    assert round_box(5, 5, 2.0, 2.0, False) == pytest.approx((5, 6, 0.0, 2.0))      # one point
    assert round_box(1, 10, 0.5, 2.0, True) == pytest.approx((1, 10, -0.5, 0.5))
    assert round_box(1, 21, 0.5, 2.0, False, x_limit=31)[1] == 31            # the stage ends at 31
    assert round_box(1, 21, 0.5, 2.0, False, x_limit=500)[1] == 500          # a short stage: whole, at once
    assert round_box(1, 21, 0.5, 2.0, False, x_limit=5000)[1] == 50          # a long one: round ends ...
    assert round_box(1, 1001, 0.5, 2.0, False, x_limit=5001)[1] == 5001      # ... until a fifth is done
    assert round_box(1, 40, 0.5, 2.0, False, x_limit=31)[1] == 50            # a wrong plan is ignored


def test_legend_sits_right_of_the_plot_and_hides_while_empty(loss_plot, qtbot):
    assert not loss_plot.legend.isVisible()                      # no curve yet: no empty box
    loss_plot.add_steps(steps("student", 1, 10))
    qtbot.waitUntil(loss_plot.legend.isVisible, timeout=1000)
    view = loss_plot.plot_item.getViewBox()
    qtbot.waitUntil(lambda: loss_plot.legend.sceneBoundingRect().left() >= view.sceneBoundingRect().right() - 1,
                    timeout=1000)                                # outside the curves' area
    loss_plot.clear()
    assert not loss_plot.legend.isVisible()


def test_accuracy_legend_shows_right_of_the_plot_once_there_is_data(accuracy_plot, qtbot):
    accuracy_plot.show()
    qtbot.waitExposed(accuracy_plot)
    assert not accuracy_plot.legend.isVisible()                  # no epoch yet
    accuracy_plot.add_epochs(epochs("student", 2, teacher=50.0))
    qtbot.waitUntil(accuracy_plot.legend.isVisible, timeout=1000)   # drawn on the next event-loop turn
    assert [label.text for _, label in accuracy_plot.legend.items] == ["train", "test", "teacher"]
    view = accuracy_plot.plot_item.getViewBox()
    qtbot.waitUntil(lambda: accuracy_plot.legend.sceneBoundingRect().left() >= view.sceneBoundingRect().right() - 1,
                    timeout=1000)
    accuracy_plot.clear()
    assert not accuracy_plot.legend.isVisible()


def test_a_stage_is_listed_as_soon_as_it_starts(loss_plot, accuracy_plot):
    for plot in (loss_plot, accuracy_plot):
        plot.note_stage("teacher")
        assert plot.stage() == "teacher"
    loss_plot.add_steps(steps("teacher", 1, 30, components=("ce",), value=lambda name, step: 5.0))
    accuracy_plot.note_stage("student")
    loss_plot.note_stage("student")
    assert loss_plot.stage() == "student" and accuracy_plot.stage() == "student"
    assert loss_plot.shown_curves() == []                         # (the switch is shown on a turn of its own)
    assert loss_plot._anchor.box == (0.0, 1.0, 0.0, 1.0)         # an empty stage: not the teacher's range


def test_clicking_a_legend_entry_toggles_its_curve(loss_plot, qtbot):
    loss_plot.add_steps(steps("student", 1, 10))
    qtbot.waitUntil(lambda: len(loss_plot.legend.items) == 3, timeout=1000)   # one entry per event-loop turn
    samples = {label.text: sample for sample, label in loss_plot.legend.items}
    assert set(samples) == {"total", "ce", "kd"}
    samples["kd"].mouseClickEvent(_LeftClick())
    assert not loss_plot.is_curve_visible("kd")
    assert loss_plot.is_curve_visible("ce")
    loss_plot.add_steps(steps("student", 11, 5))        # new data does not bring it back
    assert not loss_plot.is_curve_visible("kd")
    samples["kd"].mouseClickEvent(_LeftClick())
    assert loss_plot.is_curve_visible("kd")


def test_clear_forgets_every_curve_and_stage(loss_plot):
    loss_plot.add_steps(steps("teacher", 1, 5))
    loss_plot.add_steps(steps("student", 1, 5))
    loss_plot.clear()
    assert loss_plot.curve_names() == []
    assert loss_plot.stage() is None
    assert not [item for item in loss_plot.plot_item.items if item in loss_plot.plot_item.dataItems]
    loss_plot.add_steps(steps("student", 1, 3))
    assert loss_plot.curve_names() == ["total", "ce", "kd"]


def test_curves_are_down_sampled_and_clipped_to_the_view(loss_plot):
    loss_plot.add_steps(steps("student", 1, 10))
    for item in loss_plot.plot_items().values():
        assert item.opts["autoDownsample"] and item.opts["downsampleMethod"] == "peak"
        assert item.opts["clipToView"]


def test_a_long_curve_is_redrawn_once_its_new_points_would_show(loss_plot, qtbot):
    loss_plot.add_steps(steps("student", 1, 60_000, components=("ce",)))
    item = loss_plot.plot_items()["ce"]
    assert item.xData.size == 60_000                    # a new curve is drawn at once
    loss_plot.add_steps(steps("student", 60_001, 5, components=("ce",)))
    loss_plot.flush()                                   # the hand-over's redraw (a turn later) now
    assert item.xData.size == 60_000                    # 5 steps fill no pixel column of 60k
    assert loss_plot.curve_data("ce")[0].size == 60_005   # but are stored
    qtbot.waitUntil(lambda: item.xData.size == 60_005, timeout=3000)   # the catch-up timer
    loss_plot.add_steps(steps("student", 60_006, 1000, components=("ce",)))
    loss_plot.flush()
    assert item.xData.size == 61_005                    # enough new points: drawn in the hand-over's redraw
    loss_plot.plot_item.getViewBox().setXRange(60_900, 61_010)   # zoomed in by hand: every point shows
    loss_plot.add_steps(steps("student", 61_006, 1, components=("ce",)))
    loss_plot.flush()
    assert item.xData.size == 61_006


# -- AccuracyPlot -----------------------------------------------------------------------------------


def epochs(stage, count, planned=10, teacher=None):
    return [EpochEvent(stage=stage, epoch=e, epochs=planned, train_acc=10.0 * e, test_acc=9.0 * e,
                       teacher_acc=teacher) for e in range(1, count + 1)]


def test_accuracy_series_and_teacher_reference_line(accuracy_plot):
    accuracy_plot.add_epochs(epochs("student", 3, planned=20, teacher=71.5))
    accuracy_plot.add_epochs(epochs("student", 5, planned=20, teacher=71.5)[3:])
    x, y = accuracy_plot.series("train")
    np.testing.assert_array_equal(x, [1, 2, 3, 4, 5])
    np.testing.assert_allclose(y, [10, 20, 30, 40, 50])
    np.testing.assert_allclose(accuracy_plot.series("test")[1], [9, 18, 27, 36, 45])

    x, y = accuracy_plot.series("teacher")
    np.testing.assert_array_equal(x, [1, 20])       # spans the planned epochs
    np.testing.assert_allclose(y, [71.5, 71.5])
    items = accuracy_plot.plot_items()
    np.testing.assert_allclose(items["teacher"].getData()[1], [71.5, 71.5])
    assert items["teacher"].opts["pen"].style() == QtCore.Qt.PenStyle.DashLine
    assert "teacher 71.5 %" in accuracy_plot._teacher_label.toPlainText()
    assert items["train"].opts["symbol"] is not None


def test_teacher_label_stays_inside_the_plot(accuracy_plot):
    accuracy_plot.add_epochs(epochs("student", 3, teacher=90.0))      # line above the points: label under it
    accuracy_plot.plot_items()
    assert tuple(accuracy_plot._teacher_label.anchor) == (1.0, 0.0)
    accuracy_plot.add_epochs([EpochEvent("student", 3, 10, 30.0, 27.0, teacher_acc=5.0)])   # below them
    accuracy_plot.plot_items()
    assert tuple(accuracy_plot._teacher_label.anchor) == (1.0, 1.0)


def test_an_epoch_reported_again_keeps_its_latest_value(accuracy_plot):
    accuracy_plot.add_epochs(epochs("student", 2))
    accuracy_plot.add_epochs([EpochEvent("student", 2, 10, train_acc=99.0, test_acc=98.0)])
    np.testing.assert_allclose(accuracy_plot.series("train")[1], [10.0, 99.0])


def test_accuracy_without_teacher_has_an_empty_teacher_series(accuracy_plot):
    accuracy_plot.add_epochs(epochs("student", 2))
    assert accuracy_plot.series("teacher")[0].size == 0
    assert not accuracy_plot._teacher_label.isVisible()


def test_accuracy_stages_are_separate(accuracy_plot):
    accuracy_plot.add_epochs(epochs("teacher", 4))
    assert accuracy_plot.stage() == "teacher"
    np.testing.assert_allclose(accuracy_plot.plot_items()["train"].getData()[1], [10, 20, 30, 40])
    accuracy_plot.add_epochs(epochs("student", 2, teacher=40.0))
    assert accuracy_plot.stage() == "student"
    np.testing.assert_allclose(accuracy_plot.plot_items()["train"].getData()[1], [10, 20])
    np.testing.assert_allclose(accuracy_plot.series("teacher train")[1], [10, 20, 30, 40])
    with pytest.raises(KeyError, match="no accuracy series named 'val'"):
        accuracy_plot.series("val")
    accuracy_plot.clear()
    assert accuracy_plot.series("train")[0].size == 0


def test_render_plots_for_a_look(loss_plot, accuracy_plot, qtbot):
    SHOTS.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    loss_plot.add_steps(steps("student", 1, 2000, components=("ce", "kd", "at:layer2"),
                              value=lambda name, step: (1 + 0.2 * rng.random()) * np.exp(-step / 600)))
    accuracy_plot.add_epochs(epochs("student", 6, planned=10, teacher=72.0))
    qtbot.waitUntil(lambda: len(loss_plot.legend.items) == 4, timeout=1000)   # placed one per turn
    for widget, name in ((loss_plot, "loss_plot.png"), (accuracy_plot, "accuracy_plot.png")):
        widget.show()
        qtbot.waitExposed(widget)
        qtbot.wait(20)                                  # the legend's relayout
        path = SHOTS / name
        assert widget.grab().save(str(path))
        assert path.stat().st_size > 5_000


# -- runs side by side, read-out, marker, export, log by itself ---------------------------------------


def test_another_run_overlays_one_component_per_run_in_its_own_colour(loss_plot, qtbot):
    loss_plot.add_steps(steps("student", 1, 20, components=("ce", "at:layer2")))
    assert not loss_plot.comparing() and not loss_plot.component_box.isVisible()
    loss_plot.set_run_label("", "distilled")
    loss_plot.add_run("/runs/baseline", "baseline", steps("student", 1, 20, components=("ce",),
                                                          value=lambda name, step: 2.0 / step))
    assert loss_plot.comparing() and loss_plot.component_box.isVisibleTo(loss_plot)
    assert loss_plot.runs() == ["", "/runs/baseline"]
    assert sorted(loss_plot.shown_curves()) == [("", "student", "total"), ("/runs/baseline", "student", "total")]
    assert loss_plot.legend_labels() == ["distilled", "baseline"]          # a legend by run
    colours = {run: loss_plot.curve_item(run, "student", "total").opts["pen"].color().name()
               for run in loss_plot.runs()}
    assert len(set(colours.values())) == 2
    np.testing.assert_allclose(loss_plot.curve_item("/runs/baseline", "student", "total").getData()[1],
                               2.0 / np.arange(1, 21))
    loss_plot.set_component("ce")                                          # one component, every run
    assert sorted(loss_plot.shown_curves()) == [("", "student", "ce"), ("/runs/baseline", "student", "ce")]
    loss_plot.remove_run("/runs/baseline")                                 # back to one run: every component
    assert not loss_plot.comparing()
    assert sorted(c for _, _, c in loss_plot.shown_curves()) == ["at:layer2", "ce", "total"]
    assert loss_plot.legend_labels() == ["total", "ce", "at:layer2"]


def test_overlay_runs_stay_when_the_primary_run_is_cleared(loss_plot):
    loss_plot.add_steps(steps("student", 1, 5))
    loss_plot.add_run("b", "baseline", steps("student", 1, 5))
    loss_plot.clear_run()
    assert loss_plot.runs() == ["b"] and loss_plot.curve_names() == []
    assert loss_plot.stage() == "student"
    assert sorted(c for _, _, c in loss_plot.shown_curves()) == ["ce", "kd", "total"]


def test_the_raw_curve_is_drawn_faintly_under_the_smoothed_one(loss_plot):
    noise = np.random.default_rng(3).random(40) + 1.0
    loss_plot.add_steps(steps("student", 1, 40, components=("ce",), value=lambda name, step: noise[step - 1]))
    assert loss_plot.raw_item("ce").getData()[0] is None or loss_plot.raw_item("ce").getData()[0].size == 0
    loss_plot.set_smoothing(0.8)
    raw_item, item = loss_plot.raw_item("ce"), loss_plot.plot_items()["ce"]
    assert raw_item in loss_plot.plot_item.items
    np.testing.assert_allclose(raw_item.getData()[1], noise)
    np.testing.assert_allclose(item.getData()[1], reference_ema(noise, 0.8))
    assert raw_item.opts["pen"].color().alpha() < 255 == item.opts["pen"].color().alpha()
    assert raw_item.zValue() < item.zValue()
    assert raw_item not in [i for i, _ in loss_plot.legend.items]
    item.setVisible(False)                                      # hiding a curve (legend click) hides its raw one
    assert not raw_item.isVisible()
    loss_plot.set_smoothing(0.0)
    assert raw_item not in loss_plot.plot_item.items


def test_hover_reads_out_step_value_component_and_run(loss_plot):
    loss_plot.set_run_label("", "demo-distill")
    loss_plot.add_steps(steps("student", 1, 10, components=("ce",), value=lambda name, step: float(step)))
    text = loss_plot.readout_at(4.05, 4.0)
    assert text.startswith("step 4: ce = 4") and "run: demo-distill" in text
    assert loss_plot.readout_at(4.0, 1e6) == ""                 # nothing near: nothing shown
    loss_plot.set_log_y(True)
    assert loss_plot.readout_at(7.0, 7.0).startswith("step 7: ce = 7")


def test_the_snapshot_shown_is_marked_on_its_stage(loss_plot):
    loss_plot.add_steps(steps("student", 1, 30))
    loss_plot.set_marker("student", 20)
    assert loss_plot.marker_step() == 20
    loss_plot.set_marker("teacher", 20)                         # another stage than the one plotted
    assert loss_plot.marker_step() is None
    loss_plot.set_marker(None, None)
    assert loss_plot.marker_step() is None


def test_export_buttons_write_png_and_csv_where_asked_and_say_so(loss_plot, accuracy_plot, tmp_path, qtbot):
    loss_plot.add_steps(steps("student", 1, 5, components=("ce",)))
    loss_plot.add_run("b", "baseline", steps("student", 1, 3, components=("ce",)))
    assert [b.text() for b in loss_plot.export.buttons()] == ["PNG", "CSV"]
    assert all(b.isVisibleTo(loss_plot) for b in loss_plot.export.buttons())
    loss_plot.export.directory = lambda: str(tmp_path)
    assert loss_plot.export.default_path("png") == tmp_path / "loss.png"
    with qtbot.waitSignal(loss_plot.exported) as said:
        assert loss_plot.export.write("csv", tmp_path / "loss") == tmp_path / "loss.csv"
    assert said.args == ["the loss plot (CSV)", str(tmp_path / "loss.csv")]
    lines = (tmp_path / "loss.csv").read_text().splitlines()
    assert lines[0] == "run,stage,component,step,value,smoothed"
    assert len(lines) == 1 + 2 * 5 + 2 * 3 and any(line.startswith("baseline,student,ce,3,") for line in lines)
    assert loss_plot.export.write("png", tmp_path / "loss.png").stat().st_size > 1000
    with qtbot.waitSignal(loss_plot.exportFailed):
        loss_plot.export.write("csv", tmp_path / "no-folder" / "x.csv")
    accuracy_plot.add_epochs(epochs("student", 2, teacher=60.0))
    accuracy_plot.export.write("csv", tmp_path / "acc.csv")
    rows = (tmp_path / "acc.csv").read_text().splitlines()
    assert rows[0] == "run,stage,series,epoch,accuracy" and "this run,student,teacher,,60.0" in rows


def test_log_axis_turns_on_by_itself_when_the_terms_are_orders_of_magnitude_apart(qtbot):
    plot = LossPlot(auto_log=True)
    qtbot.addWidget(plot)
    plot.add_steps(steps("student", 1, 10, components=("ce",), value=lambda name, step: 2.0))
    assert not plot.log_y()
    plot.add_steps(steps("student", 11, 10, components=("ce", "at:layer2"),
                         value=lambda name, step: 2.0 if name == "ce" else 0.01))
    assert plot.log_y() and plot.log_box.isChecked() and not plot.log_chosen()
    plot.log_box.setChecked(False)                               # the user decides: it stays off
    plot.add_steps(steps("student", 21, 10, components=("ce", "at:layer2"),
                         value=lambda name, step: 2.0 if name == "ce" else 0.001))
    assert not plot.log_y() and plot.log_chosen()


def test_accuracy_of_several_runs_one_colour_each_with_a_legend_by_run(accuracy_plot):
    accuracy_plot.set_run_label("", "distilled")
    accuracy_plot.add_epochs(epochs("student", 3, teacher=90.0))
    assert accuracy_plot.legend_labels() == ["train", "test", "teacher"]
    accuracy_plot.add_run("b", "baseline", [EpochEvent("student", e, 10, 5.0 * e, 4.0 * e) for e in (1, 2, 3)])
    assert accuracy_plot.comparing()
    assert accuracy_plot.legend_labels() == ["distilled", "baseline", "teacher 90.0 %", "train (dotted)"]
    assert not accuracy_plot._teacher_label.isVisible()
    mine, theirs = accuracy_plot.plot_items()["test"], accuracy_plot.run_items("b")["test"]
    assert mine.opts["pen"].color() != theirs.opts["pen"].color()
    np.testing.assert_allclose(theirs.getData()[1], [4, 8, 12])
    assert accuracy_plot.run_items("b")["train"].opts["pen"].style() == QtCore.Qt.PenStyle.DotLine
    assert "run: baseline" in accuracy_plot.readout_at(2.0, 8.0)
    accuracy_plot.remove_run("b")
    assert not accuracy_plot.comparing() and accuracy_plot.legend_labels() == ["train", "test", "teacher"]


def test_a_stage_of_long_component_names_widens_the_legend_once_not_with_each_entry(loss_plot, qtbot):
    """The legend is as wide as its widest entry; a stage's entries come one per turn, and each one
    wider than the legend laid the whole plot out and repainted it again. The room for all of them is
    made when the stage is shown, so the view keeps its width while they arrive."""
    loss_plot.add_steps(steps("teacher", 1, 3, components=("ce",)))
    loss_plot.plot_items()
    narrow = loss_plot.legend.minimumWidth()
    long_names = ("ce", "at:layer2.0.conv1<-features.3", "hint:layer3.1.conv2<-features.12.block.0")
    loss_plot.add_steps(steps("student", 1, 3, components=long_names))
    widths = []
    qtbot.waitUntil(lambda: not loss_plot._select_timer.isActive(), timeout=2000)    # the stage is shown
    while loss_plot._to_place or loss_plot._legend_due is not None:
        QtCore.QCoreApplication.processEvents()
        widths.append((loss_plot.legend.minimumWidth(), loss_plot.plot_item.vb.width()))
        loss_plot._place_next()
    QtCore.QCoreApplication.processEvents()
    widths.append((loss_plot.legend.minimumWidth(), loss_plot.plot_item.vb.width()))
    assert len(loss_plot.legend.items) == 4                               # total and the three components
    assert len(set(widths)) == 1 and widths[0][0] > narrow
    assert loss_plot.legend.layout.preferredWidth() <= loss_plot.legend.minimumWidth()   # every entry fits
    assert loss_plot.legend.minimumWidth() - loss_plot.legend.layout.preferredWidth() < 1
    loss_plot.clear()                                                     # a new run: the legend's own width
    assert loss_plot.legend.minimumWidth() == narrow
