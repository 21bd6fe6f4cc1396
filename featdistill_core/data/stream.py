"""Image folders too large for memory, streamed from disk by worker processes.

:class:`StreamLoader` yields the same :class:`~.loader.Batch` es as the in-memory
:class:`~.loader.BatchLoader` (``len()``, ``num_samples``, ``set_epoch``, ``epoch_batches(epoch,
start=batch)``), so the trainer cannot tell them apart. Underneath it is a
``torch.utils.data.DataLoader`` over an :class:`ImageFileDataset` with an :class:`EpochBatchSampler`:

* **the sampler** draws epoch *k*'s permutation from ``(seed, k)`` exactly as ``BatchLoader`` does
  (the same order for the same seed, whichever loader is used) and cuts it into global batches of
  ``batch_size``. With ``world_size`` > 1 each rank takes its contiguous share of every global batch
  (sizes differ by at most one), so at every step the ranks together see exactly the one-process
  batch, every sample once per epoch, and no sample is padded or repeated. Resuming at batch *b*
  starts the sampler at *b*: nothing before it is read.
* **the dataset** reads one image with :func:`~.imagefolder.read_image` and the crop of
  :mod:`.crops` (random-resized crop and flip for training, centre crop for evaluation), its
  randomness from ``(seed, epoch, index)`` alone, so worker count, batch size and rank never change
  what an image becomes. It keeps the file list as one byte buffer (not a list of Python strings),
  so forked workers do not copy it page by page through reference counting.
* **the loader** moves each uint8 batch to the device (pinned, non-blocking on CUDA) and normalises
  it there; an unreadable file stops the epoch with a one-line :class:`DatasetError` naming it.

:class:`StreamBundle` is the streamed counterpart of :class:`~featdistill_core.data.DataBundle`.
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .crops import eval_box, random_resized_box, sample_rng
from .imagefolder import read_image
from .loader import Batch, epoch_generator
from .splits import DatasetError, probe_indices
from .transforms import channel_mean_std, normalize

MAX_AUTO_WORKERS = 8
STATS_SAMPLE = 512      # training images read to estimate the normalisation of a streamed folder


def auto_workers() -> int:
    """Worker processes for ``data.workers = -1``: one per CPU core this process may use, less one for
    the training loop, at most :data:`MAX_AUTO_WORKERS` (0 on a one-core machine)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(0, min(MAX_AUTO_WORKERS, cores - 1))


