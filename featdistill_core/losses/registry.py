"""The method contract: every distillation method registers itself here, from its own file.

A method is one module of :mod:`featdistill_core.losses` that defines its loss and ends with::

    register_method(Method(
        key="at", title="Attention transfer", paper="…", formula="…", summary="…",
        options={"p": OptionSpec(2.0, float, help="…", minimum=1.0)},
        layers=ONE_LAYER, taps=Taps.OUTPUT, default_weight=1000.0,
        check=_check,      # (student_shapes, teacher_shapes, options) -> adapter text; raises Refusal
        build=_build,      # (BuildContext) -> nn.Module
    ))

That registration is everything the run file, the validation, the trainer, the CLI and the window
know about the method: its name and help, its options, how many layers it pairs on each side (a fixed
number, a range such as 1..N, or 0 for a method on logits), what it taps (a layer's output, its input,
or the logits), whether a pairing of shapes works and through which adapter, and how to build it.

The built module is wrapped in a :class:`TermLoss`, which the trainer calls once per step with a
:class:`StepContext` (the tapped student and teacher tensors, both networks' logits, the labels, the
batch's sample indices and the training progress) and which returns the unweighted scalar loss. How a
method's module reads the context is declared by ``reads``:

* ``"features"`` — ``module(student, teacher)`` with the tapped tensors (one tensor each for a method
  of exactly one layer per side, else tuples);
* ``"logits"`` — ``module(student_logits, teacher_logits)``;
* ``"context"`` — ``module(step)``, for methods that need labels, indices or progress.

A module may define ``after_step(step)``: it runs after every optimizer step (memory banks).
Its parameters are trained with the student; its buffers are saved with the adapters.

A module may define ``prepare(context)``: a one-off preparation that needs the trained, frozen teacher
and training batches before the term's first step (FT pre-trains its paraphraser on the teacher's
features; OFD reads its margins from the teacher's BatchNorms). The trainer calls
:meth:`Distiller.prepare <featdistill_core.distiller.Distiller.prepare>` once at the start of each
student-side stage, which runs ``prepare`` for the stage's terms that have not run it; the
:class:`PrepareContext` offers epochs of training batches, the term's tapped teacher tensors for a
batch, the device, both networks, and ``checkpoint()`` / ``report()`` for stop, pause and progress.
Whatever ``prepare`` sets up must live in the module's parameters or buffers; the :class:`TermLoss`
records that it ran in a ``prepared`` buffer, so a run resumed from a saved state does not redo it.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor, nn

Shape = tuple[int, ...]


# ---- the pieces of a registration ------------------------------------------------------------


@dataclass(frozen=True)
class OptionSpec:
    """One option of a method: its default, Python type, allowed values (or None) and a help line.

    ``minimum`` and ``maximum`` (inclusive) bound numeric options; None means unbounded.
    """

    default: Any
    type: type
    choices: Optional[tuple] = None
    help: str = ""
    minimum: Optional[float] = None
    maximum: Optional[float] = None


class Taps:
    """What a method reads from the layers it is paired on."""

    OUTPUT = "output"    # the tensor the module returns (feature maps)
    INPUT = "input"      # the tensor the module receives (e.g. the embedding entering the classifier)
    LOGITS = "logits"    # no layers: the networks' logits
    ALL = (OUTPUT, INPUT, LOGITS)


@dataclass(frozen=True)
class LayerCount:
    """How many layers a method pairs on each side: ``minimum``..``maximum`` (None: no upper bound).

    Both sides always take the same number of layers.
    """

    minimum: int
    maximum: Optional[int]

    def allows(self, count: int) -> bool:
        return count >= self.minimum and (self.maximum is None or count <= self.maximum)

    def describe(self) -> str:
        if self.maximum == self.minimum:
            if self.minimum == 0:
                return "no layers (it works on the logits)"
            return f"{self.minimum} layer{'s' if self.minimum != 1 else ''} on each side"
        if self.maximum is None:
            return f"{self.minimum} or more layers on each side (the same number)"
        return f"{self.minimum} to {self.maximum} layers on each side (the same number)"


NO_LAYERS = LayerCount(0, 0)
ONE_LAYER = LayerCount(1, 1)
TWO_LAYERS = LayerCount(2, 2)

PLACEMENTS = ("stages", "middle_stage", "last_stage", "stage_pairs", "all_stages", "stage_preacts", "embedding",
              "logits")
"""Where a method is placed by default (Suggest pairs, ``featdistill compare``):

