"""An image folder with one sub-folder per class, read into memory.

Layout: ``root/<class name>/<image>`` with images in png, jpg, jpeg, bmp or webp (any letter case).
Classes are the sub-folders holding at least one image, in sorted order, labelled 0, 1, ... Hidden
files and folders (names starting with ".") are skipped.

If ``root`` has both ``train/`` and ``test/`` sub-folders, each is such a folder and they give the
two splits (the classes are those of ``train/``). Otherwise the images are split by a fixed rule that
no run setting but ``test_fraction`` changes (:func:`split_key`): within each class, the files are
ranked by the SHA-256 of ``"<class>/<file name>"`` and the first ``round(test_fraction * n)`` go to
the test split (at least one when the class has two or more images, never all of them).

So the split does not move with the run's seed: a teacher trained with one seed has never seen the
test images of a student trained with another, and runs over several seeds are measured on the same
test images. It does not depend on where the folder is, on file dates or on the other classes;
adding images to a class moves at most the images whose rank they take. A smaller fraction's test
split is a subset of a larger one's.

Every image is converted to RGB, centre-cropped to a square and resized to ``image_size`` pixels
(bilinear), so the whole folder becomes one uint8 array (N, 3, image_size, image_size). That suits
workbench-size folders (tens of thousands of small images), not ImageNet.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .splits import DatasetError, ImageSplits

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_EXPECTED = "one sub-folder per class, each holding .png/.jpg/.jpeg/.bmp/.webp images"
DEFAULT_TEST_FRACTION = 0.1


def load_image_folder(
    path: str | Path,
    *,
    image_size: int = 32,
    test_fraction: float = DEFAULT_TEST_FRACTION,
) -> ImageSplits:
    """Read an image folder (see the module docstring) into train and test splits."""
    if image_size < 1:
        raise DatasetError(f"image folder: image_size must be a positive number of pixels; got {image_size}")
    class_names, train_files, test_files = _files(path, test_fraction)
    train_images, train_labels = _read_images(train_files, image_size)
    test_images, test_labels = _read_images(test_files, image_size)
    return ImageSplits(train_images, train_labels, test_images, test_labels, class_names)


def image_folder_classes(path: str | Path) -> list[str]:
    """The class names an image folder holds, found exactly as :func:`load_image_folder` finds them
    (no image is read)."""
    return _layout(path)[0]


def image_folder_sizes(path: str | Path, *, test_fraction: float = DEFAULT_TEST_FRACTION) -> tuple[int, int]:
    """(training images, test images) that :func:`load_image_folder` will give, without reading an image."""
    _, train_files, test_files = _files(path, test_fraction)
    return len(train_files), len(test_files)


def image_folder_split(path: str | Path, *, test_fraction: float = DEFAULT_TEST_FRACTION
                       ) -> tuple[list[Path], list[Path]]:
    """The training files and the test files :func:`load_image_folder` reads, in its order."""
    _, train_files, test_files = _files(path, test_fraction)
    return [f for f, _ in train_files], [f for f, _ in test_files]


def _files(path, test_fraction: float):
    """Class names, training files and test files: the one place the split is decided."""
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"image folder: test_fraction must be greater than 0 and less than 1; got {test_fraction!r}")
    class_names, train_files, test_files = _layout(path)
    if test_files is None:
        train_files, test_files = _split(train_files, class_names, float(test_fraction))
        if not test_files:
            raise DatasetError(f"image folder {path}: too few images to split off a test set (each class has one image)")
    return class_names, train_files, test_files


def split_key(class_name: str, file_name: str) -> bytes:
    """The rank of a file within its class when a folder is split: SHA-256 of ``"<class>/<file name>"``."""
    return hashlib.sha256(f"{class_name}/{file_name}".encode("utf-8", "surrogateescape")).digest()


def _layout(path: str | Path) -> tuple[list[str], list[tuple[Path, int]], list[tuple[Path, int]] | None]:
    """Class names, the training files and the test files (None when the folder has no train/test split)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise DatasetError(f"image folder {root}: does not exist (expected {_EXPECTED})")
    if not root.is_dir():
        raise DatasetError(f"image folder {root}: is not a folder (expected {_EXPECTED})")
    train_dir, test_dir = root / "train", root / "test"
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


def _is_image(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def _class_files(folder: Path, class_names: list[str] | None = None) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names and ``(file, label)`` pairs of a one-sub-folder-per-class folder.

    With ``class_names`` given (the test folder of a train/test layout), those classes are read and
    any other sub-folder holding images is an error.
    """
    found: dict[str, list[Path]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = sorted(p for p in sub.iterdir() if _is_image(p))
        if images:
            found[sub.name] = images
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


def held_out_count(n: int, test_fraction: float) -> int:
    """How many of a class's ``n`` images go to the test split: ``round(test_fraction * n)``, at least
    1 and at most ``n - 1`` when ``n >= 2``, none when the class has one image."""
    if n < 2:
        return 0
    return min(max(int(round(test_fraction * n)), 1), n - 1)


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


def read_image(path: Path, image_size: int) -> np.ndarray:
    """One image as uint8 (image_size, image_size, 3): RGB, centre-cropped to a square, resized bilinearly."""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
            image = ImageOps.fit(image, (image_size, image_size), method=Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise DatasetError(f"image file {path}: cannot be read as an image ({type(error).__name__}: {error})") from None
