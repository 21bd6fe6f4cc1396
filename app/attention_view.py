"""The attention-map viewer: teacher, student and their difference on a few probe images.

For every distilled pair of a snapshot the view shows one row per selected probe image::

    probe image | teacher map | student map | difference (student − teacher)

Teacher and student maps come from the trainer already brought to one spatial size and scaled to
mean 1 over their positions (see :class:`featdistill_core.events.PairMaps`), so they share ONE colour
scale, ``[0, hi]``, set by the teacher's maps; the difference has a symmetric diverging scale
``[−d, d]``. Both bounds are robust (99.5th percentile, rounded up to a round number) and only ever
grow over the snapshots received, so replaying the timeline compares like with like: as the student
learns, the difference fades to white. Each pair's header gives the mean |student − teacher| over all probe images.

Every map is stretched over the probe image's extent (nearest-neighbour, so a 8×8 map shows its
true resolution) and the panels of a row line up pixel for pixel.

A timeline slider replays every snapshot received; at its right end the view follows new snapshots
("live"), anywhere else it stays put. The view can be exported as a PNG, an animated GIF of the whole
evolution or a numbered PNG sequence.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app import colormaps
from featdistill_core.events import AttentionSnapshot

ROLES = ("image", "teacher", "student", "difference")
DEFAULT_PROBES = (0, 1, 2, 3)
ROBUST_PERCENTILE = 99.5
MIN_CELL_PX = 72           # an image panel never gets narrower than this (the view scrolls instead)
MAX_CELL_PX = 240          # nor wider: beyond this a 32×32 probe image only gets blurrier
ROW_LABEL_PX = 64          # width of the "probe k / class c" column
TITLE_PX = 30
HEADER_PX = 24
BAR_ROW_PX = 64
SPACING_PX = 4
MAX_GIF_FPS = 50


# --------------------------------------------------------------------------------------------------
# pure helpers (no Qt)


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k that is ≥ ``value`` (a colour-bar bound that reads well)."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * power >= value * (1 - 1e-12):
            return step * power
    return 10.0 * power


def display_map(values: np.ndarray) -> np.ndarray:
    """A map ready for an ImageItem: C-contiguous float32, non-finite values replaced by 0."""
    out = np.ascontiguousarray(values, dtype=np.float32)
    if not np.isfinite(out).all():
        out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    return out


def display_image(image: np.ndarray) -> np.ndarray:
    """A probe image (H, W, 3) float in [0, 1] as C-contiguous uint8 RGB."""
    return np.ascontiguousarray(np.clip(np.nan_to_num(image) * 255.0 + 0.5, 0, 255).astype(np.uint8))


def mean_abs_difference(teacher: np.ndarray, student: np.ndarray) -> float:
    """mean |student − teacher| over all probe images and positions."""
    return float(np.mean(np.abs(student.astype(np.float64) - teacher.astype(np.float64))))


def snapshot_bounds(snapshot: AttentionSnapshot) -> tuple[float, float]:
    """Robust colour bounds of one snapshot, rounded up: ``(hi, d)``.

    ``hi`` (the shared teacher/student scale) is the 99.5th percentile of the TEACHER maps: the
    teacher is the target and does not change while the student learns, so the scale stays put and
    a student map hotter than the teacher's saturates rather than washing the teacher out. ``d`` (the
    difference scale) is the 99.5th percentile of |student − teacher|.
    """
    if not snapshot.pairs:
        return 1.0, 1.0
    teacher = np.concatenate([np.abs(p.teacher).ravel() for p in snapshot.pairs])
    diffs = np.concatenate([np.abs(p.student - p.teacher).ravel() for p in snapshot.pairs])
    hi = np.nanpercentile(teacher, ROBUST_PERCENTILE) if teacher.size else 1.0
    d = np.nanpercentile(diffs, ROBUST_PERCENTILE) if diffs.size else 1.0
    return nice_ceiling(float(hi)), nice_ceiling(float(d))


def check_snapshot(snapshot: AttentionSnapshot) -> None:
    """Raise ValueError (one line) when a snapshot's arrays do not fit together."""
    images = np.asarray(snapshot.images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"snapshot at step {snapshot.step}: images must have shape (N, H, W, 3), "
                         f"got {images.shape}")
    count = images.shape[0]
    for pair in snapshot.pairs:
        teacher, student = np.asarray(pair.teacher), np.asarray(pair.student)
        if teacher.ndim != 3 or teacher.shape != student.shape:
            raise ValueError(f"snapshot at step {snapshot.step}, pair {pair.name!r}: teacher and student maps "
                             f"must both have shape (N, H, W), got {teacher.shape} and {student.shape}")
        if teacher.shape[0] != count:
            raise ValueError(f"snapshot at step {snapshot.step}, pair {pair.name!r}: maps for {teacher.shape[0]} "
                             f"probe images but {count} images")


