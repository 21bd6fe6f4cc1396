"""Pick layers of a model: a tree of its named modules with their shapes, and a filter box.

The layers and their shapes come from the core (:func:`featdistill_core.model_layers`: the model
built and one image run through it, without gradients). That takes up to a few seconds on a CPU for
a large model, so :class:`LayerLoader` does it on a short-lived background thread and caches the
result by (architecture, number of classes, image size): switching back to a model is instant.

A tree shows the shape the chosen method reads (:meth:`LayerPicker.set_taps`): what each layer
outputs, or for a method that taps a layer's input (e.g. the embedding entering the classifier),
what it receives.
"""

from __future__ import annotations

import queue
import threading

from PySide6 import QtCore, QtGui, QtWidgets

from featdistill_core import LayerInfo, Taps, model_layers

from app.worker import GuiGarbage

PATH_ROLE = QtCore.Qt.ItemDataRole.UserRole

_cache: dict[tuple[str, int, int], tuple[LayerInfo, ...] | str] = {}
_cache_lock = threading.Lock()


def cached_layers(arch: str, num_classes: int, image_size: int) -> tuple[LayerInfo, ...]:
    """:func:`featdistill_core.model_layers` on a 3×S×S input, cached by its arguments.

    Raises ``ValueError`` with the core's one-line message when the model cannot be built or cannot
    run on that input (the message is cached too, so a bad name is not retried at every refresh).
    """
    key = (arch, num_classes, image_size)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is None:
        try:
            cached = tuple(model_layers(arch, num_classes, (3, image_size, image_size)))
        except ValueError as exc:
            cached = str(exc)
        with _cache_lock:
            _cache[key] = cached
    if isinstance(cached, str):
        raise ValueError(cached)
    return cached


def is_cached(arch: str, num_classes: int, image_size: int) -> bool:
    with _cache_lock:
        return (arch, num_classes, image_size) in _cache


LayerResult = tuple[str, "list[LayerInfo] | None", str]   # (arch, layers or None, error message)


