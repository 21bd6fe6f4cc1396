"""Ship a distilled student: TorchScript, ONNX or safetensors, checked, with a model card.

:func:`export_student` takes a run folder, rebuilds its student from ``run.toml`` and
``student.safetensors`` (the bare student: the pairs' adapters and regressors, kept apart in
``adapters.safetensors``, are never part of it), writes it in one of :data:`FORMATS`, loads the written
file back *without* featdistill's code and checks that it gives the PyTorch student's outputs on the
run's probe images (fixed test images; seeded random images when the data set cannot be loaded, which
the card says), and writes a model card, ``MODEL_CARD.md`` and ``model_card.json``.

Formats, and how the check reloads them:

* ``torchscript`` — ``student.pt`` by ``torch.jit.trace`` (``torch.jit.script`` when tracing fails);
  reloaded with ``torch.jit.load``: it needs only torch. Tolerance: ``|Δ| <= 1e-5 + 1e-5·|y|``.
* ``onnx`` — ``student.onnx`` by torch's exporter (the ``torch.export``-based one, the legacy
  TorchScript-based one when that fails), with a dynamic batch dimension; needs the optional extra
  ``featdistill[onnx]`` (``onnx``, ``onnxscript``; ``onnxruntime`` to check with it). Reloaded with
  onnxruntime when installed, otherwise with ``onnx``'s reference evaluator.
  Tolerance: ``|Δ| <= 1e-4 + 1e-4·|y|``.
* ``safetensors`` — ``student.safetensors``, the state dict with the architecture, class count, input
  size and normalisation in its metadata; reloaded with ``safetensors`` into a freshly built
  architecture: the outputs must be identical.

The exported model takes float32 images (N, 3, H, W) normalised per channel as training fed them,
``(x / 255 − mean) / std`` (the card gives mean and std), and returns logits (N, classes).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from featdistill_core.analysis import read_pair_cka
from featdistill_core.analysis.rundata import close_data, load_run_data
from featdistill_core.config import RunConfig, config_to_toml
from featdistill_core.data import DatasetError
from featdistill_core.layers import list_layers
from featdistill_core.losses import get_method
from featdistill_core.models import create_model, load_weights, read_state_dict
from featdistill_core.placement import classifier_path
from featdistill_core.runfolder import RunFolderError, load_run

FORMATS = ("torchscript", "onnx", "safetensors")
FILE_NAMES = {"torchscript": "student.pt", "onnx": "student.onnx", "safetensors": "student.safetensors"}
TOLERANCES = {"torchscript": (1e-5, 1e-5), "onnx": (1e-4, 1e-4), "safetensors": (0.0, 0.0)}
"""(atol, rtol) of the output check: ``|exported − pytorch| <= atol + rtol·|pytorch|`` element-wise."""
DEFAULT_PROBE = 64
CARD_JSON = "model_card.json"
CARD_MD = "MODEL_CARD.md"


class ExportError(ValueError):
    """The student could not be exported, or the exported model does not give the student's outputs."""


@dataclass(frozen=True)
class ExportResult:
    format: str
    path: Path
    card_json: Path
    card_markdown: Path
    max_abs_diff: float
    atol: float
    rtol: float
    probe_size: int
    probe_source: str            # "test images" or "random images (...)"
    checked_with: str            # "torch.jit.load", "onnxruntime 1.x", ...
    card: dict = field(repr=False, default_factory=dict)


