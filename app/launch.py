"""Training outside the window's process: the Device field's "all N GPUs", and "Run elsewhere…".

* :func:`device_combo` — the Device field, from :func:`featdistill_core.device_choices`: each item's data
  is the run file's ``device``; an item for several processes (*all N GPUs*, offered when this machine
  has more than one CUDA device) also carries its process count (:func:`chosen_processes`).
* :func:`process_command` — what the window starts for a saved run file: ``python -m featdistill_core
  train RUN.toml --run-dir DIR``, or ``python -m torch.distributed.run --standalone
  --nproc_per_node=N -m featdistill_core train RUN.toml --run-dir DIR`` (the command lines are the
  core's, :func:`featdistill_core.train_command`); the window then follows ``DIR`` live
  (:mod:`app.follow`) and Stop stops every rank (:class:`featdistill_core.RunProcess`).
* :class:`RunElsewhereDialog` — the exact commands that train the saved run file on another machine
  (one process, every GPU of one machine, several machines; resuming), each copyable, and how to
  follow its run folder from here through a shared or synced folder.
"""

from __future__ import annotations

import html
import sys
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from featdistill_core import device_choices, gpu_count, remote_commands, train_command

from app.fields import ChoiceCombo

PROCESSES_ROLE = QtCore.Qt.ItemDataRole.UserRole + 1


def device_combo() -> ChoiceCombo:
    """The Device field: every choice of :func:`featdistill_core.device_choices` (missing devices greyed)."""
    combo = ChoiceCombo()
    for choice in device_choices():
        combo.addItem(choice.label, choice.spec)
        combo.setItemData(combo.count() - 1, choice.processes, PROCESSES_ROLE)
        if choice.distributed:
            combo.setItemData(combo.count() - 1, f"Start the run as torchrun with {choice.processes} processes, one "
                              "per GPU (device = \"auto\": each takes its LOCAL_RANK); the window follows its "
                              "run folder live.", QtCore.Qt.ItemDataRole.ToolTipRole)
        if not choice.available:
            combo.model().item(combo.count() - 1).setEnabled(False)
    return combo


def chosen_processes(combo: QtWidgets.QComboBox) -> int:
    """How many processes the chosen device means (1 unless it is *all N GPUs*)."""
    value = combo.currentData(PROCESSES_ROLE)
    return int(value) if isinstance(value, int) and value > 0 else 1


def choose_processes(combo: QtWidgets.QComboBox, processes: int) -> bool:
    """Choose the item for ``processes`` processes (True if there is one)."""
    for index in range(combo.count()):
        if combo.itemData(index, PROCESSES_ROLE) == processes:
            combo.setCurrentIndex(index)
            return True
    return False


def process_command(run_file, run_dir, processes: int = 1, torchrun: bool | None = None) -> tuple[str, ...]:
    """The command the window starts for ``run_file``, writing into ``run_dir``: through this Python,
    torchrun (``--standalone``) for several processes (or when ``torchrun`` is True)."""
    torchrun = processes > 1 if torchrun is None else torchrun
    return train_command(Path(run_file).resolve(), processes=processes, run_dir=Path(run_dir).resolve(),
                         python=sys.executable, standalone=torchrun, torchrun=torchrun)


FOLLOW_TEXT = (
    "<b>Watching it from here.</b> Set the run's <i>Output folder</i> to a folder this machine also sees "
    "(a network share, or one kept in sync: rsync, Syncthing, a cloud drive), or copy the run folder back "
    "now and then. Then <i>File ▸ Follow run folder…</i> on the run's folder shows it live — curves, "
    "attention maps and progress — as the files arrive, until its final record (finished, stopped or "
    "failed) comes; every file of a run folder is written whole, so a synced copy is never half a file. "
    "A run on another machine holds no lock seen here: stop following with Stop, the run goes on."
)