def qimage_to_pil(image: QtGui.QImage):
    """A copy of ``image`` as a Pillow RGB image."""
    from PIL import Image

    rgba = image.convertToFormat(QtGui.QImage.Format.Format_RGBA8888)
    width, height = rgba.width(), rgba.height()
    buffer = np.frombuffer(rgba.constBits(), dtype=np.uint8, count=rgba.sizeInBytes())
    array = buffer.reshape(height, rgba.bytesPerLine())[:, : width * 4].reshape(height, width, 4)
    return Image.fromarray(array[..., :3].copy(), "RGB")


def _same_size(frames: list) -> list:
    """Frames padded with white to the largest width and height (the layout can change over a run)."""
    from PIL import Image

    width = max(frame.width for frame in frames)
    height = max(frame.height for frame in frames)
    padded = []
    for frame in frames:
        if frame.size != (width, height):
            canvas = Image.new("RGB", (width, height), colormaps.BACKGROUND)
            canvas.paste(frame, (0, 0))
            frame = canvas
        padded.append(frame)
    return padded


# --------------------------------------------------------------------------------------------------
# the widget


def _label(text: str, *, size: str = "9pt", bold: bool = False, justify: str = "center") -> pg.LabelItem:
    return pg.LabelItem(text, color=colormaps.FOREGROUND, size=size, bold=bold, justify=justify)


def _image_cell(rect: QtCore.QRectF) -> tuple[pg.ViewBox, pg.ImageItem]:
    view = pg.ViewBox(lockAspect=True, invertY=True, enableMouse=False, enableMenu=False,
                      border=pg.mkPen(colormaps.CELL_BORDER))
    view.setMinimumSize(MIN_CELL_PX, MIN_CELL_PX)
    item = pg.ImageItem(axisOrder="row-major")
    view.addItem(item)
    view.setRange(rect, padding=0.0)
    return view, item


def _style_bar(bar: pg.ColorBarItem) -> None:
    for name in ("left", "right", "top", "bottom"):
        axis = bar.getAxis(name)
        axis.setPen(pg.mkPen(colormaps.FOREGROUND))
        axis.setTextPen(pg.mkPen(colormaps.FOREGROUND))
    bar.setMaximumHeight(BAR_ROW_PX)


