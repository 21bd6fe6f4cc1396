"""Datasets, in memory or streamed from disk, and their batch loaders. Nothing is ever downloaded.

``load_dataset(name, path)`` gives a :class:`DataBundle` (uint8 image tensors (N, 3, H, W) for a
train and a test split in memory, their labels, the class names and the per-channel normalisation)
or, for an image folder too large for that, a :class:`~.stream.StreamBundle` that reads the files
from disk with worker processes. Both have the same loaders' interface: batches of
:class:`~.loader.Batch` ``(images, labels, indices)``, ``len()``, ``num_samples`` and
``epoch_batches(epoch, start=batch)``; the trainer cannot tell them apart.

Which one (:func:`choose_loader`): ``loader = "auto"`` keeps a data set in memory when its images,
resized, take at most :data:`MEMORY_LIMIT_BYTES`, and streams a larger image folder; ``"memory"`` and
``"stream"`` force one (only image folders can stream). The two augment differently, each as its
literature does: in memory the CIFAR pad-4 crop and flip (:mod:`.transforms`), streamed the ImageNet
random-resized crop and flip, and a centre crop for evaluation (:mod:`.crops`).

Datasets:

* ``"demo"`` — shapes on clutter, generated procedurally from the seed (:mod:`.demo`);
* ``"cifar10"``, ``"cifar100"`` — the python-version folders of the CIFAR site (:mod:`.cifar`);
* ``"imagefolder"`` — one sub-folder per class of ordinary image files, or ``train/`` and ``test/``
  (or ``val/``) folders of them (:mod:`.imagefolder`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from .check import DatasetSample, inspect_dataset
from .cifar import check_cifar_folder, load_cifar10, load_cifar100
from .demo import CLASS_NAMES as DEMO_CLASSES, load_demo
from .imagefolder import DEFAULT_TEST_FRACTION, image_folder_classes, image_folder_files, image_folder_sizes, load_image_folder
from .loader import Batch, BatchLoader
from .splits import DatasetError, ImageSplits, probe_indices
from .stream import StreamBundle, StreamLoader
from .transforms import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, channel_mean_std, normalize

__all__ = [
    "DATASETS", "DATASET_TITLES", "DEFAULT_TEST_FRACTION", "FIXED_IMAGE_SIZES", "LOADERS", "MEMORY_LIMIT_BYTES",
    "NEEDS_PATH", "SPLIT_RULES", "STREAMABLE", "Batch", "BatchLoader", "DataBundle", "DatasetError", "DatasetInfo",
    "DatasetSample", "StreamBundle", "StreamLoader", "choose_loader", "dataset_classes", "dataset_info",
    "estimated_bytes", "image_folder_files", "inspect_dataset", "load_dataset",
]

DATASETS = ("demo", "cifar10", "cifar100", "imagefolder")
DATASET_TITLES = {
    "demo": "Demo shapes (built in, generated from the seed)",
    "cifar10": "CIFAR-10 (its python-version folder)",
    "cifar100": "CIFAR-100 (its python-version folder)",
    "imagefolder": "Image folder (one sub-folder per class)",
}
NEEDS_PATH = ("cifar10", "cifar100", "imagefolder")
FIXED_IMAGE_SIZES = {"cifar10": 32, "cifar100": 32}
"""Data sets whose images have one size (the run's ``data.image_size`` must match)."""
LOADERS = ("auto", "memory", "stream")
"""The run file's ``data.loader`` choices."""
STREAMABLE = ("imagefolder",)
"""Data sets that can be streamed from disk (the others are files read whole)."""
MEMORY_LIMIT_BYTES = 4 * 2**30
"""``loader = "auto"`` holds a data set in memory up to this many bytes of resized images (4 GiB)."""

SPLIT_RULES = {
    "demo": "drawn from the run's seed, the test images from a stream of their own (never a training image); "
            "data.demo_test images",
    "cifar10": "the published test batch (10 000 images)",
    "cifar100": "the published test file (10 000 images)",
    "imagefolder": "its test/ folder if it has train/ and test/; otherwise data.test_fraction of each class, "
                   "chosen by a fixed hash of the file names, whatever the seed",
}
"""How each data set's test split is chosen, in words (README, window tooltips)."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set holds, found without reading its images."""

    num_classes: int
    train_size: int
    test_size: int


CIFAR_SIZES = (50_000, 10_000)   # the published split sizes (the files are not read to count them)


def dataset_info(name: str, path: str | None = None, *, demo_train: int = 5000, demo_test: int = 2000,
                 seed: int = 0, test_fraction: float = DEFAULT_TEST_FRACTION) -> DatasetInfo:
    """Class count and split sizes of a data set, found by the code that loads it (no image is read).

    ``seed`` matters to the demo only (its images are drawn from it); ``test_fraction`` to an image
    folder without train/ and test/ sub-folders only.

    Raises :class:`DatasetError` when the data set's files are not where ``path`` says.
    """
    classes = dataset_classes(name, path)
    if name == "demo":
        return DatasetInfo(classes, demo_train, demo_test)
    if name in ("cifar10", "cifar100"):
        return DatasetInfo(classes, *CIFAR_SIZES)
    return DatasetInfo(classes, *image_folder_sizes(path, test_fraction=test_fraction))


def estimated_bytes(info: DatasetInfo, image_size: int) -> int:
    """Bytes of both splits held in memory as uint8 (N, 3, image_size, image_size)."""
    return (info.train_size + info.test_size) * 3 * image_size * image_size


def choose_loader(name: str, requested: str, info: DatasetInfo, image_size: int) -> str:
    """``"memory"`` or ``"stream"`` for a data set of ``info``'s sizes at ``image_size`` (see the module
    docstring). Raises :class:`DatasetError` for ``"stream"`` on a data set that cannot stream."""
    if requested not in LOADERS:
        raise DatasetError(f"unknown loader {requested!r}; choose one of {', '.join(LOADERS)}")
    if requested == "stream" and name not in STREAMABLE:
        raise DatasetError(f"dataset {name} is read into memory whole; only {', '.join(STREAMABLE)} can stream")
    if requested != "auto":
        return requested
    if name in STREAMABLE and estimated_bytes(info, image_size) > MEMORY_LIMIT_BYTES:
        return "stream"
    return "memory"


def dataset_classes(name: str, path: str | None = None) -> int:
    """How many classes a data set has, found by the same code that loads it (no image is read).

    Raises :class:`DatasetError` when the data set's files are not where ``path`` says.
    """
    if name == "demo":
        return len(DEMO_CLASSES)
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if not path:
        raise DatasetError(f"dataset {name} needs the folder it is in")
    if name in ("cifar10", "cifar100"):
        check_cifar_folder(name, path)
        return 10 if name == "cifar10" else 100
    return len(image_folder_classes(path))


@dataclass
class DataBundle:
    """A dataset in memory: uint8 images (N, 3, H, W), int64 labels, class names and normalisation.

    ``mean`` and ``std`` are per channel on the [0, 1] scale; the loaders feed the model
    ``(x / 255 - mean) / std``.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    class_names: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    name: str
    loader = "memory"      # a class attribute: which kind of bundle this is (see StreamBundle)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(3, H, W) of every image."""
        return tuple(self.train_images.shape[1:])

    def train_loader(self, batch_size: int, *, augment: bool = True, seed: int = 0, device: str | torch.device = "cpu",
                     rank: int = 0, world_size: int = 1) -> BatchLoader:
        """Shuffled batches of the training split (a new permutation each epoch), the last partial batch
        dropped; ``batch_size`` is the global batch, of which rank ``rank`` gets its share."""
        return BatchLoader(
            self.train_images, self.train_labels, batch_size,
            shuffle=True, augment=augment, mean=self.mean, std=self.std, seed=seed, drop_last=True, device=device,
            rank=rank, world_size=world_size,
        )

    def test_loader(self, batch_size: int, *, device: str | torch.device = "cpu", rank: int = 0,
                    world_size: int = 1) -> BatchLoader:
        """The test split in order, not augmented, the last partial batch kept (rank ``rank``'s share)."""
        return BatchLoader(
            self.test_images, self.test_labels, batch_size,
            shuffle=False, augment=False, mean=self.mean, std=self.std, drop_last=False, device=device,
            rank=rank, world_size=world_size,
        )

    def probe_indices(self, n: int = 8, *, seed: int = 0) -> list[int]:
        """Indices of ``n`` fixed test images: one per class first, then any others.

        The test split is walked in a seeded permutation; the first image of each class not seen yet
        is taken until ``n`` are chosen or every class has one, then the permutation fills the rest.
        """
        return probe_indices(self.test_labels.numpy(), n, seed=seed)

    def probe_images(self, n: int = 8, *, seed: int = 0) -> tuple[torch.Tensor, list[int], np.ndarray]:
        """Fixed test images to watch attention on (see :meth:`probe_indices`).

        Returns the normalised float32 tensor (n, 3, H, W) to feed a model, the labels, and the same
        images as float32 numpy (n, H, W, 3) in [0, 1] for display. ``n`` is capped at the test size.
        """
        index = torch.tensor(self.probe_indices(n, seed=seed), dtype=torch.int64)
        images = self.test_images[index]
        mean = torch.tensor(self.mean, dtype=torch.float32)
        std = torch.tensor(self.std, dtype=torch.float32)
        display = images.permute(0, 2, 3, 1).numpy().astype(np.float32) / np.float32(255.0)
        return normalize(images, mean, std), [int(x) for x in self.test_labels[index]], display


def load_dataset(
    name: str,
    path: Optional[str] = None,
    *,
    image_size: int = 32,
    demo_train: int = 5000,
    demo_test: int = 2000,
    seed: int = 0,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    loader: str = "auto",
    workers: int = -1,
) -> DataBundle | StreamBundle:
    """Load one of :data:`DATASETS` into memory, or open an image folder for streaming.

    ``path`` is required for ``cifar10`` (``cifar-10-batches-py`` or its parent), ``cifar100``
    (``cifar-100-python`` or its parent) and ``imagefolder``; the demo ignores it. ``image_size`` is
    the side of the square images of the demo and of image folders (CIFAR is always 32). ``seed``
    draws the demo images; an image folder's split does not depend on it (``test_fraction`` of each
    class, by a fixed rule: :mod:`.imagefolder`). CIFAR is normalised with the
    literature's per-channel statistics; the demo and image folders with those of their training split
    (a streamed folder with those of a sample of it). ``loader`` is ``"auto"``, ``"memory"`` or
    ``"stream"`` (:func:`choose_loader`); ``workers`` the reading processes of a streamed folder
    (``-1``: one per core less one, at most 8; 0: none).
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if loader not in LOADERS:
        raise DatasetError(f"unknown loader {loader!r}; choose one of {', '.join(LOADERS)}")
    if loader == "stream" and key not in STREAMABLE:
        raise DatasetError(f"dataset {key} is read into memory whole; only {', '.join(STREAMABLE)} can stream")
    if not isinstance(seed, int) or seed < 0:
        raise DatasetError(f"dataset {key}: seed must be a non-negative integer; got {seed!r}")
    if key == "demo":
        splits = load_demo(demo_train, demo_test, seed=seed, image_size=image_size)
        return _bundle(splits, key, *channel_mean_std(splits.train_images))
    if path is None:
        where = {
            "cifar10": "the folder cifar-10-batches-py (the python version from the CIFAR site) or its parent",
            "cifar100": "the folder cifar-100-python (the python version from the CIFAR site) or its parent",
            "imagefolder": "a folder with one sub-folder of images per class",
        }[key]
        raise DatasetError(f"dataset {key} needs a path: {where}; nothing is downloaded")
    if key in ("cifar10", "cifar100"):
        if image_size != 32:
            raise DatasetError(f"dataset {key}: CIFAR images are 32×32, so image_size must be 32; got {image_size}")
        if key == "cifar10":
            return _bundle(load_cifar10(path), key, CIFAR10_MEAN, CIFAR10_STD)
        return _bundle(load_cifar100(path), key, CIFAR100_MEAN, CIFAR100_STD)
    if loader != "memory":
        class_names, train_files, test_files = image_folder_files(path, test_fraction=test_fraction)
        info = DatasetInfo(len(class_names), len(train_files), len(test_files))
        if choose_loader(key, loader, info, image_size) == "stream":
            return StreamBundle(key, class_names, train_files, test_files, image_size=image_size, seed=seed,
                                workers=workers)
    splits = load_image_folder(path, image_size=image_size, test_fraction=test_fraction)
    return _bundle(splits, key, *channel_mean_std(splits.train_images))


def _bundle(splits: ImageSplits, name: str, mean, std) -> DataBundle:
    return DataBundle(
        train_images=torch.from_numpy(np.ascontiguousarray(splits.train_images)),
        train_labels=torch.from_numpy(splits.train_labels.astype(np.int64)),
        test_images=torch.from_numpy(np.ascontiguousarray(splits.test_images)),
        test_labels=torch.from_numpy(splits.test_labels.astype(np.int64)),
        num_classes=len(splits.class_names),
        class_names=list(splits.class_names),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        name=name,
    )
