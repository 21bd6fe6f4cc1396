"""A batch loader for datasets held in memory as one uint8 tensor.

It replaces ``torch.utils.data.DataLoader`` for the in-memory case: no worker processes and no
per-sample Python, just an index permutation, one gather per batch, a vectorised augmentation and a
normalisation. Each epoch draws its permutation and augmentation from a generator seeded by
``(seed, epoch)``, so epoch ``k`` of a loader is the same whatever happened before it (even an epoch
abandoned half way), and :meth:`BatchLoader.set_epoch` lets a resumed run continue the sequence.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch

from .transforms import draw_crop_flip as _draw_crop_flip, normalize, random_crop_flip


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator of epoch ``epoch``: its first draw is the epoch's permutation (for every loader).

    ``SeedSequence`` mixes ``(seed, epoch)`` into a well-spread 32-bit seed; neighbouring seeds or
    epochs give unrelated streams.
    """
    state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


class Batch(NamedTuple):
    """One batch: normalised float32 images (B, C, H, W), int64 labels (B,), and each image's index in
    the data set (B,), which methods with per-sample memories (CRD) need."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor


class BatchLoader:
    """Iterate over :class:`Batch` es ``(images, labels, indices)`` of an in-memory dataset.

    ``images_uint8`` is a uint8 tensor (N, C, H, W) and ``labels`` an integer tensor (N,). Each batch is
    a float32 tensor (B, C, H, W) normalised with ``(x / 255 - mean) / std`` and an int64 tensor (B,),
    both on ``device``; the gather happens on the CPU, the augmentation and normalisation on ``device``
(uint8 crosses to the device, a quarter of the bytes of float32). ``len(loader)`` is the number of batches per epoch: ``N // batch_size`` with
    ``drop_last``, else ``ceil(N / batch_size)``. With ``augment`` each batch gets the random crop
    (zero padding ``padding``) and horizontal flip of :func:`~.transforms.random_crop_flip`.
    """

    def __init__(
        self,
        images_uint8: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        mean: Sequence[float],
        std: Sequence[float],
        seed: int = 0,
        drop_last: bool = False,
        device: str | torch.device = "cpu",
        padding: int = 4,
    ) -> None:
        if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4:
            raise ValueError(
                "BatchLoader expects uint8 images of shape (N, C, H, W); "
                f"got {images_uint8.dtype} of shape {tuple(images_uint8.shape)}"
            )
        if labels.ndim != 1 or len(labels) != len(images_uint8):
            raise ValueError(
                f"BatchLoader expects one label per image: {len(images_uint8)} images but labels of shape {tuple(labels.shape)}"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        if int(seed) < 0:
            raise ValueError(f"seed must be a non-negative integer; got {seed}")
        channels = images_uint8.shape[1]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean and std need one value per channel ({channels}); got {len(mean)} and {len(std)}")
        if drop_last and len(images_uint8) < batch_size:
            raise ValueError(
                f"batch_size {batch_size} is larger than the {len(images_uint8)} images and the last partial "
                f"batch is dropped, so there would be no batch; choose batch_size <= {len(images_uint8)}"
            )
        self.images = images_uint8
        self.labels = labels.to(torch.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.drop_last = drop_last
        self.seed = int(seed)
        self.padding = padding
        self.device = torch.device(device)
        self._non_blocking = self.device.type == "cuda"
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device)
        self.epoch = 0   # the epoch the next iteration will produce

    def __len__(self) -> int:
        count = len(self.images)
        if self.drop_last:
            return count // self.batch_size
        return (count + self.batch_size - 1) // self.batch_size

    @property
    def num_samples(self) -> int:
        """Images produced per epoch (the dropped remainder excluded)."""
        if self.drop_last:
            return len(self) * self.batch_size
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration produce epoch ``epoch`` (0-based), e.g. when resuming a run."""
        self.epoch = int(epoch)

    def _generator_for(self, epoch: int) -> torch.Generator:
        return epoch_generator(self.seed, epoch)

    def __iter__(self) -> Iterator[Batch]:
        epoch = self.epoch
        self.epoch += 1
        return self.epoch_batches(epoch)

    def epoch_batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of epoch ``epoch`` (0-based) from batch ``start`` on, exactly as a full pass
        would give them: the skipped batches are drawn (not used), so the random stream is the same."""
        return self._batches(self._generator_for(epoch), start)

    def _batches(self, generator: torch.Generator, start: int = 0) -> Iterator[Batch]:
        count = len(self.images)
        order = torch.randperm(count, generator=generator) if self.shuffle else None
        for batch in range(len(self)):
            begin = batch * self.batch_size
            stop = min(begin + self.batch_size, count)
            index = torch.arange(begin, stop) if order is None else order[begin:stop]
            if batch < start:
                if self.augment:
                    _draw_crop_flip(len(index), self.padding, generator)   # keep the random stream in step
                continue
            images = self.images[index].to(self.device, non_blocking=self._non_blocking)
            labels = self.labels[index].to(self.device, non_blocking=self._non_blocking)
            if self.augment:    # on the loader's device: only the random draws come from the CPU generator
                images = random_crop_flip(images, padding=self.padding, generator=generator)
            yield Batch(normalize(images, self.mean, self.std), labels, index.to(self.device))
