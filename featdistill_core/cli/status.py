"""``featdistill status RUN_DIR ...``: what each run folder is (running, finished, stopped, failed,
interrupted) and whether ``featdistill train --resume`` can continue it."""

from __future__ import annotations

from featdistill_core.cli.output import EXIT_BAD_INPUT


def register(sub) -> None:
    p = sub.add_parser("status", help="say what run folders are and whether they can be resumed")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.set_defaults(handler=run)


def run(args) -> int:
    from featdistill_core.cli.output import error
    from featdistill_core.runfolder import RunFolderError, run_status

    code = 0
    for folder in args.run_dirs:
        try:
            status = run_status(folder)
        except RunFolderError as exc:
            error(str(exc))
            code = EXIT_BAD_INPUT
            continue
        hint = f"  (continue with: featdistill train --resume {folder})" if status.resumable else ""
        print(f"{folder}: {status.message}{hint}")
    return code
