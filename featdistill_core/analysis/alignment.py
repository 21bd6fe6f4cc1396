"""Choosing layer pairs from a CKA map: the k pairs of greatest summed similarity that keep depth order.

:func:`align_layers` picks teacher layers t₁ < … < t_k and student layers s₁ < … < s_k (strictly
increasing on both sides: each layer is used once and no two pairs cross) maximising Σ CKA(tᵢ, sᵢ),
among the pairs a method's shape check accepts. It is the dynamic programme of a longest common
subsequence with weights::

    best[m][i][j] = max(best[m][i−1][j], best[m][i][j−1], best[m−1][i−1][j−1] + C[i−1][j−1])

over m ≤ k pairs drawn from the first i teacher and j student layers (a refused or undefined pair
has no third option), O(k·T·S) time. When fewer than k pairs can be made, the most that can is
returned.

:func:`suggest_pairs_by_cka` gives the result as the ``(teacher paths, student paths)`` terms of
:func:`featdistill_core.placement.place_method`, so *Suggest pairs* can offer it next to the spatial
rule, and :func:`pairs_as_toml` as run-file ``[[pairs]]`` blocks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from featdistill_core.layers import LayerInfo, suggest_pairs as spatial_pairs
from featdistill_core.losses import get_method
from featdistill_core.validate import check_term_layers

from .similarity import CKAResult


@dataclass(frozen=True)
class AlignedPair:
    """One suggested pair: the two layer paths, their CKA, and the adapter the method would insert."""

    teacher: str
    student: str
    cka: float
    adapter: str = ""


def check_alignable(method: str) -> None:
    """ValueError unless ``method`` pairs one layer with one layer on their outputs (what a CKA map compares)."""
    info = get_method(method)                       # ValueError naming the methods for an unknown key
    if info.on_logits:
        raise ValueError(f"{info.short_name} works on the logits and takes no layer pairs")
    if not info.layers.allows(1):
        raise ValueError(f"{info.short_name} takes {info.layers.describe()}; a CKA alignment pairs one layer "
                         "with one layer")
    if info.taps != "output":
        raise ValueError(f"{info.short_name} reads the {info.taps} of its layers, and the CKA map compares "
                         "their outputs")


def pairable(result: CKAResult, method: Optional[str] = None, options: Optional[dict] = None) -> tuple[np.ndarray, dict]:
    """Which (teacher, student) cells of ``result`` may be paired: a boolean mask (T, S), and for each
    allowed cell the adapter in words (``{(i, j): text}``).

    Without ``method`` every cell with a defined CKA is allowed. With one, the method must pair one
    layer on each side on the layers' outputs, and its shape check (``check_term_layers``) must accept
    the cell. Raises ValueError for a method that cannot be aligned this way.
    """
    defined = ~np.isnan(result.matrix)
    if method is None:
        return defined, {(i, j): "" for i, j in zip(*np.nonzero(defined))}
    check_alignable(method)
    teacher_infos = {l.path: LayerInfo(l.path, l.type_name, l.shape, l.path.count(".") + 1, 0)
                     for l in result.teacher_layers}
    student_infos = {l.path: LayerInfo(l.path, l.type_name, l.shape, l.path.count(".") + 1, 0)
                     for l in result.student_layers}
    mask = np.zeros(result.matrix.shape, dtype=bool)
    adapters = {}
    for i, t in enumerate(result.teacher_layers):
        for j, s in enumerate(result.student_layers):
            if not defined[i, j]:
                continue
            check, _side = check_term_layers(method, [t.path], [s.path], options, teacher_infos, student_infos,
                                             result.teacher_name, result.student_name)
            if check.ok:
                mask[i, j] = True
                adapters[(i, j)] = check.adapter
    return mask, adapters


def best_alignment(matrix: np.ndarray, k: int, allowed: Optional[np.ndarray] = None) -> list[tuple[int, int]]:
    """Index pairs (i, j), strictly increasing in both, of greatest summed ``matrix`` value: k of them,
    or as many as ``allowed`` (a boolean mask; NaN cells are never allowed) permits when fewer."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"an alignment needs a 2-D matrix; got shape {matrix.shape}")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"the number of pairs must be a positive whole number; got {k!r}")
    rows, cols = matrix.shape
    ok = ~np.isnan(matrix) if allowed is None else (np.asarray(allowed, dtype=bool) & ~np.isnan(matrix))
    k = int(min(k, rows, cols))
    if k == 0:
        return []
    gain = np.where(ok, np.nan_to_num(matrix), -np.inf)
    best = np.full((k + 1, rows + 1, cols + 1), -np.inf)
    best[0] = 0.0
    for m in range(1, k + 1):
        for i in range(1, rows + 1):
            take = np.full(cols + 1, -np.inf)
            take[1:] = best[m - 1, i - 1, :-1] + gain[i - 1]
            best[m, i] = np.maximum.accumulate(np.maximum(best[m, i - 1], take))
    count = max((m for m in range(k + 1) if best[m, rows, cols] > -np.inf), default=0)
    pairs = []
    m, i, j = count, rows, cols
    while m > 0:
        if best[m, i, j] == best[m, i - 1, j]:
            i -= 1
        elif best[m, i, j] == best[m, i, j - 1]:
            j -= 1
        else:
            pairs.append((i - 1, j - 1))
            m, i, j = m - 1, i - 1, j - 1
    return pairs[::-1]


