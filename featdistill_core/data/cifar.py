"""CIFAR-10 and CIFAR-100 from the "python version" folders of https://www.cs.toronto.edu/~kriz/cifar.html.

Nothing is downloaded: the user points at ``cifar-10-batches-py/`` (files ``data_batch_1`` ..
``data_batch_5``, ``test_batch``, ``batches.meta``) or ``cifar-100-python/`` (files ``train``, ``test``,
``meta``), or at the folder that holds it. Each file is a pickled dict with bytes keys: ``b"data"``, a
uint8 array (N, 3072) of rows ``R(32×32) G(32×32) B(32×32)``, and ``b"labels"`` (CIFAR-10) or
``b"fine_labels"`` (CIFAR-100, whose 100 fine classes are used).

Safety: unpickling can run arbitrary code, so only files the user points to are read, and through
:class:`RestrictedUnpickler`, which builds nothing but numpy arrays and plain Python containers and
refuses any other global a pickle asks for (``os.system``, ``builtins.eval``, ...).
"""

from __future__ import annotations

import builtins
import codecs
import pickle
from pathlib import Path

import numpy as np

from .splits import DatasetError, ImageSplits

try:   # numpy >= 2 keeps these in numpy._core; pickles made by numpy 1.x name numpy.core
    from numpy._core import multiarray as _multiarray, numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray, numeric as _numeric

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR100_FOLDER = "cifar-100-python"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_IMAGE_SHAPE = (3, 32, 32)

_SAFE_BUILTINS = ("bytes", "bytearray", "str", "int", "float", "complex", "bool",
                  "list", "tuple", "dict", "set", "frozenset", "slice", "range")


def _allowed_globals() -> dict[tuple[str, str], object]:
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,   # protocol-2 pickles store bytes this way
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = _multiarray._reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = _multiarray.scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = _numeric._frombuffer
    for module in ("builtins", "__builtin__"):
        for name in _SAFE_BUILTINS:
            allowed[(module, name)] = getattr(builtins, name)
    return allowed


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside :class:`RestrictedUnpickler`'s allow list."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only reconstructs numpy arrays, numpy scalars and builtin containers.

    Every global a pickle refers to goes through :meth:`find_class`; anything outside the allow list
    raises :class:`RefusedGlobal` before it is imported, let alone called.
    """

    _ALLOWED = _allowed_globals()

    def find_class(self, module: str, name: str):
        """The allowed object named ``module.name``; refuse any other."""
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"global {module}.{name} is not allowed") from None


def read_pickle(path: Path, what: str):
    """Read one CIFAR pickle with :class:`RestrictedUnpickler` (``encoding="bytes"``, as the files come from Python 2)."""
    try:
        with open(path, "rb") as stream:
            return RestrictedUnpickler(stream, encoding="bytes").load()
    except RefusedGlobal as error:
        raise DatasetError(f"{what} file {path}: refused to load it: {error} (a CIFAR file holds only numpy arrays and lists)") from None
    except Exception:   # a damaged pickle can fail in many ways; all mean "not a CIFAR file"
        raise DatasetError(f"{what} file {path}: not a readable CIFAR pickle (damaged, cut short, or another "
                           "kind of file)") from None


def find_folder(path: str | Path, folder_name: str, what: str) -> Path:
    """``path`` itself if it holds the dataset's files, else ``path / folder_name`` if that exists."""
    root = Path(path).expanduser()
    if not root.exists():
        raise DatasetError(f"{what} folder {root}: does not exist (expected the folder {folder_name} or its parent)")
    if not root.is_dir():
        raise DatasetError(f"{what} folder {root}: is not a folder (expected the folder {folder_name} or its parent)")
    child = root / folder_name
    if root.name != folder_name and child.is_dir():
        return child
    return root


def _require_files(folder: Path, names: tuple[str, ...], what: str, expected: str) -> None:
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise DatasetError(f"{what} folder {folder}: expected files {expected} (the python version from the CIFAR site); missing: {', '.join(missing)}")


