"""What the attention view shows, without Qt: the snapshots received, the one on screen, the colour
scales and the probe images chosen.

The teacher/student scale only ever grows over the snapshots received
(:func:`~app.attention_maps.snapshot_bounds` of each). The difference scale is symmetric about zero
and, by default, *adaptive*: the robust bound of the snapshot on screen, so the small differences
late in a run stay visible; *fixed* (:data:`FIXED`) is the largest bound over every snapshot
received, so a replay compares like with like. The view is *live* while the newest
snapshot is on screen (or none has arrived): then a new snapshot becomes the one on screen; anywhere
else the timeline stays put.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.attention_maps import check_snapshot, mean_abs_difference, snapshot_bounds
from featdistill_core import AttentionSnapshot, Stage

DEFAULT_PROBES = (0, 1, 2, 3)
ADAPTIVE, FIXED = "adaptive", "fixed"
DIFFERENCE_SCALES = {ADAPTIVE: "adaptive: this snapshot's differences",
                     FIXED: "fixed: the largest over the run"}


class AttentionTimeline:
    """Snapshots in arrival order, the current index, shared colour scales and the chosen probes."""

    def __init__(self) -> None:
        self.snapshots: list[AttentionSnapshot] = []
        self.current = -1                  # index of the snapshot on screen, −1 for none
        self.probes: list[int] = list(DEFAULT_PROBES)
        self._map_hi = 0.0                 # shared teacher/student bound
        self._diff_bound = 0.0             # symmetric difference bound, the largest of any snapshot
        self._diff_bounds: list[float] = []   # each snapshot's own
        self.difference_scale = ADAPTIVE
        self._first_mean_diff: dict[str, float] = {}

    # ---- snapshots ---------------------------------------------------------------------------
    def add(self, snaps: Sequence[AttentionSnapshot]) -> bool:
        """Append ``snaps`` (all checked first: one bad snapshot adds none). Returns whether the
        view was live, in which case the newest is now the current one."""
        for snap in snaps:
            check_snapshot(snap)
        was_live = self.is_live()
        for snap in snaps:
            self.snapshots.append(snap)
            hi, d = snapshot_bounds(snap)
            self._map_hi = max(self._map_hi, hi)
            self._diff_bound = max(self._diff_bound, d)
            self._diff_bounds.append(d)
            for pair in snap.pairs:
                self._first_mean_diff.setdefault(pair.name, mean_abs_difference(pair.teacher, pair.student))
        if was_live and snaps:
            self.current = len(self.snapshots) - 1
        return was_live

    def clear(self) -> None:
        self.snapshots.clear()
        self.current = -1
        self._map_hi = self._diff_bound = 0.0
        self._diff_bounds.clear()
        self._first_mean_diff.clear()

    def __len__(self) -> int:
        return len(self.snapshots)

    def is_live(self) -> bool:
        """Whether the newest snapshot is on screen (or there is none yet)."""
        return self.current == len(self.snapshots) - 1

    def index(self, i: int) -> int:
        """Snapshot ``i`` (negative counts from the end) as an index; ValueError when out of range."""
        count = len(self.snapshots)
        if count == 0:
            raise ValueError("no attention snapshot to show yet")
        if not -count <= i < count:
            raise ValueError(f"snapshot index {i} is out of range: {count} snapshots (0..{count - 1})")
        return i % count

    def shown(self) -> AttentionSnapshot | None:
        return self.snapshots[self.current] if 0 <= self.current < len(self.snapshots) else None

    def caption(self, index: int) -> str:
        """``snapshot 2/5 · step 100 · epoch 1``, with the stage when it is not the main one."""
        snap = self.snapshots[index]
        stage = "" if snap.stage == Stage.STUDENT else f" · {snap.stage} stage"
        return f"snapshot {index + 1}/{len(self.snapshots)} · step {snap.step} · epoch {snap.epoch}{stage}"

    # ---- scales ------------------------------------------------------------------------------
    def map_levels(self) -> tuple[float, float]:
        return 0.0, self._map_hi or 1.0

    def difference_levels(self, index: int | None = None) -> tuple[float, float]:
        """``(−d, d)`` for snapshot ``index`` (default: the current one): its own robust bound when
        the scale is adaptive, the largest over every snapshot when it is fixed."""
        index = self.current if index is None else index
        if self.difference_scale == ADAPTIVE and 0 <= index < len(self._diff_bounds):
            d = self._diff_bounds[index] or 1.0
        else:
            d = self._diff_bound or 1.0
        return -d, d

    def set_difference_scale(self, scale: str) -> None:
        if scale not in DIFFERENCE_SCALES:
            raise ValueError(f"difference scale must be one of {', '.join(DIFFERENCE_SCALES)}; got {scale!r}")
        self.difference_scale = scale

    def first_mean_difference(self, pair: str) -> float | None:
        """mean |student − teacher| of ``pair`` in the first snapshot that held it."""
        return self._first_mean_diff.get(pair)

    # ---- probes ------------------------------------------------------------------------------
    def probe_count(self) -> int:
        """Probe images in the newest snapshot (0 before the first)."""
        return int(self.snapshots[-1].images.shape[0]) if self.snapshots else 0

    def set_probes(self, indices: Sequence[int]) -> None:
        """Choose the probe images to show (in this order, duplicates dropped); ValueError for an
        index that is not a non-negative integer or beyond the snapshots' probes."""
        chosen: list[int] = []
        for index in indices:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
                raise ValueError(f"probe index must be a non-negative integer, got {index!r}")
            if int(index) not in chosen:
                chosen.append(int(index))
        available = self.probe_count()
        bad = next((i for i in chosen if i >= available), None) if available else None
        if bad is not None:
            raise ValueError(f"probe index {bad} is out of range: the snapshots hold {available} "
                             f"probe images (0..{available - 1})")
        self.probes = chosen

    def probes_of(self, snap: AttentionSnapshot) -> list[int]:
        """The chosen probes that ``snap`` holds, in the chosen order."""
        return [i for i in self.probes if i < snap.images.shape[0]]
