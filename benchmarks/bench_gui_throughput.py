"""Training throughput with the window open and plotting live, against the same run headless.

    python benchmarks/bench_gui_throughput.py [--repeats 2] [--device auto] [--train 2000]

Both runs happen in one process, alternating (headless, window, headless, window, ...), with the same
run file: the demo teacher trained for one epoch, then the demo student distilled with its attention
transfer and hint pairs, a step event every step and an attention snapshot every 5 steps (far more
than the defaults, to load the window). The figure is the student stage's speed in images per
second, from the wall-clock time between its first and last step events (evaluation excluded).
Target: window / headless ≥ 0.98. The GUI thread's CPU time during the window runs is reported too, as a
share of the process's CPU time (target ≤ 5 %). Without a display, Qt's offscreen platform is used: the plots
still render (the window is grabbed as it would be painted), only nothing reaches a screen.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import torch  # noqa: E402  (before Qt, as the app does)


def machine_description() -> str:
    """CPU, cores, GPU, library versions and the Qt platform: printed with every benchmark figure."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    from PySide6 import QtCore, __version__ as pyside_version
    import pyqtgraph

    qpa = os.environ.get("QT_QPA_PLATFORM", "default")
    return (f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores, GPU: {gpu}; "
            f"Python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"PySide6 {pyside_version} (Qt {QtCore.qVersion()}), pyqtgraph {pyqtgraph.__version__}, QPA: {qpa}")


def load_average() -> str:
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average unknown"


def leave_a_core_for_the_window() -> None:
    """The thread policy of ``python -m app`` (see app/__main__.py), applied to both runs."""
    cores = os.cpu_count() or 1
    if not os.environ.get("OMP_NUM_THREADS") and cores > 1 and torch.get_num_threads() >= cores:
        torch.set_num_threads(cores - 1)


def bench_config(output_dir: str, device: str, train_images: int):
    from featdistill_core.demo import demo_config

    config = demo_config(seed=0, output_dir=output_dir)
    config.name = "bench-gui"
    config.device = device
    config.data.demo_train = train_images
    config.data.demo_test = 500
    config.teacher.train_epochs = 1
    config.epochs = 2
    config.monitor.log_every = 1
    config.monitor.snapshot_every = 5
    config.monitor.probe_images = 8
    return config


class StudentClock:
    """A trainer subscriber: times the student stage from its first to its last step event."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.first: float | None = None
        self.last: float | None = None
        self.steps = 0

    def __call__(self, event) -> None:
        from featdistill_core.events import StepEvent

        if isinstance(event, StepEvent) and event.stage == "student":
            now = time.perf_counter()
            if self.first is None:
                self.first, self.first_step = now, event.step
            self.last, self.steps = now, event.step

    def images_per_sec(self) -> float:
        steps = self.steps - self.first_step
        return steps * self.batch_size / (self.last - self.first)


def headless_run(config) -> float:
    from featdistill_core.trainer import Trainer

    trainer = Trainer(config)
    clock = StudentClock(config.batch_size)
    trainer.subscribe(clock)
    trainer.run()
    return clock.images_per_sec()


def window_run(window, config) -> tuple[float, int, float, float]:
    """Run in the window; returns (images/s, coalesced deliveries, GUI-thread CPU s, process CPU s)."""
    from PySide6 import QtCore, QtWidgets

    from featdistill_core.trainer import Trainer

    clock = StudentClock(config.batch_size)

    def factory(cfg, run_dir=None):
        trainer = Trainer(cfg, run_dir)
        trainer.subscribe(clock)
        return trainer

    window.worker.trainer_factory = factory
    window.form.set_config(config)
    window.form.wait_for_layers()
    QtWidgets.QApplication.processEvents()
    drains_before = window.worker.drains
    loop = QtCore.QEventLoop()
    window.runEnded.connect(loop.quit)
    gui_before, process_before = time.thread_time(), time.process_time()
    if not window.start_run():
        raise SystemExit(f"the window refused the run: {window.status_text()}")
    loop.exec()                                  # the application's event loop, as in real use
    gui_cpu, process_cpu = time.thread_time() - gui_before, time.process_time() - process_before
    window.runEnded.disconnect(loop.quit)
    return clock.images_per_sec(), window.worker.drains - drains_before, gui_cpu, process_cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="pairs of (headless, window) runs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train", type=int, default=2000, help="demo training images")
    args = parser.parse_args()

    leave_a_core_for_the_window()
    from PySide6 import QtCore, QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    app.setStyle("Fusion")
    from app.main_window import MainWindow
    from app.worker import warm_up_torch

    warm_up_torch()
    workdir = Path(tempfile.mkdtemp(prefix="featdistill-bench-"))
    settings = QtCore.QSettings(str(workdir / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    window = MainWindow(settings=settings)
    window.show_error_dialogs = False
    window.prompt_unsaved = False
    window.show()
    print(machine_description())
    config = bench_config(str(workdir / "runs"), args.device, args.train)
    print(f"run: demo_teacher 1 epoch, then demo_student {config.epochs} epochs, {args.train} images, batch "
          f"{config.batch_size}, device {args.device}; step events every step, snapshots every 5 steps")
    headless, windowed, shares = [], [], []
    try:
        for repeat in range(args.repeats):
            headless.append(headless_run(config))
            speed, drains, gui_cpu, process_cpu = window_run(window, config)
            windowed.append(speed)
            shares.append(gui_cpu / max(process_cpu, 1e-9))
            print(f"  pair {repeat + 1}: headless {headless[-1]:8.1f} img/s   window {windowed[-1]:8.1f} img/s "
                  f"({drains} coalesced deliveries to the widgets; GUI thread {gui_cpu:.2f} s CPU = "
                  f"{100 * shares[-1]:.1f} % of the process's {process_cpu:.1f} s)  {load_average()}", flush=True)
    finally:
        window.close()
    ratio = statistics.median(windowed) / statistics.median(headless)
    print(f"median: headless {statistics.median(headless):.1f} img/s, window {statistics.median(windowed):.1f} img/s, "
          f"ratio {ratio:.3f} (target ≥ 0.98); GUI thread CPU {100 * statistics.median(shares):.1f} % of the "
          f"process's (target ≤ 5 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
