"""``featdistill``: the headless command line.

    featdistill demo [--seed N]          teacher, distilled student and baseline on the demo data
    featdistill train RUN.toml           run a run file; writes a run folder
    featdistill check RUN.toml           validate a run file without training
    featdistill layers MODEL [--input 3x32x32]
    featdistill models
    featdistill cka RUN.toml [--probe 512] [--out DIR]     layer-similarity map, suggested pairs
    featdistill export RUN_DIR --format torchscript|onnx|safetensors
    featdistill eval MODEL --weights FILE [--data NAME ...]

Each command is one module of this package with a ``register(subparsers)`` function; adding a command
is adding its module and its name to :data:`COMMANDS`.

Bad input of any kind prints one line per problem (``featdistill: error: field: what is wrong``) and
exits with status 2; nothing reaches the terminal as a traceback.
"""

from __future__ import annotations

import argparse

from featdistill_core.cli import check, cka, demo, evaluate, export, inspect, train
from featdistill_core.cli.output import EXIT_BAD_INPUT, EXIT_FAILED, ProgressBar, error, say
from featdistill_core.errors import ConfigError

COMMANDS = (demo, train, check, inspect, cka, export, evaluate)
"""The modules of this package that define commands, in the order ``--help`` lists them."""

__all__ = ["COMMANDS", "EXIT_BAD_INPUT", "EXIT_FAILED", "ProgressBar", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    except ConfigError as exc:          # every problem of the run, one line each
        for problem in exc.problems:
            error(str(problem))
        return EXIT_BAD_INPUT
    except (ValueError, OSError, ImportError) as exc:   # every user-facing error of the core is a ValueError
        error(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        return EXIT_BAD_INPUT
    except Exception as exc:  # a bug or an environment problem: still one line, never a traceback
        error(f"{type(exc).__name__}: {exc}".splitlines()[0])
        return EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="featdistill", description="Feature distillation for PyTorch.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser
