"""Small input widgets for the run form, each able to show a validation message at itself.

Every editor here has the same two methods, so the form can drive all of them from one table
(:data:`app.config_form.FIELDS`): ``value()`` — the value for the run file, raising ``ValueError``
with a message when the text cannot be read (a number typed as "fast") — and ``set_value(v)``.

Every field is wrapped in a :class:`FieldBox`: the input, and below it a red line that appears when
a problem names this field (``Problem.field``). The input then gets a red border (the ``invalid``
dynamic property, styled by :data:`INVALID_STYLE`).
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

ERROR_COLOUR = "#b00020"
INVALID_STYLE = f"""
*[invalid="true"] {{ border: 2px solid {ERROR_COLOUR}; border-radius: 3px; }}
QLabel#fieldError {{ color: {ERROR_COLOUR}; }}
"""


def grey_disabled_placeholders() -> None:
    """Placeholder text of a disabled field in the disabled text's grey, application-wide. (Fusion's
    palette gives disabled placeholders black: an empty, locked "Weights file" then reads like a
    filled one. Set on the application: the window's style sheet keeps a widget's palette from
    reaching its children.)"""
    app = QtWidgets.QApplication.instance()
    if app is None:
        return
    palette = app.palette()
    group, role = QtGui.QPalette.ColorGroup, QtGui.QPalette.ColorRole
    grey = palette.color(group.Disabled, role.Text)
    if palette.color(group.Disabled, role.PlaceholderText) != grey:
        palette.setColor(group.Disabled, role.PlaceholderText, grey)
        app.setPalette(palette)


class FieldBox(QtWidgets.QWidget):
    """An input widget with a hidden error line beneath it."""

    def __init__(self, editor: QtWidgets.QWidget, tooltip: str, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.editor = editor
        self.error_label = QtWidgets.QLabel()
        self.error_label.setObjectName("fieldError")
        self.error_label.setWordWrap(True)
        self.error_label.hide()
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(1)
        layout.addWidget(editor)
        layout.addWidget(self.error_label)
        self.set_tooltip(tooltip)

    def set_tooltip(self, text: str) -> None:
        self.setToolTip(text)
        self.editor.setToolTip(text)
        for child in self.editor.findChildren(QtWidgets.QWidget):
            if not child.toolTip():
                child.setToolTip(text)

    def show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.show()
        _set_invalid(self._styled_widget(), True)

    def clear_error(self) -> None:
        if self.error_label.isVisible() or self.error_label.text():
            self.error_label.clear()
            self.error_label.hide()
            _set_invalid(self._styled_widget(), False)

    @property
    def error(self) -> str:
        return self.error_label.text()

    def _styled_widget(self) -> QtWidgets.QWidget:
        inner = getattr(self.editor, "line_edit", None)
        return inner if inner is not None else self.editor


def _set_invalid(widget: QtWidgets.QWidget, invalid: bool) -> None:
    widget.setProperty("invalid", "true" if invalid else "false")
    widget.style().unpolish(widget)
    widget.style().polish(widget)


class IntSpin(QtWidgets.QSpinBox):
    """A whole number in ``[minimum, maximum]``, read when editing finishes."""

    def __init__(self, minimum: int = 0, maximum: int = 10**9, suffix: str = ""):
        super().__init__()
        self.setRange(minimum, maximum)
        self.setSuffix(suffix)
        self.setKeyboardTracking(False)

    def set_value(self, value: int) -> None:
        self.setValue(int(value))


class FloatSpin(QtWidgets.QDoubleSpinBox):
    """A number in ``[minimum, maximum]`` with a fixed number of decimals."""

    def __init__(self, minimum: float = 0.0, maximum: float = 1e6, decimals: int = 3):
        super().__init__()
        self.setRange(minimum, maximum)
        self.setDecimals(decimals)

    def set_value(self, value: float) -> None:
        self.setValue(float(value))


class CheckField(QtWidgets.QCheckBox):
    """True or false."""

    def value(self) -> bool:
        return self.isChecked()

    def set_value(self, value: bool) -> None:
        self.setChecked(bool(value))


class TextField(QtWidgets.QLineEdit):
    """One line of text, surrounding spaces removed."""

    def value(self) -> str:
        return self.text().strip()

    def set_value(self, value: str) -> None:
        self.setText(value)


class FloatEdit(QtWidgets.QLineEdit):
    """A number typed as text, so that 0.05, 5e-4 and 1e-5 all fit; reads back exactly."""

    def set_value(self, value: float) -> None:
        self.setText(repr(float(value)))

    def value(self) -> float:
        text = self.text().strip()
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"must be a number; got {text!r}") from None


class IntListEdit(QtWidgets.QLineEdit):
    """Whole numbers separated by commas, e.g. ``150, 180, 210``."""

    def set_value(self, values: list[int]) -> None:
        self.setText(", ".join(str(v) for v in values))

    def value(self) -> list[int]:
        text = self.text().strip()
        if not text:
            return []
        try:
            return [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
        except ValueError:
            raise ValueError(f"must be whole numbers separated by commas, e.g. 150, 180; got {text!r}") from None


class ChoiceCombo(QtWidgets.QComboBox):
    """A combo box whose items carry the run file's value; labels are for people."""

    def __init__(self, choices: list[tuple[str, str]] | None = None, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        # as narrow as a dozen characters allow: long labels are elided, the list shows them whole
        self.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        for value, label in choices or []:
            self.addItem(label, value)

    def value(self) -> str:
        return self.currentData()

    def set_value(self, value: str) -> None:
        index = self.findData(value)
        if index < 0:  # a value the form does not offer (e.g. from a file): show it, validation decides
            self.addItem(value, value)
            index = self.count() - 1
        self.setCurrentIndex(index)


class PathEdit(QtWidgets.QWidget):
    """A path as text with a "Browse…" button opening a file or folder dialog."""

    changed = QtCore.Signal()

    def __init__(self, *, folder: bool, caption: str, file_filter: str = "", save: bool = False,
                 placeholder: str = "", parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.folder = folder
        self.caption = caption
        self.file_filter = file_filter
        self.save = save
        self.start_directory = ""
        self.line_edit = QtWidgets.QLineEdit()
        self.line_edit.setPlaceholderText(placeholder)
        self.line_edit.setClearButtonEnabled(True)
        self.browse_button = QtWidgets.QPushButton("Browse…")
        self.browse_button.clicked.connect(self.browse)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.line_edit, 1)
        layout.addWidget(self.browse_button)
        self.line_edit.textChanged.connect(self.changed)

    def text(self) -> str:
        return self.line_edit.text().strip()

    def setText(self, text: str) -> None:  # noqa: N802 (Qt naming, so it reads like the other editors)
        self.line_edit.setText(text)

    value = text

    def set_value(self, text: str) -> None:
        self.setText(text)

    def browse(self) -> None:
        start = self.text() or self.start_directory
        if self.folder:
            chosen = QtWidgets.QFileDialog.getExistingDirectory(self, self.caption, start)
        else:
            chosen, _ = QtWidgets.QFileDialog.getOpenFileName(self, self.caption, start, self.file_filter)
        if chosen:
            self.setText(chosen)