class RunElsewhereDialog(QtWidgets.QDialog):
    """The commands that train ``run_file`` on another machine, for copying."""

    def __init__(self, run_file, *, run_dir=None, gpus: int | None = None, parent=None):
        super().__init__(parent)
        self.setObjectName("runElsewhereDialog")
        self.setWindowTitle("Run elsewhere")
        self.run_file = Path(run_file)
        self.run_dir = run_dir
        local = gpu_count() if gpus is None else gpus

        intro = QtWidgets.QLabel(
            f"Train the saved run file on another machine (a GPU server, a cluster) with featdistill installed. "
            f"Copy the run file there (and the data set and weights files it names, at the paths it names, or "
            f"edit them), then run one of these commands in a shell there.")
        intro.setWordWrap(True)
        self.file_edit = QtWidgets.QLineEdit(str(self.run_file))
        self.file_edit.setObjectName("runFileThere")
        self.file_edit.setToolTip("The run file's path on that machine.")
        self.gpus = QtWidgets.QSpinBox()
        self.gpus.setObjectName("gpusPerMachine")
        self.gpus.setRange(1, 64)
        self.gpus.setValue(max(local, 2))
        self.gpus.setSuffix(" GPUs per machine")
        self.nodes = QtWidgets.QSpinBox()
        self.nodes.setObjectName("machines")
        self.nodes.setRange(2, 1024)
        self.nodes.setValue(2)
        self.nodes.setSuffix(" machines")
        self.endpoint = QtWidgets.QLineEdit()
        self.endpoint.setObjectName("rendezvousEndpoint")
        self.endpoint.setPlaceholderText("HOST:29500 (the first machine)")
        self.endpoint.setToolTip("Where the machines meet: the first machine's name or address and a free port.")
        form = QtWidgets.QFormLayout()
        form.addRow("Run file there", self.file_edit)
        settings = QtWidgets.QHBoxLayout()
        for widget in (self.gpus, self.nodes, self.endpoint):
            settings.addWidget(widget)
        form.addRow("Machines", settings)

        self.commands_box = QtWidgets.QWidget()
        self.commands_layout = QtWidgets.QGridLayout(self.commands_box)
        self.commands_layout.setContentsMargins(0, 0, 0, 0)
        self.command_edits: list[QtWidgets.QLineEdit] = []
        follow = QtWidgets.QLabel(FOLLOW_TEXT)
        follow.setObjectName("followExplanation")
        follow.setWordWrap(True)
        follow.setTextFormat(QtCore.Qt.TextFormat.RichText)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)

        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.commands_box)
        layout.addWidget(follow)
        layout.addStretch(1)
        layout.addWidget(buttons)
        for signal in (self.file_edit.textChanged, self.gpus.valueChanged, self.nodes.valueChanged,
                       self.endpoint.textChanged):
            signal.connect(self._fill)
        self._fill()
        self.resize(860, self.sizeHint().height())

    def commands(self):
        """The commands shown (:class:`featdistill_core.LaunchCommand`)."""
        return remote_commands(self.file_edit.text().strip() or str(self.run_file), processes=self.gpus.value(),
                               nnodes=self.nodes.value(), endpoint=self.endpoint.text().strip(),
                               run_dir=self.run_dir)

    def command_texts(self) -> list[str]:
        return [edit.text() for edit in self.command_edits]

    def _fill(self) -> None:
        commands = self.commands()
        grid = self.commands_layout
        while len(self.command_edits) < len(commands):
            row = len(self.command_edits)
            title = QtWidgets.QLabel()
            edit = QtWidgets.QLineEdit()
            edit.setReadOnly(True)
            edit.setObjectName(f"command{row}")
            edit.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
            copy = QtWidgets.QPushButton("Copy")
            copy.setObjectName(f"copy{row}")
            copy.clicked.connect(lambda _=False, e=edit: self.copy(e.text()))
            note = QtWidgets.QLabel()
            note.setWordWrap(True)
            note.setStyleSheet("color: #707070;")
            grid.addWidget(title, 3 * row, 0, 1, 2)
            grid.addWidget(edit, 3 * row + 1, 0)
            grid.addWidget(copy, 3 * row + 1, 1)
            grid.addWidget(note, 3 * row + 2, 0, 1, 2)
            self.command_edits.append(edit)
        for row, command in enumerate(commands):
            grid.itemAtPosition(3 * row, 0).widget().setText(f"<b>{html.escape(command.title)}</b>")
            self.command_edits[row].setText(command.text)
            self.command_edits[row].setToolTip(command.text)
            self.command_edits[row].setCursorPosition(0)
            grid.itemAtPosition(3 * row + 2, 0).widget().setText(command.note)

    def copy(self, text: str) -> None:
        QtWidgets.QApplication.clipboard().setText(text)
