"""``featdistill``: the headless command line.

    featdistill demo [--seed N]          teacher, distilled student and baseline on the demo data
    featdistill train RUN.toml           run a run file; writes a run folder
    featdistill train --resume RUN_DIR   continue a stopped, failed or killed run from its checkpoint
    featdistill check RUN.toml           validate a run file without training; how each term starts
    featdistill compare RUN.toml --methods at,hint --seeds 0,1,2   which method works here
    featdistill status RUN_DIR ...       what run folders are, and whether they can be resumed
    featdistill layers MODEL [--input 3x32x32]
    featdistill models
    featdistill cka RUN.toml [--probe 512] [--out DIR]     layer-similarity map, suggested pairs
    featdistill export RUN_DIR --format torchscript|onnx|safetensors
    featdistill eval MODEL --weights FILE [--data NAME ...]

Each command is one module of this package with a ``register(subparsers)`` function; adding a command
is adding its module and its name to :data:`COMMANDS`.

Bad input of any kind prints one line per problem (``featdistill: error: field: what is wrong``) and
exits with status 2; a run that fails exits 1; Ctrl-C exits 130, SIGTERM 143; a closed pipe
(``featdistill models | head``) exits 141 quietly. Nothing reaches the terminal as a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from featdistill_core.cli import check, cka, compare, demo, evaluate, export, inspect, status, train
from featdistill_core.cli.output import EXIT_BAD_INPUT, EXIT_FAILED, ProgressBar, error, say
from featdistill_core.errors import ConfigError

COMMANDS = (demo, train, check, compare, status, inspect, cka, export, evaluate)
"""The modules of this package that define commands, in the order ``--help`` lists them."""

EXIT_BROKEN_PIPE = 141

__all__ = ["COMMANDS", "EXIT_BAD_INPUT", "EXIT_FAILED", "ProgressBar", "entry", "main"]

_exit_now = False      # set when a second signal asked to quit at once


def entry() -> None:
    """The ``featdistill`` executable: :func:`main`, then exit. After a second Ctrl-C (or a model
    factory that never returned) the process ends at once, without the interpreter's slow shutdown
    (every file of the run is closed by then)."""
    code = main()
    try:
        sys.stdout.flush()               # here, not at interpreter exit, so a closed pipe is caught
    except BrokenPipeError:
        _quiet_stdout()
        code = EXIT_BROKEN_PIPE
    except (OSError, ValueError, AttributeError):
        pass
    if _exit_now:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        os._exit(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    """``featdistill ARGS``: run one command, return its exit status (``featdistill_core.cli_main``)."""
    from featdistill_core.signals import SignalStop

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    global _exit_now
    with SignalStop() as signals:
        args.signals = signals
        code = _run(args)
        _exit_now = _exit_now or signals.interrupted
    _leave_hung_threads_behind(code)
    return code


cli_main = main          # the public name (featdistill_core.cli_main): the frozen app runs commands with it


def _run(args) -> int:
    from featdistill_core.atomic import WriteError
    from featdistill_core.signals import Interrupted

    try:
        return args.handler(args)
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except Interrupted as exc:
        error(f"interrupted ({exc})")
        return exc.exit_code
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    except ConfigError as exc:          # every problem of the run, one line each
        for problem in exc.problems:
            error(str(problem))
        return EXIT_BAD_INPUT
    except WriteError as exc:
        error(f"{exc.field}: {exc}" if exc.field else str(exc))
        return EXIT_FAILED
    except (ValueError, OSError, ImportError) as exc:   # every user-facing error of the core is a ValueError
        error(str(exc).strip().splitlines()[0] if str(exc).strip() else "unexpected error")
        return EXIT_BAD_INPUT
    except SystemExit as exc:          # a user's model code called sys.exit()
        error(f"code run for this command called sys.exit({exc.code!r}); a model's code must not end the program")
        return EXIT_FAILED
    except Exception as exc:  # a bug or an environment problem: still one line, never a traceback
        error(f"{type(exc).__name__}: {exc}".splitlines()[0])
        return EXIT_FAILED


def _quiet_stdout() -> None:
    """The reader of our output went away (``| head``): send the rest to nowhere, say nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _leave_hung_threads_behind(code: int) -> None:
    """A user's factory that never returned still runs on a helper thread: exit now, without waiting
    for it (only then; the process ends here)."""
    from featdistill_core.timelimit import abandoned_threads

    if abandoned_threads():
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        os._exit(code)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="featdistill", description="Feature distillation for PyTorch.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser
