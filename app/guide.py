"""Help ▸ Guide and Help ▸ About: what distillation is, what each panel shows, where runs are saved."""

from __future__ import annotations

import html
import platform

from PySide6 import QtCore, QtWidgets

import featdistill_core

GUIDE_HTML = """
<h2>featdistill in five minutes</h2>
<p><b>Feature distillation</b> trains a small network (the <i>student</i>) to imitate a larger trained one
(the <i>teacher</i>): not only its answers (logit KD) but what its intermediate layers compute — where it
looks in the image (attention transfer), its feature maps through a small adapter (FitNets hints), how
its features relate to each other (FSP, similarity and relational methods). A student guided this way
usually beats the same student trained on the labels alone, most of all when data or epochs are few.</p>

<h3>The panels</h3>
<ul>
<li><b>Set up the run</b> — <i>Models &amp; data</i>: the teacher (a weights file, or trained first), the
student, the dataset. <i>Layers &amp; pairs</i>: which teacher layer each student layer learns from, and
how (the <b>?</b> of a method explains it; <b>Suggest pairs</b> places a method where its paper puts it).
<i>Training</i>: epochs, optimizer, device, output folder. A field that needs fixing is marked in red
with a sentence saying why, all of them at once.</li>
<li><b>Runs</b> — every run folder in the output folder: when it ran, teacher → student, methods, final
accuracy and how it ended. Tick runs to lay their curves over the plots and compare them;
double-click one to show it.</li>
<li><b>Loss</b> — the total loss and each weighted term against the step (one stage at a time: teacher,
initialisation, student). Smoothed curves have their raw values drawn faintly underneath; the axis turns
logarithmic when the terms are orders of magnitude apart. Hover for exact values. Comparing runs, it
shows one term (<i>show</i>) of every run. The dashed line marks the attention snapshot shown.</li>
<li><b>Accuracy</b> — top-1 train and test accuracy per epoch, with the teacher's as a dashed line.</li>
<li><b>Attention maps</b> — on a few fixed test images: the teacher's map, the student's, and their
difference (red: the student attends more, blue: less). As the student learns, the difference fades.
▶ replays the snapshots. <b>Two runs</b> shows the same images and layers from two runs side by side.</li>
</ul>
<p>Every panel can be dragged elsewhere, stacked as tabs or floated (View ▸ Reset layout restores the
default); the window remembers the arrangement.</p>

<h3>Where runs are saved</h3>
<p>Each run writes a folder <code>OUTPUT/NAME-date-time</code> (the output folder is on the Training tab,
<code>runs</code> by default): <code>run.toml</code> (the run file as used), <code>metrics.jsonl</code>
(every loss, accuracy and event), <code>snapshots/</code> (the attention maps), and the trained weights
(<code>teacher.safetensors</code>, <code>student.safetensors</code>, <code>adapters.safetensors</code>).
File ▸ Save run file writes the set-up as a run file that the command line runs the same way:
<code>featdistill train run.toml</code>.</p>

<h3>The demo</h3>
<p>The window opens on the built-in demo: a small teacher is trained on generated shapes, a smaller
student learns from it with attention transfer and hints, and then the same student is trained
without a teacher (the <i>baseline</i>), so the accuracy plot shows what distillation gained.</p>
"""


def about_html() -> str:
    from PySide6 import __version__ as pyside

    return (f"<h3>featdistill {html.escape(featdistill_core.__version__)}</h3>"
            "<p>A workbench for feature distillation in PyTorch: a Qt-free core library, a command line "
            "(<code>featdistill</code>) and this window.</p>"
            f"<p>Python {html.escape(platform.python_version())} · PySide6 {html.escape(pyside)} · "
            f"Qt {html.escape(QtCore.qVersion())}</p><p>MIT licence.</p>")


class GuideDialog(QtWidgets.QDialog):
    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("guideDialog")
        self.setWindowTitle("featdistill guide")
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        text = QtWidgets.QTextBrowser()
        text.setObjectName("guideText")
        text.setHtml(GUIDE_HTML)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(buttons)
        self.resize(640, 560)


def show_guide(parent: QtWidgets.QWidget | None = None) -> GuideDialog:
    dialog = GuideDialog(parent)
    dialog.show()
    return dialog


def show_about(parent: QtWidgets.QWidget | None = None) -> QtWidgets.QMessageBox:
    box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Information, "About featdistill", about_html(),
                                QtWidgets.QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("aboutDialog")
    box.setTextFormat(QtCore.Qt.TextFormat.RichText)
    box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setModal(False)
    box.show()
    return box