def align_layers(result: CKAResult, k: int, *, method: Optional[str] = None,
                 options: Optional[dict] = None) -> list[AlignedPair]:
    """The ``k`` layer pairs of ``result`` with the greatest summed CKA in depth order that ``method``
    (if given) accepts; fewer when fewer can be made. ValueError for a method that pairs no single layers."""
    mask, adapters = pairable(result, method, options)
    chosen = best_alignment(result.matrix, k, mask)
    return [AlignedPair(result.teacher_layers[i].path, result.student_layers[j].path,
                        float(result.matrix[i, j]), adapters.get((i, j), "")) for i, j in chosen]


def default_pair_count(teacher_layers, student_layers) -> int:
    """How many pairs to suggest by default: as many as the spatial rule finds (stage sizes both networks
    share, ``layers.suggest_pairs``), or 3. Takes the two networks' ``LayerInfo`` lists."""
    return len(spatial_pairs(list(teacher_layers), list(student_layers))) or 3


def suggest_pairs_by_cka(result: CKAResult, method: str, k: int, options: Optional[dict] = None) -> list[tuple[list[str], list[str]]]:
    """:func:`align_layers` as terms ``([teacher path], [student path])``, the form of ``place_method``."""
    return [([p.teacher], [p.student]) for p in align_layers(result, k, method=method, options=options)]


def pairs_as_toml(pairs: list[AlignedPair], method: str, weight: Optional[float] = None,
                  options: Optional[dict] = None) -> str:
    """Run-file ``[[pairs]]`` blocks for ``pairs``, each with its CKA as a comment."""
    info = get_method(method)
    weight = info.default_weight if weight is None else weight
    blocks = []
    for pair in pairs:
        lines = [f"# CKA {pair.cka:.3f}" + (f"; adapter: {pair.adapter}" if pair.adapter else ""),
                 "[[pairs]]", f"method = {json.dumps(method)}",
                 f"teacher = [{json.dumps(pair.teacher)}]", f"student = [{json.dumps(pair.student)}]",
                 f"weight = {_toml_number(weight)}"]
        if options:
            inner = ", ".join(f"{key} = {_toml_value(value)}" for key, value in options.items())
            lines.append(f"options = {{{inner}}}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _toml_number(value: float) -> str:
    value = float(value)
    return repr(value) if math.isfinite(value) else "0.0"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _toml_number(value) if isinstance(value, float) else str(value)
    return json.dumps(str(value))


__all__ = ["AlignedPair", "align_layers", "check_alignable", "default_pair_count", "best_alignment", "pairable", "pairs_as_toml", "suggest_pairs_by_cka"]
