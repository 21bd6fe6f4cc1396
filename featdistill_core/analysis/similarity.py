"""The layer-similarity map: linear CKA between every chosen teacher layer and every chosen student layer.

:func:`cka_map` runs both networks over a probe set in mini-batches. A forward hook on each chosen
module turns its output into the batch's Gram matrix the moment it exists (a 4-D map is flattened per
sample, a flat vector is used as it is), so memory is one m×m matrix per layer whatever the probe
size; :class:`~.cka.MinibatchCKA` accumulates the unbiased estimate (Nguyen et al., ICLR 2021).
A ``progress(done_images, total_images)`` callback is called after each batch and a
``cancel()`` callable is asked before each; when it answers True, :class:`AnalysisCancelled` is raised.

Which layers (``teacher_layers=`` / ``student_layers=``):

* ``"blocks"`` (default) — the modules one or two levels down (stages and their blocks, the stem)
  whose output is a tensor, without activations, normalisations, pooling, dropout or the classifier:
  the layers a distillation pair is usually put on, and few enough to stay fast;
* ``"stages"`` — only the stage outputs of :func:`featdistill_core.layers.stage_outputs`;
* ``"all"`` — every module whose output is a tensor;
* a list of module paths.

For the three named choices, a container that returns the very tensor of one of its descendants (a
``Sequential`` and its last block) is one layer with it, named by the shallower path (``layer1`` rather than ``layer1.2``); the others
are listed in :attr:`CKALayer.aliases`. Layers are always in the order their outputs are computed
(depth order), which :func:`~.alignment.align_layers` relies on.
"""

from __future__ import annotations

import csv
import json
import math
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from featdistill_core.layers import _NOT_A_STAGE, LayerInfo, get_module, stage_outputs

from .cka import MinibatchCKA, accumulation_dtype, batch_bounds, linear_gram

LAYER_SELECTIONS = ("blocks", "stages", "all")
DEFAULT_BATCH = 64
Progress = Optional[Callable[[int, int], None]]
Cancel = Optional[Callable[[], bool]]


class AnalysisCancelled(Exception):
    """Raised between two batches when the ``cancel`` callable answered True."""


@dataclass(frozen=True)
class CKALayer:
    """One row or column of a CKA map: the module path, its output shape per sample, its class name."""

    path: str
    shape: tuple[int, ...]
    type_name: str = ""
    aliases: tuple[str, ...] = ()          # other modules returning the same tensor
    taps: str = "output"                   # "output", or "input" (the tensor the module receives)

    @property
    def label(self) -> str:
        return self.path if self.taps == "output" else f"{self.path} (input)"