* ``stages`` — one term per stage output both networks share a spatial size at (AT, NST);
* ``middle_stage`` — the middle one of the stage outputs both share (FitNets hint: RepDistiller's and
  mdistiller's ``hint_layer = 2``, the output of ``layer2`` of a 3-stage CIFAR ResNet);
* ``last_stage`` — the last (smallest) of the stage outputs both share (SP, FT: RepDistiller's
  ``feat[-2]``, the output of ``layer3`` of a 3-stage CIFAR ResNet);
* ``stage_pairs`` — consecutive shared stage outputs, two layers per side (FSP);
* ``all_stages`` — every shared stage output in one term (hierarchical methods);
* ``stage_preacts`` — like ``all_stages``, but each stage's pre-activation: the last ``preact``
  module (:class:`~featdistill_core.models.layers.PreActivation`) or BatchNorm inside the stage with
  the stage's output shape (AB, OFD: RepDistiller's and mdistiller's ``preact`` features);
* ``embedding`` — the input of the classifier (relational and contrastive methods);
* ``logits`` — no layers (KD, DKD).
"""


@dataclass(frozen=True)
class TrainingProgress:
    """Where training is when a loss is computed: 1-based epoch and step, within the current stage."""

    stage: str
    epoch: int
    epochs: int
    step: int
    total_steps: int
    steps_per_epoch: int

    @property
    def fraction(self) -> float:
        return self.step / max(self.total_steps, 1)


@dataclass(frozen=True)
class BuildContext:
    """What a method's builder may use: the pairing and the run around it.

    ``student_shapes``/``teacher_shapes`` are per-sample shapes (no batch dimension) of the tapped
    tensors, one per layer; empty for a method on logits.
    """

    method: str
    options: dict
    student_shapes: tuple[Shape, ...] = ()
    teacher_shapes: tuple[Shape, ...] = ()
    student_paths: tuple[str, ...] = ()
    teacher_paths: tuple[str, ...] = ()
    num_classes: int = 10
    dataset_size: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    teacher: Optional[nn.Module] = None
    student: Optional[nn.Module] = None


@dataclass(frozen=True)
class StepContext:
    """One training step as a loss sees it (``student``/``teacher``: this term's tapped tensors)."""

    student: tuple[Tensor, ...]
    teacher: tuple[Tensor, ...]
    student_logits: Tensor
    teacher_logits: Optional[Tensor]
    labels: Tensor
    indices: Tensor
    progress: TrainingProgress


def _nothing(*_args, **_kwargs) -> None:
    return None


@dataclass(frozen=True)
class PrepareContext:
    """What a module's one-off ``prepare(context)`` may use (see the module docstring).

    * ``loader`` — the run's training batches: ``loader.epoch_batches(k)`` iterates epoch ``k`` (0-based;
      the same order and augmentation as the training epoch ``k``), each batch with ``images``,
      ``labels`` and ``indices`` on ``device``; ``len(loader)`` is the number of batches per epoch.
    * ``teacher_features(images)`` — this term's tapped teacher tensors for a batch of images, one per
      teacher layer, computed by the frozen teacher without gradients.
    * ``checkpoint()`` — call it between batches: a pause waits there, a stop request raises (let it
      propagate; nothing is marked prepared and the preparation runs again next time).
    * ``report(done, total, loss)`` — progress of the preparation (steps done, steps in all, last loss).
    """

    stage: str
    loader: Any
    teacher_features: Callable[[Tensor], tuple[Tensor, ...]]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    teacher: Optional[nn.Module] = None
    student: Optional[nn.Module] = None
    checkpoint: Callable[[], None] = _nothing
    report: Callable[[int, int, float], None] = _nothing


class Refusal(ValueError):
    """Raised by a method's shape check: this pairing cannot work, and the message says why."""


CheckFunction = Callable[[list[Shape], list[Shape], dict], str]
BuildFunction = Callable[[BuildContext], nn.Module]


@dataclass(frozen=True)
class Method:
    """Everything featdistill knows about one distillation method (see the module docstring)."""

    key: str
    title: str
    paper: str
    formula: str
    summary: str
    options: dict[str, OptionSpec]
    layers: LayerCount
    taps: str
    default_weight: float
    check: CheckFunction
    build: BuildFunction
    reads: str = ""                   # "features" | "logits" | "context"; "" picks from ``taps``
    placement: str = "stages"         # one of PLACEMENTS
    default_stage: str = "student"    # "student" | "init": the stage of the method's own recipe
    short_name: str = ""              # for sentences ("attention transfer"); "" uses the title

    def __post_init__(self):
        if self.taps not in Taps.ALL:
            raise ValueError(f"method {self.key!r}: taps must be one of {Taps.ALL}; got {self.taps!r}")
        if (self.taps == Taps.LOGITS) != (self.layers == NO_LAYERS):
            raise ValueError(f"method {self.key!r}: a method on logits takes no layers, and only it")
        if not self.reads:
            object.__setattr__(self, "reads", "logits" if self.taps == Taps.LOGITS else "features")
        if self.reads not in ("features", "logits", "context"):
            raise ValueError(f"method {self.key!r}: reads must be 'features', 'logits' or 'context'")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"method {self.key!r}: placement must be one of {PLACEMENTS}")
        if not self.short_name:
            object.__setattr__(self, "short_name", self.title)

    @property
    def on_logits(self) -> bool:
        return self.taps == Taps.LOGITS


# ---- the registry --------------------------------------------------------------------------

METHODS: dict[str, Method] = {}
"""Every registered method by key, in registration order."""


def register_method(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS`. A second, different method under a taken key is an error."""
    if not method.key or not method.key.replace("_", "").isalnum() or method.key != method.key.lower():
        raise ValueError(f"invalid method key {method.key!r}: use lower-case letters, digits and '_'")
    existing = METHODS.get(method.key)
    if existing is not None and existing.build.__qualname__ != method.build.__qualname__:
        raise ValueError(f"method key {method.key!r} is already registered")
    METHODS[method.key] = method
    return method


def _quote_all(values) -> str:
    return ", ".join(repr(v) for v in values)


def get_method(key) -> Method:
    """The registered method ``key``; ValueError naming the allowed keys otherwise."""
    if not isinstance(key, str) or key not in METHODS:
        shown = key if isinstance(key, str) else type(key).__name__
        raise ValueError(f"unknown distillation method {shown!r}; allowed methods: {_quote_all(METHODS)}")
    return METHODS[key]


# ---- options ----------------------------------------------------------------------------------


def _check_value(method: str, name: str, spec: OptionSpec, value: Any) -> Any:
    where = f"option {name!r} of method {method!r}"
    if spec.type is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} must be a number; got {value!r}")
        try:
            value = float(value)
        except OverflowError:
            raise ValueError(f"{where} must be a number of reasonable size; got a {len(str(value))}-digit number") from None
        if not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number; got {value!r}")
    elif spec.type is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be a whole number; got {value!r}")
    elif spec.type is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false; got {value!r}")
    elif spec.type is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string; got {value!r}")
    elif not isinstance(value, spec.type):
        raise ValueError(f"{where} must be of type {spec.type.__name__}; got {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise ValueError(f"{where} must be one of {_quote_all(spec.choices)}; got {value!r}")
    if spec.minimum is not None and value < spec.minimum:
        raise ValueError(f"{where} must be at least {spec.minimum:g}; got {value!r}")
    if spec.maximum is not None and value > spec.maximum:
        raise ValueError(f"{where} must be at most {spec.maximum:g}; got {value!r}")
    return value


def validate_options(method: str, options: Optional[dict]) -> dict:
    """Check ``options`` for ``method`` and return a new dict with every option, defaults filled in.

    Raises ValueError for an unknown method, an unknown option, a value of the wrong type, a value not
    among the allowed choices or out of bounds; the message names the option and what is allowed.
    """
    info = get_method(method)
    if options is None:
        options = {}
    if not hasattr(options, "items"):
        raise ValueError(f"options of method {method!r} must be a table of names to values; got {options!r}")
    for name in options:
        if name not in info.options:
            if not info.options:
                raise ValueError(f"method {method!r} takes no options; got {name!r}")
            raise ValueError(
                f"unknown option {name!r} for method {method!r}; allowed options: {_quote_all(info.options)}"
            )
    return {
        name: _check_value(method, name, spec, options[name]) if name in options else spec.default
        for name, spec in info.options.items()
    }


# ---- shape checks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PairCheck:
    """Whether a student/teacher layer pairing works for a method.

    ``adapter`` describes in words what is inserted between the two ("none", "1×1 conv regressor 16→64
    channels", "teacher map pooled 16×16→8×8"); ``reason`` says why not when ``ok`` is False.
    """

    ok: bool
    adapter: str = ""
    reason: str = ""


def size_text(size: Sequence[int]) -> str:
    return "×".join(str(v) for v in size)


def layer_name(side: str, index: int, count: int) -> str:
    return f"{side} layer" if count == 1 else f"{side} layer {index + 1}"


def normalise_shapes(shapes, side: str) -> list[Shape]:
    """Per-sample shapes as tuples of positive ints; :class:`Refusal` for anything else."""
    if isinstance(shapes, (str, bytes)) or not isinstance(shapes, Sequence):
        raise Refusal(f"{side} shapes must be a list of per-sample shapes; got {shapes!r}")
    result = []
    for index, shape in enumerate(shapes):
        name = layer_name(side, index, len(shapes))
        if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence):
            raise Refusal(f"{name} gives no usable shape: {shape!r}")
        try:
            dims = tuple(operator.index(v) for v in shape if not isinstance(v, bool))
        except TypeError:
            raise Refusal(f"{name} gives a shape with non-integer sizes: {tuple(shape)!r}") from None
        if len(dims) != len(shape):
            raise Refusal(f"{name} gives a shape with non-integer sizes: {tuple(shape)!r}")
        if not dims or any(v < 1 for v in dims):
            raise Refusal(f"{name} gives an empty shape {dims!r}")
        result.append(dims)
    return result


def require_maps(method: Method | str, shapes: Sequence[Shape], side: str) -> None:
    """Refuse unless every shape is a (C, H, W) feature map."""
    name = method.short_name if isinstance(method, Method) else method
    for index, shape in enumerate(shapes):
        if len(shape) != 3:
            raise Refusal(f"{name} needs 4-D feature maps (N,C,H,W); {layer_name(side, index, len(shapes))} gives {shape}")


def check_pair(
    method: str,
    student_shapes: Sequence[Sequence[int]],
    teacher_shapes: Sequence[Sequence[int]],
    options: Optional[dict] = None,
) -> PairCheck:
    """Whether ``method`` can distil tapped tensors with these per-sample shapes (no batch dimension:
    ``(C, H, W)`` or ``(D,)``), and which adapter it inserts. Never raises: a refusal comes back as
    ``PairCheck(ok=False, reason=...)``, for an unknown method or bad options too."""
    try:
        info = get_method(method)
        options = validate_options(method, options)
        student = normalise_shapes(student_shapes, "student")
        teacher = normalise_shapes(teacher_shapes, "teacher")
        if len(student) != len(teacher) or not info.layers.allows(len(student)):
            raise Refusal(
                f"{info.short_name} takes {info.layers.describe()}; got {len(student)} student and "
                f"{len(teacher)} teacher"
            )
        adapter = info.check(student, teacher, options)
        if not isinstance(adapter, str):
            raise Refusal(f"{info.short_name}: its shape check gave no description")
    except Exception as error:  # noqa: BLE001 - a check never raises, whatever a method does
        return PairCheck(ok=False, adapter="", reason=str(error) or type(error).__name__)
    return PairCheck(ok=True, adapter=adapter or "none", reason="")


# ---- building and calling a term --------------------------------------------------------------


class TermLoss(nn.Module):
    """One distillation term of a run, as the trainer calls it: ``term(step) -> unweighted loss``.

    ``loss`` is the method's module (with any trainable adapter: ``term.parameters()`` go into the
    optimizer); ``adapter`` is the check's description of what sits between the two networks.
    """

    def __init__(self, method: Method, loss: nn.Module, adapter: str):
        super().__init__()
        self.method = method.key
        self.reads = method.reads
        self.single = method.layers == ONE_LAYER
        self.adapter = adapter
        self.loss = loss
        self.needs_prepare = callable(getattr(loss, "prepare", None))
        self._prepared: Optional[bool] = None          # cache of the ``prepared`` buffer (no device sync per step)
        if self.needs_prepare:
            self.register_buffer("prepared", torch.zeros((), dtype=torch.bool))

    @property
    def is_prepared(self) -> bool:
        """True when the module has no ``prepare`` or it has run (in this run or in a loaded state)."""
        if not self.needs_prepare:
            return True
        if self._prepared is None:
            self._prepared = bool(self.prepared)
        return self._prepared

    def prepare(self, context: PrepareContext) -> bool:
        """Run the module's ``prepare(context)`` unless it ran already; True if it ran now."""
        if self.is_prepared:
            return False
        self.loss.prepare(context)
        self.prepared.fill_(True)
        self._prepared = True
        return True

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._prepared = None                          # read the loaded flag on next use

    def forward(self, step: StepContext) -> Tensor:
        if not self.is_prepared:
            raise RuntimeError(f"the {self.method!r} term has not been prepared: Distiller.prepare() (or "
                               "TermLoss.prepare()) must run before its first step")
        if self.reads == "logits":
            return self.loss(step.student_logits, step.teacher_logits)
        if self.reads == "context":
            return self.loss(step)
        if self.single:
            return self.loss(step.student[0], step.teacher[0])
        return self.loss(tuple(step.student), tuple(step.teacher))

    def after_step(self, step: StepContext) -> None:
        hook = getattr(self.loss, "after_step", None)
        if hook is not None:
            hook(step)

    def extra_repr(self) -> str:
        return f"method={self.method!r}, adapter={self.adapter!r}"


def build_term(context: BuildContext) -> TermLoss:
    """Build a checked term. Raises ValueError (with the check's reason) when it is refused."""
    info = get_method(context.method)
    options = validate_options(context.method, context.options)
    check = check_pair(context.method, context.student_shapes, context.teacher_shapes, options)
    if not check.ok:
        raise ValueError(check.reason)
    context = dataclasses.replace(
        context,
        options=options,
        student_shapes=tuple(normalise_shapes(context.student_shapes, "student")),
        teacher_shapes=tuple(normalise_shapes(context.teacher_shapes, "teacher")),
    )
    return TermLoss(info, info.build(context), check.adapter)


__all__ = [
    "BuildContext",
    "LayerCount",
    "METHODS",
    "Method",
    "NO_LAYERS",
    "ONE_LAYER",
    "OptionSpec",
    "PLACEMENTS",
    "PairCheck",
    "PrepareContext",
    "Refusal",
    "StepContext",
    "TWO_LAYERS",
    "Taps",
    "TermLoss",
    "TrainingProgress",
    "build_term",
    "check_pair",
    "get_method",
    "layer_name",
    "normalise_shapes",
    "register_method",
    "require_maps",
    "size_text",
    "validate_options",
]
