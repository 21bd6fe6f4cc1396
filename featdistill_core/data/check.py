"""Reading enough of a data set, before training, that loading it for training will not fail.

:func:`inspect_dataset` is what ``featdistill check`` (through validation) does with the data:

* **CIFAR** — every batch file is read (with the restricted unpickler) and checked as loading checks it:
  its keys, a uint8 array of N×3072, one label per image, labels within the class count; the meta
  file's class names too. The split sizes are counted, not assumed.
* **Image folders** — every image file's header is read (of a folder of more than
  :data:`MAX_HEADERS` files, as streamed ImageNet-size folders are, every k-th file's: 200 000 headers) (it must open as an image, be at most
  ``PIL.Image.MAX_IMAGE_PIXELS`` pixels — no decompression bomb — and not be empty), PNG and JPEG files
  must end with their end marker (a file cut short fails here), and a sample of images (up to
  :data:`SAMPLE_IMAGES`, spread over the classes) is decoded in full.
* **The demo** — generated from the seed; a few images are drawn.

It returns the class count, the split sizes and a few real images (uint8, N×3×H×W at the run's image
size) on which validation runs the models once. Every problem is a
:class:`~featdistill_core.data.splits.DatasetError` naming the file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .cifar import CIFAR10_TRAIN_FILES, _class_names, _images_and_labels, check_cifar_folder, read_pickle
from .demo import CLASS_NAMES as DEMO_CLASSES, make_demo_images
from .imagefolder import DEFAULT_TEST_FRACTION, image_folder_files, pixel_limit, read_image
from .splits import DatasetError

SAMPLE_IMAGES = 64
MAX_HEADERS = 200_000    # a larger (streamed) folder has every k-th file's header read, 200 000 in all
_TRAILERS = {".png": b"IEND", ".jpg": b"\xff\xd9", ".jpeg": b"\xff\xd9"}

__all__ = ["DatasetSample", "SAMPLE_IMAGES", "inspect_dataset"]


@dataclass(frozen=True)
class DatasetSample:
    num_classes: int
    train_size: int
    test_size: int
    images: np.ndarray          # a few real images, uint8 (N, 3, H, W)
    labels: np.ndarray          # their labels, int64 (N,)


def inspect_dataset(name: str, path: str | None = None, *, image_size: int = 32, demo_train: int = 5000,
                    demo_test: int = 2000, seed: int = 0, test_fraction: float = DEFAULT_TEST_FRACTION) -> DatasetSample:
    """Check a data set as described in the module docstring; raise :class:`DatasetError` naming the file.
    ``test_fraction`` splits an image folder without train/ and test/ as loading splits it."""
    if name == "demo":
        sample = make_demo_images(4, seed=(seed, 1), image_size=image_size)
        return DatasetSample(len(DEMO_CLASSES), demo_train, demo_test, sample.images, sample.labels)
    if name in ("cifar10", "cifar100"):
        return _inspect_cifar(name, path)
    if name == "imagefolder":
        return _inspect_image_folder(path, image_size, test_fraction)
    raise DatasetError(f"unknown dataset {name!r}")


def _inspect_cifar(name: str, path) -> DatasetSample:
    folder = check_cifar_folder(name, path)
    if name == "cifar10":
        what, key, classes = "CIFAR-10", b"labels", 10
        train_files, test_files, meta, names_key = CIFAR10_TRAIN_FILES, ("test_batch",), "batches.meta", b"label_names"
    else:
        what, key, classes = "CIFAR-100", b"fine_labels", 100
        train_files, test_files, meta, names_key = ("train",), ("test",), "meta", b"fine_label_names"
    counts = {}
    sample_images = sample_labels = None
    for split, files in (("train", train_files), ("test", test_files)):
        total = 0
        for file in files:
            images, labels = _images_and_labels(read_pickle(folder / file, what), folder / file, what, key, classes)
            if not len(images):
                raise DatasetError(f"{what} file {folder / file}: holds no images")
            total += len(images)
            if sample_images is None:
                sample_images, sample_labels = images[:4].copy(), labels[:4].copy()
        counts[split] = total
    _class_names(folder / meta, names_key, what, classes)
    return DatasetSample(classes, counts["train"], counts["test"], sample_images, sample_labels)


def _inspect_image_folder(path, image_size: int, test_fraction: float) -> DatasetSample:
    class_names, train_files, test_files = image_folder_files(path, test_fraction=test_fraction)
    files = train_files + test_files
    stride = max(1, -(-len(files) // MAX_HEADERS))
    for file, _ in files[::stride]:
        _check_header(file)
    chosen = _spread(files, len(class_names))
    images = np.stack([read_image(file, image_size).transpose(2, 0, 1) for file, _ in chosen])
    labels = np.array([label for _, label in chosen], dtype=np.int64)
    return DatasetSample(len(class_names), len(train_files), len(test_files), images[:4], labels[:4])


def _spread(files: list[tuple[Path, int]], classes: int) -> list[tuple[Path, int]]:
    """Up to :data:`SAMPLE_IMAGES` files: the first of each class, then evenly spaced others."""
    chosen, seen = [], set()
    for file, label in files:
        if label not in seen:
            seen.add(label)
            chosen.append((file, label))
    if len(files) > len(chosen):
        stride = max(1, len(files) // max(1, SAMPLE_IMAGES - len(chosen)))
        picked = {f for f, _ in chosen}
        chosen += [item for item in files[::stride] if item[0] not in picked]
    return chosen[:max(SAMPLE_IMAGES, classes)]


def _check_header(file: Path) -> None:
    try:
        size = file.stat().st_size
    except OSError as exc:
        raise DatasetError(f"image file {file}: cannot be read ({exc.strerror or 'unreadable'})") from None
    if size == 0:
        raise DatasetError(f"image file {file}: is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DatasetError(f"image file {file}: is too large to decode safely (more than "
                           f"{pixel_limit():,} pixels: a decompression bomb?)".replace(",", " ")) from None
    except (OSError, ValueError, SyntaxError):
        raise DatasetError(f"image file {file}: is not an image (its header cannot be read)") from None
    if width * height > pixel_limit():
        raise DatasetError(f"image file {file}: is {width}×{height} pixels, more than the "
                           f"{pixel_limit():,} that are decoded safely".replace(",", " "))
    trailer = _TRAILERS.get(file.suffix.lower())
    if trailer is not None:
        with open(file, "rb") as stream:
            stream.seek(max(0, size - 1024))
            if trailer not in stream.read():
                raise DatasetError(f"image file {file}: is cut short (no end-of-image marker): a truncated file")