def _images_and_labels(batch, path: Path, what: str, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Check one unpickled batch and return uint8 images (N, 3, 32, 32) and int64 labels (N,)."""
    expected = f"a dict with b'data' (N×3072 uint8) and {label_key!r} (N labels in 0..{num_classes - 1})"
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise DatasetError(f"{what} file {path}: expected {expected}")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise DatasetError(f"{what} file {path}: expected {expected}; b'data' is {dtype} of shape {shape}")
    try:
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (TypeError, ValueError):
        raise DatasetError(f"{what} file {path}: expected {expected}; {label_key!r} is not a list of integers") from None
    if labels.shape != (len(data),):
        raise DatasetError(f"{what} file {path}: expected {expected}; got {len(data)} images but {labels.size} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(f"{what} file {path}: expected {expected}; labels range over {labels.min()}..{labels.max()}")
    return data.reshape(-1, *CIFAR_IMAGE_SHAPE), labels


def _class_names(meta_path: Path, key: bytes, what: str, num_classes: int) -> list[str]:
    """Class names from the meta file; ``class_0`` ... if it is absent (it is optional)."""
    if not meta_path.is_file():
        return [f"class_{i}" for i in range(num_classes)]
    meta = read_pickle(meta_path, what)
    names = meta.get(key) if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != num_classes:
        raise DatasetError(f"{what} file {meta_path}: expected a dict with {key!r}, a list of {num_classes} class names")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


def load_cifar10(path: str | Path) -> ImageSplits:
    """CIFAR-10: 50,000 training and 10,000 test images of 10 classes, from ``cifar-10-batches-py`` or its parent."""
    what = "CIFAR-10"
    expected = "data_batch_1..5 and test_batch"
    folder = find_folder(path, CIFAR10_FOLDER, what)
    _require_files(folder, CIFAR10_TRAIN_FILES + ("test_batch",), what, expected)
    train = [_images_and_labels(read_pickle(folder / name, what), folder / name, what, b"labels", 10)
             for name in CIFAR10_TRAIN_FILES]
    test_images, test_labels = _images_and_labels(read_pickle(folder / "test_batch", what), folder / "test_batch", what, b"labels", 10)
    return ImageSplits(
        train_images=np.concatenate([images for images, _ in train]),
        train_labels=np.concatenate([labels for _, labels in train]),
        test_images=test_images,
        test_labels=test_labels,
        class_names=_class_names(folder / "batches.meta", b"label_names", what, 10),
    )


def load_cifar100(path: str | Path) -> ImageSplits:
    """CIFAR-100 (fine labels): 50,000 training and 10,000 test images of 100 classes, from ``cifar-100-python`` or its parent."""
    what = "CIFAR-100"
    expected = "train and test"
    folder = find_folder(path, CIFAR100_FOLDER, what)
    _require_files(folder, ("train", "test"), what, expected)
    train_images, train_labels = _images_and_labels(read_pickle(folder / "train", what), folder / "train", what, b"fine_labels", 100)
    test_images, test_labels = _images_and_labels(read_pickle(folder / "test", what), folder / "test", what, b"fine_labels", 100)
    return ImageSplits(train_images, train_labels, test_images, test_labels,
                       _class_names(folder / "meta", b"fine_label_names", what, 100))


def check_cifar_folder(name: str, path: str | Path) -> Path:
    """Check, without reading them, that the files of ``cifar10``/``cifar100`` are there; return their folder."""
    if name == "cifar10":
        folder = find_folder(path, CIFAR10_FOLDER, "CIFAR-10")
        _require_files(folder, CIFAR10_TRAIN_FILES + ("test_batch",), "CIFAR-10", "data_batch_1..5 and test_batch")
    else:
        folder = find_folder(path, CIFAR100_FOLDER, "CIFAR-100")
        _require_files(folder, ("train", "test"), "CIFAR-100", "train and test")
    return folder
