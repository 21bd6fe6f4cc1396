"""Check a run's meaning before any training: models, weights, layers, pairs, device, data.

:func:`validate_run` builds the two models once (on the CPU, no training), loads their weights,
lists their layers at the data's input size and checks every pair with the method catalogue. The
first problem raises a :class:`~featdistill_core.config.ConfigError` naming the field; a layer
problem names both layers and their shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from featdistill_core.config import ConfigError, RunConfig
from featdistill_core.data.cifar import check_cifar_folder
from featdistill_core.data.splits import DatasetError
from featdistill_core.device import DeviceError, resolve_device
from featdistill_core.layers import LayerInfo, list_layers, unknown_path_message
from featdistill_core.losses.methods import PairCheck, check_pair
from featdistill_core.models import UnknownModelError, WeightsError, create_model, load_weights

_KNOWN_CLASSES = {"demo": 10, "cifar10": 10, "cifar100": 100}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


@dataclass
class ValidatedRun:
    """What validation learnt, for the trainer's and the window's reuse."""

    num_classes: int
    input_shape: tuple[int, int, int]
    teacher_layers: dict[str, LayerInfo]
    student_layers: dict[str, LayerInfo]
    pair_checks: list[PairCheck]


def count_classes(config: RunConfig) -> int:
    """Number of classes of the configured dataset, without loading it."""
    data = config.data
    if data.name in _KNOWN_CLASSES:
        if data.name != "demo":
            try:
                check_cifar_folder(data.name, data.path)
            except DatasetError as exc:
                raise ConfigError("data.path", str(exc)) from None
        return _KNOWN_CLASSES[data.name]
    root = Path(data.path)
    if not root.is_dir():
        raise ConfigError("data.path", f"{data.path} is not a folder (expected one sub-folder per class)")
    if (root / "train").is_dir() and (root / "test").is_dir():
        root = root / "train"
    classes = [d for d in root.iterdir() if d.is_dir() and any(f.suffix.lower() in _IMAGE_SUFFIXES for f in d.iterdir())]
    if len(classes) < 2:
        raise ConfigError("data.path", f"{root} needs at least 2 class sub-folders holding images; found {len(classes)}")
    return len(classes)


def build_model(config: RunConfig, role: str, num_classes: int) -> nn.Module:
    """Create the teacher or the student and load its weights file if it has one."""
    section = getattr(config, role)
    try:
        model = create_model(section.arch, num_classes)
    except (UnknownModelError, ValueError, ImportError) as exc:
        raise ConfigError(f"{role}.arch", str(exc)) from None
    if section.weights:
        try:
            load_weights(model, section.weights)
        except (WeightsError, ValueError) as exc:
            raise ConfigError(f"{role}.weights", str(exc)) from None
    return model


def validate_run(config: RunConfig, *, teacher: nn.Module | None = None,
                 student: nn.Module | None = None) -> ValidatedRun:
    """Raise :class:`ConfigError` for the first problem, else return what was learnt.

    ``teacher``/``student`` may be passed in when the caller has already built them.
    """
    try:
        resolve_device(config.device)
    except DeviceError as exc:
        raise ConfigError("device", str(exc).split(": ", 1)[1]) from None
    num_classes = count_classes(config)
    input_shape = (3, config.data.image_size, config.data.image_size)
    student = student if student is not None else build_model(config, "student", num_classes)
    student_layers = _layers_by_path(student, input_shape, "student")
    teacher_layers: dict[str, LayerInfo] = {}
    if config.uses_teacher or config.trains_teacher:
        teacher = teacher if teacher is not None else build_model(config, "teacher", num_classes)
        teacher_layers = _layers_by_path(teacher, input_shape, "teacher")
    checks = []
    for i, pair in enumerate(config.pairs):
        checks.append(_check_one_pair(config, i, teacher_layers, student_layers))
    return ValidatedRun(num_classes, input_shape, teacher_layers, student_layers, checks)


def _layers_by_path(model: nn.Module, input_shape, role: str) -> dict[str, LayerInfo]:
    try:
        layers = list_layers(model, input_shape)
    except Exception as exc:  # a user's model that cannot run on this input
        raise ConfigError(f"{role}.arch", f"a forward pass on a 1×{'×'.join(map(str, input_shape))} input failed: {exc}") from None
    return {info.path: info for info in layers if info.path}


def _check_one_pair(config: RunConfig, index: int, teacher_layers, student_layers) -> PairCheck:
    pair = config.pairs[index]
    prefix = f"pairs[{index}]"
    for side, layers, arch in (("teacher", teacher_layers, config.teacher.arch),
                               ("student", student_layers, config.student.arch)):
        for path in getattr(pair, side):
            if path not in layers:
                raise ConfigError(f"{prefix}.{side}", unknown_path_message(path, arch, list(layers)))
            if layers[path].shape is None:
                raise ConfigError(f"{prefix}.{side}", f"layer {path!r} of {arch} does not output a tensor")
    student_shapes = [student_layers[p].shape for p in pair.student]
    teacher_shapes = [teacher_layers[p].shape for p in pair.teacher]
    check = check_pair(pair.method, student_shapes, teacher_shapes, pair.options)
    if not check.ok:
        described = "; ".join(
            [f"teacher {p} {_fmt(s)}" for p, s in zip(pair.teacher, teacher_shapes)]
            + [f"student {p} {_fmt(s)}" for p, s in zip(pair.student, student_shapes)]
        )
        raise ConfigError(prefix, f"{pair.method} cannot match {described}: {check.reason}")
    return check


def _fmt(shape) -> str:
    return "(" + "×".join(str(s) for s in shape) + ")"