class LayerLoader(QtCore.QObject):
    """Lists the layers of a teacher and a student without blocking the GUI thread.

    :meth:`request` starts a background thread (unless everything is cached); ``loaded(key, results)``
    is emitted on the GUI thread with one :data:`LayerResult` per architecture, and only for the most
    recent request. The thread never touches Qt: it leaves its result in a queue that a GUI-thread
    timer collects.
    """

    loaded = QtCore.Signal(object, object)

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self._results: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._current = None
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(30)
        self._timer.timeout.connect(self._collect)

    @property
    def busy(self) -> bool:
        return any(t.is_alive() for t in self._threads) or not self._results.empty()

    def request(self, archs: tuple[str, ...], num_classes: int, image_size: int) -> bool:
        """Ask for the layers of ``archs``; True when answered at once (everything cached)."""
        key = (archs, num_classes, image_size)
        self._current = key
        if all(is_cached(a, num_classes, image_size) for a in archs if a):
            self.loaded.emit(key, self._compute(key))
            return True
        thread = threading.Thread(target=lambda: self._results.put((key, self._compute(key))),
                                  name="featdistill-layers", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        GuiGarbage.instance().hold(thread)      # no garbage collection on this thread (see GuiGarbage)
        thread.start()
        self._timer.start()
        return False

    def wait(self, timeout: float = 30.0) -> None:
        """Block until the background threads have finished (for closing and tests)."""
        for thread in self._threads:
            thread.join(timeout)
        self._collect()

    @staticmethod
    def _compute(key) -> list[LayerResult]:
        archs, num_classes, image_size = key
        results = []
        for arch in archs:
            if not arch:
                results.append((arch, None, "Choose a model."))
                continue
            try:
                results.append((arch, list(cached_layers(arch, num_classes, image_size)), ""))
            except ValueError as exc:
                results.append((arch, None, str(exc)))
        return results

    def _collect(self) -> None:
        finished = not any(t.is_alive() for t in self._threads)   # before draining: no result is missed
        while True:
            try:
                key, results = self._results.get_nowait()
            except queue.Empty:
                break
            if key == self._current:
                self.loaded.emit(key, results)
        if finished:
            self._timer.stop()


def format_shape(shape: tuple[int, ...] | None) -> str:
    """``(64, 8, 8)`` → ``"64×8×8"``; ``None`` (not a tensor) → ``"–"``."""
    return "×".join(str(s) for s in shape) if shape else "–"


class LayerPicker(QtWidgets.QWidget):
    """A filter box above a tree of one model's layers. Several layers may be selected, in the
    model's order (for methods that pair more than one layer per side)."""

    selectionChanged = QtCore.Signal()
    COLUMNS = ("Layer", "Type", "Output shape")
    SHAPE_TITLES = {Taps.OUTPUT: "Output shape", Taps.INPUT: "Input shape", Taps.LOGITS: "Output shape"}

    def __init__(self, role: str, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.role = role
        self._layers: dict[str, LayerInfo] = {}
        self._items: dict[str, QtWidgets.QTreeWidgetItem] = {}
        self._taps = Taps.OUTPUT

        self.title = QtWidgets.QLabel(f"<b>{role.capitalize()} layers</b>")
        self.filter_edit = QtWidgets.QLineEdit()
        self.filter_edit.setObjectName(f"{role}LayerFilter")
        self.filter_edit.setPlaceholderText("Filter by name or type, e.g. layer2 or Conv")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.setToolTip(
            f"Show only the {role}'s layers whose path or type contains this text (and their parents)."
        )
        self.filter_edit.textChanged.connect(self._apply_filter)

        self.tree = QtWidgets.QTreeWidget()
        self.tree.setObjectName(f"{role}LayerTree")
        self.tree.setColumnCount(len(self.COLUMNS))
        self.tree.setHeaderLabels(list(self.COLUMNS))
        self.tree.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setToolTip(
            f"The {role}'s named modules and the shape of what each outputs (or, for a method that "
            "reads a layer's input, receives) for one image (channels×height×width). Select a layer "
            "here and one in the other tree, then 'Add pair'. For a method that pairs several layers "
            "per side, Ctrl+click to select more; they are taken in the model's order."
        )
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.tree.itemSelectionChanged.connect(self.selectionChanged)

        self.message = QtWidgets.QLabel()
        self.message.setWordWrap(True)
        self.message.hide()

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(3)
        layout.addWidget(self.title)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.message)

    # ---- content ---------------------------------------------------------------------------
    def set_title(self, text: str) -> None:
        self.title.setText(text)

    def set_layers(self, layers: list[LayerInfo] | tuple[LayerInfo, ...] | None, message: str = "") -> None:
        """Show ``layers`` (or, when ``None``, nothing but ``message``, e.g. why the model failed)."""
        selected = self.selected_paths()
        self.tree.clear()
        self._items.clear()
        self._layers = {info.path: info for info in (layers or ()) if info.path}
        if message:
            self.message.setStyleSheet("color: #b00020;")
            self.message.setText(message)
            self.message.show()
        else:
            self.message.hide()
        for info in self._layers.values():
            parent_path = info.path.rsplit(".", 1)[0] if "." in info.path else ""
            parent = self._items.get(parent_path)
            item = QtWidgets.QTreeWidgetItem([info.path.rsplit(".", 1)[-1], info.type_name, ""])
            item.setData(0, PATH_ROLE, info.path)
            if parent is None:
                self.tree.addTopLevelItem(item)
            else:
                parent.addChild(item)
            self._items[info.path] = item
        self._show_shapes()
        self.tree.expandToDepth(0)
        self._apply_filter(self.filter_edit.text())
        self.select_paths([p for p in selected if p in self._items])

    def set_taps(self, taps: str) -> None:
        """Show the shape a method with these ``taps`` reads: each layer's output, or its input."""
        if taps != self._taps:
            self._taps = taps
            self._show_shapes()

    def _show_shapes(self) -> None:
        self.tree.headerItem().setText(2, self.SHAPE_TITLES.get(self._taps, "Output shape"))
        grey = QtGui.QBrush(QtGui.QColor("#909090"))
        for path, item in self._items.items():
            info = self._layers[path]
            shape = info.tapped_shape(self._taps)
            item.setText(2, format_shape(shape))
            tip = (f"{info.path} · {info.type_name} · output {format_shape(info.shape)} · "
                   f"input {format_shape(info.input_shape)} · {info.num_params:,} parameters")
            for column in range(len(self.COLUMNS)):
                item.setToolTip(column, tip)
            usable = shape is not None      # a module that gives no tensor here cannot be matched
            flags = item.flags()
            item.setFlags(flags | QtCore.Qt.ItemFlag.ItemIsSelectable if usable
                          else flags & ~QtCore.Qt.ItemFlag.ItemIsSelectable)
            if usable:
                item.setData(0, QtCore.Qt.ItemDataRole.ForegroundRole, None)
            else:
                item.setForeground(0, grey)
            if not usable:
                item.setSelected(False)

    def show_loading(self) -> None:
        """Empty the tree and say that the layers are being listed."""
        self.set_layers(None)
        self.message.setStyleSheet("color: #707070;")
        self.message.setText("Listing the layers (building the model and running one image through it)…")
        self.message.show()

    def layers(self) -> dict[str, LayerInfo]:
        return dict(self._layers)

    def shapes(self) -> dict[str, tuple[int, ...] | None]:
        return {path: info.shape for path, info in self._layers.items()}

    # ---- selection -------------------------------------------------------------------------
    def selected_paths(self) -> list[str]:
        """The selected layers' paths in the model's order (a multi-layer term takes them so)."""
        chosen = {item.data(0, PATH_ROLE) for item in self.tree.selectedItems()}
        return [path for path in self._layers if path in chosen]

    def select_paths(self, paths: list[str]) -> None:
        self.tree.clearSelection()
        for path in paths:
            item = self._items.get(path)
            if item is not None:
                item.setSelected(True)
                self.tree.scrollToItem(item)

    # ---- filter ----------------------------------------------------------------------------
    def set_filter(self, text: str) -> None:
        self.filter_edit.setText(text)

    def visible_paths(self) -> list[str]:
        return [path for path, item in self._items.items() if not item.isHidden()]

    def _apply_filter(self, text: str) -> None:
        needle = text.strip().lower()

        def visit(item: QtWidgets.QTreeWidgetItem) -> bool:
            path = item.data(0, PATH_ROLE)
            info = self._layers[path]
            own = not needle or needle in path.lower() or needle in info.type_name.lower()
            child_match = False
            for i in range(item.childCount()):
                child_match |= visit(item.child(i))
            visible = own or child_match
            item.setHidden(not visible)
            if needle and child_match:
                item.setExpanded(True)
            return visible

        for i in range(self.tree.topLevelItemCount()):
            visit(self.tree.topLevelItem(i))
