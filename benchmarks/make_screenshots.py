"""The README's screenshots: the demo trained in the window at full length, then a second method.

    python benchmarks/make_screenshots.py [--out docs] [--runs DIR]

1. The window opens on the demo and trains it as a user would (Start, with "+ baseline"): the teacher,
   the distilled student, then the baseline. ``window-maps.png``: the attention maps at the end, with
   the loss and accuracy of the run and its baseline.
2. The Runs panel raised: ``window-runs.png`` (the runs listed, the baseline ticked and overlaid).
3. The same student distilled with attention transfer alone, from the teacher the first run trained
   (its weights file, so no teacher stage); then the first run ticked, and the "Two runs side by side"
   view on layer3: ``window-two-runs.png``.
4. The same window at 1366×768: ``window-1366x768.png``.

Offscreen when there is no display. Takes as long as the demo (about 2 minutes on a quiet 2-core CPU).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import torch  # noqa: E402,F401  (before Qt, as the app does on Windows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs"))
    parser.add_argument("--runs", default="", help="output folder of the runs (default: a temporary folder)")
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = Path(args.runs) if args.runs else Path(tempfile.mkdtemp(prefix="featdistill-shots-")) / "runs"

    from PySide6 import QtCore, QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    app.setStyle("Fusion")
    from app.main_window import MainWindow
    from app.worker import warm_up_torch
    from featdistill_core import PairConfig

    warm_up_torch()
    settings = QtCore.QSettings(str(runs.parent / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    window = MainWindow(settings=settings)
    window.show_error_dialogs = False
    window.prompt_unsaved = False
    window.resize(1400, 900)
    window.show()
    window.form.output_dir.setText(str(runs))
    window.form.wait_for_layers()

    def wait_for_run() -> None:
        loop = QtCore.QEventLoop()
        window.runEnded.connect(loop.quit)
        QtCore.QTimer.singleShot(int(args.timeout * 1000), loop.quit)
        loop.exec()
        window.runEnded.disconnect(loop.quit)

    def settle(ms: int = 800) -> None:
        end = time.monotonic() + ms / 1000
        while time.monotonic() < end:
            app.processEvents()

    def shot(name: str) -> None:
        settle()
        path = out / name
        window.grab().save(str(path))
        print(f"saved {path}", flush=True)

    started = time.monotonic()
    window.form.setCurrentIndex(1)                      # the pairs being distilled, next to their maps
    if not window.start_run():
        raise SystemExit(f"the demo was refused: {window.status_text()}")
    wait_for_run()
    print(f"demo with its baseline: {time.monotonic() - started:.0f} s; {window.status_text()}", flush=True)
    distilled = window._primary_key
    shot("window-maps.png")
    window.runs_dock.raise_()
    shot("window-runs.png")

    teacher = Path(distilled) / "teacher.safetensors"
    config = window.form.config()
    config.name = "demo-at-only"
    config.teacher.train_epochs = 0
    config.teacher.weights = str(teacher)
    config.pairs = [PairConfig("at", [layer], [layer], 10.0, "student", {"p": 2, "normalize": "l2"})
                    for layer in ("layer2", "layer3")]
    window.set_config(config, None)
    window.baseline_box.setChecked(False)
    if not window.start_run():
        raise SystemExit(f"the second run was refused: {window.status_text()}")
    wait_for_run()
    print(f"AT alone: {window.status_text()}", flush=True)
    window.runs_panel.set_ticked(distilled, True)
    window.central_tabs.setCurrentWidget(window.attention_compare)
    window._update_compare()
    compare = window.attention_compare
    layers = ("layer3", "layer3") if ("layer3", "layer3") in compare.layers() else compare.layers()[0]
    compare.choose(window._primary_key, distilled, layers)
    window.setup_dock.raise_()
    shot("window-two-runs.png")
    window.resize(1366, 768)
    window.central_tabs.setCurrentIndex(0)
    shot("window-1366x768.png")
    window.close()
    print(f"runs in {runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
