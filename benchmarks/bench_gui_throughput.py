"""Training throughput with the window open and plotting live, against the same run headless.

    python benchmarks/bench_gui_throughput.py [--repeats 3] [--device auto] [--train 2000] [--thread-too]

One benchmark process alternates, round by round, with the same run file: the run headless (``featdistill
train`` started as the window starts it, a process of its own with the window's thread policy, no window
involved) and the run started from the window's Start button, which trains it in its training process
and draws it live (with ``--thread-too``, a third way: on the window's worker thread, in the window's
process, as 0.1 did). The run: the demo teacher trained for one epoch, then the demo student distilled
with its attention transfer and hint pairs, a step event every step and an attention snapshot every 5
steps (far more than the defaults, to load the window). The figure is the student stage's speed in
images per second, read the same way for every run from its run folder: each step event's wall-clock
window, measured by the trainer itself. Target: window / headless ≥ 0.98.
The GUI thread's CPU time during each window run is reported as a share of the run's CPU time (the
training process's; for ``--thread-too``, the window's whole process's). Target ≤ 5 %. Without a display,
Qt's offscreen platform is used: the plots still render (the window is grabbed as it would be painted),
only nothing reaches a screen.
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


def student_speed(run_dir) -> float:
    """The student stage's speed in images per second, from the run folder's own record: every step
    event carries its wall-clock window (the trainer's clock, contiguous from one event to the next, the
    whole step included), so the stage's images over the sum of those windows; the same reading for a
    run trained headless, in the window's training process or on the window's thread."""
    from featdistill_core import load_run

    record = load_run(run_dir)
    steps = [e for e in record.steps if e.stage == "student" and e.images_per_sec > 0]
    if len(steps) < 10:
        raise SystemExit(f"{run_dir}: only {len(steps)} student steps recorded")
    steps = steps[1:]                                  # the first window holds the stage's start-up
    seconds = sum(record.config.batch_size / e.images_per_sec for e in steps)   # each window: one full batch
    return len(steps) * record.config.batch_size / seconds                    # (an epoch's short last one aside)


def children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def headless_run(config) -> tuple[float, float]:
    """``featdistill train`` as the window starts it (a process of its own, the same thread policy), with
    no window involved; returns (images/s, the process's CPU s)."""
    from featdistill_core import new_run_folder, start_training_process
    from app.worker import training_environment

    run_dir = new_run_folder(config)
    before = children_cpu()
    process = start_training_process(config, run_dir, env=training_environment())
    code = process.wait()
    process.close()
    if code != 0:
        raise SystemExit(f"the headless run ended with exit status {code}")
    return student_speed(run_dir), children_cpu() - before


def window_run(window, config, in_process: bool) -> tuple[float, int, float, float]:
    """Run in the window (its training process, or ``in_process``: its thread); returns (images/s, coalesced
    deliveries, GUI-thread CPU s, the run's CPU s: the training process's, or this whole process's)."""
    from PySide6 import QtCore, QtWidgets

    window.worker.in_process = in_process
    window.form.set_config(config)
    window.baseline_box.setChecked(False)        # the run alone (a baseline after it would be timed with it)
    window.form.wait_for_layers()
    QtWidgets.QApplication.processEvents()
    drains_before = window.worker.drains
    loop = QtCore.QEventLoop()
    window.runEnded.connect(loop.quit)
    gui_before, process_before, child_before = time.thread_time(), time.process_time(), children_cpu()
    if not window.start_run():
        raise SystemExit(f"the window refused the run: {window.status_text()}")
    loop.exec()                                  # the application's event loop, as in real use
    gui_cpu = time.thread_time() - gui_before
    run_cpu = (time.process_time() - process_before) if in_process else (children_cpu() - child_before)
    window.runEnded.disconnect(loop.quit)
    return student_speed(window.last_run_dir), window.worker.drains - drains_before, gui_cpu, run_cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="pairs of (headless, window) runs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train", type=int, default=2000, help="demo training images")
    parser.add_argument("--thread-too", action="store_true",
                        help="also train in the window's own process, on its worker thread (FEATDISTILL_TRAIN_IN_WINDOW=1)")
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
    ways = ["window"] + (["window thread"] if args.thread_too else [])
    speeds: dict[str, list[float]] = {"headless": [], **{w: [] for w in ways}}
    shares: dict[str, list[float]] = {w: [] for w in ways}
    try:
        for repeat in range(args.repeats):
            speed, cpu = headless_run(config)
            speeds["headless"].append(speed)
            line = [f"  round {repeat + 1}: headless {speed:7.1f} img/s ({cpu:.1f} s CPU)"]
            for way in ways:
                speed, drains, gui_cpu, run_cpu = window_run(window, config, in_process=(way == "window thread"))
                speeds[way].append(speed)
                shares[way].append(gui_cpu / max(run_cpu, 1e-9))
                line.append(f"{way} {speed:7.1f} img/s ({drains} deliveries; GUI thread {gui_cpu:.2f} s CPU = "
                            f"{100 * shares[way][-1]:.1f} % of the run's {run_cpu:.1f} s)")
            print(" | ".join(line) + f"  {load_average()}", flush=True)
    finally:
        window.close()
    base = statistics.median(speeds["headless"])
    print(f"median headless {base:.1f} img/s (range {min(speeds['headless']):.1f}–{max(speeds['headless']):.1f})")
    for way in ways:
        ratios = [w / h for w, h in zip(speeds[way], speeds["headless"])]
        print(f"{way:>13}: median {statistics.median(speeds[way]):.1f} img/s, ratio of medians "
              f"{statistics.median(speeds[way]) / base:.3f} (per round {min(ratios):.3f}–{max(ratios):.3f}; "
              f"target ≥ 0.98); GUI thread CPU {100 * statistics.median(shares[way]):.1f} % of the run's "
              f"(range {100 * min(shares[way]):.1f}–{100 * max(shares[way]):.1f} %; target ≤ 5 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
