"""AttentionView: the arrays on screen, shared colour scales, probe choice, timeline replay, exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6 import QtCore  # noqa: E402

from app.attention_maps import (  # noqa: E402
    ROLES, display_image, mosaic, mosaic_tile, nice_ticks, robust_bound, tile_rows,
)
from app.attention_view import AttentionView  # noqa: E402
from app.rounding import round_up  # noqa: E402
from featdistill_core import AttentionSnapshot, PairMaps  # noqa: E402

SHOTS = Path("/tmp/featdistill_shots")
PROBES = 6


def make_snapshot(step: int, *, seed: int | None = None, pairs=(("at:layer2<-layer2", 8), ("at:layer3<-layer3", 4)),
                  probes: int = PROBES, closeness: float = 0.0) -> AttentionSnapshot:
    """Synthetic maps: a fixed teacher per pair and a student that moves towards it with ``closeness``."""
    rng = np.random.default_rng(step if seed is None else seed)
    fixed = np.random.default_rng(1234)
    images = fixed.random((probes, 16, 16, 3), dtype=np.float32)
    maps = []
    for name, size in pairs:
        teacher = fixed.gamma(2.0, 0.5, size=(probes, size, size)).astype(np.float32)
        teacher /= teacher.mean(axis=(1, 2), keepdims=True)
        noise = rng.gamma(2.0, 0.5, size=(probes, size, size)).astype(np.float32)
        noise /= noise.mean(axis=(1, 2), keepdims=True)
        student = (closeness * teacher + (1 - closeness) * noise).astype(np.float32)
        layer = name.split("<-")[-1]
        maps.append(PairMaps(name=name, teacher_layer=layer, student_layer=layer, teacher=teacher, student=student))
    return AttentionSnapshot(stage="student", step=step, epoch=1 + step // 100, images=images,
                             labels=tuple(range(3, 3 + probes)), pairs=tuple(maps))


@pytest.fixture
def view(qtbot):
    widget = AttentionView()
    qtbot.addWidget(widget)
    widget.resize(720, 800)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def shown(view, pair, probe, role):
    return view.displayed_array(pair, probe, role)


def test_round_up_rounds_up_to_readable_bounds():
    cases = {0.7: 1.0, 1.0: 1.0, 1.2: 2.0, 2.2: 2.5, 3.0: 5.0, 7.0: 10.0, 0.03: 0.05, 0.0: 1.0, float("nan"): 1.0,
             -3.0: 1.0, float("inf"): 1.0}
    for value, expected in cases.items():
        assert round_up(value) == pytest.approx(expected), value
    # other mantissas: the plots' step axis ends at 1, 2 or 5 × 10^k
    assert [round_up(v, (1.0, 2.0, 5.0)) for v in (2.2, 5.0, 5.1, 101)] == [5.0, 5.0, 10.0, 200.0]


def test_maps_on_screen_are_the_events_arrays(view):
    snap = make_snapshot(100)
    view.add_snapshots([snap])
    assert view.shown_probes() == [0, 1, 2, 3]                       # first four probes by default
    assert set(view.image_items()) == {(pair.name, role) for pair in snap.pairs for role in ROLES}
    for pair in snap.pairs:
        for k in range(4):
            np.testing.assert_array_equal(shown(view, pair.name, k, "teacher"), pair.teacher[k])
            np.testing.assert_array_equal(shown(view, pair.name, k, "student"), pair.student[k])
            np.testing.assert_allclose(shown(view, pair.name, k, "difference"), pair.student[k] - pair.teacher[k])
            np.testing.assert_array_equal(shown(view, pair.name, k, "image"),
                                          np.round(snap.images[k] * 255).astype(np.uint8))
        items = {role: view.image_items()[(pair.name, role)] for role in ROLES}
        assert items["teacher"].image.dtype == np.float32 and items["teacher"].image.flags.c_contiguous
        # every column is one mosaic of the four probes, as tall as the probe images' column, side by
        # side: a map is stretched over its probe image, so the rows of every column line up
        rects = [items[role].mapRectToParent(items[role].boundingRect()) for role in ROLES]
        assert all(r.top() == 0 and r.height() == rects[0].height() and r.width() == 16 for r in rects)
        assert 4 * 16 < rects[0].height() < 4 * 16 * 1.25                    # four tiles and thin gaps
        assert all(a.right() < b.left() for a, b in zip(rects, rects[1:]))


def test_a_new_snapshot_repaints_only_the_columns_that_changed(view):
    """The probe images and a trained teacher's maps are the same in every snapshot: their items keep
    their arrays (nothing to render or repaint); the student's and the difference's get new ones."""
    view.add_snapshots([make_snapshot(100)])
    before = {key: item.image for key, item in view.image_items().items()}
    later = make_snapshot(105)                          # same teacher and probe images, another student
    view.add_snapshots([later])
    after = view.image_items()
    for pair in later.pairs:
        assert after[(pair.name, "image")].image is before[(pair.name, "image")]
        assert after[(pair.name, "teacher")].image is before[(pair.name, "teacher")]
        assert after[(pair.name, "student")].image is not before[(pair.name, "student")]
        assert after[(pair.name, "difference")].image is not before[(pair.name, "difference")]
        np.testing.assert_array_equal(shown(view, pair.name, 2, "student"), pair.student[2])
        np.testing.assert_array_equal(shown(view, pair.name, 2, "teacher"), pair.teacher[2])
    changed = make_snapshot(110)                        # a teacher that changed (its own stage) is drawn
    changed = AttentionSnapshot(changed.stage, changed.step, changed.epoch, changed.images, changed.labels,
                                tuple(PairMaps(p.name, p.teacher_layer, p.student_layer, p.teacher * 1.5, p.student)
                                      for p in changed.pairs))
    view.add_snapshots([changed])
    pair = changed.pairs[0]
    np.testing.assert_allclose(shown(view, pair.name, 1, "teacher"), pair.teacher[1])


def test_mosaic_stacks_stretched_tiles_with_gap_rows_and_cuts_back_out():
    tiles = np.arange(3 * 2 * 3, dtype=np.float32).reshape(3, 2, 3)      # 3 tiles of 2×3
    picture = mosaic(tiles, rows=4, gap=1, fill=-1.0)
    assert picture.shape == (3 * 4 + 2, 3) and picture.flags.c_contiguous
    np.testing.assert_array_equal(picture[:4], np.repeat(tiles[0], 2, axis=0))   # each row twice
    np.testing.assert_array_equal(picture[4], [-1, -1, -1])                     # the gap row
    np.testing.assert_array_equal(picture[5:9], np.repeat(tiles[1], 2, axis=0))
    for k in range(3):
        np.testing.assert_array_equal(mosaic_tile(picture, k, rows=4, gap=1, height=2), tiles[k])
    rgb = np.zeros((2, 5, 5, 3), np.uint8)
    assert mosaic(rgb, rows=5, gap=2, fill=255).shape == (12, 5, 3)
    # a stretch by a non-whole factor still cuts back out exactly
    odd = np.arange(2 * 7 * 2, dtype=np.float32).reshape(2, 7, 2)
    np.testing.assert_array_equal(mosaic_tile(mosaic(odd, 32, 1, 0.0), 1, 32, 1, 7), odd[1])


def test_tile_rows_is_a_common_multiple_of_every_height():
    assert tile_rows([32, 8, 4]) == 32
    assert tile_rows([16, 8]) == 32                      # 16, doubled to reach at least 24 rows
    assert tile_rows([32, 7]) == 224
    assert tile_rows([509, 503]) == 509                  # the lcm is far too large: the tallest one


def test_robust_bound_and_ticks():
    values = np.random.default_rng(0).gamma(2.0, 0.5, 1000)
    assert robust_bound(values) == pytest.approx(np.percentile(values, 99.5))
    with_nan = np.append(values, [np.nan, np.inf])
    assert robust_bound(with_nan) == pytest.approx(np.percentile(values, 99.5))
    assert robust_bound(np.array([np.nan])) == 1.0
    assert nice_ticks(0, 5) == [0, 1, 2, 3, 4, 5]
    assert nice_ticks(-2.5, 2.5) == [-2, -1, 0, 1, 2]
    assert nice_ticks(0, 0.25) == [0, 0.05, 0.1, 0.15, 0.2, 0.25]
    assert len(nice_ticks(0, 1000)) <= 6


def test_teacher_and_student_share_one_fixed_scale_and_the_difference_is_symmetric(view):
    snap = make_snapshot(100)
    view.add_snapshots([snap])
    teacher_values = np.concatenate([p.teacher.ravel() for p in snap.pairs])
    diff_values = np.concatenate([np.abs(p.student - p.teacher).ravel() for p in snap.pairs])
    hi = round_up(float(np.percentile(teacher_values, 99.5)))
    d = round_up(float(np.percentile(diff_values, 99.5)))
    assert view.levels() == {"maps": (0.0, hi), "difference": (-d, d)}

    items = view.image_items()
    maps = [item for (_, role), item in items.items() if role in ("teacher", "student")]
    diffs = [item for (_, role), item in items.items() if role == "difference"]
    assert len(maps) == 2 * 2 and len(diffs) == 2
    for item in maps:
        assert tuple(item.getLevels()) == (0.0, hi)
        assert item.lut.shape[0] == 256
        np.testing.assert_array_equal(item.lut, maps[0].lut)
    for item in diffs:
        assert tuple(item.getLevels()) == (-d, d)
        np.testing.assert_array_equal(item.lut, diffs[0].lut)
    assert not np.array_equal(maps[0].lut, diffs[0].lut)
    assert view.scene.map_bar.levels() == (0.0, hi)
    assert view.scene.diff_bar.levels() == (-d, d)


def test_on_the_fixed_scale_a_replay_compares_like_with_like(view):
    view.set_difference_scale("fixed")
    view.add_snapshots([make_snapshot(1, closeness=0.0)])
    first = view.levels()
    view.add_snapshots([make_snapshot(2, closeness=0.95)])
    assert view.levels() == first
    diffs = [i for (_, role), i in view.image_items().items() if role == "difference"]
    assert tuple(diffs[0].getLevels()) == first["difference"]


def test_the_adaptive_difference_scale_follows_the_snapshot_shown(view):
    assert view.difference_scale() == "adaptive"
    early, late = make_snapshot(1, closeness=0.0), make_snapshot(2, closeness=0.95)
    view.add_snapshots([early, late])
    diff = np.concatenate([np.abs(p.student - p.teacher).ravel() for p in late.pairs])
    d = round_up(float(np.percentile(diff, 99.5)))
    assert view.levels()["difference"] == (-d, d)                  # the late, small differences fill the scale
    diffs = [i for (_, role), i in view.image_items().items() if role == "difference"]
    assert tuple(diffs[0].getLevels()) == (-d, d)
    view.show_snapshot(0)
    view.image_items()
    assert view.levels()["difference"][1] > 5 * d                 # the early one has its own
    view.set_difference_scale("fixed")                            # the absolute scale is still there
    view.show_snapshot(1)
    diffs = [i for (_, role), i in view.image_items().items() if role == "difference"]
    assert tuple(diffs[0].getLevels()) == view.levels()["difference"] and view.levels()["difference"][1] > 5 * d
    with pytest.raises(ValueError, match="difference scale must be one of adaptive, fixed"):
        view.set_difference_scale("log")


def test_play_steps_through_the_snapshots_and_ends_live(view, qtbot):
    view.add_snapshots([make_snapshot(step) for step in (10, 20, 30)])
    shown_steps = []
    view.snapshotShown.connect(lambda i: shown_steps.append(view.state.snapshots[i].step))
    view.play()
    assert view.is_playing() and view.current_index() == 0        # at the newest: from the start
    qtbot.waitUntil(lambda: not view.is_playing(), timeout=5000)
    assert shown_steps == [10, 20, 30] and view.is_live()


def test_the_title_counts_snapshots_that_arrive_while_an_older_one_is_shown(view):
    view.add_snapshots([make_snapshot(step) for step in (10, 20)])
    view.show_snapshot(0)
    view.image_items()
    view.add_snapshots([make_snapshot(step) for step in (30, 40, 50)])
    assert "snapshot 1/5" in view.scene.title_text() and "snapshot 1/5" in view.timeline_label.text()


def test_the_waiting_text_says_what_the_view_waits_for(view):
    view.set_waiting_text("Training the teacher: maps in about 2:00")
    assert "Training the teacher" in view.scene.title_text()
    view.add_snapshots([make_snapshot(1)])
    view.image_items()
    assert "snapshot 1/1" in view.scene.title_text()
    view.clear()
    assert "Training the teacher" in view.scene.title_text()


def test_pair_header_reports_mean_absolute_difference(view):
    early, late = make_snapshot(1, closeness=0.0), make_snapshot(2, closeness=0.9)
    view.add_snapshots([early, late])
    view.image_items()                                   # draws now what waits for the event loop
    pair_early, pair_late = early.pairs[0], late.pairs[0]
    now = float(np.mean(np.abs(pair_late.student - pair_late.teacher)))
    before = float(np.mean(np.abs(pair_early.student - pair_early.teacher)))
    assert now < before
    text = view.scene.header_text(pair_late.name)
    assert f"{now:.3f}" in text and f"first snapshot {before:.3f}" in text
    assert "at:layer2&lt;-layer2" in text          # escaped, shown as written


def test_choosing_probe_images(view):
    snap = make_snapshot(5)
    view.add_snapshots([snap])
    view.set_probe_indices([5, 2, 5])
    assert view.probe_indices() == [5, 2]
    assert view.shown_probes() == [5, 2]
    np.testing.assert_array_equal(shown(view, snap.pairs[1].name, 5, "student"), snap.pairs[1].student[5])
    checked = [view.probe_list.item(r).checkState() == QtCore.Qt.CheckState.Checked
               for r in range(view.probe_list.count())]
    assert checked == [False, False, True, False, False, True]

    with pytest.raises(ValueError, match=r"probe index 6 is out of range: the snapshots hold 6 probe images \(0..5\)"):
        view.set_probe_indices([1, 6])
    with pytest.raises(ValueError, match="probe index must be a non-negative integer, got -1"):
        view.set_probe_indices([-1])

    # ticking a box in the list does the same
    view.probe_list.item(0).setCheckState(QtCore.Qt.CheckState.Checked)
    assert view.probe_indices() == [0, 2, 5]
    assert view.shown_probes() == [0, 2, 5]
    np.testing.assert_array_equal(shown(view, snap.pairs[0].name, 0, "teacher"), snap.pairs[0].teacher[0])
    with pytest.raises(ValueError, match="probe image 1 is not on screen; shown: 0, 2, 5"):
        view.displayed_array(snap.pairs[0].name, 1, "teacher")
    with pytest.raises(ValueError, match="unknown column 'map'; columns: image, teacher, student, difference"):
        view.displayed_array(snap.pairs[0].name, 0, "map")

    for index in (0, 2, 5):                             # none ticked: a note instead of the rows
        view.probe_list.item(index).setCheckState(QtCore.Qt.CheckState.Unchecked)
    assert view.shown_probes() == [] and view.image_items() == {}
    assert "no probe image ticked" in view.scene.title_text()


def test_slider_replays_an_older_snapshot_and_pins_it(view, qtbot):
    snaps = [make_snapshot(step) for step in (10, 20, 30)]
    view.add_snapshots(snaps[:1])
    view.add_snapshots(snaps[1:])
    assert view.snapshot_count() == 3 and view.current_index() == 2 and view.is_live()
    name = snaps[0].pairs[0].name
    np.testing.assert_array_equal(shown(view, name, 1, "student"), snaps[2].pairs[0].student[1])

    with qtbot.waitSignal(view.snapshotShown) as blocker:
        view.timeline.setValue(0)                       # what dragging the slider does
    assert blocker.args == [0]
    assert view.current_index() == 0 and not view.is_live()
    np.testing.assert_array_equal(shown(view, name, 1, "student"), snaps[0].pairs[0].student[1])
    assert "snapshot 1/3 · step 10" in view.timeline_label.text()
    assert not view.live_button.isChecked()

    view.add_snapshots([make_snapshot(40)])           # pinned: stays on the old one
    assert view.current_index() == 0 and view.snapshot_count() == 4
    assert view.timeline.maximum() == 3
    assert "snapshot 1/4" in view.timeline_label.text()

    view.live_button.click()                          # back to the end: live again
    assert view.current_index() == 3 and view.timeline.value() == 3 and view.is_live()
    assert view.live_button.isChecked()
    view.add_snapshots([make_snapshot(50)])
    assert view.current_index() == 4 and view.live_button.isChecked()
    view.show_snapshot(0)
    view.show_snapshot(-1)
    assert view.is_live()
    with pytest.raises(ValueError, match=r"snapshot index 5 is out of range: 5 snapshots \(0..4\)"):
        view.show_snapshot(5)


def test_set_snapshots_replaces_and_clear_empties(view):
    view.add_snapshots([make_snapshot(1), make_snapshot(2)])
    view.set_snapshots([make_snapshot(7), make_snapshot(8), make_snapshot(9)])
    assert view.snapshot_count() == 3 and view.current_index() == 2
    view.clear()
    assert view.snapshot_count() == 0 and view.current_index() == -1
    assert view.image_items() == {}
    with pytest.raises(ValueError, match="no attention snapshot to show yet"):
        view.show_snapshot(0)


def test_a_new_pair_layout_rebuilds_the_rows(view):
    view.add_snapshots([make_snapshot(1, pairs=(("at:a<-a", 4),))])
    assert {pair for pair, _ in view.image_items()} == {"at:a<-a"}
    view.add_snapshots([make_snapshot(2, pairs=(("at:a<-a", 4), ("at:b<-b", 2)))])
    assert {pair for pair, _ in view.image_items()} == {"at:a<-a", "at:b<-b"}
    snap = make_snapshot(3, pairs=(("at:a<-a", 4), ("at:b<-b", 2)))
    items = view.image_items()
    view.add_snapshots([snap])                           # same layout: the same items, new arrays
    assert view.image_items() == items
    np.testing.assert_array_equal(shown(view, "at:b<-b", 3, "student"), snap.pairs[1].student[3])


def test_a_snapshot_is_drawn_on_later_event_loop_turns_one_pair_at_a_time(view, qtbot):
    snap = make_snapshot(1, pairs=(("at:a<-a", 4), ("at:b<-b", 2), ("at:c<-c", 2)))
    built = []
    view.scene.build_timer.timeout.connect(lambda: built.append(len(view.scene.blocks)))
    view.add_snapshots([snap])
    assert view.current_index() == 0 and not view.scene.blocks           # the worker's hand-over returns at once
    qtbot.waitUntil(lambda: len(built) == 9, timeout=1000)                # drawn by the event loop ...
    assert built == [0, 1, 1, 1, 2, 2, 2, 3, 3]   # ... a pair per 3 turns: made, added (at its size), filled
    np.testing.assert_array_equal(shown(view, "at:c<-c", 2, "teacher"), snap.pairs[2].teacher[2])


def test_following_a_run_draws_at_most_one_snapshot_a_second(view, qtbot):
    import time

    from app.attention_view import LIVE_RENDER_INTERVAL_S

    assert LIVE_RENDER_INTERVAL_S == 1.0
    drawn = []
    view._render_timer.timeout.connect(lambda: drawn.append(view.scene.drawn.step))
    started = time.monotonic()
    for step in range(1, 21):
        view.add_snapshots([make_snapshot(step)])
        qtbot.wait(100)                                   # 20 snapshots, 10 a second
    qtbot.waitUntil(lambda: drawn and drawn[-1] == 20, timeout=2000)   # the newest is drawn in the end
    elapsed = time.monotonic() - started
    assert 2 <= len(drawn) <= elapsed / LIVE_RENDER_INTERVAL_S + 1.5
    assert view.current_index() == 19 and view.is_live()
    view.show_snapshot(3)                                 # what the user picks is drawn on the next turn
    qtbot.waitUntil(lambda: view.scene.drawn.step == 4, timeout=1000)


def test_inconsistent_snapshots_are_refused_with_one_clear_line(view):
    good = make_snapshot(1)
    pair = good.pairs[0]
    bad_pair = PairMaps(pair.name, pair.teacher_layer, pair.student_layer, pair.teacher, pair.student[:, :4, :4])
    bad = AttentionSnapshot("student", 3, 1, good.images, good.labels, (bad_pair,))
    with pytest.raises(ValueError, match=r"pair 'at:layer2<-layer2': teacher and student maps must both have "
                                         r"shape \(N, H, W\), got \(6, 8, 8\) and \(6, 4, 4\)"):
        view.add_snapshots([bad])
    assert view.snapshot_count() == 0


def test_nan_in_a_map_is_not_handed_to_pyqtgraph(view):
    snap = make_snapshot(1)
    snap.pairs[0].student[0, 0, 0] = np.nan
    view.add_snapshots([snap])
    assert np.isfinite(shown(view, snap.pairs[0].name, 0, "student")).all()
    assert np.isfinite(shown(view, snap.pairs[0].name, 0, "difference")).all()


def test_export_png_writes_the_picture_at_its_size(view, tmp_path):
    from PIL import Image

    with pytest.raises(ValueError, match="no attention snapshot to export yet"):
        view.export_png(tmp_path / "empty.png")
    view.add_snapshots([make_snapshot(1), make_snapshot(2)])
    path = view.export_png(tmp_path / "attention.png")
    ratio = view.graphics.devicePixelRatioF()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (round(view.graphics.width() * ratio), round(view.graphics.height() * ratio))
        # not blank: the viridis maps put many colours on the white background
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 50


def test_export_gif_has_one_frame_per_snapshot_and_restores_the_view(view, tmp_path):
    from PIL import Image

    view.add_snapshots([make_snapshot(s, closeness=s / 40) for s in (10, 20, 30)])
    view.show_snapshot(1)
    path = view.export_gif(tmp_path / "attention.gif", fps=5)
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == 3
        assert gif.info["duration"] == 200
    assert view.current_index() == 1
    snap = view.state.snapshots[1]
    np.testing.assert_array_equal(shown(view, snap.pairs[0].name, 0, "student"), snap.pairs[0].student[0])
    assert "step 20" in view.scene.title_text()
    with pytest.raises(ValueError, match="GIF frame rate must be above 0"):
        view.export_gif(tmp_path / "x.gif", fps=0)


def test_export_png_sequence(view, tmp_path):
    view.add_snapshots([make_snapshot(s) for s in (1, 2, 3)])
    paths = view.export_png_sequence(tmp_path / "frames")
    assert [p.name for p in paths] == ["attention_0001.png", "attention_0002.png", "attention_0003.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_display_image_converts_to_uint8():
    image = np.array([[[0.0, 0.5, 1.0], [1.2, -0.1, np.nan]]], dtype=np.float32)
    np.testing.assert_array_equal(display_image(image), [[[0, 128, 255], [255, 0, 0]]])


def test_render_attention_view_for_a_look(view, qtbot):
    SHOTS.mkdir(parents=True, exist_ok=True)
    view.add_snapshots([make_snapshot(s, closeness=s / 500) for s in (0, 100, 200, 300, 400)])
    view.show_snapshot(2)
    qtbot.waitUntil(lambda: "step 200" in view.scene.title_text(), timeout=1000)   # drawn on the next turn
    qtbot.wait(20)
    path = SHOTS / "attention_view.png"
    assert view.grab().save(str(path))
    assert path.stat().st_size > 10_000


def test_the_numbers_and_the_timeline_need_no_qt():
    """The pure parts of the view really are pure: importing them loads neither Qt nor pyqtgraph."""
    import subprocess
    import sys

    code = ("import sys, app.attention_maps, app.attention_timeline, app.rounding; "
            "assert not any(m.startswith(('PySide6', 'pyqtgraph')) for m in sys.modules), 'Qt imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr


def test_the_timeline_state_follows_or_stays_put_without_a_widget():
    from app.attention_timeline import AttentionTimeline

    timeline = AttentionTimeline()
    assert timeline.is_live() and timeline.add([make_snapshot(1)]) and timeline.current == 0
    timeline.current = 0
    timeline.add([make_snapshot(2), make_snapshot(3)])
    assert timeline.current == 2                         # was live: follows
    timeline.current = 1
    assert not timeline.add([make_snapshot(4)]) and timeline.current == 1    # pinned: stays
    assert timeline.index(-1) == 3 and timeline.caption(1) == "snapshot 2/4 · step 2 · epoch 1"
    with pytest.raises(ValueError, match="probe index 9 is out of range"):
        timeline.set_probes([9])
