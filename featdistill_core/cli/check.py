"""``featdistill check RUN.toml``: every check of a run file, without training; and how each term starts.

After validation, the terms are measured on the run's first ``balance.batches`` training batches
(:func:`featdistill_core.balance.measure_run`): each term's loss and gradient relative to the
cross-entropy, a warning for a term that starts above ``balance.warn_ratio``, and the weight an
``"auto"`` term would get. ``--no-balance`` skips that (no data is loaded).
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("check", help="validate a run file without training; show how each term starts")
    p.add_argument("run_file")
    p.add_argument("--no-balance", action="store_true",
                   help="do not measure the terms on the first training batches (no data is loaded)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from featdistill_core.validate import validate_run_file

    plan = validate_run_file(args.run_file)
    count = len(plan.terms)
    stages = ", ".join(f"{p.stage} {p.epochs} epoch{'s' if p.epochs != 1 else ''}" for p in plan.stages)
    print(f"{args.run_file}: ok ({count} distillation term{'s' if count != 1 else ''}, "
          f"{plan.num_classes} classes; {stages})")
    if plan.data_loader:
        how = "streamed from disk" if plan.data_loader == "stream" else "held in memory"
        print(f"  data: {plan.dataset_size} training images, {how} "
              f"({plan.data_bytes / 2**30:.2f} GiB at {plan.input_shape[1]}×{plan.input_shape[2]})")
    for term in plan.terms:
        print(f"  {term.name}: adapter {term.check.adapter}")
    if plan.terms and not args.no_balance and plan.config.balance.batches > 0:
        from featdistill_core.balance import measure_run

        report = measure_run(plan)
        for line in report.lines():
            print(line)
    return 0
