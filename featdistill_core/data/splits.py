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
