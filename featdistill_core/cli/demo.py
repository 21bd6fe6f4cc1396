"""``featdistill demo``: teacher, distilled student and undistilled baseline on the embedded demo data."""

from __future__ import annotations

import os
import time

from featdistill_core.cli.output import ProgressBar, error, say
from featdistill_core.signals import Interrupted


def register(sub) -> None:
    p = sub.add_parser("demo", help="distil on the embedded demo data and compare with a baseline")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default="runs")
    p.add_argument("--epochs", type=int, default=None, help="student and teacher epochs (default: the demo's)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from featdistill_core.demo import demo_config, run_demo

    if not os.environ.get("OMP_NUM_THREADS"):
        # The demo's networks are too small to gain from intra-op threads, and on a small machine
        # spin-waiting threads slow it down badly (2 cores: ~115 s with 1 thread, ~325 s with 2).
        import torch

        torch.set_num_threads(1)
    config = demo_config(args.seed, args.output_dir)
    if args.epochs is not None:
        if args.epochs < 1:
            raise ValueError(f"--epochs must be at least 1; got {args.epochs}")
        config.epochs = config.teacher.train_epochs = args.epochs
    say("featdistill demo: train a teacher, distil a student from it (attention transfer + FitNets hint),")
    say("then train the same student alone for comparison.")
    started = time.perf_counter()
    signals = args.signals
    current = []

    def attach(trainer) -> None:
        trainer.subscribe(ProgressBar.for_trainer(trainer))
        current[:] = [trainer]
        signals.arm(trainer.request_stop)

    try:
        result = run_demo(config=config, subscribe=attach)
    except Interrupted as exc:
        where = f"; {current[0].run_dir} keeps its last checkpoint: continue it with: featdistill train --resume " \
                f"{current[0].run_dir}" if current else ""
        error(f"interrupted at once ({exc}){where}")
        return exc.exit_code
    finally:
        signals.disarm()
    say("")
    if result.stopped:
        trainer = current[0]
        say(f"stopped at {trainer.where()}; the checkpoint is in {trainer.run_dir}")
        say(f"continue that run with: featdistill train --resume {trainer.run_dir}")
        return signals.exit_code or 130
    print(result.table())
    print(f"\nruns: {result.distill_dir}  {result.baseline_dir}   ({time.perf_counter() - started:.0f} s)")
    return 0
