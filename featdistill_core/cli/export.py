"""``featdistill export RUN_DIR --format torchscript|onnx|safetensors``: the distilled student, checked, with a model card."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("export", help="write a run's student as TorchScript, ONNX or safetensors, with a model card")
    p.add_argument("run_dir")
    p.add_argument("--format", required=True, choices=("torchscript", "onnx", "safetensors"))
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/export)")
    p.add_argument("--probe", type=int, default=64, help="test images the export is checked on (default 64)")
    p.add_argument("--baseline", default=None, metavar="RUN_DIR",
                   help="the run folder of the same student trained alone, for the card's baseline accuracy")
    p.set_defaults(handler=run)


def run(args) -> int:
    from featdistill_core.export import export_student

    result = export_student(args.run_dir, args.format, args.out, probe=args.probe, baseline_dir=args.baseline)
    print(f"{result.format}: {result.path}")
    print(f"checked: reloaded with {result.checked_with}; outputs on {result.probe_size} {result.probe_source} "
          f"match the PyTorch student within {result.atol:g} + {result.rtol:g}·|y| "
          f"(largest difference {result.max_abs_diff:.3g})")
    print(f"model card: {result.card_markdown}, {result.card_json}")
    return 0
