"""Start the window: ``featdistill-gui`` or ``python -m app``.

    featdistill-gui                          the window on the embedded demo (or, when File ▸ Reopen the
                                             last run file at launch is ticked, on that file)
    featdistill-gui RUN.toml                 the window on a run file
    featdistill-gui --follow RUN_DIR         the window following a run folder live while another
                                             process (featdistill train, torchrun) writes it
    featdistill-gui --self-test [--screenshot shot.png]
                                             train a short demo in the window, check it, exit 0 or 1

Without a display (no ``DISPLAY``/``WAYLAND_DISPLAY`` on Linux) the self-test uses Qt's offscreen
platform by itself.

On Linux the first window comes before PyTorch: a starting window (:mod:`app.starting`) shows at once
while torch loads on a background thread, then the workbench window takes its place. On Windows torch
is imported before Qt (after Qt, ``c10.dll`` can fail to load: WinError 1114), and so everywhere but
Linux the workbench window is the first. ``--exit-when-shown`` prints the seconds from start to the
first window's first paint (``window shown after``) and to the workbench window's
(``workbench shown after``), then quits: what ``benchmarks/bench_launch.py`` measures.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

_STARTED = time.perf_counter()


def _say(text: str, error: bool = False) -> None:
    """Print, even in a windowed frozen build where ``sys.stdout``/``sys.stderr`` are None."""
    stream = sys.stderr if error else sys.stdout
    if stream is None:
        return
    try:
        print(text, file=stream, flush=True)
    except (OSError, ValueError):
        pass


def _resource(name: str) -> Path:
    """A file of ``resources/``: next to the package in a checkout, under ``_MEIPASS`` when frozen."""
    base = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parents[1]))
    return base / "resources" / name


def _has_display() -> bool:
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _leave_a_core_for_the_window(torch) -> None:
    """Train on all cores but one, so the window's thread always has one to draw with.

    PyTorch's CPU kernels spin-wait for their worker threads; with one thread per core and the GUI
    thread competing, a step can take several times longer. ``OMP_NUM_THREADS``, when set, wins.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return
    cores = os.cpu_count() or 1
    if cores > 1 and torch.get_num_threads() >= cores:
        torch.set_num_threads(cores - 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="featdistill-gui",
        description="The featdistill workbench: set up a feature-distillation run, train it, "
                    "watch the loss curves and attention maps live.",
    )
    parser.add_argument("run_file", nargs="?", help="a run file (.toml) to open instead of the demo")
    parser.add_argument("--follow", metavar="RUN_DIR",
                        help="show the run folder RUN_DIR live while another process writes it (featdistill "
                             "train, torchrun, a run on a shared or synced folder), until its run ends")
    parser.add_argument("--self-test", action="store_true",
                        help="train a short demo in the window, check that curves and attention maps arrive, "
                             "exit 0 (or 1 with the reason on stderr)")
    parser.add_argument("--screenshot", metavar="PATH", help="with --self-test: save the window as a PNG at the end")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="S", help="with --self-test: give up after S seconds")
    parser.add_argument("--exit-when-shown", action="store_true",
                        help="quit once the window is first painted and print the launch time (for benchmarks)")
    args = parser.parse_args(argv)
    if args.screenshot and not args.self_test:
        parser.error("--screenshot works with --self-test")
    if args.follow and (args.run_file or args.self_test):
        parser.error("--follow shows a run folder: give no run file and no --self-test with it")
    return args