def onnx_available() -> tuple[bool, str]:
    """Whether ONNX export can run here, and if not, what to install."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False, "ONNX export needs the onnx package: pip install 'featdistill[onnx]'"
    return True, ""


def export_student(run_dir, format: str, out_dir=None, *, probe: int = DEFAULT_PROBE,
                   baseline_dir=None) -> ExportResult:
    """Export the student of ``run_dir`` as ``format`` into ``out_dir`` (default ``run_dir/export``),
    check it against the PyTorch student, and write the model card.

    Raises :class:`ExportError` (a ValueError) for anything the user can fix: not a run folder, no
    student weights, a format that cannot be written here, an export that does not match.
    """
    if format not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}; got {format!r}")
    if not isinstance(probe, int) or isinstance(probe, bool) or probe < 1:
        raise ExportError(f"--probe must be a positive whole number; got {probe!r}")
    run_dir = Path(run_dir)
    try:
        record = load_run(run_dir)
    except RunFolderError as exc:
        raise ExportError(str(exc)) from None
    config = record.config
    weights = run_dir / "student.safetensors"
    if not weights.is_file():
        raise ExportError(f"{run_dir} has no student.safetensors: the run never saved its student")
    if format == "onnx":
        ok, why = onnx_available()
        if not ok:
            raise ExportError(why)

    data, data_problem = _try_data(config)
    try:
        return _export(record, run_dir, config, weights, format, out_dir, probe, baseline_dir, data, data_problem)
    finally:
        close_data(data)


def _export(record, run_dir, config, weights, format, out_dir, probe, baseline_dir, data, data_problem) -> ExportResult:
    num_classes = data.num_classes if data is not None else _classes_from_weights(config.student.arch, weights)
    student = _load_student(config.student.arch, num_classes, weights)
    size = config.data.image_size
    if data is not None:
        images, _labels, _ = data.probe_images(min(probe, len(data.test_labels)), seed=config.seed)
        source = "test images"
    else:
        generator = torch.Generator().manual_seed(config.seed)
        images = torch.randn((probe, 3, size, size), generator=generator)
        source = f"random images (the data set could not be loaded: {data_problem})"
    images = images.to(torch.float32).contiguous()
    with torch.no_grad():
        expected = student(images).numpy()

    out_dir = Path(out_dir) if out_dir is not None else run_dir / "export"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the output folder {out_dir}: {exc}") from None
    path = out_dir / FILE_NAMES[format]
    meta = {"arch": config.student.arch, "num_classes": str(num_classes), "input": f"3x{size}x{size}",
            "mean": json.dumps(list(data.mean)) if data is not None else "",
            "std": json.dumps(list(data.std)) if data is not None else ""}
    partial = path.with_name(path.name + ".partial" + path.suffix)
    try:
        if format == "torchscript":
            method = _write_torchscript(student, images, partial)
            got, checker = _run_torchscript(partial, images), "torch.jit.load"
        elif format == "onnx":
            method = _write_onnx(student, images, partial)
            got, checker = _run_onnx(partial, images)
        else:
            method = "state dict"
            _write_safetensors(student, partial, meta)
            got, checker = _run_safetensors(partial, config.student.arch, num_classes, images), "safetensors.torch.load_file"
        atol, rtol = TOLERANCES[format]
        diff = float(np.max(np.abs(got - expected))) if expected.size else 0.0
        if got.shape != expected.shape or not np.all(np.abs(got - expected) <= atol + rtol * np.abs(expected)):
            raise ExportError(f"the exported {format} model does not give the student's outputs on {len(images)} "
                              f"{source.split(' (')[0]}: largest difference {diff:.3g} (allowed {atol:g} + {rtol:g}·|y|)")
        partial.replace(path)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc}") from None
    finally:
        if partial.exists():
            partial.unlink()

    check = {"probe_images": int(len(images)), "inputs": source, "max_abs_diff": diff, "atol": atol,
             "rtol": rtol, "reloaded_with": checker, "exported_by": method}
    card = _update_card(out_dir, _card(record, run_dir, student, num_classes, data, baseline_dir),
                        format, path, check)
    card_json, card_md = _write_card(out_dir, card)
    return ExportResult(format, path, card_json, card_md, diff, atol, rtol, len(images), source, checker, card)


# ---- the student -------------------------------------------------------------------------------


def _try_data(config: RunConfig):
    try:
        return load_run_data(config.data, config.seed), ""
    except DatasetError as exc:
        return None, str(exc)


def _classes_from_weights(arch: str, weights: Path) -> int:
    """The class count, from the classifier's weight in the student's file (when the data set is gone)."""
    try:
        probe_model = create_model(arch, 10)
        fc = classifier_path(list_layers(probe_model))
        state = read_state_dict(weights)
    except (ValueError, ImportError, RuntimeError) as exc:
        raise ExportError(f"cannot rebuild the student {arch}: {exc}") from None
    key = f"{fc}.weight" if fc else None
    if key is None or key not in state or state[key].ndim != 2:
        raise ExportError(f"the run's data set cannot be loaded and the class count of {arch} cannot be read from "
                          f"{weights.name}")
    return int(state[key].shape[0])


def _load_student(arch: str, num_classes: int, weights: Path) -> nn.Module:
    try:
        student = create_model(arch, num_classes)
        load_weights(student, weights)
    except (ValueError, ImportError, RuntimeError) as exc:   # WeightsError and UnknownModelError are ValueErrors
        raise ExportError(f"cannot rebuild the student {arch} from {weights}: {exc}") from None
    return student.eval()


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---- formats -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet():
    """torch's exporters warn (deprecations) and print progress; none of it is the user's business."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _example(images: torch.Tensor) -> torch.Tensor:
    """A 2-image example (a batch of 1 would let tracers specialise on it)."""
    return images[:2] if len(images) >= 2 else images.repeat(2, 1, 1, 1)


