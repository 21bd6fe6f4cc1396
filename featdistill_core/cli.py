"""``featdistill``: the headless command line.

    featdistill demo [--seed N]          teacher, distilled student and baseline on the demo data
    featdistill train RUN.toml           run a run file; writes a run folder
    featdistill check RUN.toml           validate a run file without training
    featdistill layers MODEL [--input 3x32x32]
    featdistill models

Bad input of any kind prints one line (``featdistill: error: ...``) and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except (ValueError, OSError, ImportError) as exc:   # every user-facing error of the core is a ValueError
        _error(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        return EXIT_BAD_INPUT
    except Exception as exc:  # a bug or an environment problem: still one line, never a traceback
        _error(f"{type(exc).__name__}: {exc}".splitlines()[0])
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="featdistill", description="Feature distillation for PyTorch.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="distil on the embedded demo data and compare with a baseline")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default="runs")
    p.add_argument("--epochs", type=int, default=None, help="student and teacher epochs (default: the demo's)")
    p.set_defaults(handler=_cmd_demo)

    p = sub.add_parser("train", help="run a run file (TOML)")
    p.add_argument("run_file")
    p.add_argument("--output-dir", default=None, help="override the run file's output_dir")
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser("check", help="validate a run file without training")
    p.add_argument("run_file")
    p.set_defaults(handler=_cmd_check)

    p = sub.add_parser("layers", help="list a model's layers with their output shapes")
    p.add_argument("model", help="a registry name, package.module:function, torchvision:NAME or timm:NAME")
    p.add_argument("--input", default="3x32x32", help="input shape CxHxW (default 3x32x32)")
    p.add_argument("--num-classes", type=int, default=10)
    p.set_defaults(handler=_cmd_layers)

    p = sub.add_parser("models", help="list the registry")
    p.set_defaults(handler=_cmd_models)
    return parser


# ---- commands ------------------------------------------------------------------------------------

def _cmd_demo(args) -> int:
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
    _say("featdistill demo: train a teacher, distil a student from it (attention transfer + FitNets hint),")
    _say("then train the same student alone for comparison.")
    started = time.perf_counter()
    result = run_demo(config=config, subscribe=lambda trainer: trainer.subscribe(ProgressBar()))
    _say("")
    print(result.table())
    print(f"\nruns: {result.distill_dir}  {result.baseline_dir}   ({time.perf_counter() - started:.0f} s)")
    return 0


def _cmd_train(args) -> int:
    from featdistill_core.config import load_config
    from featdistill_core.trainer import Trainer
    from featdistill_core.validate import validate_run

    config = load_config(args.run_file)
    if args.output_dir:
        config.output_dir = args.output_dir
    validate_run(config)
    trainer = Trainer(config)
    trainer.subscribe(ProgressBar())
    _say(f"run folder: {trainer.run_dir}")
    finished = trainer.run()
    for key, value in finished.metrics.items():
        print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")
    print(f"outputs: {finished.run_dir}")
    return 0


def _cmd_check(args) -> int:
    from featdistill_core.config import load_config
    from featdistill_core.validate import validate_run

    config = load_config(args.run_file)
    plan = validate_run(config)
    print(f"{args.run_file}: ok ({len(config.pairs)} pair(s), {plan.num_classes} classes)")
    for pair, check in zip(config.pairs, plan.pair_checks):
        print(f"  {pair.name}: adapter {check.adapter}")
    return 0


def _cmd_layers(args) -> int:
    from featdistill_core.layers import format_layer_table, list_layers
    from featdistill_core.models import create_model

    shape = _parse_shape(args.input)
    model = create_model(args.model, args.num_classes)
    print(format_layer_table(list_layers(model, shape)))
    return 0


def _cmd_models(args) -> int:
    from featdistill_core.models import list_models

    models = list_models()
    width = max(len(m.name) for m in models)
    for m in models:
        print(f"{m.name:{width}s}  {m.family:12s}  {m.description}")
    print("\nAlso: package.module:function (your own factory), torchvision:NAME, timm:NAME (if installed).")
    return 0


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"--input must look like 3x32x32 (channels x height x width); got {text!r}")
    return shape


# ---- output --------------------------------------------------------------------------------------

def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _error(text: str) -> None:
    print(f"featdistill: error: {text}", file=sys.stderr, flush=True)


class ProgressBar:
    """A trainer subscriber drawing ``[stage] ████░░ 42% epoch 2/8 loss 0.93 1830 img/s ETA 0:41``."""

    WIDTH = 24

    def __init__(self, stream=None, min_interval: float = 0.1):
        self.stream = stream or sys.stderr
        self.min_interval = min_interval
        self._interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._stage_start = time.perf_counter()
        self._last_draw = 0.0
        self._line = ""
        self._eta = ""

    def __call__(self, event) -> None:
        from featdistill_core import events

        if isinstance(event, events.StageStarted):
            self._stage_start = time.perf_counter()
        elif isinstance(event, events.StepEvent):
            now = time.perf_counter()
            if now - self._last_draw >= self.min_interval or event.step == event.total_steps:
                self._last_draw = now
                self._draw(event, now)
        elif isinstance(event, events.EpochEvent):
            teacher = f", teacher {event.teacher_acc:.1f}%" if event.teacher_acc is not None else ""
            self._finish_line(f"[{event.stage}] epoch {event.epoch}/{event.epochs}: "
                              f"train {event.train_acc:.1f}%, test {event.test_acc:.1f}%{teacher}"
                              + (f"  (stage ETA {self._eta})" if event.epoch < event.epochs and self._eta else ""))
        elif isinstance(event, events.Failed):
            self._finish_line(f"failed: {event.error}")

    def _draw(self, event, now: float) -> None:
        fraction = event.step / max(event.total_steps, 1)
        elapsed = now - self._stage_start
        eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
        self._eta = _clock(eta)
        filled = int(round(fraction * self.WIDTH))
        bar = "█" * filled + "░" * (self.WIDTH - filled)
        self._line = (f"[{event.stage}] {bar} {fraction:4.0%} epoch {event.epoch} step {event.step}/{event.total_steps} "
                      f"loss {event.total:.3f} {event.images_per_sec:6.0f} img/s ETA {_clock(eta)}")
        if self._interactive:
            self.stream.write("\r" + self._line + "\033[K")
            self.stream.flush()

    def _finish_line(self, text: str) -> None:
        if self._interactive:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 60}:{seconds % 60:02d}"


if __name__ == "__main__":
    sys.exit(main())