def _give_streams_somewhere_to_go() -> None:
    """In a windowed frozen build ``sys.stdout``/``sys.stderr`` are None; anything printing to them
    (argparse, warnings, a library) would then crash. Point them at the null device instead."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 - lives as long as the process


def main(argv: list[str] | None = None) -> int:
    multiprocessing.freeze_support()
    _give_streams_somewhere_to_go()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["-m", "featdistill_core"]:
        # The frozen app is also the training process the window starts for each run
        # (featdistill_core.start_training_process: sys.executable -m featdistill_core train ...).
        from featdistill_core import cli_main

        return cli_main(argv[2:])
    args = parse_args(argv)
    if not _has_display() and not os.environ.get("QT_QPA_PLATFORM"):
        if args.self_test or args.exit_when_shown:
            os.environ["QT_QPA_PLATFORM"] = "offscreen"
        else:
            _say("featdistill-gui: no display found (DISPLAY and WAYLAND_DISPLAY are unset); "
                 "run it on a desktop, or try `featdistill-gui --self-test`", error=True)
            return 2

    if sys.platform.startswith("linux") and not any(
            os.environ.get(v) for v in ("LC_ALL", "LC_CTYPE", "LANG")):
        os.environ["LC_ALL"] = "C.UTF-8"   # else Qt warns about the C locale (e.g. under `env -i`)

    starting_first = sys.platform.startswith("linux") and not args.self_test
    if not starting_first:
        import torch  # before Qt: on Windows, torch after Qt can fail to load c10.dll

        _leave_a_core_for_the_window(torch)

    from PySide6 import QtCore, QtWidgets

    QtCore.QCoreApplication.setOrganizationName("featdistill")
    QtCore.QCoreApplication.setApplicationName("featdistill")
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setStyle("Fusion")
    icon = _resource("icon.png")
    if icon.is_file():
        from PySide6 import QtGui

        app.setWindowIcon(QtGui.QIcon(str(icon)))

    starting = None
    if starting_first:
        starting = _show_starting_window(args.exit_when_shown)

    if args.self_test:
        from app.selftest import run_self_test

        result = run_self_test(args.screenshot, timeout_s=args.timeout)
        if result.ok:
            shot = f"; screenshot saved to {args.screenshot}" if args.screenshot else ""
            _say(f"featdistill self-test passed in {result.seconds:.1f} s{shot}")
            return 0
        _say(f"featdistill self-test FAILED: {result.message}", error=True)
        return 1

    from app.main_window import MainWindow
    from app.worker import warm_up_torch_in_background

    window = MainWindow()
    if args.follow:
        window.prompt_unsaved = False          # nothing to lose yet
        window.follow_run_folder(args.follow)
        window.prompt_unsaved = True
    elif args.run_file:
        window.open_run_file(args.run_file, confirmed=True)
    else:
        window.open_on_launch()
    if args.exit_when_shown:
        def shown() -> None:
            seconds = f"{time.perf_counter() - _STARTED:.3f} s"
            if starting is None:
                _say(f"featdistill-gui: window shown after {seconds}")
            _say(f"featdistill-gui: workbench shown after {seconds}")
            window.close()
        window.firstShown.connect(shown)
    else:
        # Import torch._dynamo while the window is idle, not when training starts (see warm_up_torch).
        window.firstShown.connect(warm_up_torch_in_background)
    if starting is not None:
        window.firstShown.connect(starting.close)
    window.show()
    return app.exec()


def _show_starting_window(report: bool):
    """Linux: show the starting window, load torch behind it, then say the window is being built."""
    from PySide6 import QtWidgets

    from app.starting import StartingWindow, import_in_background

    starting = StartingWindow()
    if report:
        starting.painted.connect(lambda: _say(f"featdistill-gui: window shown after "
                                              f"{time.perf_counter() - _STARTED:.3f} s"))
    starting.show()
    deadline = time.perf_counter() + 5.0
    while not starting._painted and time.perf_counter() < deadline:
        QtWidgets.QApplication.processEvents()
    QtWidgets.QApplication.processEvents()          # the painted signal's slot
    import_in_background(("torch",))
    import torch

    _leave_a_core_for_the_window(torch)
    starting.say("Loading the methods and models…")
    import_in_background(("featdistill_core.losses", "featdistill_core.models", "featdistill_core.validate"))
    starting.say("Building the window…")
    return starting


if __name__ == "__main__":
    sys.exit(main())