def _write_torchscript(student: nn.Module, images: torch.Tensor, path: Path) -> str:
    with _quiet():
        try:
            module = torch.jit.trace(student, _example(images), check_trace=False)
            method = "torch.jit.trace"
        except Exception as trace_error:  # noqa: BLE001 - a model tracing cannot follow: try scripting it
            try:
                module = torch.jit.script(student)
                method = "torch.jit.script"
            except Exception as script_error:  # noqa: BLE001
                raise ExportError(f"TorchScript export failed: tracing: {_line(trace_error)}; "
                                  f"scripting: {_line(script_error)}") from None
        torch.jit.save(module, str(path))
    return method


def _run_torchscript(path: Path, images: torch.Tensor) -> np.ndarray:
    with _quiet():
        module = torch.jit.load(str(path), map_location="cpu")
        module.eval()
        with torch.no_grad():
            return module(images).numpy()


def _write_onnx(student: nn.Module, images: torch.Tensor, path: Path) -> str:
    example = _example(images)
    errors = []
    try:
        import onnxscript  # noqa: F401
        has_script = True
    except ImportError:
        has_script = False
        errors.append("torch.export-based exporter: the onnxscript package is not installed")
    if has_script:
        try:
            with _quiet():
                torch.onnx.export(student, (example,), str(path), dynamo=True, input_names=["images"],
                                  output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                  external_data=False, verbose=False)
            return "torch.onnx.export (torch.export-based)"
        except Exception as exc:  # noqa: BLE001 - fall back to the legacy exporter
            errors.append(f"torch.export-based exporter: {_line(exc)}")
    try:
        with _quiet():
            torch.onnx.export(student, (example,), str(path), dynamo=False, input_names=["images"],
                              output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
        return "torch.onnx.export (TorchScript-based)"
    except Exception as exc:  # noqa: BLE001
        errors.append(f"TorchScript-based exporter: {_line(exc)}")
    raise ExportError("ONNX export failed: " + "; ".join(errors))


def _run_onnx(path: Path, images: torch.Tensor) -> tuple[np.ndarray, str]:
    feed = images.numpy()
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    if onnxruntime is not None:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return np.asarray(session.run(None, {name: feed})[0]), f"onnxruntime {onnxruntime.__version__}"
    import onnx
    from onnx.reference import ReferenceEvaluator

    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    evaluator = ReferenceEvaluator(model)
    name = model.graph.input[0].name
    return np.asarray(evaluator.run(None, {name: feed})[0]), f"onnx {onnx.__version__} reference evaluator"


def _write_safetensors(student: nn.Module, path: Path, meta: dict) -> None:
    from safetensors.torch import save_file

    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in student.state_dict().items()}
    save_file(tensors, str(path), metadata={k: str(v) for k, v in meta.items()})


def _run_safetensors(path: Path, arch: str, num_classes: int, images: torch.Tensor) -> np.ndarray:
    from safetensors.torch import load_file

    model = create_model(arch, num_classes)
    model.load_state_dict(load_file(str(path)), strict=True)
    model.eval()
    with torch.no_grad():
        return model(images).numpy()


def _line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


# ---- the model card --------------------------------------------------------------------------------


def _accuracies(record, baseline_dir) -> dict:
    metrics = dict(record.finished.metrics) if record.finished is not None else {}
    student = metrics.get("student_test_acc")
    if student is None:
        epochs = [e for e in record.epochs if str(e.stage) == "student"]
        student = epochs[-1].test_acc if epochs else None
    baseline = None
    if baseline_dir is not None:
        try:
            other = load_run(baseline_dir)
        except RunFolderError as exc:
            raise ExportError(f"--baseline: {exc}") from None
        if other.finished is not None:
            baseline = other.finished.metrics.get("student_test_acc")
    return {"teacher": metrics.get("teacher_test_acc"), "student": student, "baseline": baseline,
            "metric": "test top-1 %, measured by the run"}


