"""What every dataset reader returns, and the error it raises.

Readers (:mod:`.demo`, :mod:`.cifar`, :mod:`.imagefolder`) return an :class:`ImageSplits` of numpy
arrays; :func:`featdistill_core.data.load_dataset` turns it into a :class:`~featdistill_core.data.DataBundle`
of torch tensors. Keeping the two apart lets the readers stay free of torch and of each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class DatasetError(ValueError):
    """A dataset that is missing or malformed. The message is one line naming the path and what was expected."""


@dataclass(frozen=True)
class ImageSplits:
    """A train and a test split held in memory.

    ``*_images`` are uint8 arrays of shape (N, 3, H, W); ``*_labels`` are int64 arrays of shape (N,)
    with values in ``range(len(class_names))``.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]


def probe_indices(labels: np.ndarray, n: int = 8, *, seed: int = 0) -> list[int]:
    """Indices of ``n`` fixed images of a split with these labels: one per class first, then any others.

    The split is walked in a seeded permutation; the first image of each class not seen yet is taken
    until ``n`` are chosen or every class has one, then the permutation fills the rest (``n`` is capped
    at the split's size).
    """
    if n < 1:
        raise ValueError(f"probe_images needs n >= 1; got {n}")
    labels = np.asarray(labels)
    order = np.random.default_rng(seed).permutation(len(labels))
    chosen: list[int] = []
    seen: set[int] = set()
    for index in order:
        if len(chosen) == n:
            break
        if int(labels[index]) not in seen:
            seen.add(int(labels[index]))
            chosen.append(int(index))
    taken = set(chosen)
    chosen += [int(i) for i in order if int(i) not in taken][: n - len(chosen)]
    return chosen
