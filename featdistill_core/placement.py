"""Where a method goes on a pair of networks by default: its reference layer placement.

Every method declares a ``placement`` (see :data:`featdistill_core.losses.registry.PLACEMENTS`);
:func:`place_method` turns it into the layer paths of concrete terms for a teacher and a student,
from their layer listings. *Suggest pairs* in the window and ``featdistill compare`` use it, so both
place a method the same way. A method that cannot be placed on two networks says why
(:class:`PlacementError`), instead of being skipped.
"""

from __future__ import annotations

from typing import Sequence

from featdistill_core.layers import LayerInfo, suggest_pairs
from featdistill_core.losses import get_method

Term = tuple[list[str], list[str]]      # (teacher paths, student paths)


class PlacementError(ValueError):
    """A method with no reference placement on these two networks."""


def classifier_path(layers: Sequence[LayerInfo]) -> str | None:
    """The last ``Linear`` module whose input is a flat vector: the classifier the embedding enters."""
    found = None
    for info in layers:
        if info.path and info.type_name == "Linear" and info.input_shape is not None and len(info.input_shape) == 1:
            found = info.path
    return found


_PREACT_TYPES = ("PreActivation", "BatchNorm2d")


def preactivation_path(stage: str, layers: Sequence[LayerInfo]) -> str | None:
    """The module inside ``stage`` whose output is the stage's pre-activation, or None.

    That is the last module at or below ``stage`` (in registration order) that is a ``preact`` marker
    (:class:`~featdistill_core.models.layers.PreActivation`, in the built-in ResNets and ShuffleNet v1)
    or a ``BatchNorm2d`` (the BN output entering a ReLU: VGG's ``layer2.bn1``), with the same output
    shape as the stage.
    """
    shapes = {info.path: info.shape for info in layers}
    found = None
    for info in layers:
        if (info.path == stage or info.path.startswith(stage + ".")) and info.type_name in _PREACT_TYPES \
                and info.shape is not None and info.shape == shapes.get(stage):
            found = info.path
    return found


def place_method(method: str, teacher_layers: Sequence[LayerInfo], student_layers: Sequence[LayerInfo]) -> list[Term]:
    """The terms of ``method`` at its reference placement on these networks; PlacementError if none."""
    info = get_method(method)
    kind = info.placement
    if kind == "logits":
        return [([], [])]
    if kind == "embedding":
        teacher_fc, student_fc = classifier_path(teacher_layers), classifier_path(student_layers)
        if teacher_fc is None or student_fc is None:
            side = "teacher" if teacher_fc is None else "student"
            raise PlacementError(f"{info.short_name} distils the embedding entering the classifier, and the "
                                 f"{side} has no Linear classifier on a flat vector")
        return [([teacher_fc], [student_fc])]
    stages = suggest_pairs(list(teacher_layers), list(student_layers))
    if not stages:
        raise PlacementError(f"{info.short_name} pairs stage outputs of the same spatial size, and these "
                             "networks share none")
    if kind == "stages":
        return [([t], [s]) for t, s in stages]
    if kind == "middle_stage":
        t, s = stages[len(stages) // 2]
        return [([t], [s])]
    if kind == "last_stage":
        t, s = stages[-1]                      # stages run from the largest spatial size to the smallest
        return [([t], [s])]
    if kind == "all_stages":
        return [([t for t, _ in stages], [s for _, s in stages])]
    if kind == "stage_preacts":
        teacher_paths, student_paths = [], []
        for t, s in stages:
            for side, stage, layers, paths in (("teacher", t, teacher_layers, teacher_paths),
                                               ("student", s, student_layers, student_paths)):
                path = preactivation_path(stage, layers)
                if path is None:
                    raise PlacementError(
                        f"{info.short_name} reads pre-ReLU features, and the {side}'s stage {stage!r} has no "
                        "`preact` module or BatchNorm of its output shape inside it; pair the layers by hand")
                paths.append(path)
        return [(teacher_paths, student_paths)]
    if kind == "stage_pairs":
        if len(stages) < 2:
            raise PlacementError(f"{info.short_name} needs two stage outputs on each side, and these networks "
                                 "share only one spatial size")
        return [([stages[i][0], stages[i + 1][0]], [stages[i][1], stages[i + 1][1]]) for i in range(len(stages) - 1)]
    raise PlacementError(f"{info.short_name} has no reference placement")   # pragma: no cover - registry checks


__all__ = ["PlacementError", "classifier_path", "place_method", "preactivation_path"]
