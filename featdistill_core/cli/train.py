"""``featdistill train RUN.toml`` / ``featdistill train --resume RUN_DIR``: train into a run folder.

Under torchrun (``torchrun --nproc_per_node=N -m featdistill_core train RUN.toml``) every process
opens the process group first (:mod:`featdistill_core.distributed`), validates the run, and stops if
any process refused it (each printing the same line); rank 0 prints the progress and the outcome.

``--run-dir DIR`` trains into the folder DIR (new, or empty) instead of a new ``output_dir/name-date``
folder: the window starts ``featdistill train`` / ``torchrun`` this way to know which folder to follow.

``--control stdin`` also takes ``pause``, ``resume`` and ``stop`` lines on standard input, and stops
when standard input closes (:func:`featdistill_core.launch.obey_commands`): the window starts its own
runs this way, each in a process of its own, so that drawing never competes with training for
Python's interpreter lock.

Ctrl-C or SIGTERM stops the run at its next step: it writes its checkpoint, its models and a final
"stopped" event, prints where it stopped and how to continue, and exits 130 (SIGINT) or 143 (SIGTERM).
A second signal exits at once, leaving every file valid.
"""

from __future__ import annotations

import math
import os

from featdistill_core.cli.output import EXIT_FAILED, ProgressBar, error, say


def register(sub) -> None:
    p = sub.add_parser("train", help="run a run file (TOML), or resume a run folder")
    p.add_argument("run_file", nargs="?", help="the run file")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR (stopped, failed or killed) from its last checkpoint")
    p.add_argument("--output-dir", default=None, help="override the run file's output_dir")
    p.add_argument("--run-dir", metavar="DIR", default=None,
                   help="train into the folder DIR (new or empty) instead of a new folder in output_dir, "
                        "so that whoever started the command knows where to follow it")
    p.add_argument("--checkpoint-minutes", type=float, default=None, metavar="M",
                   help="write the checkpoint every M minutes within an epoch too (0: only at epoch ends); "
                        "overrides the run file's checkpoint.every_minutes")
    p.add_argument("--control", choices=("stdin",), default=None,
                   help="take pause, resume and stop commands, one a line, on standard input, and stop when it "
                        "closes (how the window runs its trainings)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from featdistill_core import distributed

    _start_ranks(args)               # under torchrun: the process group, before any training work
    try:
        return _run(args)
    finally:
        distributed.stop()


def _start_ranks(args) -> None:
    """Under torchrun (``WORLD_SIZE`` > 1): open the process group, NCCL when the run file's device
    resolves to CUDA, gloo otherwise (a device that does not resolve is reported by validation)."""
    from pathlib import Path

    from featdistill_core import distributed
    from featdistill_core.config import read_run_file
    from featdistill_core.device import DeviceError, resolve_device

    env = distributed.launch_env()
    if not env.launched:
        return
    source = Path(args.resume) / "run.toml" if args.resume else args.run_file
    config = read_run_file(source)[0] if source else None
    try:
        cuda = resolve_device(config.device if config is not None else "auto").type == "cuda"
    except (DeviceError, ValueError, TypeError, AttributeError):
        cuda = False
    distributed.start(env, cuda=cuda)


def _run(args) -> int:
    from featdistill_core import distributed
    from featdistill_core.config import read_run_file
    from featdistill_core.trainer import Trainer
    from featdistill_core.validate import validate_run

    main = distributed.current().is_main
    minutes = args.checkpoint_minutes
    if minutes is not None and not (math.isfinite(minutes) and 0 <= minutes <= 10_080):
        raise ValueError(f"--checkpoint-minutes must be between 0 and 10080; got {minutes:g}")
    if args.resume:
        if args.run_file or args.output_dir or args.run_dir:
            raise ValueError("--resume continues a run folder with its own run file and folder; "
                             "give no run file, no --output-dir and no --run-dir with it")
        trainer = Trainer.resume_from(args.resume, checkpoint_minutes=minutes)
        if main:
            say(f"resuming the run in {trainer.run_dir}")
    else:
        if not args.run_file:
            raise ValueError("give a run file to train (featdistill train RUN.toml) or --resume RUN_DIR")
        config, problems = read_run_file(args.run_file)
        if config is None:
            problems.raise_if_any()
        if args.run_dir and args.output_dir:
            raise ValueError("give --run-dir or --output-dir, not both (--run-dir names the run folder itself)")
        if args.output_dir:
            config.output_dir = os.path.abspath(args.output_dir)
        if minutes is not None:
            config.checkpoint.every_minutes = minutes
        trainer = Trainer(distributed.current().everywhere(lambda: validate_run(config, known=problems)),
                          os.path.abspath(args.run_dir) if args.run_dir else None)
        if main:
            say(f"run folder: {trainer.run_dir}" + (f" ({trainer.dist.world_size} processes)"
                                                     if trainer.dist.active else ""))
    if getattr(args, "control", None) == "stdin":
        _obey_stdin(trainer)
    return train(trainer, args.signals)


def _obey_stdin(trainer) -> None:
    """Pause, resume and stop from standard input, read on a daemon thread (see ``--control``)."""
    import sys
    import threading

    from featdistill_core import distributed
    from featdistill_core.launch import obey_commands

    if distributed.current().active:
        raise ValueError("--control stdin is for one process; under torchrun stop the run with Ctrl-C or SIGTERM")
    try:
        fd = sys.stdin.fileno() if sys.stdin is not None else None
    except (OSError, ValueError):
        fd = None
    if fd is None:
        raise ValueError("--control stdin needs a standard input")
    threading.Thread(target=obey_commands, args=(fd, trainer), name="featdistill-control", daemon=True).start()


def train(trainer, signals) -> int:
    """Run ``trainer`` with Ctrl-C/SIGTERM stopping it; print the outcome; return the exit status."""
    from featdistill_core.signals import Interrupted

    main = trainer.dist.is_main                  # under torchrun rank 0 draws and prints; every rank reports errors
    if main:
        trainer.subscribe(ProgressBar.for_trainer(trainer))
    resume = f"featdistill train --resume {trainer.run_dir}"
    if trainer.dist.active:
        resume = f"the same torchrun command with: train --resume {trainer.run_dir} (or one process: {resume})"
    signals.arm(trainer.request_stop)
    try:
        finished = trainer.run()
    except Interrupted as exc:
        say("")
        error(f"interrupted at once ({exc}); {trainer.run_dir} keeps its last checkpoint: continue with: {resume}")
        return exc.exit_code
    except Exception:  # noqa: BLE001 - the trainer has described it in its Failed event
        failed = trainer.failed
        if failed is None:
            raise
        error(f"{failed.field}: {failed.error}" if failed.field else failed.error)
        if main:
            say(f"the run failed at {failed.where}; {trainer.run_dir} holds:")
            for name, what in failed.holds:
                say(f"  {name}: {what}")
            say(f"(the details are in {trainer.run_dir / 'error.txt'})")
        return EXIT_FAILED
    finally:
        signals.disarm()
    if not main:
        return signals.exit_code or 0 if finished.stopped else 0
    for key, value in finished.metrics.items():
        print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")
    print(f"outputs: {finished.run_dir}")
    if finished.stopped:
        from featdistill_core.signals import signal_name

        why = f"by {signal_name(signals.received)}" if signals.received is not None else "on request"
        say(f"stopped {why} at {trainer.where()}; the checkpoint is in {trainer.run_dir}")
        say(f"continue with: {resume}")
        return signals.exit_code or 0
    return 0
