"""An image folder with one sub-folder per class, read into memory or listed for streaming.

Layout: ``root/<class name>/<image>`` with images in png, jpg, jpeg, bmp or webp (any letter case).
Classes are the sub-folders holding at least one image, in sorted order, labelled 0, 1, ... Hidden
files and folders (names starting with ".") are skipped.

If ``root`` has ``train/`` and ``test/`` sub-folders (or ``train/`` and ``val/``, the ImageNet
layout; ``val/`` is read as ``test/`` when there is no ``test/``), each is such a folder and they
give the two splits (the classes are those of ``train/``). Otherwise the images are split by a fixed
rule that no run setting but ``test_fraction`` changes (:func:`split_key`): within each class, the
files are ranked by the SHA-256 of ``"<class>/<file name>"`` and the first
``round(test_fraction * n)`` go to the test split (at least one when the class has two or more
images, never all of them).

So the split does not move with the run's seed: a teacher trained with one seed has never seen the
test images of a student trained with another, and runs over several seeds are measured on the same
test images. It does not depend on where the folder is, on file dates or on the other classes;
adding images to a class moves at most the images whose rank they take. A smaller fraction's test
split is a subset of a larger one's. :func:`image_folder_files` is the one place the split is made
(the loader, the streamed loader and :func:`image_folder_sizes` all go through it).

:func:`load_image_folder` converts every image to RGB, centre-crops it to a square and resizes it to
``image_size`` pixels (bilinear), so the whole folder becomes one uint8 array (N, 3, image_size,
image_size). That suits workbench-size folders (tens of thousands of small images). A folder too
large for that is streamed from disk (:mod:`.stream`), which lists it with :func:`image_folder_files`.

:func:`read_image` is the one place an image file is decoded, for both.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image, ImageOps

from .splits import DatasetError, ImageSplits

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DEFAULT_TEST_FRACTION = 0.1
_EXPECTED = "one sub-folder per class, each holding .png/.jpg/.jpeg/.bmp/.webp images"


def load_image_folder(
    path: str | Path,
    *,
    image_size: int = 32,
    test_fraction: float = DEFAULT_TEST_FRACTION,
) -> ImageSplits:
    """Read an image folder (see the module docstring) into train and test splits."""
    if image_size < 1:
        raise DatasetError(f"image folder: image_size must be a positive number of pixels; got {image_size}")
    class_names, train_files, test_files = image_folder_files(path, test_fraction=test_fraction)
    train_images, train_labels = _read_images(train_files, image_size)
    test_images, test_labels = _read_images(test_files, image_size)
    return ImageSplits(train_images, train_labels, test_images, test_labels, class_names)


def image_folder_files(path: str | Path, *, test_fraction: float = DEFAULT_TEST_FRACTION
                       ) -> tuple[list[str], list[tuple[Path, int]], list[tuple[Path, int]]]:
    """(class names, training ``(file, label)`` pairs, test pairs) exactly as :func:`load_image_folder`
    finds and splits them, without reading an image: the one place the split is decided."""
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"image folder: test_fraction must be greater than 0 and less than 1; got {test_fraction!r}")
    class_names, train_files, test_files = _layout(path)
    if test_files is None:
        train_files, test_files = _split(train_files, class_names, float(test_fraction))
        if not test_files:
            raise DatasetError(f"image folder {path}: too few images to split off a test set (each class has one image)")
    return class_names, train_files, test_files


def image_folder_classes(path: str | Path) -> list[str]:
    """The class names an image folder holds, found exactly as :func:`load_image_folder` finds them
    (no image is read)."""
    return _layout(path)[0]


def image_folder_sizes(path: str | Path, *, test_fraction: float = DEFAULT_TEST_FRACTION) -> tuple[int, int]:
    """(training images, test images) that :func:`load_image_folder` will give, without reading an image."""
    _, train_files, test_files = image_folder_files(path, test_fraction=test_fraction)
    return len(train_files), len(test_files)


def split_key(class_name: str, file_name: str) -> bytes:
    """The rank of a file within its class when a folder is split: SHA-256 of ``"<class>/<file name>"``."""
    return hashlib.sha256(f"{class_name}/{file_name}".encode("utf-8", "surrogateescape")).digest()


def held_out_count(n: int, test_fraction: float) -> int:
    """How many of a class's ``n`` images go to the test split: ``round(test_fraction * n)``, at least
    1 and at most ``n - 1`` when ``n >= 2``, none when the class has one image."""
    if n < 2:
        return 0
    return min(max(int(round(test_fraction * n)), 1), n - 1)


def _layout(path: str | Path) -> tuple[list[str], list[tuple[Path, int]], list[tuple[Path, int]] | None]:
    """Class names, the training files and the test files (None when the folder has no train/test split)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise DatasetError(f"image folder {root}: does not exist (expected {_EXPECTED})")
    if not root.is_dir():
        raise DatasetError(f"image folder {root}: is not a folder (expected {_EXPECTED})")
    train_dir, test_dir = root / "train", root / "test"
    val_dir = root / "val"
    if val_dir.is_dir():
        if test_dir.is_dir():
            raise DatasetError(f"image folder {root}: has both test/ and val/; keep the labelled one (val/ is read "
                               "as the test split only when there is no test/)")
        test_dir = val_dir
    if train_dir.is_dir() and test_dir.is_dir():
        class_names, train_files = _class_files(train_dir)
        _, test_files = _class_files(test_dir, class_names)
        if not test_files:
            raise DatasetError(f"image folder {test_dir} has no images in the class sub-folders of {train_dir}")
        return class_names, train_files, test_files
    if train_dir.is_dir() or test_dir.is_dir():
        present, absent = (train_dir, test_dir) if train_dir.is_dir() else (test_dir, train_dir)
        raise DatasetError(f"image folder {root}: has {present.name}/ but no {absent.name}/ (give both, or neither and one sub-folder per class)")
    class_names, files = _class_files(root)
    return class_names, files, None


