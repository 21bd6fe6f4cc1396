"""The short explanation of each distillation method, shown from the "?" of a pair's row.

Everything shown comes from the core's method registry (:data:`featdistill_core.METHODS`): title,
formula, paper, summary, layers, what it taps, its reference weight and stage, and options, so the
window never tells a different story from the code that computes the loss.
"""

from __future__ import annotations

import html

from PySide6 import QtCore, QtWidgets

from featdistill_core import METHODS, Stage, Taps


TAPS_TEXT = {
    Taps.OUTPUT: "it reads what each chosen layer outputs",
    Taps.INPUT: "it reads what each chosen layer receives (its input)",
}


def method_help_html(key: str) -> str:
    """Rich text describing method ``key``: what it matches, its formula, its paper, its options."""
    info = METHODS[key]
    esc = html.escape
    layers = info.layers.describe() if info.on_logits else f"{info.layers.describe()}; {TAPS_TEXT[info.taps]}"
    stage = "the initialisation stage" if info.default_stage == Stage.INIT else "the main stage, with the task loss"
    parts = [
        f"<h3>{esc(info.title)} <span style='color:#707070'>({esc(info.key)})</span></h3>",
        f"<p>{esc(info.summary)}</p>",
        f"<p><b>Layers:</b> {esc(layers)}.<br>"
        f"<b>Reference recipe:</b> weight {info.default_weight:g}, in {stage}.</p>",
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
