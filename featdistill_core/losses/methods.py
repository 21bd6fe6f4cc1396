"""The catalogue of feature-distillation methods, used by config validation, the trainer and the window.

``METHODS`` describes each method (title, formula, paper, options, how many layers it pairs per side,
its default weight). Three functions turn a user's choice into a working loss:

- ``validate_options(method, options)`` checks the options and fills in defaults;
- ``check_pair(method, student_shapes, teacher_shapes, options)`` says whether two sets of layer outputs
  can be distilled and which adapter (regressor, pooling) will be inserted, without ever raising;
- ``build_pair_loss(...)`` builds the ``PairLoss`` module the trainer calls with lists of feature tensors.

Default weights follow the CIFAR-100 reference recipes:

- hint 100: RepDistiller ``scripts/run_cifar_distill.sh`` (``--distill hint -b 100``); mdistiller's FitNet
  config (``FEAT_WEIGHT: 100``).
- at 1000: β = 1000 of Zagoruyko & Komodakis; RepDistiller (``--distill attention -b 1000``); mdistiller's AT
  config (``FEAT_WEIGHT: 1000``). It assumes ``normalize="l2"``.
- fsp 1: RepDistiller ``helper/pretrain.py`` sums the FSP losses unweighted during its 30-epoch
  initialisation stage (the ``-b 50`` of its script has no effect: the main stage sets the FSP term to 0).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

from torch import Tensor, nn

from .attention import NORMALIZATIONS, AttentionTransferLoss
from .fitnet import REGRESSOR_KINDS, FeatureDistillationLoss, needs_projection, resize_mode
from .fsp import FSPLoss


@dataclass(frozen=True)
class OptionSpec:
    """One option of a method: its default, Python type, allowed values (or None) and a help line.

    ``minimum`` (inclusive) bounds numeric options; None means unbounded.
    """

    default: Any
    type: type
    choices: Optional[tuple] = None
    help: str = ""
    minimum: Optional[float] = None


@dataclass(frozen=True)
class MethodInfo:
    """What the config, the trainer and the window need to know about a distillation method."""

    key: str
    title: str
    layers_per_side: int
    default_weight: float
    options: dict[str, OptionSpec]
    formula: str
    paper: str
    summary: str


METHODS: dict[str, MethodInfo] = {
    "hint": MethodInfo(
        key="hint",
        title="FitNets hint",
        layers_per_side=1,
        default_weight=100.0,
        options={
            "regressor": OptionSpec(
                default="conv_bn_relu",
                type=str,
                choices=REGRESSOR_KINDS,
                help=(
                    "how the student features are mapped onto the teacher's: 'conv_bn_relu' (1×1 conv + "
                    "BatchNorm + ReLU, as RepDistiller/mdistiller), 'conv' (1×1 conv) or 'auto' (identity "
                    "when the channel counts match, else 1×1 conv)"
                ),
            ),
        },
        formula="L = mean (r(F_s) − F_t)²,  r = trained regressor mapping the student features to the teacher's shape",
        paper="Romero, Ballas, Kahou, Chassang, Gatta & Bengio, “FitNets: Hints for Thin Deep Nets”, ICLR 2015",
        summary=(
            "The student's layer is trained to reproduce the teacher's layer value for value, through a "
            "small trained regressor that maps the student's channels (and spatial size) onto the teacher's. "
            "It is the most direct form of feature distillation; pick layers at a similar depth in both networks."
        ),
    ),
    "at": MethodInfo(
        key="at",
        title="Attention transfer",
        layers_per_side=1,
        default_weight=1000.0,
        options={
            "p": OptionSpec(
                default=2.0,
                type=float,
                help="exponent applied to the activations before the channel mean (the paper uses 2)",
                minimum=1.0,
            ),
            "normalize": OptionSpec(
                default="l2",
                type=str,
                choices=NORMALIZATIONS,
                help=(
                    "how each attention map is normalised: 'l2' (the authors' code; the default weight "
                    "assumes it) or 'l1' (divide by the sum; gives a loss up to H·W times smaller)"
                ),
            ),
        },
        formula="A = mean_c |F_c|^p,  Q = vec(A) / ‖vec(A)‖₂,  L = mean (Q_s − Q_t)²",
        paper=(
            "Zagoruyko & Komodakis, “Paying More Attention to Attention: Improving the Performance of "
            "Convolutional Neural Networks via Attention Transfer”, ICLR 2017"
        ),
        summary=(
            "The student learns where the teacher looks: each layer is summarised by a spatial map of how "
            "strongly it activates at each position, and the student's normalised map is pushed towards the "
            "teacher's. Channel counts may differ and nothing extra is trained."
        ),
    ),
    "fsp": MethodInfo(
        key="fsp",
        title="Flow of solution procedure (FSP)",
        layers_per_side=2,
        default_weight=1.0,
        options={},
        formula="G = F₁·F₂ᵀ / (H·W)  (C₁×C₂ per sample),  L = mean (G_s − G_t)²",
        paper=(
            "Yim, Joo, Bae & Kim, “A Gift from Knowledge Distillation: Fast Optimization, Network "
            "Minimization and Transfer Learning”, CVPR 2017"
        ),
        summary=(
            "Two layers of each network define a flow matrix: how every channel of the first layer correlates "
            "with every channel of the second over all positions. The student is trained to reproduce the "
            "teacher's flow between the same two stages; the original recipe uses it as an initialisation "
            "stage before normal training."
        ),
    ),
}

_SHORT_NAMES = {"hint": "the hint loss", "at": "attention transfer", "fsp": "FSP"}


def _quote_all(values) -> str:
    return ", ".join(repr(v) for v in values)


def _method_info(method) -> MethodInfo:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"unknown distillation method {method!r}; allowed methods: {_quote_all(METHODS)}")
    return METHODS[method]


def _check_value(method: str, name: str, spec: OptionSpec, value: Any) -> Any:
    where = f"option {name!r} of method {method!r}"
    if spec.type is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{where} must be a number; got {value!r}")
        value = float(value)
    elif spec.type is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer; got {value!r}")
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
    return value


def validate_options(method: str, options: Optional[dict]) -> dict:
    """Check ``options`` for ``method`` and return a new dict with every option, defaults filled in.

    Raises ValueError for an unknown method, an unknown option, a value of the wrong type, a value not
    among the allowed choices or below the minimum; the message names the option and what is allowed.
    """
    info = _method_info(method)
    if options is None:
        options = {}
    if not hasattr(options, "items"):
        raise ValueError(f"options of method {method!r} must be a mapping of names to values; got {options!r}")
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


@dataclass(frozen=True)
class PairCheck:
    """Whether a student/teacher layer pairing works for a method.

    ``adapter`` describes in words what is inserted between the two ("none", "1×1 conv regressor 16→64
    channels", "teacher map pooled 16×16→8×8"); ``reason`` says why not when ``ok`` is False.
    """

    ok: bool
    adapter: str = ""
    reason: str = ""


class _Refusal(ValueError):
    """A pairing that cannot work; its message is the PairCheck reason."""


def _size_text(size: Sequence[int]) -> str:
    return "×".join(str(v) for v in size)


def _layer_name(side: str, index: int, count: int) -> str:
    return f"{side} layer" if count == 1 else f"{side} layer {index + 1}"


def _normalise_shapes(shapes, side: str) -> list[tuple[int, ...]]:
    if isinstance(shapes, (str, bytes)) or not isinstance(shapes, Sequence):
        raise _Refusal(f"{side} shapes must be a list of per-sample shapes; got {shapes!r}")
    result = []
    for index, shape in enumerate(shapes):
        name = _layer_name(side, index, len(shapes))
        if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence):
            raise _Refusal(f"{name} gives no usable shape: {shape!r}")
        try:
            dims = tuple(operator.index(v) for v in shape if not isinstance(v, bool))
        except TypeError:
            raise _Refusal(f"{name} gives a shape with non-integer sizes: {tuple(shape)!r}") from None
        if len(dims) != len(shape):
            raise _Refusal(f"{name} gives a shape with non-integer sizes: {tuple(shape)!r}")
        if not dims or any(v < 1 for v in dims):
            raise _Refusal(f"{name} gives an empty shape {dims!r}")
        result.append(dims)
    return result


def _hint_adapter(student: tuple[int, ...], teacher: tuple[int, ...], options: dict) -> str:
    name = _SHORT_NAMES["hint"]
    for side, shape in (("student", student), ("teacher", teacher)):
        if len(shape) not in (1, 3):
            raise _Refusal(f"{name} needs feature maps (C,H,W) or flat features (D,); {side} layer gives {shape}")
    if len(student) != len(teacher):
        raise _Refusal(
            f"{name} needs two feature maps (C,H,W) or two flat feature vectors (D,); "
            f"student layer gives {student} and teacher layer gives {teacher}"
        )
    regressor = options["regressor"]
    parts = []
    if len(student) == 3:
        mode = resize_mode(student[1:], teacher[1:])
        sizes = f"{_size_text(student[1:])}→{_size_text(teacher[1:])}"
        if mode == "pool":
            parts.append(f"student map pooled {sizes}")
        elif mode == "bilinear":
            parts.append(f"student map upsampled {sizes} (bilinear)")
    if needs_projection(student[0], teacher[0], regressor):
        layer, unit = ("linear", "features") if len(student) == 1 else ("1×1 conv", "channels")
        extra = " + BatchNorm + ReLU" if regressor == "conv_bn_relu" else ""
        parts.append(f"{layer}{extra} regressor {student[0]}→{teacher[0]} {unit}")
    return "; ".join(parts) or "none"


def _require_maps(method: str, shapes: list[tuple[int, ...]], side: str) -> None:
    for index, shape in enumerate(shapes):
        if len(shape) != 3:
            raise _Refusal(
                f"{_SHORT_NAMES[method]} needs 4-D feature maps (N,C,H,W); "
                f"{_layer_name(side, index, len(shapes))} gives {shape}"
            )


def _at_adapter(student: tuple[int, ...], teacher: tuple[int, ...]) -> str:
    _require_maps("at", [student], "student")
    _require_maps("at", [teacher], "teacher")
    common = (min(student[1], teacher[1]), min(student[2], teacher[2]))
    parts = [
        f"{side} map pooled {_size_text(shape[1:])}→{_size_text(common)}"
        for side, shape in (("student", student), ("teacher", teacher))
        if shape[1:] != common
    ]
    return "; ".join(parts) or "none"


def _fsp_adapter(student: list[tuple[int, ...]], teacher: list[tuple[int, ...]]) -> str:
    _require_maps("fsp", student, "student")
    _require_maps("fsp", teacher, "teacher")
    parts = []
    for side, shapes in (("student", student), ("teacher", teacher)):
        common = (min(shapes[0][1], shapes[1][1]), min(shapes[0][2], shapes[1][2]))
        for index, shape in enumerate(shapes):
            if shape[1:] != common:
                parts.append(f"{side} layer {index + 1} pooled {_size_text(shape[1:])}→{_size_text(common)}")
    for index, (s_shape, t_shape) in enumerate(zip(student, teacher)):
        if s_shape[0] != t_shape[0]:
            parts.append(f"1×1 conv regressor {s_shape[0]}→{t_shape[0]} channels on student layer {index + 1}")
    return "; ".join(parts) or "none"


def check_pair(
    method: str,
    student_shapes: Sequence[Sequence[int]],
    teacher_shapes: Sequence[Sequence[int]],
    options: Optional[dict] = None,
) -> PairCheck:
    """Whether ``method`` can distil layers with these per-sample output shapes (no batch dimension:
    ``(C, H, W)`` or ``(D,)``), and which adapter it inserts. Never raises: a refusal comes back as
    ``PairCheck(ok=False, reason=...)``, for an unknown method or bad options too."""
    try:
        info = _method_info(method)
        options = validate_options(method, options)
        student = _normalise_shapes(student_shapes, "student")
        teacher = _normalise_shapes(teacher_shapes, "teacher")
        count = info.layers_per_side
        if len(student) != count or len(teacher) != count:
            layers = "layer" if count == 1 else "layers"
            raise _Refusal(
                f"{_SHORT_NAMES[method]} takes {count} student {layers} and {count} teacher {layers}; "
                f"got {len(student)} student and {len(teacher)} teacher"
            )
        if method == "hint":
            adapter = _hint_adapter(student[0], teacher[0], options)
        elif method == "at":
            adapter = _at_adapter(student[0], teacher[0])
        else:
            adapter = _fsp_adapter(student, teacher)
    except ValueError as error:
        return PairCheck(ok=False, adapter="", reason=str(error))
    return PairCheck(ok=True, adapter=adapter, reason="")


class PairLoss(nn.Module):
    """A method's loss between lists of student and teacher features, as the trainer calls it.

    ``forward(student_feats, teacher_feats)`` returns the unweighted scalar loss. The wrapped ``loss``
    owns any trainable regressor: ``PairLoss.parameters()`` is what goes into the optimizer (often empty).
    """

    def __init__(self, method: str, loss: nn.Module, adapter: str):
        super().__init__()
        self.method = method
        self.adapter = adapter
        self.layers_per_side = METHODS[method].layers_per_side
        self.loss = loss

    def forward(self, student_feats: Sequence[Tensor], teacher_feats: Sequence[Tensor]) -> Tensor:
        count = self.layers_per_side
        if len(student_feats) != count or len(teacher_feats) != count:
            raise ValueError(
                f"{_SHORT_NAMES[self.method]} takes {count} student and {count} teacher feature tensors; "
                f"got {len(student_feats)} and {len(teacher_feats)}"
            )
        if count == 1:
            return self.loss(student_feats[0], teacher_feats[0])
        return self.loss(tuple(student_feats), tuple(teacher_feats))

    def extra_repr(self) -> str:
        return f"method={self.method!r}, adapter={self.adapter!r}"


def build_pair_loss(
    method: str,
    student_shapes: Sequence[Sequence[int]],
    teacher_shapes: Sequence[Sequence[int]],
    options: Optional[dict] = None,
) -> PairLoss:
    """Build the loss module for a checked pairing. Raises ValueError (with ``check_pair``'s reason)
    when the pairing or the options are refused."""
    options = validate_options(method, options)
    check = check_pair(method, student_shapes, teacher_shapes, options)
    if not check.ok:
        raise ValueError(check.reason)
    student = _normalise_shapes(student_shapes, "student")
    teacher = _normalise_shapes(teacher_shapes, "teacher")
    if method == "hint":
        s, t = student[0], teacher[0]
        flat = len(s) == 1
        loss: nn.Module = FeatureDistillationLoss(
            s[0],
            t[0],
            regressor=options["regressor"],
            student_size=None if flat else s[1:],
            teacher_size=None if flat else t[1:],
            flat=flat,
        )
    elif method == "at":
        loss = AttentionTransferLoss(p=options["p"], normalize=options["normalize"])
    else:
        loss = FSPLoss(
            student_channels=(student[0][0], student[1][0]),
            teacher_channels=(teacher[0][0], teacher[1][0]),
        )
    return PairLoss(method, loss, check.adapter)


__all__ = [
    "METHODS",
    "MethodInfo",
    "OptionSpec",
    "PairCheck",
    "PairLoss",
    "build_pair_loss",
    "check_pair",
    "validate_options",
]
