"""The attention-map viewer: teacher, student and their difference on a few probe images.

For every distilled pair of a snapshot the view shows one row per selected probe image::

    probe image | teacher map | student map | difference (student − teacher)

Teacher and student maps come from the trainer already brought to one spatial size and scaled to
mean 1 over their positions (see :class:`featdistill_core.events.PairMaps`), so they share ONE colour
scale, ``[0, hi]``, set by the teacher's maps; the difference has a symmetric diverging scale
``[−d, d]``. Both bounds are robust (99.5th percentile, rounded up to a round number) and only ever
grow over the snapshots received, so replaying the timeline compares like with like: as the student
learns, the difference fades to white. Each pair's header gives the mean |student − teacher| over
all probe images.

This module is the layout and the wiring; the parts live beside it:

* :mod:`app.attention_maps` — the numbers (bounds, mosaics, the tile grid), pure numpy;
* :mod:`app.attention_timeline` — what is shown (snapshots, the current one, scales, probes), no Qt;
* :mod:`app.attention_scene` — drawing one snapshot with pyqtgraph;
* :mod:`app.attention_export` — PNG, GIF and PNG-sequence export and the Export button.

A timeline slider replays every snapshot received (▶ plays it, :data:`PLAY_INTERVAL_MS` a snapshot);
at its right end the view follows new snapshots ("live"), anywhere else it stays put. Following a
run, it draws at most :data:`LIVE_RENDER_INTERVAL_S` apart; what the user asks for is drawn on the
next event-loop turn. Until the first snapshot, the picture says what it is waiting for
(:meth:`AttentionView.set_waiting_text`: the window says which stage runs and when maps will come).

All controls sit on one line (the probe images are ticked in a drop-down list), so the maps get the
height: the panels are sized so that at least :data:`~app.attention_scene.ROWS_IN_VIEW` probe rows
of the first pair fit without scrolling, as far as :data:`~app.attention_scene.MIN_CELL_PX` allows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app.attention_export import ExportButton, check_fps, save_gif, save_png, save_png_sequence
from app.attention_maps import check_snapshot
from app.attention_scene import AttentionScene
from app.attention_timeline import DIFFERENCE_SCALES, AttentionTimeline
from app.pacing import PacedTimer
from featdistill_core import AttentionSnapshot

LIVE_RENDER_INTERVAL_S = 1.0   # following a run, the view draws at most one snapshot a second ...
LIVE_RENDER_DELAY_S = 0.25     # ... and this long after the hand-over that brought it (between the
                               # worker's hand-overs: the plots' repaints and the maps' never add up)
PLAY_INTERVAL_MS = 400         # ▶ shows the next snapshot this often
PLACEHOLDER = "Attention maps appear here once the trainer sends its first snapshot."


class AttentionView(QtWidgets.QWidget):
    """Teacher/student attention maps and their difference, per distilled pair, over a timeline."""

    snapshotShown = QtCore.Signal(int)      # index of the snapshot now on screen
    exported = QtCore.Signal(str, str)      # what was written, where (from the Export menu)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("attentionView")
        self.state = AttentionTimeline()
        self._render_due = False                     # the current snapshot is still to be drawn
        self._render_timer = PacedTimer(self, name="maps: draw")     # draws it on the next event-loop turn
        self._render_timer.timeout.connect(self._render_pending)
        self._rendered_at = -math.inf                # time.monotonic() of the last drawing

        self._waiting = PLACEHOLDER
        self.export_directory = lambda: ""          # where the Export dialogs start (the window: the run folder)
        self.play_button = QtWidgets.QToolButton()
        self.play_button.setObjectName("attentionPlay")
        self.play_button.setCheckable(True)
        self.play_button.setEnabled(False)
        self.play_button.setIcon(self.style().standardIcon(QtWidgets.QStyle.StandardPixmap.SP_MediaPlay))
        self.play_button.setToolTip("Play the snapshots from the one shown to the newest")
        self._play_timer = QtCore.QTimer(self)
        self._play_timer.setInterval(PLAY_INTERVAL_MS)
        self._play_timer.timeout.connect(self._play_step)
        self.timeline = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.timeline.setObjectName("attentionTimeline")
        self.timeline.setToolTip("Replay the snapshots; at the right end the view follows new ones")
        self.timeline.setEnabled(False)
        self.timeline.setMinimumWidth(50)
        self.timeline_label = QtWidgets.QLabel("no snapshot yet")
        self.timeline_label.setObjectName("attentionTimelineLabel")
        self.timeline_label.setMinimumWidth(120)
        self.live_button = QtWidgets.QToolButton()
        self.live_button.setObjectName("attentionLive")
        self.live_button.setText("● live")
        self.live_button.setCheckable(True)
        self.live_button.setEnabled(False)
        self.live_button.setToolTip("Follow new snapshots as they arrive (jumps to the newest)")

        self.probe_list = QtWidgets.QListWidget()
        self.probe_list.setObjectName("attentionProbes")
        self.probe_list.setToolTip("Tick the probe images to show")
        self.probe_list.setMinimumSize(150, 120)
        self.probe_button = QtWidgets.QToolButton()
        self.probe_button.setObjectName("attentionProbeButton")
        self.probe_button.setText("probes")
        self.probe_button.setToolTip("Which probe images to show (tick them in the list)")
        self.probe_button.setPopupMode(QtWidgets.QToolButton.ToolButtonPopupMode.InstantPopup)
        probe_menu = QtWidgets.QMenu(self.probe_button)
        probe_action = QtWidgets.QWidgetAction(probe_menu)
        probe_action.setDefaultWidget(self.probe_list)
        probe_menu.addAction(probe_action)
        self.probe_button.setMenu(probe_menu)
        self.probe_button.setEnabled(False)

        self.scale_box = QtWidgets.QComboBox()
        self.scale_box.setObjectName("attentionDifferenceScale")
        for key, label in DIFFERENCE_SCALES.items():
            self.scale_box.addItem(f"Δ {key}", key)
            self.scale_box.setItemData(self.scale_box.count() - 1, label, QtCore.Qt.ItemDataRole.ToolTipRole)
        self.scale_box.setToolTip("The difference map's colour scale, symmetric about 0. Adaptive: the 99.5th "
                                  "percentile of this snapshot's |student − teacher|, so small differences late "
                                  "in a run stay visible. Fixed: the largest of those over the run, so a replay "
                                  "compares like with like.")

        self.export_button = ExportButton(self)

        self.scroll = QtWidgets.QScrollArea()
        self.scene = AttentionScene(self._available_width, self._available_height)
        self.graphics: pg.GraphicsLayoutWidget = self.scene.graphics
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.graphics)
        # Always there (disabled while nothing scrolls): a vertical bar that came with a snapshot's
        # first picture narrowed the picture, which was laid out and painted whole a second time.
        self.scroll.setVerticalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
        self.scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)

        top = QtWidgets.QHBoxLayout()
        top.setSpacing(4)
        top.addWidget(self.play_button)
        top.addWidget(self.timeline, 1)
        top.addWidget(self.timeline_label)
        top.addWidget(self.live_button)
        top.addWidget(self.probe_button)
        top.addWidget(self.scale_box)
        top.addWidget(self.export_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 0)
        layout.setSpacing(2)
        layout.addLayout(top)
        layout.addWidget(self.scroll, 1)

        self.timeline.valueChanged.connect(self._show)
        self.live_button.clicked.connect(self._live_clicked)
        self.play_button.toggled.connect(self._play_toggled)
        self.probe_list.itemChanged.connect(self._probe_ticked)
        self.scale_box.activated.connect(lambda _i: self.set_difference_scale(self.scale_box.currentData()))
        self._placeholder()

    # -- public API ---------------------------------------------------------------------------

    def add_snapshots(self, snaps: Sequence[AttentionSnapshot]) -> None:
        """Append snapshots; if the view was at the newest one (live), show the newest again."""
        if not snaps:
            return
        was_live = self.state.add(snaps)
        if self.probe_list.count() != self.state.probe_count():
            self._sync_probe_list()
        self._update_timeline_range()
        if was_live and not self._play_timer.isActive():
            self._show(self.state.current, live=True)
        else:
            self._update_timeline_label()
            if self.scene.drawn is not None and not self._render_due:
                self.scene.set_caption(self.state.caption(self.state.current))   # "snapshot 3/N": N grew

    def set_snapshots(self, snaps: Sequence[AttentionSnapshot]) -> None:
        """Replace every snapshot (opening a finished run) and show the newest."""
        snaps = list(snaps)
        for snap in snaps:                           # all checked before anything is replaced
            check_snapshot(snap)
        self.clear()
        self.add_snapshots(snaps)

    def clear(self) -> None:
        """Forget every snapshot and empty the picture."""
        self.play_button.setChecked(False)
        self.state.clear()
        self._update_timeline_range()
        self._update_timeline_label()
        self._placeholder()

    def snapshot_count(self) -> int:
        return len(self.state)

    def current_index(self) -> int:
        """Index of the snapshot on screen, −1 when there is none."""
        return self.state.current

    def is_live(self) -> bool:
        """Whether the view follows new snapshots (it shows the newest, or there is none yet)."""
        return self.state.is_live()

    def show_snapshot(self, i: int) -> None:
        """Show snapshot ``i`` (negative counts from the end); the newest one means "live"."""
        index = self.state.index(i)
        if self.timeline.value() != index:
            self.timeline.setValue(index)        # shows it through _show
        else:
            self._show(index)

    def probe_indices(self) -> list[int]:
        return list(self.state.probes)

    def set_probe_indices(self, indices: Sequence[int]) -> None:
        """Show these probe images (in this order, duplicates dropped)."""
        self.state.set_probes(indices)
        self._sync_probe_list()
        self._rerender()

    def image_items(self) -> dict[tuple[str, str], pg.ImageItem]:
        """The ImageItems on screen, keyed ``(pair name, role)``, role in :data:`~app.attention_maps.ROLES`.

        Each shows one column of a pair: the selected probes top to bottom, as a mosaic (see
        :func:`~app.attention_maps.mosaic`); :meth:`displayed_array` cuts one probe's array out of it.
        """
        self._render_pending()
        return self.scene.image_items()

    def shown_probes(self) -> list[int]:
        """The probe images on screen, top to bottom (the selected ones the snapshot holds)."""
        self._render_pending()
        self.scene.finish()
        return list(self.scene.probes) if self.scene.blocks else []

    def displayed_array(self, pair: str, probe: int, role: str) -> np.ndarray:
        """The array on screen for probe image ``probe`` of pair ``pair`` in column ``role``, at its
        native size: the probe image as uint8 RGB, or the teacher/student/difference map."""
        self._render_pending()
        return self.scene.tile(pair, probe, role)

    def levels(self) -> dict[str, tuple[float, float]]:
        """The colour scales in use: ``{"maps": (0, hi), "difference": (−d, d)}``."""
        return {"maps": self.state.map_levels(), "difference": self.state.difference_levels()}

    def set_difference_scale(self, scale: str) -> None:
        """``"adaptive"`` (the snapshot shown's own robust bound) or ``"fixed"`` (the largest over the run)."""
        self.state.set_difference_scale(scale)
        self.scale_box.setCurrentIndex(max(0, self.scale_box.findData(scale)))
        self._rerender()

    def difference_scale(self) -> str:
        return self.state.difference_scale

    def set_waiting_text(self, text: str) -> None:
        """What the picture says while there is no snapshot yet (what it waits for, and when maps come)."""
        text = text or PLACEHOLDER
        if text != self._waiting:
            self._waiting = text
            if not len(self.state):
                self.scene.placeholder(text)

    def waiting_text(self) -> str:
        return self._waiting

    def is_playing(self) -> bool:
        return self._play_timer.isActive()

    def play(self, on: bool = True) -> None:
        """Play the snapshots from the one shown to the newest (from the first when at the newest)."""
        self.play_button.setChecked(on)

    def export_png(self, path) -> Path:
        """Save the picture (title, colour bars and every row) as a PNG; returns the path."""
        if self.state.current < 0:
            raise ValueError("no attention snapshot to export yet")
        self._render_pending()
        return save_png(self.scene.grab(), path)

    def export_png_sequence(self, folder) -> list[Path]:
        """Save every snapshot as ``attention_0001.png``, ... in ``folder``; returns the paths."""
        return save_png_sequence(self.render_frames(), folder)

    def export_gif(self, path, fps: float = 4) -> Path:
        """Save the whole evolution as an animated GIF, one frame per snapshot, looping."""
        check_fps(fps)
        return save_gif(self.render_frames(), path, fps)

    def render_frames(self) -> list[QtGui.QImage]:
        """Draw every snapshot and grab it, in order, then show the current snapshot again."""
        if not len(self.state):
            raise ValueError("no attention snapshot to export yet")
        self._render_timer.stop()               # every frame is drawn here, in order
        self._render_due = False
        images = []
        try:
            for index in range(len(self.state)):
                self._render(index)
                images.append(self.scene.grab())
        finally:
            if self.state.shown() is not None:
                self._render(self.state.current)
        return images

    # -- timeline ---------------------------------------------------------------------------------

    def _update_timeline_range(self) -> None:
        count = len(self.state)
        self.timeline.blockSignals(True)
        self.timeline.setRange(0, max(0, count - 1))
        if self.state.current >= 0:
            self.timeline.setValue(self.state.current)
        self.timeline.blockSignals(False)
        self.timeline.setEnabled(count > 1)
        self.play_button.setEnabled(count > 1)
        self.probe_button.setEnabled(count > 0)
        self.export_button.setEnabled(count > 0)

    def _update_timeline_label(self) -> None:
        live, current = self.state.is_live(), self.state.current
        self.live_button.setChecked(live and current >= 0)
        self.live_button.setEnabled(current >= 0)
        if current < 0:
            self.timeline_label.setText("no snapshot yet")
            return
        self.timeline_label.setText(self.state.caption(current))
        self.timeline_label.setToolTip("" if live else "Pinned to this snapshot: press \"live\" or drag "
                                                       "the slider to the end to follow new ones")

    def _play_toggled(self, on: bool) -> None:
        icon = QtWidgets.QStyle.StandardPixmap.SP_MediaPause if on else QtWidgets.QStyle.StandardPixmap.SP_MediaPlay
        self.play_button.setIcon(self.style().standardIcon(icon))
        if not on:
            self._play_timer.stop()
            return
        if len(self.state) < 2:
            self.play_button.setChecked(False)
            return
        if self.state.is_live():
            self.show_snapshot(0)                    # at the newest: play from the start
        self._play_timer.start()

    def _play_step(self) -> None:
        if self.state.current + 1 >= len(self.state):
            self.play_button.setChecked(False)       # at the newest: live again
            return
        self.show_snapshot(self.state.current + 1)

    def _live_clicked(self) -> None:
        if len(self.state):
            self.show_snapshot(-1)
        else:
            self.live_button.setChecked(False)

    def _show(self, index: int, live: bool = False) -> None:
        if not 0 <= index < len(self.state):
            return
        self.state.current = index
        self._request_render(live)
        self._update_timeline_label()
        self.snapshotShown.emit(index)

    # -- probe selector ---------------------------------------------------------------------------

    def _sync_probe_list(self) -> None:
        self.probe_list.blockSignals(True)
        self.probe_list.clear()
        if len(self.state):
            labels = self.state.snapshots[-1].labels
            for i in range(self.state.probe_count()):
                text = f"{i} · class {labels[i]}" if i < len(labels) else str(i)
                item = QtWidgets.QListWidgetItem(text)
                item.setData(QtCore.Qt.ItemDataRole.UserRole, i)
                item.setFlags(item.flags() | QtCore.Qt.ItemFlag.ItemIsUserCheckable)
                checked = i in self.state.probes
                item.setCheckState(QtCore.Qt.CheckState.Checked if checked else QtCore.Qt.CheckState.Unchecked)
                self.probe_list.addItem(item)
        self.probe_list.blockSignals(False)
        self._update_probe_button()

    def _update_probe_button(self) -> None:
        ticked = ", ".join(map(str, self.state.probes)) if self.state.probes else "none"
        self.probe_button.setText(f"probes {ticked}" if len(ticked) <= 14 else f"{len(self.state.probes)} probes")

    def _probe_ticked(self, _item: QtWidgets.QListWidgetItem) -> None:
        self.state.probes = [self.probe_list.item(row).data(QtCore.Qt.ItemDataRole.UserRole)
                             for row in range(self.probe_list.count())
                             if self.probe_list.item(row).checkState() == QtCore.Qt.CheckState.Checked]
        self._update_probe_button()
        self._rerender()

    # -- drawing ----------------------------------------------------------------------------------

    def _placeholder(self) -> None:
        self._render_timer.stop()
        self._render_due = False
        self.scene.placeholder(self._waiting)

    def _rerender(self) -> None:
        if self.state.current >= 0:
            self._request_render()

    def _request_render(self, live: bool = False) -> None:
        """Draw the current snapshot on the next event-loop turn (once, however often asked).

        So the worker's hand-over returns at once, and drawing the snapshot, with the repaint it
        causes, is a turn of its own instead of adding to the other widgets' in the same turn.
        Following new snapshots (``live``), it draws at most every :data:`LIVE_RENDER_INTERVAL_S`;
        what the user asks for (slider, probes) is drawn on the next turn. What asks for the items
        (and the exports) draws at once.
        """
        self._render_due = True
        wait = (max(LIVE_RENDER_DELAY_S, self._rendered_at + LIVE_RENDER_INTERVAL_S - time.monotonic()) if live
                else 0.0)
        if not self._render_timer.isActive() or self._render_timer.remainingTime() > 1000 * wait:
            self._render_timer.start(math.ceil(1000 * wait))

    def _render_pending(self) -> None:
        self._render_timer.stop()
        if self._render_due:
            self._render_due = False
            self._rendered_at = time.monotonic()
            if self.state.shown() is not None:
                self._render(self.state.current)

    def _render(self, index: int) -> None:
        snap = self.state.snapshots[index]
        first = {pair.name: self.state.first_mean_difference(pair.name) for pair in snap.pairs}
        self.scene.render(snap, self.state.probes_of(snap), self.state.caption(index),
                          (self.state.map_levels(), self.state.difference_levels(index)),
                          {name: value for name, value in first.items() if value is not None})

    def _available_width(self) -> float:
        """The width the picture may fill: the scroll area's, less a scroll bar (so the result does
        not depend on whether the bar shows)."""
        return self.scroll.width() - self.scroll.verticalScrollBar().sizeHint().width()

    def _available_height(self) -> float:
        """The height the picture may fill without scrolling (less a horizontal scroll bar)."""
        return self.scroll.height() - self.scroll.horizontalScrollBar().sizeHint().height()

    def visible_probe_rows(self) -> int:
        """How many probe rows of the first pair are fully visible without scrolling (0 when none shows)."""
        self._render_pending()
        self.scene.finish()
        return self.scene.rows_within(self.scroll.viewport().height() + self.scroll.verticalScrollBar().value())

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        self.scene.fit()
