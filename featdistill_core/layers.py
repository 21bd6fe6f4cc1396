"""Layers addressed by module path ("layer2.1.conv1"), never by editing the model.

* :func:`list_layers` runs one forward pass at batch 1 without gradients and records every named
  module's output shape: the data behind ``featdistill layers`` and the window's layer pickers.
* :func:`get_module` resolves a path; a wrong path suggests the closest existing ones.
* :class:`FeatureHooks` captures the outputs (or the inputs) of chosen modules with forward hooks
  (the approach of torchdistill) and removes the hooks when closed.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch
from torch import nn


class LayerPathError(ValueError):
    """A module path that does not exist in a model."""


@dataclass(frozen=True)
class LayerInfo:
    path: str                        # "" is the whole model
    type_name: str                   # the module's class name
    shape: tuple[int, ...] | None    # output shape per sample (no batch); None if not a tensor
    depth: int                       # number of dots + 1 ("" has depth 0)
    num_params: int                  # parameters owned directly or below
    input_shape: tuple[int, ...] | None = None   # shape per sample of the first input; None if not a tensor

    def tapped_shape(self, taps: str) -> tuple[int, ...] | None:
        """The per-sample shape a method tapping ``"output"`` or ``"input"`` of this layer sees."""
        return self.input_shape if taps == "input" else self.shape


def get_module(model: nn.Module, path: str, model_name: str = "model") -> nn.Module:
    modules = dict(model.named_modules())
    if path in modules and path != "":
        return modules[path]
    raise LayerPathError(unknown_path_message(path, model_name, [p for p in modules if p]))


def unknown_path_message(path: str, model_name: str, paths: list[str]) -> str:
    close = difflib.get_close_matches(path, paths, n=3, cutoff=0.5)
    if not close:  # fall back to the top-level children, which always help orient
        close = [p for p in paths if "." not in p][:6]
    hint = f"; closest: {', '.join(close)}" if close else ""
    return f"no layer {path!r} in {model_name}{hint} (see `featdistill layers {model_name}`)"


def list_layers(model: nn.Module, input_shape: tuple[int, ...] = (3, 32, 32)) -> list[LayerInfo]:
    """Every named module with its per-sample output shape, in the order modules are registered."""
    shapes: dict[str, tuple[int, ...] | None] = {}
    input_shapes: dict[str, tuple[int, ...] | None] = {}

    def recorder(path: str):
        def hook(_module, inputs, output):
            if path not in shapes:  # a module called twice keeps its first output
                shapes[path] = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else None
                first = inputs[0] if inputs else None
                input_shapes[path] = tuple(first.shape[1:]) if isinstance(first, torch.Tensor) else None
        return hook

    named = list(model.named_modules())
    handles = [module.register_forward_hook(recorder(path)) for path, module in named]
    was_training = model.training
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return [
        LayerInfo(
            path=path,
            type_name=type(module).__name__,
            shape=shapes.get(path),
            depth=0 if path == "" else path.count(".") + 1,
            num_params=sum(p.numel() for p in module.parameters()),
            input_shape=input_shapes.get(path),
        )
        for path, module in named
    ]


class FeatureHooks:
    """Capture the outputs (and, where asked, the inputs) of modules by path.

    >>> with FeatureHooks(model, ["layer1", "layer2"], inputs=["fc"]) as hooks:
    ...     model(x)
    ...     hooks.features["layer2"]   # the tensor layer2 returned, still in the autograd graph
    ...     hooks.inputs["fc"]         # the tensor fc received
    """

    def __init__(self, model: nn.Module, paths: list[str], model_name: str = "model", *,
                 inputs: list[str] = ()):
        self.features: dict[str, torch.Tensor] = {}
        self.inputs: dict[str, torch.Tensor] = {}
        self._handles = []
        wanted_outputs = set(paths)
        wanted_inputs = set(inputs)
        for path in dict.fromkeys([*paths, *inputs]):  # unique, order kept
            module = get_module(model, path, model_name)
            self._handles.append(module.register_forward_hook(
                self._store(path, path in wanted_outputs, path in wanted_inputs)))

    def _store(self, path: str, output: bool, inputs: bool):
        def hook(_module, args, result):
            if output:
                self.features[path] = result
            if inputs and args:
                self.inputs[path] = args[0]
        return hook

    def tapped(self, path: str, taps: str) -> torch.Tensor:
        """The captured tensor of ``path``: its input for ``taps == "input"``, else its output."""
        return self.inputs[path] if taps == "input" else self.features[path]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.features.clear()
        self.inputs.clear()

    def __enter__(self) -> "FeatureHooks":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def format_layer_table(layers: list[LayerInfo]) -> str:
    """The indented tree that ``featdistill layers`` prints."""
    rows = []
    for info in layers:
        if info.path == "":
            continue
        indent = "  " * (info.depth - 1)
        name = info.path.rsplit(".", 1)[-1]
        shape = "×".join(str(s) for s in info.shape) if info.shape else "-"
        rows.append((f"{indent}{name}", info.path, info.type_name, shape))
    widths = [max([len(r[i]) for r in rows] + [len(h)]) for i, h in enumerate(("layer", "path", "type", "output"))]
    header = "  ".join(h.ljust(w) for h, w in zip(("layer", "path", "type", "output"), widths))
    lines = [header, "-" * len(header)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


_NOT_A_STAGE = ("Pool", "ReLU", "BatchNorm", "Dropout", "Identity", "Flatten", "Linear", "Softmax", "GELU", "SiLU")


def stage_outputs(layers: list[LayerInfo]) -> dict[tuple[int, int], str]:
    """For each spatial size, the last top-level module producing a (C, H, W) map of that size.

    Top level means the model's direct children (one level deeper if the model wraps everything in
    a single container). Pooling, activations and normalisations are skipped.
    """
    for depth in (1, 2):
        found: dict[tuple[int, int], str] = {}
        for info in layers:
            if info.depth != depth or info.shape is None or len(info.shape) != 3:
                continue
            if any(word in info.type_name for word in _NOT_A_STAGE):
                continue
            found[info.shape[1:]] = info.path  # later modules overwrite: the stage's last layer
        if len(found) >= 2 or depth == 2:
            return found
    return {}


def suggest_pairs(teacher_layers: list[LayerInfo], student_layers: list[LayerInfo]) -> list[tuple[str, str]]:
    """(teacher path, student path) for each spatial size both networks' stages share, largest first."""
    teacher_stages = stage_outputs(teacher_layers)
    student_stages = stage_outputs(student_layers)
    shared = sorted(set(teacher_stages) & set(student_stages), key=lambda hw: -hw[0] * hw[1])
    return [(teacher_stages[hw], student_stages[hw]) for hw in shared]
