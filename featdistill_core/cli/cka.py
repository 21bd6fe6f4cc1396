"""``featdistill cka RUN.toml``: the layer-similarity map of a run's teacher and student, and the pairs it suggests."""

from __future__ import annotations

import re
from pathlib import Path

from featdistill_core.cli.output import progress_printer, say


def register(sub) -> None:
    p = sub.add_parser("cka", help="linear CKA between every teacher and student layer; suggests layer pairs")
    p.add_argument("run_file", help="a run file, or a run folder (its run.toml, with the teacher and student it trained)")
    p.add_argument("--probe", type=int, default=512, help="test images to compare on (default 512, capped at the test split)")
    p.add_argument("--batch-size", type=int, default=64, help="images per mini-batch (default 64, at least 4)")
    p.add_argument("--layers", default="blocks", choices=("blocks", "stages", "all"),
                   help="which layers of both networks (default blocks: stages and their blocks)")
    p.add_argument("--pairs", type=int, default=None, metavar="K",
                   help="how many pairs to suggest (default: as many as the networks share stage sizes, else 3)")
    p.add_argument("--method", default=None,
                   help="the method whose shape check the pairs must pass (default: the run's first layer pair's, else hint)")
    p.add_argument("--out", default=None, help="folder for cka.csv, cka.png and cka.json (default OUTPUT_DIR/cka-NAME, or RUN_DIR/cka)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from featdistill_core.analysis import (
        align_layers, check_alignable, cka_map_for, default_pair_count, pairs_as_toml, render_cka,
    )
    from featdistill_core.validate import validate_run_file

    if args.probe < 4:
        raise ValueError(f"--probe must be at least 4 (the unbiased CKA estimator needs 4 images); got {args.probe}")
    if args.batch_size < 4:
        raise ValueError(f"--batch-size must be at least 4; got {args.batch_size}")
    if args.pairs is not None and args.pairs < 1:
        raise ValueError(f"--pairs must be at least 1; got {args.pairs}")
    run_dir = Path(args.run_file) if Path(args.run_file).is_dir() else None
    if run_dir is not None and not (run_dir / "run.toml").is_file():
        raise ValueError(f"{run_dir} is a folder without run.toml: give a run file or a run folder")
    plan = validate_run_file(run_dir / "run.toml" if run_dir is not None else args.run_file)
    config = plan.config
    method, options, weight = _method(args.method, config)
    check_alignable(method)
    mapped = cka_map_for(plan, run_dir=run_dir, probe=args.probe, layers=args.layers, batch_size=args.batch_size,
                         progress=progress_printer("CKA"))
    for note in mapped.notes:
        say(note if note.startswith("student:") else f"note: {note}")
    result = mapped.result
    print(f"linear CKA on {result.probe_size} test images ({config.data.name}), device {plan.device}:")
    print(result.format_table())

    default_out = run_dir / "cka" if run_dir is not None else Path(config.output_dir) / f"cka-{_safe(config.name)}"
    out = Path(args.out) if args.out else default_out
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = [result.write_csv(out / "cka.csv"), render_cka(result, out / "cka.png"),
                   result.save_json(out / "cka.json")]
    except OSError as exc:
        raise OSError(f"cannot write the CKA map into {out}: {exc.strerror or exc}") from None

    k = args.pairs or default_pair_count(plan.teacher_layers.values(), plan.student_layers.values())
    pairs = align_layers(result, k, method=method, options=options)
    print()
    if not pairs:
        print(f"# no layer pair of these maps passes the shape check of {method}")
    else:
        fewer = f" (only {len(pairs)} can be made)" if len(pairs) < k else ""
        print(f"# {len(pairs)} pair{'s' if len(pairs) != 1 else ''} of greatest summed CKA in depth order for "
              f"{method}{fewer}; paste into the run file:")
        print(pairs_as_toml(pairs, method, weight=weight, options=options or None))
    print()
    print("written: " + ", ".join(str(p) for p in written))
    return 0


def _method(requested, config) -> tuple[str, dict, float | None]:
    """The method to align for, its options and weight: the run's own for that method where it has a
    pair of it (default: its first pair's method that pairs single layers), else the method's defaults."""
    from featdistill_core.losses import get_method

    if requested:
        for pair in config.pairs:
            if pair.method == requested:
                return requested, dict(pair.options), pair.weight
        return requested, {}, None
    for pair in config.pairs:
        info = get_method(pair.method)
        if not info.on_logits and info.layers.allows(1) and info.taps == "output":
            return pair.method, dict(pair.options), pair.weight
    return "hint", {}, None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "run"
