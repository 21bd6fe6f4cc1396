"""The short explanation of each distillation method, shown from the "?" of a pair's row.

Everything shown comes from the core's method catalogue
(:data:`featdistill_core.losses.methods.METHODS`): title, formula, paper, summary and options, so
the window never tells a different story from the code that computes the loss.
"""

from __future__ import annotations

import html

from PySide6 import QtCore, QtWidgets

from featdistill_core.losses.methods import METHODS


def method_help_html(key: str) -> str:
    """Rich text describing method ``key``: what it matches, its formula, its paper, its options."""
    info = METHODS[key]
    esc = html.escape
    layers = "one layer" if info.layers_per_side == 1 else f"{info.layers_per_side} layers"
    parts = [
        f"<h3>{esc(info.title)} <span style='color:#707070'>({esc(info.key)})</span></h3>",
        f"<p>{esc(info.summary)}</p>",
        f"<p><b>Layers:</b> {layers} on each side (teacher and student). "
        f"<b>Default weight:</b> {info.default_weight:g}</p>",
        "<p><b>Loss:</b></p>",
        f"<pre style='font-size:10pt'>{esc(info.formula)}</pre>",
        f"<p><b>Paper:</b> {esc(info.paper)}</p>",
    ]
    if info.options:
        rows = "".join(
            f"<tr><td><code>{esc(name)}</code></td><td>{esc(repr(spec.default))}</td>"
            f"<td>{esc(spec.help)}"
            + (f" (one of {esc(', '.join(map(str, spec.choices)))})" if spec.choices else "")
            + "</td></tr>"
            for name, spec in info.options.items()
        )
        parts.append(
            "<p><b>Options:</b></p><table cellspacing='4'>"
            "<tr><th align='left'>name</th><th align='left'>default</th><th align='left'>meaning</th></tr>"
            f"{rows}</table>"
        )
    return "".join(parts)


class MethodHelpDialog(QtWidgets.QDialog):
    """A small non-modal window with :func:`method_help_html` for one method."""

    def __init__(self, key: str, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("methodHelpDialog")
        self.setWindowTitle(f"About {METHODS[key].title}")
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        text = QtWidgets.QTextBrowser()
        text.setOpenExternalLinks(True)
        text.setHtml(method_help_html(key))
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(buttons)
        self.resize(560, 420)


def show_method_help(key: str, parent: QtWidgets.QWidget | None = None) -> MethodHelpDialog:
    """Open the explanation of method ``key`` without blocking; returns the dialog."""
    dialog = MethodHelpDialog(key, parent)
    dialog.show()
    return dialog