@dataclass(frozen=True, eq=False)
class CKAResult:
    """A CKA map: ``matrix[i, j]`` is the CKA of teacher layer i and student layer j (NaN: a layer that
    did not vary over the probe set). Rows and columns are in depth order."""

    teacher_layers: tuple[CKALayer, ...]
    student_layers: tuple[CKALayer, ...]
    matrix: np.ndarray
    probe_size: int
    batch_size: int
    teacher_name: str = "teacher"
    student_name: str = "student"
    estimator: str = "linear CKA, mini-batch unbiased HSIC (Nguyen, Raghu & Kornblith, ICLR 2021)"

    @property
    def teacher_paths(self) -> tuple[str, ...]:
        return tuple(layer.path for layer in self.teacher_layers)

    @property
    def student_paths(self) -> tuple[str, ...]:
        return tuple(layer.path for layer in self.student_layers)

    def value(self, teacher: str, student: str) -> float:
        """The CKA of one teacher and one student layer, by path (an alias works too)."""
        return float(self.matrix[_index(self.teacher_layers, teacher, self.teacher_name),
                                 _index(self.student_layers, student, self.student_name)])

    def to_dict(self) -> dict:
        return {
            "version": 1, "estimator": self.estimator,
            "teacher": self.teacher_name, "student": self.student_name,
            "probe_size": self.probe_size, "batch_size": self.batch_size,
            "teacher_layers": [_layer_dict(layer) for layer in self.teacher_layers],
            "student_layers": [_layer_dict(layer) for layer in self.student_layers],
            "matrix": [[None if math.isnan(v) else float(v) for v in row] for row in self.matrix.tolist()],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "CKAResult":
        try:
            teacher = tuple(_layer_from(d) for d in data["teacher_layers"])
            student = tuple(_layer_from(d) for d in data["student_layers"])
            matrix = np.array([[np.nan if v is None else float(v) for v in row] for row in data["matrix"]],
                              dtype=np.float64).reshape(len(teacher), len(student))
            return cls(teacher, student, matrix, int(data["probe_size"]), int(data["batch_size"]),
                       str(data.get("teacher", "teacher")), str(data.get("student", "student")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a CKA map: {exc}") from None

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        _write_text(path, json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load_json(cls, path: str | Path) -> "CKAResult":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the CKA map {path}: {exc}") from None
        return cls.from_dict(data)

    def write_csv(self, path: str | Path) -> Path:
        """Rows: teacher layers; columns: student layers; values to 6 decimals ("nan" where undefined)."""
        path = Path(path)
        rows = [[f"{self.teacher_name} \\ {self.student_name}", *(l.label for l in self.student_layers)]]
        for layer, values in zip(self.teacher_layers, self.matrix):
            rows.append([layer.label, *("nan" if math.isnan(v) else f"{v:.6f}" for v in values)])
        partial = path.with_name(path.name + ".partial")
        with open(partial, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(rows)
        partial.replace(path)
        return path

    def format_table(self, width: int = 6) -> str:
        """The matrix as text: teacher layers down, student layers across (numbered, with a legend)."""
        names = [layer.label for layer in self.teacher_layers]
        left = max([len(n) for n in names] + [len(self.teacher_name)])
        header = f"{self.teacher_name:<{left}s}  " + " ".join(f"{'s' + str(j + 1):>{width}s}" for j in range(len(self.student_layers)))
        lines = [header]
        for name, values in zip(names, self.matrix):
            lines.append(f"{name:<{left}s}  " + " ".join(f"{'-' if math.isnan(v) else f'{v:.3f}':>{width}s}" for v in values))
        legend = ", ".join(f"s{j + 1} = {layer.label}" for j, layer in enumerate(self.student_layers))
        lines.append(f"{self.student_name}: {legend}")
        return "\n".join(lines)


def _index(layers: Sequence[CKALayer], path: str, name: str) -> int:
    for i, layer in enumerate(layers):
        if layer.path == path or path in layer.aliases:
            return i
    raise KeyError(f"layer {path!r} of {name} is not in this CKA map")


def _layer_dict(layer: CKALayer) -> dict:
    return {"path": layer.path, "shape": list(layer.shape), "type": layer.type_name,
            "aliases": list(layer.aliases), "taps": layer.taps}


def _layer_from(data: dict) -> CKALayer:
    return CKALayer(str(data["path"]), tuple(int(v) for v in data["shape"]), str(data.get("type", "")),
                    tuple(str(a) for a in data.get("aliases", ())), str(data.get("taps", "output")))


def _write_text(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


# ---- which layers ------------------------------------------------------------------------------


@dataclass
class _Fired:
    path: str
    type_name: str
    depth: int
    shape: Optional[tuple[int, ...]]
    same_as: Optional[int] = None      # index of an earlier entry that returned this very tensor


def _trace(model: nn.Module, example: torch.Tensor) -> list[_Fired]:
    """One forward pass recording, in the order outputs are computed, each module's first output."""
    fired: list[_Fired] = []
    seen: set[str] = set()
    refs: dict[int, weakref.ref] = {}

    def recorder(path: str, module: nn.Module):
        def hook(_module, _inputs, output):
            if path in seen:
                return
            seen.add(path)
            tensor = isinstance(output, torch.Tensor)
            same_as = None
            if tensor:
                # a container returning its descendant's very tensor (a Sequential and its last block);
                # a sibling that returns its input modified in place (ReLU(inplace=True)) is not one
                for index, ref in refs.items():
                    if ref() is output and fired[index].path.startswith(path + "."):
                        same_as = index
                        break
                refs[len(fired)] = weakref.ref(output)
            fired.append(_Fired(path, type(module).__name__, path.count(".") + 1,
                                tuple(output.shape[1:]) if tensor else None, same_as))
        return hook

    handles = [module.register_forward_hook(recorder(path, module)) for path, module in model.named_modules() if path]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return fired


def _wanted(entry: _Fired, selection: str, stage_paths: set[str]) -> bool:
    if entry.shape is None or len(entry.shape) == 0:
        return False
    if selection == "all":
        return True
    if selection == "stages":
        return entry.path in stage_paths
    return entry.depth <= 2 and not any(word in entry.type_name for word in _NOT_A_STAGE)


def choose_layers(model: nn.Module, example: torch.Tensor, selection="blocks", model_name: str = "model") -> list[CKALayer]:
    """The layers of ``model`` a CKA map uses for ``selection`` (see the module docstring), in depth order.

    ``example`` is a small batch of real inputs on the model's device (one forward pass is run).
    Raises ValueError for an unknown selection, a path that does not exist (with the closest ones)
    or a module that returns no tensor.
    """
    was_training = model.training
    model.eval()
    try:
        fired = _trace(model, example)
    finally:
        model.train(was_training)
    if isinstance(selection, str):
        if selection not in LAYER_SELECTIONS:
            raise ValueError(f"CKA layers must be one of {', '.join(LAYER_SELECTIONS)} or a list of module paths; "
                             f"got {selection!r}")
        stage_paths = set()
        if selection == "stages":
            infos = [LayerInfo(e.path, e.type_name, e.shape, e.depth, 0) for e in fired]
            stage_paths = set(stage_outputs(infos).values())
        roots = []
        for entry in fired:
            roots.append(roots[entry.same_as] if entry.same_as is not None else len(roots))
        groups: dict[int, list[_Fired]] = {}
        for entry, root in zip(fired, roots):
            if _wanted(entry, selection, stage_paths):
                groups.setdefault(root, []).append(entry)
        layers = []
        for group in groups.values():
            best = min(group, key=lambda e: e.depth)          # min keeps the first of equal depth
            layers.append(CKALayer(best.path, best.shape, best.type_name,
                                   tuple(e.path for e in group if e is not best)))
        if not layers:
            raise ValueError(f"{model_name} has no layer for CKA under {selection!r}")
        return layers
    paths = list(selection)
    if not paths:
        raise ValueError(f"no CKA layers given for {model_name}")
    by_path = {entry.path: entry for entry in fired}
    order = {entry.path: i for i, entry in enumerate(fired)}
    layers = []
    for path in dict.fromkeys(paths):
        get_module(model, path, model_name)             # LayerPathError (a ValueError) with suggestions
        entry = by_path.get(path)
        if entry is None or entry.shape is None or len(entry.shape) == 0:
            raise ValueError(f"layer {path!r} of {model_name} does not output a tensor")
        layers.append(CKALayer(entry.path, entry.shape, entry.type_name))
    return sorted(layers, key=lambda layer: order[layer.path])


# ---- the computation -----------------------------------------------------------------------------


class _GramHooks:
    """Forward hooks that turn each tapped tensor into its batch Gram matrix as soon as it exists."""

    def __init__(self, model: nn.Module, layers: Sequence[CKALayer], dtype: torch.dtype, model_name: str):
        self.dtype = dtype
        self.count = len(layers)
        self.grams: dict[int, torch.Tensor] = {}
        self._handles = []
        self._names = [layer.label for layer in layers]
        self._model_name = model_name
        for index, layer in enumerate(layers):
            module = get_module(model, layer.path, model_name)
            self._handles.append(module.register_forward_hook(self._hook(index, layer.taps == "input")))

    def _hook(self, index: int, inputs: bool):
        def hook(_module, args, output):
            if index in self.grams:
                return                                   # a module called twice: its first call counts
            tensor = (args[0] if args else None) if inputs else output
            if isinstance(tensor, torch.Tensor):
                self.grams[index] = linear_gram(tensor, self.dtype)
        return hook

    def take(self) -> torch.Tensor:
        missing = [self._names[i] for i in range(self.count) if i not in self.grams]
        if missing:
            raise ValueError(f"{self._model_name}: layer {missing[0]!r} gave no tensor in this forward pass")
        grams = torch.stack([self.grams[i] for i in range(self.count)])
        self.grams.clear()
        return grams

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.grams.clear()


def _forward(model: nn.Module, batch: torch.Tensor, hooks: Sequence[_GramHooks]) -> None:
    """Run one model; every hook set starts empty, so a model passed twice (a network against itself,
    or modules the two networks share) never mixes two batches."""
    for hook in hooks:
        hook.grams.clear()
    model(batch)


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def cka_matrices(teacher: nn.Module, teacher_layers: Sequence[CKALayer],
                 students: Sequence[tuple[nn.Module, Sequence[CKALayer]]], images: torch.Tensor, *,
                 batch_size: int = DEFAULT_BATCH, device=None, progress: Progress = None,
                 cancel: Cancel = None, teacher_name: str = "teacher", student_names: Sequence[str] = ()) -> list[np.ndarray]:
    """CKA matrices of ``teacher_layers`` against the layers of each student, in one pass over ``images``.

    The teacher runs once per batch for all students (the before/after comparison uses two). The
    models are put in eval mode (their modes are restored afterwards) and moved to ``device`` (in
    place, as ``Module.to`` does; default: the teacher's device). ``images``: a normalised float
    tensor (n, C, H, W), n >= 4, on any device.
    """
    device = torch.device(device) if device is not None else _device_of(teacher)
    dtype = accumulation_dtype(device)
    bounds = batch_bounds(len(images), batch_size)
    models = [teacher] + [model for model, _ in students]
    modes = [model.training for model in models]
    names = list(student_names) or [f"student {i + 1}" for i in range(len(students))]
    hooks = []
    try:
        for model in models:
            model.to(device).eval()
        hooks.append(_GramHooks(teacher, teacher_layers, dtype, teacher_name))
        hooks += [_GramHooks(model, layers, dtype, name) for (model, layers), name in zip(students, names)]
        accumulators = [MinibatchCKA(len(teacher_layers), len(layers), device, dtype) for _, layers in students]
        done = 0
        with torch.no_grad():
            for start, stop in bounds:
                if cancel is not None and cancel():
                    raise AnalysisCancelled("CKA cancelled")
                batch = images[start:stop].to(device, dtype=torch.float32)
                _forward(teacher, batch, hooks)
                teacher_grams = hooks[0].take()
                for (model, _), hook, accumulator in zip(students, hooks[1:], accumulators):
                    _forward(model, batch, hooks)
                    accumulator.update(teacher_grams, hook.take())
                done = stop
                if progress is not None:
                    progress(done, len(images))
        return [accumulator.result() for accumulator in accumulators]
    finally:
        for hook in hooks:
            hook.remove()
        for model, mode in zip(models, modes):
            model.train(mode)


def cka_map(teacher: nn.Module, student: nn.Module, images: torch.Tensor, *,
            teacher_layers="blocks", student_layers="blocks", batch_size: int = DEFAULT_BATCH, device=None,
            progress: Progress = None, cancel: Cancel = None,
            teacher_name: str = "teacher", student_name: str = "student") -> CKAResult:
    """The CKA map of ``teacher`` against ``student`` on ``images`` (normalised, (n, C, H, W), n >= 4).

    ``teacher_layers``/``student_layers``: ``"blocks"``, ``"stages"``, ``"all"`` or a list of module
    paths (see the module docstring). Computed on ``device`` (default: the teacher's), ``batch_size``
    images at a time (>= 4); ``progress(done, total)`` after each batch, ``cancel()`` before each
    (True raises :class:`AnalysisCancelled`). Raises ValueError for bad layers or too few images.
    """
    device = torch.device(device) if device is not None else _device_of(teacher)
    batch_bounds(len(images), batch_size)                     # too few images: refuse before any work
    teacher.to(device)
    student.to(device)
    example = images[: min(len(images), 2)].to(device, dtype=torch.float32)
    rows = choose_layers(teacher, example, teacher_layers, teacher_name)
    cols = choose_layers(student, example, student_layers, student_name)
    (matrix,) = cka_matrices(teacher, rows, [(student, cols)], images, batch_size=batch_size, device=device,
                             progress=progress, cancel=cancel, teacher_name=teacher_name,
                             student_names=[student_name])
    return CKAResult(tuple(rows), tuple(cols), matrix, len(images), batch_size, teacher_name, student_name)




def probe_images(data, count: int, seed: int = 0) -> torch.Tensor:
    """``count`` fixed test images of a ``DataBundle`` (capped at its test split), normalised: the probe set
    (one image per class first, then the split's seeded order; see ``DataBundle.probe_indices``)."""
    images, _labels, _display = data.probe_images(min(count, len(data.test_labels)), seed=seed)
    return images


def cka_map_of_run(run, *, probe: int = 512, layers="blocks", batch_size: int = DEFAULT_BATCH,
                   teacher: Optional[nn.Module] = None, student: Optional[nn.Module] = None, data=None,
                   progress: Progress = None, cancel: Cancel = None) -> CKAResult:
    """The CKA map of a :class:`~featdistill_core.validate.ValidatedRun`'s teacher and student on ``probe``
    of its test images, on its device: what ``featdistill cka`` and the window compute.

    ``teacher``/``student`` replace the run's networks (e.g. the trained ones of a run folder); a run
    without distillation terms has no teacher built, so it is built here. ``data`` is the run's
    ``DataBundle`` if already loaded.
    """
    from featdistill_core.validate import build_model

    from .rundata import close_data, load_run_data

    config = run.config
    if teacher is None:
        teacher = run.teacher if run.teacher is not None else build_model(config, "teacher", run.num_classes)
    student = student if student is not None else run.student
    if data is None:
        loaded = load_run_data(config.data, config.seed)
        try:
            images = probe_images(loaded, probe, config.seed)
        finally:
            close_data(loaded)
    else:
        images = probe_images(data, probe, config.seed)
    return cka_map(teacher, student, images, teacher_layers=layers, student_layers=layers, batch_size=batch_size,
                   device=run.device, progress=progress, cancel=cancel,
                   teacher_name=config.teacher.arch, student_name=config.student.arch)


__all__ = [
    "AnalysisCancelled", "CKALayer", "CKAResult", "DEFAULT_BATCH", "LAYER_SELECTIONS", "choose_layers",
    "cka_map", "cka_map_of_run", "cka_matrices", "probe_images",
]