def _card(record, run_dir: Path, student: nn.Module, num_classes: int, data, baseline_dir) -> dict:
    config = record.config
    try:
        teacher_params = _parameters(create_model(config.teacher.arch, num_classes)) if config.uses_teacher else None
    except Exception:  # noqa: BLE001 - a teacher factory that is gone only loses a number on the card
        teacher_params = None
    terms = []
    for term in config.terms:
        try:
            title = get_method(term.method).title
        except ValueError:
            title = term.method
        terms.append({"name": term.name, "method": term.method, "title": title, "teacher": list(term.teacher),
                      "student": list(term.student), "weight": term.weight, "stage": term.stage,
                      "options": dict(term.options)})
    weights_bytes = sum(t.numel() * t.element_size() for t in student.state_dict().values())
    pair_cka = None
    try:
        found = read_pair_cka(run_dir)
        if found is not None and not found.error:
            pair_cka = found.to_dict()["pairs"]
    except ValueError:
        pair_cka = None
    size = config.data.image_size
    return {
        "version": 1,
        "name": config.name,
        "run_dir": str(run_dir.resolve()),
        "student": {"arch": config.student.arch, "parameters": _parameters(student), "weights_bytes": weights_bytes,
                    "num_classes": num_classes},
        "teacher": {"arch": config.teacher.arch if config.uses_teacher else None,
                    "weights": config.teacher.weights or ("trained in this run" if config.trains_teacher else ""),
                    "parameters": teacher_params},
        "distillation": {"ce_weight": config.ce_weight, "terms": terms},
        "data": {"name": config.data.name, "path": config.data.path, "image_size": size, "num_classes": num_classes,
                 "class_names": list(data.class_names) if data is not None else None,
                 "train_images": int(len(data.train_labels)) if data is not None else None,
                 "test_images": int(len(data.test_labels)) if data is not None else None},
        "input": {"shape": ["N", 3, size, size], "dtype": "float32", "layout": "RGB, channels first",
                  "normalisation": "(x / 255 - mean) / std per channel",
                  "mean": list(data.mean) if data is not None else None,
                  "std": list(data.std) if data is not None else None},
        "output": {"shape": ["N", num_classes], "meaning": "logits (softmax gives class probabilities)"},
        "accuracy": _accuracies(record, baseline_dir),
        "pair_cka": pair_cka,
        "training": {"epochs": config.epochs, "batch_size": config.batch_size, "optimizer": config.optim.name,
                     "lr": config.optim.lr, "schedule": config.optim.schedule, "seed": config.seed,
                     "finished": record.finished is not None and not record.finished.stopped},
        "run_file": config_to_toml(config),
        "exports": {},
    }


def _update_card(out_dir: Path, card: dict, format: str, path: Path, check: dict) -> dict:
    """The new card, keeping the other formats' entries of an existing card of the same run."""
    existing = out_dir / CARD_JSON
    if existing.is_file():
        try:
            old = json.loads(existing.read_text(encoding="utf-8"))
            if old.get("run_dir") == card["run_dir"] and isinstance(old.get("exports"), dict):
                card["exports"].update({k: v for k, v in old["exports"].items() if k in FORMATS})
        except (OSError, ValueError):
            pass
    data = path.read_bytes()
    card["exports"][format] = {"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                               "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "torch": torch.__version__,
                               "check": check}
    return card


def _fmt_acc(value) -> str:
    return "unknown" if value is None else f"{value:.2f} %"