def _is_image_entry(entry: os.DirEntry) -> bool:
    name = entry.name
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and entry.is_file()


def _image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name. ``os.scandir`` reads the file type from
    the directory listing, so a class folder of thousands of images costs no ``stat`` per file."""
    with os.scandir(folder) as entries:
        names = sorted(entry.name for entry in entries if _is_image_entry(entry))
    return [folder / name for name in names]


def _class_files(folder: Path, class_names: list[str] | None = None) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names and ``(file, label)`` pairs of a one-sub-folder-per-class folder.

    With ``class_names`` given (the test folder of a train/test layout), those classes are read and
    any other sub-folder holding images is an error.
    """
    found: dict[str, list[Path]] = {}
    with os.scandir(folder) as entries:
        subs = sorted(entry.name for entry in entries if not entry.name.startswith(".") and entry.is_dir())
    for name in subs:
        images = _image_files(folder / name)
        if images:
            found[name] = images
    if class_names is None:
        if not found:
            raise DatasetError(f"image folder {folder} has no class sub-folders with images (expected {_EXPECTED})")
        if len(found) < 2:
            raise DatasetError(f"image folder {folder} has only one class sub-folder with images ({next(iter(found))}); a classifier needs at least two")
        class_names = list(found)
    else:
        unknown = sorted(set(found) - set(class_names))
        if unknown:
            raise DatasetError(f"image folder {folder}: classes {', '.join(unknown)} are not in the train folder's classes")
    files = [(image, label) for label, name in enumerate(class_names) for image in found.get(name, [])]
    return class_names, files


def _split(files: list[tuple[Path, int]], class_names: list[str], test_fraction: float):
    """Per class, the ``held_out_count`` files of lowest :func:`split_key` go to test; both keep folder order."""
    train, test = [], []
    labels = np.array([label for _, label in files])
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label).tolist()
        ranked = sorted(members, key=lambda i: split_key(class_names[label], files[i][0].name))
        chosen = set(ranked[:held_out_count(len(members), test_fraction)])
        test.extend(files[i] for i in members if i in chosen)
        train.extend(files[i] for i in members if i not in chosen)
    return train, test


def _read_images(files: list[tuple[Path, int]], image_size: int) -> tuple[np.ndarray, np.ndarray]:
    images = np.empty((len(files), 3, image_size, image_size), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        images[i] = read_image(path, image_size).transpose(2, 0, 1)
    labels = np.array([label for _, label in files], dtype=np.int64)
    return images, labels


def pixel_limit() -> int:
    """The most pixels an image may have to be decoded (PIL's decompression-bomb limit)."""
    return int(Image.MAX_IMAGE_PIXELS or 89_478_485)


CropBox = Callable[[int, int], tuple[float, float, float, float]]
"""``(width, height) -> (left, top, right, bottom)``: the region of an upright image to keep."""


def centre_square(width: int, height: int) -> tuple[float, float, float, float]:
    """The largest centred square: what :func:`PIL.ImageOps.fit` keeps for a square output."""
    if width > height:
        left = (width - height) / 2
        return (left, 0.0, left + height, float(height))
    top = (height - width) / 2
    return (0.0, top, float(width), top + width)


def read_image(path: Path, image_size: int, *, box: Optional[CropBox] = None) -> np.ndarray:
    """One image as uint8 (image_size, image_size, 3): RGB, upright (EXIF orientation applied), the
    region ``box(width, height)`` of it (default :func:`centre_square`) resized bilinearly.

    This is the only function that decodes an image file. A JPEG is decoded at a reduced scale
    (Pillow's ``draft``: 1/2, 1/4 or 1/8, done inside the decoder) when the region would still be at
    least ``image_size`` pixels on each side, which makes large photos several times cheaper to read.
    Raises :class:`DatasetError` naming the file when it cannot be read as an image, or when it has
    more than :func:`pixel_limit` pixels (refused before it is decoded: no decompression bomb).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            width, height = image.size
            if width * height > pixel_limit():
                raise DatasetError(f"image file {path}: is {width}×{height} pixels, more than the "
                                   f"{pixel_limit()} that are decoded safely")
            orientation = image.getexif().get(0x0112, 1)
            upright = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
            left, top, right, bottom = (box or centre_square)(*upright)
            shrink = min(right - left, bottom - top) / image_size
            if image.format == "JPEG" and shrink >= 2:
                image.draft("RGB", (math.ceil(width / shrink), math.ceil(height / shrink)))
            image = ImageOps.exif_transpose(image).convert("RGB")
            sx, sy = image.width / upright[0], image.height / upright[1]
            region = (left * sx, top * sy, right * sx, bottom * sy)
            image = image.resize((image_size, image_size), Image.Resampling.BILINEAR, box=region)
            return np.asarray(image, dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DatasetError(f"image file {path}: is too large to decode safely (a decompression bomb?)") from None
    except (OSError, ValueError, SyntaxError) as error:
        if isinstance(error, DatasetError):
            raise
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
        raise DatasetError(f"image file {path}: cannot be read as an image ({reason})") from None
