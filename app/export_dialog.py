"""File ▸ Export student…: the run folder's distilled student as TorchScript, safetensors or ONNX.

The core does the work (:func:`featdistill_core.export_student`: the bare student rebuilt — never its
adapters —, written, reloaded without featdistill's code, checked against the PyTorch student on the
probe images, and a model card written beside it) on a background thread; the core decides which
formats can be written here (:func:`featdistill_core.onnx_available`). The dialog ends by saying where
it wrote, and how closely the exported model matched.
"""

from __future__ import annotations

import html
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from app.background import BackgroundTask

FORMAT_TITLES = {
    "torchscript": "TorchScript (student.pt) — loads with torch.jit.load, no featdistill needed",
    "safetensors": "safetensors (student.safetensors) — the weights, with the architecture in the metadata",
    "onnx": "ONNX (student.onnx) — for onnxruntime and other runtimes",
}
DEFAULT_FORMAT = "torchscript"


class ExportDialog(QtWidgets.QDialog):
    """Choose a format (and an output folder) and export; ``exported(result)`` when it is written."""

    exported = QtCore.Signal(object)

    def __init__(self, run_dir: str | Path, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("exportDialog")
        self.setWindowTitle("Export the student")
        self.run_dir = Path(run_dir)
        self.result = None                 # the ExportResult, once written
        self.task = BackgroundTask("export", self)
        self.task.succeeded.connect(self._succeeded)
        self.task.failed.connect(self._failed)
        self.task.ended.connect(self._ended)

        from featdistill_core import FORMATS, onnx_available     # the export module: loaded on first use

        self.format_combo = QtWidgets.QComboBox()
        self.format_combo.setObjectName("exportFormatCombo")
        onnx_ok, onnx_why = onnx_available()
        for key in FORMATS:
            self.format_combo.addItem(FORMAT_TITLES.get(key, key), key)
            if key == "onnx" and not onnx_ok:
                index = self.format_combo.count() - 1
                item = self.format_combo.model().item(index)
                item.setEnabled(False)
                item.setText(f"{FORMAT_TITLES.get(key, key)} — not available: {onnx_why}")
                self.format_combo.setItemData(index, onnx_why, QtCore.Qt.ItemDataRole.ToolTipRole)
        self.format_combo.setCurrentIndex(max(0, self.format_combo.findData(DEFAULT_FORMAT)))
        self.format_combo.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.format_combo.setMinimumContentsLength(40)     # the list shows the long texts; the box stays narrow
        self.out_edit = QtWidgets.QLineEdit(str(self.run_dir / "export"))
        self.out_edit.setObjectName("exportFolderEdit")
        self.out_edit.setToolTip("The folder the exported model and its model card go into.")
        browse = QtWidgets.QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        folder = QtWidgets.QHBoxLayout()
        folder.addWidget(self.out_edit, 1)
        folder.addWidget(browse)
        self.message = QtWidgets.QLabel(
            "The student alone is exported (the pairs' adapters never are), then loaded back and checked "
            "against the PyTorch student on the run's probe images; a model card is written beside it.")
        self.message.setObjectName("exportMessage")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setMinimumHeight(4 * self.message.fontMetrics().lineSpacing())
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.hide()

        self.buttons = QtWidgets.QDialogButtonBox()
        self.export_button = self.buttons.addButton("Export", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_button.setObjectName("exportButton")
        self.close_button = self.buttons.addButton(QtWidgets.QDialogButtonBox.StandardButton.Close)
        self.export_button.clicked.connect(self.start)
        self.close_button.clicked.connect(self.reject)

        form = QtWidgets.QFormLayout()
        form.addRow("Run folder", QtWidgets.QLabel(html.escape(str(self.run_dir))))
        form.addRow("Format", self.format_combo)
        form.addRow("Into", folder)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addWidget(self.progress)
        layout.addWidget(self.buttons)
        self.resize(620, self.sizeHint().height())

    def _browse(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Export into", self.out_edit.text())
        if path:
            self.out_edit.setText(path)

    def chosen_format(self) -> str:
        return self.format_combo.currentData()

    def start(self) -> bool:
        if self.task.running:
            return False
        fmt, out = self.chosen_format(), self.out_edit.text().strip() or None
        run_dir = self.run_dir
        from featdistill_core import export_student

        self.task.start(lambda _progress, _cancel: export_student(run_dir, fmt, out))
        self.export_button.setEnabled(False)
        self.format_combo.setEnabled(False)
        self.progress.show()
        self._say(f"Exporting as {fmt}: writing, loading it back and checking its outputs…", "#0b5394")
        return True

    def _succeeded(self, result) -> None:
        self.result = result
        self._say(f"Wrote {result.path}\nChecked: reloaded with {result.checked_with}; on {result.probe_size} "
                  f"{result.probe_source} the outputs match the PyTorch student (largest difference "
                  f"{result.max_abs_diff:.3g}, allowed {result.atol:g} + {result.rtol:g}·|y|).\n"
                  f"Model card: {result.card_markdown}", "#1b7f3b")
        self.exported.emit(result)

    def _failed(self, message: str) -> None:
        self._say(f"Not exported: {message}", "#b00020")

    def _ended(self) -> None:
        self.progress.hide()
        self.export_button.setEnabled(True)
        self.format_combo.setEnabled(True)

    def _say(self, text: str, colour: str) -> None:
        self.message.setStyleSheet(f"color: {colour};")
        self.message.setText(text)

    def done(self, code: int) -> None:  # noqa: D401 - Qt override: never close over a running export
        if self.task.running:
            self._say("The export is still running; it can be closed when it has ended.", "#0b5394")
            return
        super().done(code)
