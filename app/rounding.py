"""Round numbers for axes and colour bars: the one rounding rule of the window's plots.

Plot edges, grid steps and colour-bar bounds read best as a few leading digits times a power of
ten; :func:`round_up` gives the smallest such number at or above a value. Pure Python, no Qt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

NICE_MANTISSAS = (1.0, 2.0, 2.5, 5.0)   # 1, 2, 2.5, 5 × 10^k: grid steps and colour-bar bounds


def round_up(value: float, mantissas: Sequence[float] = NICE_MANTISSAS) -> float:
    """The smallest ``m × 10^k ≥ value`` with ``m`` one of ``mantissas`` (increasing, in [1, 10)).

    ``1.0`` for a value that is not a finite number above 0.
    """
    if not math.isfinite(value) or value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for mantissa in mantissas:
        if mantissa * power >= value * (1 - 1e-12):
            return mantissa * power
    return 10.0 * power
