"""``featdistill eval MODEL --weights FILE --data NAME``: top-1, top-5 and a confusion matrix of any model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from featdistill_core.cli.output import progress_printer, say


def register(sub) -> None:
    p = sub.add_parser("eval", help="top-1/top-5 and the confusion matrix of a model (or of a run folder's student)")
    p.add_argument("model", help="a model name (registry, package.module:function, torchvision:, timm:) or a run folder")
    p.add_argument("--weights", default=None, help="weights file (.safetensors, .pt, .pth); a run folder's by default")
    p.add_argument("--teacher", action="store_true", help="with a run folder: evaluate its teacher, not its student")
    p.add_argument("--data", default=None, help="demo | cifar10 | cifar100 | imagefolder (default: the run's, else demo)")
    p.add_argument("--path", default=None, help="data folder (cifar10, cifar100, imagefolder)")
    p.add_argument("--image-size", type=int, default=None, help="image side (default: the run's, else 32)")
    p.add_argument("--demo-train", type=int, default=None)
    p.add_argument("--demo-test", type=int, default=None)
    p.add_argument("--seed", type=int, default=None, help="demo images and the image folder's split (default: the run's, else 0)")
    p.add_argument("--split", default="test", choices=("test", "train"))
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--out", default=None, help="folder for confusion.csv, confusion.png, eval.json")
    p.set_defaults(handler=run)


def run(args) -> int:
    from featdistill_core.analysis import evaluate_model, render_confusion
    from featdistill_core.config import DataConfig
    from featdistill_core.analysis.rundata import close_data, load_run_data
    from featdistill_core.device import resolve_device
    from featdistill_core.models import create_model, load_weights
    from featdistill_core.runfolder import load_run

    source = Path(args.model)
    data_config = DataConfig()
    seed = 0
    if source.is_dir():
        record = load_run(source)                     # RunFolderError (a ValueError) for a folder that is not one
        data_config, seed = record.config.data, record.config.seed
        role = "teacher" if args.teacher else "student"
        arch = getattr(record.config, role).arch
        weights = args.weights or _run_weights(source, record.config, role)
        out = Path(args.out) if args.out else source / "eval" / role
        name = f"{arch} ({role} of {source.name})"
    else:
        if args.teacher:
            raise ValueError("--teacher needs a run folder as MODEL")
        if not args.weights:
            raise ValueError(f"--weights is needed to evaluate {args.model!r} (a model name); give its weights file")
        arch, weights = args.model, args.weights
        out = Path(args.out) if args.out else Path(f"eval-{Path(weights).stem}")
        name = arch
    for option, value in (("--batch-size", args.batch_size), ("--image-size", args.image_size),
                          ("--demo-train", args.demo_train), ("--demo-test", args.demo_test)):
        if value is not None and value < 1:
            raise ValueError(f"{option} must be at least 1; got {value}")
    if args.seed is not None and args.seed < 0:
        raise ValueError(f"--seed must be 0 or more; got {args.seed}")
    if not Path(weights).is_file():
        raise ValueError(f"weights file not found: {weights}")          # before the data set is loaded
    dataset = args.data or data_config.name
    path = args.path if args.path is not None else (data_config.path if dataset == data_config.name else "")
    chosen = dataclasses.replace(
        data_config, name=dataset, path=path or "", image_size=args.image_size or data_config.image_size,
        demo_train=args.demo_train or data_config.demo_train, demo_test=args.demo_test or data_config.demo_test)
    data = load_run_data(chosen, args.seed if args.seed is not None else seed)
    device = resolve_device(args.device)
    model = create_model(arch, data.num_classes)
    load_weights(model, weights)
    try:
        evaluation = evaluate_model(model, data, split=args.split, batch_size=args.batch_size, device=device,
                                    progress=progress_printer("eval"))
    finally:
        close_data(data)
    print(f"{name} on {dataset} ({args.split}):")
    print(evaluation.format_summary())
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = [evaluation.write_confusion_csv(out / "confusion.csv"),
                   render_confusion(evaluation, out / "confusion.png", title=f"{arch}: top-1 {evaluation.top1:.1f}%")]
        summary = {"model": arch, "weights": str(weights), "data": dataset, "split": args.split,
                   "images": evaluation.count, "top1": evaluation.top1, f"top{evaluation.topk}": evaluation.top5,
                   "per_class": {k: (None if v != v else v) for k, v in evaluation.per_class_dict().items()}}
        (out / "eval.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
        written.append(out / "eval.json")
    except OSError as exc:
        raise OSError(f"cannot write the evaluation into {out}: {exc.strerror or exc}") from None
    say("written: " + ", ".join(str(p) for p in written))
    return 0


def _run_weights(run_dir: Path, config, role: str) -> str:
    saved = run_dir / f"{role}.safetensors"
    if saved.is_file():
        return str(saved)
    if role == "teacher" and config.teacher.weights:
        return config.teacher.weights
    raise ValueError(f"{run_dir} has no {role}.safetensors" + ("" if role == "student" else " and its run file names no teacher weights"))