def card_markdown(card: dict) -> str:
    """The Markdown model card for a card dict."""
    s, t, d, a = card["student"], card["teacher"], card["data"], card["accuracy"]
    lines = [f"# {s['arch']} distilled from {t['arch'] or '(no teacher)'} ({card['name']})", "",
             "A student network trained with featdistill. This file describes it; the exported model files load "
             "without featdistill.", "", "## Model", "",
             f"- Student: `{s['arch']}`, {s['parameters']:,} parameters ({s['weights_bytes'] / 1e6:.2f} MB of float32 "
             f"weights), {s['num_classes']} classes."]
    if t["arch"]:
        params = f", {t['parameters']:,} parameters" if t.get("parameters") else ""
        lines.append(f"- Teacher: `{t['arch']}`{params}; weights: {t['weights'] or 'as initialised'}.")
    lines += ["", "## Distillation", "", f"Cross-entropy weight {card['distillation']['ce_weight']:g}.", ""]
    if card["distillation"]["terms"]:
        lines += ["| term | method | teacher | student | weight | stage |", "|---|---|---|---|---|---|"]
        for term in card["distillation"]["terms"]:
            lines.append(f"| {term['name']} | {term['title']} | {', '.join(term['teacher']) or 'logits'} | "
                         f"{', '.join(term['student']) or 'logits'} | {term['weight']:g} | {term['stage']} |")
    else:
        lines.append("No distillation term: the student was trained alone.")
    if card.get("pair_cka"):
        lines += ["", "Linear CKA of each distilled pair on test images, before and after training:", "",
                  "| term | teacher | student | before | after |", "|---|---|---|---|---|"]
        for p in card["pair_cka"]:
            fmt = lambda v: "-" if v is None else f"{v:.3f}"   # noqa: E731
            lines.append(f"| {p['term']} | {p['teacher']} | {p['student']} | {fmt(p['before'])} | {fmt(p['after'])} |")
    lines += ["", "## Data and accuracy", "",
              f"- Data set: {d['name']}" + (f" ({d['path']})" if d["path"] else "") +
              f", {d['image_size']}×{d['image_size']} images, {d['num_classes']} classes"
              + (f", {d['train_images']} training and {d['test_images']} test images." if d["train_images"] else "."),
              f"- Test top-1: teacher {_fmt_acc(a['teacher'])}, student {_fmt_acc(a['student'])}, "
              f"student trained alone (baseline) {_fmt_acc(a['baseline'])}."]
    if d.get("class_names"):
        lines.append(f"- Classes (output index order): {', '.join(d['class_names'])}.")
    i = card["input"]
    lines += ["", "## Input and output", "",
              f"- Input: float32 tensor (N, 3, {d['image_size']}, {d['image_size']}), RGB, normalised per channel as "
              f"`(x / 255 - mean) / std` with mean {_vec(i['mean'])} and std {_vec(i['std'])}.",
              f"- Output: logits (N, {s['num_classes']}).", "", "## Files", ""]
    for fmt_name, entry in card["exports"].items():
        c = entry["check"]
        lines.append(f"- `{entry['file']}` ({fmt_name}, {entry['bytes']:,} bytes, sha256 `{entry['sha256'][:16]}…`): "
                     f"reloaded with {c['reloaded_with']}, outputs equal to the PyTorch student's on "
                     f"{c['probe_images']} {c['inputs']} within {c['atol']:g} + {c['rtol']:g}·|y| "
                     f"(largest difference {c['max_abs_diff']:.3g}).")
    lines += ["", "Loading:", "", "```python"]
    if "torchscript" in card["exports"]:
        lines += ["import torch", f"model = torch.jit.load('{card['exports']['torchscript']['file']}').eval()"]
    if "onnx" in card["exports"]:
        lines += ["import onnxruntime", f"session = onnxruntime.InferenceSession('{card['exports']['onnx']['file']}')",
                  "logits = session.run(None, {'images': images})[0]"]
    if "safetensors" in card["exports"]:
        lines += ["from safetensors.torch import load_file",
                  f"state = load_file('{card['exports']['safetensors']['file']}')   # the {s['arch']} architecture's state dict"]
    lines += ["```", "", "## Run file", "", "```toml", card["run_file"].rstrip(), "```", ""]
    return "\n".join(lines)


def _vec(values) -> str:
    return "unknown" if not values else "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


def _write_card(out_dir: Path, card: dict) -> tuple[Path, Path]:
    paths = []
    for name, text in ((CARD_JSON, json.dumps(card, indent=1)), (CARD_MD, card_markdown(card))):
        path = out_dir / name
        partial = path.with_name(path.name + ".partial")
        try:
            partial.write_text(text, encoding="utf-8")
            partial.replace(path)
        except OSError as exc:
            raise ExportError(f"cannot write {path}: {exc}") from None
        paths.append(path)
    return paths[0], paths[1]


__all__ = ["CARD_JSON", "CARD_MD", "ExportError", "ExportResult", "FILE_NAMES", "FORMATS", "TOLERANCES",
           "card_markdown", "export_student", "onnx_available"]