class AttentionView(QtWidgets.QWidget):
    """Teacher/student attention maps and their difference, per distilled pair, over a timeline."""

    snapshotShown = QtCore.Signal(int)      # index of the snapshot now on screen

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("attentionView")
        self._snapshots: list[AttentionSnapshot] = []
        self._current = -1
        self._probe_indices: list[int] = list(DEFAULT_PROBES)
        self._map_hi = 0.0                 # shared teacher/student bound, grows with the snapshots
        self._diff_bound = 0.0             # symmetric difference bound
        self._first_mean_diff: dict[str, float] = {}
        self._layout_key: tuple | None = None
        self._items: dict[tuple[str, int, str], pg.ImageItem] = {}
        self._headers: dict[str, pg.LabelItem] = {}
        self._title: pg.LabelItem | None = None
        self._grid_shape = (0, 0, 1.0)     # (pairs, probe rows per pair, image height / width)
        self._map_bar: pg.ColorBarItem | None = None
        self._diff_bar: pg.ColorBarItem | None = None

        # timeline
        self.timeline = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.timeline.setObjectName("attentionTimeline")
        self.timeline.setToolTip("Replay the snapshots; at the right end the view follows new ones")
        self.timeline.setEnabled(False)
        self.timeline_label = QtWidgets.QLabel("no snapshot yet")
        self.timeline_label.setObjectName("attentionTimelineLabel")
        self.timeline_label.setMinimumWidth(200)
        self.live_button = QtWidgets.QToolButton()
        self.live_button.setObjectName("attentionLive")
        self.live_button.setText("● live")
        self.live_button.setCheckable(True)
        self.live_button.setEnabled(False)
        self.live_button.setToolTip("Follow new snapshots as they arrive (jumps to the newest)")

        # probe selector
        self.probe_list = QtWidgets.QListWidget()
        self.probe_list.setObjectName("attentionProbes")
        self.probe_list.setFlow(QtWidgets.QListView.Flow.LeftToRight)
        self.probe_list.setWrapping(False)
        self.probe_list.setFixedHeight(44)
        self.probe_list.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.probe_list.setToolTip("Tick the probe images to show")

        # exports
        self.export_button = QtWidgets.QToolButton()
        self.export_button.setObjectName("attentionExport")
        self.export_button.setText("Export")
        self.export_button.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.export_button.setPopupMode(QtWidgets.QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QtWidgets.QMenu(self.export_button)
        self.png_action = menu.addAction("This snapshot as PNG…")
        self.gif_action = menu.addAction("All snapshots as animated GIF…")
        self.sequence_action = menu.addAction("All snapshots as PNG sequence…")
        self.export_button.setMenu(menu)
        self.export_button.setEnabled(False)

        # the picture
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setObjectName("attentionGraphics")
        self.graphics.setBackground(colormaps.BACKGROUND)
        self.graphics.ci.setSpacing(SPACING_PX)
        self.scroll = QtWidgets.QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.graphics)
        self.scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)

        top = QtWidgets.QHBoxLayout()
        top.addWidget(QtWidgets.QLabel("snapshot"))
        top.addWidget(self.timeline, 1)
        top.addWidget(self.timeline_label)
        top.addWidget(self.live_button)
        middle = QtWidgets.QHBoxLayout()
        middle.addWidget(QtWidgets.QLabel("probe images"))
        middle.addWidget(self.probe_list, 1)
        middle.addWidget(self.export_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 0)
        layout.addLayout(top)
        layout.addLayout(middle)
        layout.addWidget(self.scroll, 1)

        self.timeline.valueChanged.connect(self._slider_moved)
        self.live_button.clicked.connect(self._live_clicked)
        self.probe_list.itemChanged.connect(self._probe_ticked)
        self.png_action.triggered.connect(self._ask_png)
        self.gif_action.triggered.connect(self._ask_gif)
        self.sequence_action.triggered.connect(self._ask_sequence)
        self._placeholder("Attention maps appear here once the trainer sends its first snapshot.")

    # -- public API ---------------------------------------------------------------------------

    def add_snapshots(self, snaps: Sequence[AttentionSnapshot]) -> None:
        """Append snapshots; if the view was at the newest one (live), show the newest again."""
        if not snaps:
            return
        for snap in snaps:
            check_snapshot(snap)
        was_live = self.is_live()
        for snap in snaps:
            self._remember(snap)
        self._update_timeline_range()
        if was_live:
            self._go_to(len(self._snapshots) - 1)
        else:
            self._update_timeline_label()

    def set_snapshots(self, snaps: Sequence[AttentionSnapshot]) -> None:
        """Replace every snapshot (opening a finished run) and show the newest."""
        for snap in snaps:
            check_snapshot(snap)
        self.clear()
        self.add_snapshots(list(snaps))

    def clear(self) -> None:
        """Forget every snapshot and empty the picture."""
        self._snapshots.clear()
        self._current = -1
        self._map_hi = self._diff_bound = 0.0
        self._first_mean_diff.clear()
        self._update_timeline_range()
        self._update_timeline_label()
        self._placeholder("Attention maps appear here once the trainer sends its first snapshot.")

    def snapshot_count(self) -> int:
        return len(self._snapshots)

    def current_index(self) -> int:
        """Index of the snapshot on screen, −1 when there is none."""
        return self._current

    def is_live(self) -> bool:
        """Whether the view follows new snapshots (it shows the newest, or there is none yet)."""
        return self._current == len(self._snapshots) - 1

    def show_snapshot(self, i: int) -> None:
        """Show snapshot ``i`` (negative counts from the end); the newest one means "live"."""
        count = len(self._snapshots)
        if count == 0:
            raise ValueError("no attention snapshot to show yet")
        if not -count <= i < count:
            raise ValueError(f"snapshot index {i} is out of range: {count} snapshots (0..{count - 1})")
        self._go_to(i % count)

    def probe_indices(self) -> list[int]:
        return list(self._probe_indices)

    def set_probe_indices(self, indices: Sequence[int]) -> None:
        """Show these probe images (in this order, duplicates dropped)."""
        chosen: list[int] = []
        for index in indices:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
                raise ValueError(f"probe index must be a non-negative integer, got {index!r}")
            if int(index) not in chosen:
                chosen.append(int(index))
        available = self._probe_count()
        if available and any(i >= available for i in chosen):
            bad = next(i for i in chosen if i >= available)
            raise ValueError(f"probe index {bad} is out of range: the snapshots hold {available} "
                             f"probe images (0..{available - 1})")
        self._probe_indices = chosen
        self._sync_probe_list()
        self._rerender()

    def image_items(self) -> dict[tuple[str, int, str], pg.ImageItem]:
        """The ImageItems on screen, keyed ``(pair name, probe index, role)``, role in :data:`ROLES`."""
        return dict(self._items)

    def levels(self) -> dict[str, tuple[float, float]]:
        """The colour scales in use: ``{"maps": (0, hi), "difference": (−d, d)}``."""
        return {"maps": (0.0, self._map_hi or 1.0), "difference": (-(self._diff_bound or 1.0), self._diff_bound or 1.0)}

    def export_png(self, path) -> Path:
        """Save the picture (title, colour bars and every row) as a PNG; returns the path."""
        if self._current < 0:
            raise ValueError("no attention snapshot to export yet")
        path = Path(path)
        image = self._grab()
        if not image.save(str(path), "PNG"):
            raise OSError(f"could not write the PNG file {path}")
        return path

    def export_png_sequence(self, folder) -> list[Path]:
        """Save every snapshot as ``attention_0001.png``, ... in ``folder``; returns the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for number, image in enumerate(self._render_all(), start=1):
            path = folder / f"attention_{number:04d}.png"
            if not image.save(str(path), "PNG"):
                raise OSError(f"could not write the PNG file {path}")
            paths.append(path)
        return paths

    def export_gif(self, path, fps: float = 4) -> Path:
        """Save the whole evolution as an animated GIF, one frame per snapshot, looping."""
        if not 0 < fps <= MAX_GIF_FPS:
            raise ValueError(f"GIF frame rate must be above 0 and at most {MAX_GIF_FPS} frames per second, got {fps}")
        path = Path(path)
        frames = _same_size([qimage_to_pil(image) for image in self._render_all()])
        duration = max(20, int(round(1000 / fps)))      # GIF delays are in 10 ms units; 20 ms is the floor
        frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:],
                       duration=duration, loop=0, disposal=1)
        return path

    # -- snapshots and timeline -----------------------------------------------------------------

    def _remember(self, snap: AttentionSnapshot) -> None:
        self._snapshots.append(snap)
        hi, d = snapshot_bounds(snap)
        self._map_hi = max(self._map_hi, hi)
        self._diff_bound = max(self._diff_bound, d)
        for pair in snap.pairs:
            self._first_mean_diff.setdefault(pair.name, mean_abs_difference(pair.teacher, pair.student))
        if self.probe_list.count() != self._probe_count():
            self._sync_probe_list()

    def _probe_count(self) -> int:
        return int(self._snapshots[-1].images.shape[0]) if self._snapshots else 0

    def _update_timeline_range(self) -> None:
        count = len(self._snapshots)
        self.timeline.blockSignals(True)
        self.timeline.setRange(0, max(0, count - 1))
        if self._current >= 0:
            self.timeline.setValue(self._current)
        self.timeline.blockSignals(False)
        self.timeline.setEnabled(count > 1)
        self.export_button.setEnabled(count > 0)

    def _update_timeline_label(self) -> None:
        live = self.is_live()
        self.live_button.setChecked(live and self._current >= 0)
        self.live_button.setEnabled(self._current >= 0)
        if self._current < 0:
            self.timeline_label.setText("no snapshot yet")
            return
        self.timeline_label.setText(self._caption(self._snapshots[self._current], self._current))
        self.timeline_label.setToolTip("" if live else "Pinned to this snapshot: press \"live\" or drag "
                                                       "the slider to the end to follow new ones")

    def _live_clicked(self) -> None:
        if self._snapshots:
            self.show_snapshot(-1)
        else:
            self.live_button.setChecked(False)

    def _caption(self, snap: AttentionSnapshot, index: int) -> str:
        stage = "" if snap.stage == "student" else f" · {snap.stage} stage"
        return f"snapshot {index + 1}/{len(self._snapshots)} · step {snap.step} · epoch {snap.epoch}{stage}"

    def _go_to(self, index: int) -> None:
        if self.timeline.value() != index:
            self.timeline.setValue(index)        # renders through _slider_moved
        else:
            self._slider_moved(index)

    def _slider_moved(self, index: int) -> None:
        if not 0 <= index < len(self._snapshots):
            return
        self._current = index
        self._render(self._snapshots[index], index)
        self._update_timeline_label()
        self.snapshotShown.emit(index)

    def _rerender(self) -> None:
        if self._current >= 0:
            self._render(self._snapshots[self._current], self._current)

    # -- probe selector ---------------------------------------------------------------------------

    def _sync_probe_list(self) -> None:
        self.probe_list.blockSignals(True)
        self.probe_list.clear()
        if self._snapshots:
            labels = self._snapshots[-1].labels
            for i in range(self._probe_count()):
                text = f"{i} · class {labels[i]}" if i < len(labels) else str(i)
                item = QtWidgets.QListWidgetItem(text)
                item.setData(QtCore.Qt.ItemDataRole.UserRole, i)
                item.setFlags(item.flags() | QtCore.Qt.ItemFlag.ItemIsUserCheckable)
                checked = i in self._probe_indices
                item.setCheckState(QtCore.Qt.CheckState.Checked if checked else QtCore.Qt.CheckState.Unchecked)
                self.probe_list.addItem(item)
        self.probe_list.blockSignals(False)

    def _probe_ticked(self, _item: QtWidgets.QListWidgetItem) -> None:
        ticked = [self.probe_list.item(row).data(QtCore.Qt.ItemDataRole.UserRole)
                  for row in range(self.probe_list.count())
                  if self.probe_list.item(row).checkState() == QtCore.Qt.CheckState.Checked]
        self._probe_indices = ticked
        self._rerender()

    # -- drawing ----------------------------------------------------------------------------------

    def _placeholder(self, text: str) -> None:
        self.graphics.clear()
        self._items.clear()
        self._headers.clear()
        self._layout_key = None
        self._title = None
        self._grid_shape = (0, 0, 1.0)
        self.graphics.addItem(_label(text, size="10pt"))
        self.graphics.setMinimumSize(0, 0)

    def _shown_probes(self, snap: AttentionSnapshot) -> list[int]:
        return [i for i in self._probe_indices if i < snap.images.shape[0]]

    def _render(self, snap: AttentionSnapshot, index: int) -> None:
        probes = self._shown_probes(snap)
        key = (tuple((p.name, p.teacher_layer, p.student_layer, p.teacher.shape[1:]) for p in snap.pairs),
               snap.images.shape[1:3], tuple(probes), tuple(snap.labels))
        if key != self._layout_key:
            self._build(snap, probes)
            self._layout_key = key
        self._map_bar.setLevels((0.0, self._map_hi or 1.0))
        self._diff_bar.setLevels((-(self._diff_bound or 1.0), self._diff_bound or 1.0))
        self._title.setText(self._caption(snap, index))
        for pair in snap.pairs:
            now = mean_abs_difference(pair.teacher, pair.student)
            first = self._first_mean_diff.get(pair.name, now)
            self._headers[pair.name].setText(
                f"<b>{html.escape(pair.name)}</b> &nbsp; mean |student − teacher| = <b>{now:.3f}</b>"
                f" &nbsp;(first snapshot {first:.3f})")
            for k in probes:
                self._items[(pair.name, k, "image")].setImage(display_image(snap.images[k]), autoLevels=False)
                teacher, student = display_map(pair.teacher[k]), display_map(pair.student[k])
                self._items[(pair.name, k, "teacher")].setImage(teacher, autoLevels=False)
                self._items[(pair.name, k, "student")].setImage(student, autoLevels=False)
                self._items[(pair.name, k, "difference")].setImage(student - teacher, autoLevels=False)

    def _build(self, snap: AttentionSnapshot, probes: list[int]) -> None:
        """Lay out the title, the colour bars and one block of rows per pair (once per layout)."""
        self.graphics.clear()
        self._items.clear()
        self._headers.clear()
        layout = self.graphics.ci
        height, width = snap.images.shape[1:3]
        rect = QtCore.QRectF(0, 0, width, height)

        self._title = _label("", size="11pt", bold=True)
        layout.addItem(self._title, row=0, col=0, colspan=5)
        self._map_bar = pg.ColorBarItem(values=(0, 1), colorMap=colormaps.sequential_colormap(), width=12,
                                        interactive=False, orientation="horizontal", colorMapMenu=False,
                                        label="attention, teacher and student (mean 1 per map)")
        self._diff_bar = pg.ColorBarItem(values=(-1, 1), colorMap=colormaps.diverging_colormap(), width=12,
                                         interactive=False, orientation="horizontal", colorMapMenu=False,
                                         label="student − teacher")
        _style_bar(self._map_bar)
        _style_bar(self._diff_bar)
        layout.addItem(self._map_bar, row=1, col=2, colspan=2)
        layout.addItem(self._diff_bar, row=1, col=4)

        row = 2
        map_items, diff_items = [], []
        for pair in snap.pairs:
            header = _label("", size="10pt", justify="left")
            self._headers[pair.name] = header
            layout.addItem(header, row=row, col=0, colspan=5)
            map_shape = pair.teacher.shape[1:]
            titles = ("probe image", f"teacher · {html.escape(pair.teacher_layer)}",
                      f"student · {html.escape(pair.student_layer)}", "difference")
            for col, text in enumerate(titles, start=1):
                layout.addItem(_label(text), row=row + 1, col=col)
            row += 2
            for k in probes:
                label = snap.labels[k] if k < len(snap.labels) else "?"
                row_label = _label(f"probe {k}<br>class {html.escape(str(label))}")
                row_label.setFixedWidth(ROW_LABEL_PX)
                layout.addItem(row_label, row=row, col=0)
                for col, role in enumerate(ROLES, start=1):
                    view, item = _image_cell(rect)
                    if role != "image":
                        # stretch the map over the probe image (nearest); setRect scales by the
                        # image's size, so give the item an image of the map's shape first
                        item.setImage(np.zeros(map_shape, np.float32), autoLevels=False, levels=(0.0, 1.0))
                        item.setRect(rect)
                    layout.addItem(view, row=row, col=col)
                    self._items[(pair.name, k, role)] = item
                    if role == "difference":
                        diff_items.append(item)
                    elif role != "image":
                        map_items.append(item)
                row += 1
        if not snap.pairs:
            layout.addItem(_label("this snapshot holds no distilled pair"), row=row, col=0, colspan=5)
        if not probes and snap.pairs:
            layout.addItem(_label("no probe image ticked"), row=row, col=0, colspan=5)

        self._map_bar.setImageItem(map_items)
        self._diff_bar.setImageItem(diff_items)
        for (_, _, role), item in self._items.items():
            if role == "image":
                item.setLevels((0, 255))

        self._grid_shape = (len(snap.pairs), len(probes), height / max(width, 1))
        self._fit_height()

    def _fit_height(self) -> None:
        """Make the picture tall enough that each panel has the probe image's aspect ratio.

        The panels share the scroll area's width (less a scroll bar, so the result does not depend
        on whether the bar shows); the height follows, and the area scrolls when it does not fit.
        """
        pairs, probes, aspect = self._grid_shape
        if not pairs:
            return
        margin = 2 * 10 + 5 * SPACING_PX
        width = self.scroll.width() - self.scroll.verticalScrollBar().sizeHint().width()
        cell = min(MAX_CELL_PX, max(MIN_CELL_PX, (width - ROW_LABEL_PX - margin) / 4))
        height = TITLE_PX + BAR_ROW_PX + pairs * (2 * HEADER_PX + probes * (cell * aspect + SPACING_PX)) + margin
        self.graphics.setMinimumSize(int(ROW_LABEL_PX + 4 * MIN_CELL_PX + margin), int(height))

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_height()

    # -- export -----------------------------------------------------------------------------------

    def _grab(self) -> QtGui.QImage:
        QtWidgets.QApplication.processEvents(QtCore.QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents)
        return self.graphics.grab().toImage()

    def _render_all(self) -> list[QtGui.QImage]:
        """Render every snapshot through the view and grab it, then restore the snapshot on screen."""
        snapshots = list(self._snapshots)
        if not snapshots:
            raise ValueError("no attention snapshot to export yet")
        current = self._current
        images = []
        try:
            for index, snap in enumerate(snapshots):
                self._render(snap, index)
                images.append(self._grab())
        finally:
            if 0 <= current < len(self._snapshots):
                self._render(self._snapshots[current], current)
        return images

    def _ask_png(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save attention maps as PNG", "attention.png",
                                                        "PNG image (*.png)")
        if path:
            self._run_export(lambda: self.export_png(path))

    def _ask_gif(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save attention evolution as GIF",
                                                        "attention.gif", "GIF animation (*.gif)")
        if path:
            self._run_export(lambda: self.export_gif(path))

    def _ask_sequence(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Folder for the PNG sequence")
        if folder:
            self._run_export(lambda: self.export_png_sequence(folder))

    def _run_export(self, export) -> None:
        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
        try:
            export()
        except (OSError, ValueError) as error:
            QtWidgets.QMessageBox.warning(self, "Export failed", str(error))
        finally:
            QtWidgets.QApplication.restoreOverrideCursor()