def resolve_workers(workers: int) -> int:
    """``-1`` means :func:`auto_workers`; 0 reads in the training process itself."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < -1:
        raise ValueError(f"workers must be -1 (automatic), 0 or a positive number; got {workers!r}")
    return auto_workers() if workers == -1 else workers


# ---- the sampler ----------------------------------------------------------------------------------

def rank_share(count: int, rank: int, world_size: int) -> tuple[int, int]:
    """(start, stop) of rank ``rank``'s contiguous share of ``count`` items split as evenly as possible."""
    base, extra = divmod(count, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class EpochBatchSampler(Sampler):
    """Batches of ``(index, epoch)`` keys for one rank: the epoch's permutation cut into global batches.

    ``batch_size`` is the *global* batch (all ranks together); rank ``rank`` of ``world_size`` gets
    its share of each (see :func:`rank_share`). ``len()`` counts this rank's non-empty batches.
    With ``drop_last`` the last partial global batch is left out, so every rank has the same number
    of batches (what distributed training needs); without it (evaluation) the last batch is split
    too and a rank may get a shorter one or none.
    """

    def __init__(self, num_items: int, batch_size: int, *, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        if not isinstance(world_size, int) or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0 .. world_size - 1 with world_size >= 1; got rank {rank} of {world_size}")
        if batch_size < world_size:
            raise ValueError(f"the global batch ({batch_size}) must hold at least one image per rank ({world_size} ranks)")
        if int(seed) < 0:
            raise ValueError(f"seed must be a non-negative integer; got {seed}")
        if num_items < 1 or (drop_last and num_items < batch_size):
            raise ValueError(f"batch_size {batch_size} is larger than the {num_items} images and the last partial "
                             f"batch is dropped, so there would be no batch; choose batch_size <= {num_items}")
        self.num_items = num_items
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    @property
    def global_batches(self) -> int:
        if self.drop_last:
            return self.num_items // self.batch_size
        return -(-self.num_items // self.batch_size)

    def _share_sizes(self) -> list[int]:
        sizes = []
        for batch in range(self.global_batches):
            count = min(self.batch_size, self.num_items - batch * self.batch_size)
            start, stop = rank_share(count, self.rank, self.world_size)
            sizes.append(stop - start)
        return sizes

    def __len__(self) -> int:
        full = self.num_items // self.batch_size
        if self.drop_last or full == self.global_batches:
            return full
        last = self.num_items - full * self.batch_size
        start, stop = rank_share(last, self.rank, self.world_size)
        return full + (1 if stop > start else 0)

    @property
    def num_samples(self) -> int:
        """Images this rank gets per epoch."""
        return sum(self._share_sizes())

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The permutation of epoch ``epoch`` over all ranks (the identity without ``shuffle``): the
        order :class:`~.loader.BatchLoader` uses for the same seed and epoch."""
        if not self.shuffle:
            return torch.arange(self.num_items)
        return torch.randperm(self.num_items, generator=epoch_generator(self.seed, epoch))

    def rank_batches(self, epoch: int, start: int = 0) -> Iterator[torch.Tensor]:
        """This rank's index tensors of epoch ``epoch``, from its batch ``start`` on."""
        order = self.epoch_order(epoch)
        produced = 0
        for batch in range(self.global_batches):
            begin = batch * self.batch_size
            count = min(self.batch_size, self.num_items - begin)
            lo, hi = rank_share(count, self.rank, self.world_size)
            if hi == lo:
                continue
            if produced >= start:
                yield order[begin + lo:begin + hi]
            produced += 1

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Make the next iteration produce epoch ``epoch`` from this rank's batch ``start`` on."""
        self.epoch, self.start = int(epoch), int(start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.epoch
        for index in self.rank_batches(epoch, self.start):
            yield [(int(i), epoch) for i in index]


# ---- the dataset ------------------------------------------------------------------------------------

class Unreadable:
    """What a worker returns instead of a batch when an image cannot be read (the message names it)."""

    def __init__(self, message: str) -> None:
        self.message = message


class ImageFileDataset(Dataset):
    """Images files with labels, read at ``image_size`` on demand.

    ``dataset[(index, epoch)]`` is ``(image uint8 (S, S, 3) or Unreadable, label, index)``: with
    ``augment`` the random-resized crop and flip of epoch ``epoch`` drawn from ``(seed, epoch,
    index)``, otherwise the evaluation centre crop. ``dataset[index]`` is ``dataset[(index, 0)]``.
    """

    def __init__(self, files: Sequence[tuple[Path, int]], image_size: int, *, augment: bool, seed: int = 0) -> None:
        if image_size < 1:
            raise ValueError(f"image_size must be a positive number of pixels; got {image_size}")
        encoded = [os.fsencode(str(path)) for path, _ in files]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=self._offsets[1:])
        self._paths = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        self.labels = np.array([label for _, label in files], dtype=np.int64)
        self.image_size = int(image_size)
        self.augment = bool(augment)
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.labels)

    def variant(self, *, augment: Optional[bool] = None, seed: Optional[int] = None) -> "ImageFileDataset":
        """The same files with other crop settings (the file list is shared, not copied)."""
        other = copy.copy(self)
        if augment is not None:
            other.augment = bool(augment)
        if seed is not None:
            other.seed = int(seed)
        return other

    def path(self, index: int) -> Path:
        return Path(os.fsdecode(self._paths[self._offsets[index]:self._offsets[index + 1]].tobytes()))

    def read(self, index: int, epoch: int = 0) -> np.ndarray:
        """Image ``index`` as it is in epoch ``epoch``, uint8 (S, S, 3); raises :class:`DatasetError`."""
        path = self.path(index)
        if not self.augment:
            return read_image(path, self.image_size, box=eval_box)
        rng = sample_rng(self.seed, epoch, index)
        image = read_image(path, self.image_size, box=lambda w, h: random_resized_box(w, h, rng))
        return image[:, ::-1] if rng.random() < 0.5 else image

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        try:
            image = self.read(index, epoch)
        except DatasetError as error:
            image = Unreadable(str(error))
        return image, int(self.labels[index]), int(index)


def collate_images(samples, *, channels_last: bool = False):
    """Samples -> (uint8 images (B, 3, S, S), int64 labels, int64 indices), or the first
    :class:`Unreadable`. With ``channels_last`` the images keep the (B, S, S, 3) memory layout
    (``torch.channels_last`` strides); otherwise they are made contiguous here, in the worker."""
    for image, _, _ in samples:
        if isinstance(image, Unreadable):
            return image
    images = torch.from_numpy(np.stack([image for image, _, _ in samples])).permute(0, 3, 1, 2)
    if not channels_last:
        images = images.contiguous()
    labels = torch.tensor([label for _, label, _ in samples], dtype=torch.int64)
    indices = torch.tensor([index for _, _, index in samples], dtype=torch.int64)
    return images, labels, indices


# ---- the loader ---------------------------------------------------------------------------------------

class StreamLoader:
    """Iterate over :class:`~.loader.Batch` es of an :class:`ImageFileDataset`, read by ``workers``
    processes (0: in this process), ``prefetch`` batches ahead per worker.

    Same interface as :class:`~.loader.BatchLoader`: ``len(loader)`` batches per epoch (this rank's),
    ``num_samples``, ``set_epoch(k)``, ``iter(loader)`` for the next epoch and
    ``epoch_batches(k, start=b)`` for epoch ``k`` from batch ``b``. ``batch_size`` is the global batch;
    ``rank`` / ``world_size`` select this process's share (see :class:`EpochBatchSampler`). Worker
    processes are started on the first iteration and kept for the following epochs.
    """

    def __init__(self, dataset: ImageFileDataset, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, mean: Sequence[float], std: Sequence[float],
                 device: str | torch.device = "cpu", workers: int = 0, prefetch: int = 2,
                 rank: int = 0, world_size: int = 1, channels_last: bool = False,
                 multiprocessing_context: Optional[str] = None) -> None:
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need one value per channel (3); got {len(mean)} and {len(std)}")
        self.dataset = dataset
        self.sampler = EpochBatchSampler(len(dataset), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
                                         rank=rank, world_size=world_size)
        self.batch_size = batch_size
        self.workers = resolve_workers(workers)
        self.prefetch = max(1, int(prefetch))
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.multiprocessing_context = multiprocessing_context
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device)
        self.epoch = 0
        self._loader: DataLoader | None = None

    def __len__(self) -> int:
        return len(self.sampler)

    @property
    def num_samples(self) -> int:
        """Images produced per epoch by this rank (the dropped remainder excluded)."""
        return self.sampler.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[Batch]:
        epoch = self.epoch
        self.epoch += 1
        return self.epoch_batches(epoch)

    def _data_loader(self) -> DataLoader:
        if self._loader is None:
            pin = self.device.type == "cuda"
            extra = {}
            if self.workers:
                extra = dict(persistent_workers=True, prefetch_factor=self.prefetch,
                             multiprocessing_context=self.multiprocessing_context)
            self._loader = DataLoader(
                self.dataset, batch_sampler=self.sampler, num_workers=self.workers, pin_memory=pin,
                collate_fn=functools.partial(collate_images, channels_last=self.channels_last), **extra,
            )
        return self._loader

    def epoch_batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of epoch ``epoch`` (0-based) from batch ``start`` on, exactly as a full pass
        would give them (each image's crop depends on the seed, the epoch and the image only)."""
        self.sampler.set_epoch(epoch, start)
        non_blocking = self.device.type == "cuda"
        for item in self._data_loader():
            if isinstance(item, Unreadable):
                raise DatasetError(item.message)
            images, labels, indices = item
            images = images.to(self.device, non_blocking=non_blocking)
            labels = labels.to(self.device, non_blocking=non_blocking)
            indices = indices.to(self.device, non_blocking=non_blocking)
            yield Batch(normalize(images, self.mean, self.std), labels, indices)

    def close(self) -> None:
        """Stop the worker processes (they also stop when the loader is garbage-collected)."""
        loader, self._loader = self._loader, None
        if loader is not None and getattr(loader, "_iterator", None) is not None:
            loader._iterator._shutdown_workers()
            loader._iterator = None


# ---- the bundle ---------------------------------------------------------------------------------------

def sample_statistics(dataset: ImageFileDataset, *, count: int = STATS_SAMPLE, seed: int = 0
                      ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (on [0, 1]) of ``count`` images drawn from ``dataset`` by ``seed``,
    each read with the evaluation crop."""
    chosen = np.sort(np.random.default_rng(seed).permutation(len(dataset))[:count])
    reader = dataset.variant(augment=False)
    images = np.stack([reader.read(int(i)) for i in chosen]).transpose(0, 3, 1, 2)
    return channel_mean_std(images)


class StreamBundle:
    """An image folder streamed from disk: the counterpart of :class:`~featdistill_core.data.DataBundle`
    with the same names the trainer uses (``train_loader``, ``test_loader``, ``train_labels``,
    ``test_labels``, ``num_classes``, ``class_names``, ``mean``, ``std``, ``image_shape``,
    ``probe_images``), and ``loader == "stream"``.

    The normalisation is estimated from :data:`STATS_SAMPLE` training images (seeded, evaluation crop),
    not from the whole split as for a folder in memory. The test loader of each batch size and
    device is built once and kept, so its worker processes serve every evaluation of a run.
    """

    loader = "stream"

    def __init__(self, name: str, class_names: list[str], train_files, test_files, *, image_size: int,
                 seed: int = 0, workers: int = -1) -> None:
        self.name = name
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.image_size = int(image_size)
        self.workers = resolve_workers(workers)
        self.train_set = ImageFileDataset(train_files, image_size, augment=True, seed=seed)
        self.test_set = ImageFileDataset(test_files, image_size, augment=False, seed=seed)
        self.train_labels = torch.from_numpy(self.train_set.labels)
        self.test_labels = torch.from_numpy(self.test_set.labels)
        self.mean, self.std = sample_statistics(self.train_set, seed=seed)
        self._test_loaders: dict[tuple, StreamLoader] = {}

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    def train_loader(self, batch_size: int, *, augment: bool = True, seed: int = 0,
                     device: str | torch.device = "cpu", rank: int = 0, world_size: int = 1,
                     channels_last: bool = False) -> StreamLoader:
        """Shuffled batches of the training split, random-resized crop and flip with ``augment`` (the
        evaluation crop otherwise), the last partial batch dropped; ``batch_size`` is the global batch."""
        dataset = self.train_set.variant(augment=augment, seed=seed)
        return StreamLoader(dataset, batch_size, shuffle=True, seed=seed, drop_last=True, mean=self.mean,
                            std=self.std, device=device, workers=self.workers, rank=rank, world_size=world_size,
                            channels_last=channels_last)

    def test_loader(self, batch_size: int, *, device: str | torch.device = "cpu", rank: int = 0,
                    world_size: int = 1, channels_last: bool = False) -> StreamLoader:
        """The test split in order, centre-cropped, the last partial batch kept (built once per arguments)."""
        key = (batch_size, str(torch.device(device)), rank, world_size, channels_last)
        if key not in self._test_loaders:
            self._test_loaders[key] = StreamLoader(
                self.test_set, batch_size, shuffle=False, drop_last=False, mean=self.mean, std=self.std,
                device=device, workers=self.workers, rank=rank, world_size=world_size, channels_last=channels_last)
        return self._test_loaders[key]

    def probe_indices(self, n: int = 8, *, seed: int = 0) -> list[int]:
        """Indices of ``n`` fixed test images (see :func:`~.splits.probe_indices`)."""
        return probe_indices(self.test_set.labels, n, seed=seed)

    def probe_images(self, n: int = 8, *, seed: int = 0) -> tuple[torch.Tensor, list[int], np.ndarray]:
        """As :meth:`featdistill_core.data.DataBundle.probe_images`: normalised float32 (n, 3, S, S),
        the labels, and float32 (n, S, S, 3) in [0, 1] for display; read with the evaluation crop."""
        index = self.probe_indices(n, seed=seed)
        pixels = np.stack([self.test_set.read(i) for i in index])                 # (n, S, S, 3)
        images = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))
        mean = torch.tensor(self.mean, dtype=torch.float32)
        std = torch.tensor(self.std, dtype=torch.float32)
        display = pixels.astype(np.float32) / np.float32(255.0)
        return normalize(images, mean, std), [int(self.test_set.labels[i]) for i in index], display

    def close(self) -> None:
        """Stop the worker processes of the test loaders this bundle keeps."""
        for loader in self._test_loaders.values():
            loader.close()
        self._test_loaders.clear()
