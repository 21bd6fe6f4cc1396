"""``featdistill train RUN.toml``: validate a run file, then train it into a run folder."""

from __future__ import annotations

import os

from featdistill_core.cli.output import ProgressBar, say


def register(sub) -> None:
    p = sub.add_parser("train", help="run a run file (TOML)")
    p.add_argument("run_file")
    p.add_argument("--output-dir", default=None, help="override the run file's output_dir")
    p.set_defaults(handler=run)


def run(args) -> int:
    from featdistill_core.config import read_run_file
    from featdistill_core.trainer import Trainer
    from featdistill_core.validate import validate_run

    config, problems = read_run_file(args.run_file)
    if config is not None and args.output_dir:
        config.output_dir = os.path.abspath(args.output_dir)
    if config is None:
        problems.raise_if_any()
    trainer = Trainer(validate_run(config, known=problems))
    trainer.subscribe(ProgressBar.for_trainer(trainer))
    say(f"run folder: {trainer.run_dir}")
    finished = trainer.run()
    for key, value in finished.metrics.items():
        print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")
    print(f"outputs: {finished.run_dir}")
    return 0
