"""``featdistill compare RUN.toml --methods at,hint --seeds 0,1,2``: which method works here.

Trains (or loads) the run file's teacher once, then the student with each method at its reference
placement and weight, and without a teacher, over the seeds; prints the leaderboard and writes it
(``leaderboard.csv``, ``leaderboard.md``) into the compare folder with every run folder.
Ctrl-C stops the entry under way at its next step and writes what is done; a second Ctrl-C quits.
"""

from __future__ import annotations

import os
import sys
import time

from featdistill_core.cli.output import say


def register(sub) -> None:
    p = sub.add_parser("compare", help="which method works here: every method over seeds, against the baseline")
    p.add_argument("run_file", help="the run: teacher, student, data, schedule (its [[pairs]] are not used "
                                    "unless --methods names 'recipe')")
    p.add_argument("--methods", default="all",
                   help="comma-separated method keys, 'all' (every registered method, the default), "
                        "'recipe' (the run file's own terms as written); the baseline always runs")
    p.add_argument("--seeds", default="0,1,2", help="seeds, e.g. 0,1,2 or 0-4 (default 0,1,2)")
    p.add_argument("--weights", default="reference", choices=("reference", "auto", "both"),
                   help="each method's reference weight, weights chosen by calibration (weight = \"auto\"), or both")
    p.add_argument("--epochs", type=int, default=None, help="student epochs (default: the run file's)")
    p.add_argument("--teacher-epochs", type=int, default=None,
                   help="epochs to train the teacher when the run file gives no weights (default: the run file's)")
    p.add_argument("--init-epochs", type=int, default=None,
                   help="init stage of init-stage methods such as FSP (default: the run file's init_epochs, "
                        "else epochs/8)")
    p.add_argument("--output", default=None, help="the compare folder (default: output_dir/compare-NAME-TIME)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from featdistill_core.compare import CompareRunner, leaderboard_text, plan_compare
    from featdistill_core.config import read_run_file
    from featdistill_core.errors import ConfigError

    config, problems = read_run_file(args.run_file)
    if config is None or problems:
        problems.raise_if_any()
    for option, name in ((args.epochs, "--epochs"), (args.teacher_epochs, "--teacher-epochs")):
        if option is not None and option < 1:
            raise ValueError(f"{name} must be at least 1; got {option}")
    if args.epochs is not None:
        config.epochs = args.epochs
    if args.teacher_epochs is not None:
        config.teacher.train_epochs = args.teacher_epochs
    if not os.environ.get("OMP_NUM_THREADS"):
        import torch

        torch.set_num_threads(1)    # small networks, small machines: see `featdistill demo`
    try:
        plan = plan_compare(config, args.methods, args.seeds, weights=args.weights, init_epochs=args.init_epochs,
                            folder=os.path.abspath(args.output) if args.output else None)
    except ConfigError as error:
        raise ConfigError.from_problems(
            (p._replace(field="--" + p.field.replace("_", "-")) if p.field in ("methods", "seeds", "weights", "init_epochs")
             else p) for p in error.problems) from None
    unplaced = [c for c in plan.candidates if not c.placeable]
    runs = sum(1 for c in plan.candidates if c.placeable) * len(plan.seeds)
    say(f"compare folder: {plan.folder}")
    say(f"{runs} runs: {', '.join(c.key for c in plan.candidates if c.placeable)} × seeds "
        f"{', '.join(map(str, plan.seeds))}" + (", after training the teacher" if plan.trains_teacher else ""))
    for candidate in unplaced:
        say(f"  {candidate.key}: cannot be placed: {candidate.refusal}")

    runner = CompareRunner(plan)
    bar = SweepBar(plan)
    runner.subscribe(bar)
    signals = getattr(args, "signals", None)      # featdistill_core.signals.SignalStop, set up by cli.main
    if signals is not None:
        signals.arm(runner.request_stop)          # the first Ctrl-C stops the entry under way; a second quits
    started = time.perf_counter()
    try:
        result = runner.run()
    finally:
        if signals is not None:
            signals.disarm()
    bar.finish()
    print(leaderboard_text(result))
    print(f"\nleaderboard: {plan.folder / 'leaderboard.md'}  {plan.folder / 'leaderboard.csv'}"
          f"   ({time.perf_counter() - started:.0f} s{', stopped' if result.stopped else ''})")
    failed = [e for e in result.entries if e.status == "failed"]
    if result.stopped:
        return (signals.exit_code if signals is not None else None) or 130
    return 1 if failed else 0


class SweepBar:
    """One line for the whole sweep: ``[3/14 at seed 1] ███░░ 23% student epoch 2/4 ETA 12:30``."""

    WIDTH = 24

    def __init__(self, plan, stream=None, min_interval: float = 0.2):
        from featdistill_core.compare import SweepEstimator

        self.stream = stream or sys.stderr
        self.interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.estimator = SweepEstimator(plan)
        self.min_interval = min_interval
        self._last = 0.0

    def __call__(self, event) -> None:
        from featdistill_core import compare, events
        from featdistill_core.progress import format_duration

        self.estimator.update(event)
        if isinstance(event, events.LossBalance):
            for term in event.terms:           # the full table is in the run folder's balance.json
                if term.warning:
                    self._line(f"  warning: {term.name}: {term.warning}")
        elif isinstance(event, compare.EntryFinished):
            e = event.entry
            where = f"[{event.index}/{event.count}] " if event.count else ""
            acc = f"{e.test_acc:.2f} %" if e.test_acc is not None else "-"
            self._line(f"{where}{e.candidate} seed {e.seed}: {e.status}, test top-1 {acc}"
                       + (f" ({e.error})" if e.error and e.status != "done" else "")
                       + f"; sweep ETA {format_duration(self.estimator.eta_seconds())}")
        elif isinstance(event, events.StepEvent):
            now = time.perf_counter()
            if self.interactive and now - self._last >= self.min_interval:
                self._last = now
                entry = self.estimator.entry
                where = (f"[{entry.index}/{entry.count} {entry.candidate} seed {entry.seed}]" if entry and entry.count
                         else f"[{entry.candidate}]" if entry else "")
                filled = int(round(self.estimator.fraction * self.WIDTH))
                self.stream.write(f"\r{where} {'█' * filled}{'░' * (self.WIDTH - filled)} "
                                  f"{self.estimator.fraction:4.0%} {event.stage} epoch {event.epoch} "
                                  f"ETA {format_duration(self.estimator.eta_seconds())}\033[K")
                self.stream.flush()

    def _line(self, text: str) -> None:
        if self.interactive:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.interactive:
            self.stream.write("\r\033[K")
            self.stream.flush()
