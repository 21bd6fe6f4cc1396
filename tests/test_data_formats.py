"""CIFAR python-version folders and image folders, made small on disk by the tests themselves."""

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from featdistill_core.data import DatasetError, load_dataset
from featdistill_core.data.cifar import load_cifar10, load_cifar100
from featdistill_core.data.imagefolder import load_image_folder
from featdistill_core.data.transforms import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _dump(path, obj, protocol=pickle.DEFAULT_PROTOCOL):
    with open(path, "wb") as stream:
        pickle.dump(obj, stream, protocol=protocol)


def _make_cifar10(root, per_batch=3, protocol=pickle.DEFAULT_PROTOCOL, skip=()):
    """A tiny cifar-10-batches-py folder; returns {file name: (data, labels)}."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        if name in skip:
            continue
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(per_batch)]
        _dump(folder / name, {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                              b"filenames": [b"x.png"] * per_batch}, protocol)
        written[name] = (data, labels)
    _dump(folder / "batches.meta", {b"label_names": [n.encode() for n in CIFAR10_NAMES],
                                    b"num_cases_per_batch": per_batch, b"num_vis": 3072}, protocol)
    return folder, written


def _make_cifar100(root, count=4):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    written = {}
    for name in ("train", "test"):
        data = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, count).tolist()
        _dump(folder / name, {b"filenames": [b"x.png"] * count, b"batch_label": name.encode(),
                              b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine], b"data": data})
        written[name] = (data, fine)
    _dump(folder / "meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})
    return folder, written


def _pixel(data_row, channel, y, x):
    """The CIFAR row layout: 1024 red values, 1024 green, 1024 blue, each row-major over 32×32."""
    return data_row[channel * 1024 + y * 32 + x]


# --- CIFAR ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL])
def test_cifar10_loads_from_the_folder_and_from_its_parent(tmp_path, protocol):
    folder, written = _make_cifar10(tmp_path, protocol=protocol)
    for path in (folder, tmp_path):
        splits = load_cifar10(path)
        assert splits.train_images.shape == (15, 3, 32, 32) and splits.train_images.dtype == np.uint8
        assert splits.test_images.shape == (3, 3, 32, 32)
        assert splits.class_names == CIFAR10_NAMES
        expected_train_labels = sum((written[f"data_batch_{k}"][1] for k in range(1, 6)), [])
        assert splits.train_labels.tolist() == expected_train_labels
        assert splits.test_labels.tolist() == written["test_batch"][1]
        row = written["data_batch_2"][0][1]               # second image of the second batch = train image 4
        for channel, y, x in [(0, 0, 0), (1, 5, 7), (2, 31, 30)]:
            assert splits.train_images[4, channel, y, x] == _pixel(row, channel, y, x)


def test_cifar100_uses_the_fine_labels(tmp_path):
    folder, written = _make_cifar100(tmp_path)
    splits = load_cifar100(tmp_path)
    assert splits.train_labels.tolist() == written["train"][1]
    assert splits.test_labels.tolist() == written["test"][1]
    assert len(splits.class_names) == 100 and splits.class_names[7] == "fine7"
    assert splits.test_images[2, 1, 3, 4] == _pixel(written["test"][0][2], 1, 3, 4)


def test_load_dataset_gives_cifar_bundles_with_the_literature_statistics(tmp_path):
    _make_cifar10(tmp_path / "a")
    _make_cifar100(tmp_path / "b")
    c10 = load_dataset("cifar10", str(tmp_path / "a"))
    assert (c10.name, c10.num_classes, c10.mean, c10.std) == ("cifar10", 10, CIFAR10_MEAN, CIFAR10_STD)
    assert c10.train_images.dtype == torch.uint8 and c10.train_labels.dtype == torch.int64
    c100 = load_dataset("cifar100", str(tmp_path / "b"))
    assert (c100.num_classes, c100.mean, c100.std) == (100, CIFAR100_MEAN, CIFAR100_STD)
    x, _, _ = next(iter(c10.test_loader(3)))
    expected = (c10.test_images.float() / 255 - torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)) / torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(x, expected, atol=1e-5, rtol=0)


def test_missing_cifar_files_are_named(tmp_path):
    folder, _ = _make_cifar10(tmp_path, skip=("test_batch", "data_batch_3"))
    with pytest.raises(DatasetError) as error:
        load_cifar10(tmp_path)
    message = str(error.value)
    assert message == (f"CIFAR-10 folder {folder}: expected files data_batch_1..5 and test_batch "
                       "(the python version from the CIFAR site); missing: data_batch_3, test_batch")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="CIFAR-100 folder .*empty: expected files train and test .*missing: train, test"):
        load_cifar100(empty)
    with pytest.raises(DatasetError, match="CIFAR-10 folder .*nowhere: does not exist"):
        load_cifar10(tmp_path / "nowhere")


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_a_malicious_pickle_is_refused_and_never_runs(tmp_path):
    folder, _ = _make_cifar10(tmp_path)
    target = tmp_path / "pwned"
    _dump(folder / "data_batch_1", {b"data": _Exploit(str(target)), b"labels": []})
    with pytest.raises(DatasetError, match=r"CIFAR-10 file .*data_batch_1: refused to load it: global (posix|nt)\.mkdir is not allowed"):
        load_cifar10(folder)
    assert not target.exists()
    _dump(folder / "data_batch_1", {b"data": eval, b"labels": []})
    with pytest.raises(DatasetError, match="global builtins.eval is not allowed"):
        load_cifar10(folder)


def test_malformed_cifar_files_get_one_line_errors(tmp_path):
    folder, _ = _make_cifar10(tmp_path)
    _dump(folder / "test_batch", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DatasetError, match=r"test_batch: expected a dict with b'data' \(N×3072 uint8\).*of shape \(2, 100\)"):
        load_cifar10(folder)
    _dump(folder / "test_batch", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]})
    with pytest.raises(DatasetError, match="got 2 images but 1 labels"):
        load_cifar10(folder)
    _dump(folder / "test_batch", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    with pytest.raises(DatasetError, match=r"labels range over 0\.\.10"):
        load_cifar10(folder)
    (folder / "test_batch").write_bytes(b"this is not a pickle")
    with pytest.raises(DatasetError, match="test_batch: not a readable CIFAR pickle") as error:
        load_cifar10(folder)
    assert "\n" not in str(error.value)


def test_cifar_needs_a_path_and_size_32(tmp_path):
    with pytest.raises(DatasetError, match="dataset cifar10 needs a path: the folder cifar-10-batches-py"):
        load_dataset("cifar10")
    _make_cifar10(tmp_path)
    with pytest.raises(DatasetError, match="CIFAR images are 32×32, so image_size must be 32; got 64"):
        load_dataset("cifar10", str(tmp_path), image_size=64)


# --- image folders -------------------------------------------------------------------------------

COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "emu": (30, 30, 200)}


def _make_image_folder(root, per_class=10, extensions=(".png",)):
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            ext = extensions[i % len(extensions)]
            # a non-square image of one colour, lighter for higher i, so images are distinguishable
            pixel = tuple(min(255, c + 3 * i) for c in colour)
            Image.new("RGB", (40, 24), pixel).save(root / name / f"img{i:02d}{ext}")
    return root


def test_image_folder_labels_sorted_class_folders_and_resizes(tmp_path):
    _make_image_folder(tmp_path, extensions=(".png", ".JPG", ".bmp"))
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    splits = load_image_folder(tmp_path, image_size=16)
    assert splits.class_names == ["cat", "dog", "emu"]
    assert splits.train_images.shape == (27, 3, 16, 16) and splits.test_images.shape == (3, 3, 16, 16)
    assert sorted(splits.test_labels.tolist()) == [0, 1, 2]            # 10% of each class
    for images, labels in ((splits.train_images, splits.train_labels), (splits.test_images, splits.test_labels)):
        for image, label in zip(images, labels):
            colour = np.array(COLOURS[splits.class_names[label]])
            # solid colour survives the resize (jpg within a few levels, lighter by up to 27)
            assert np.all(np.abs(image.reshape(3, -1).mean(axis=1) - colour) <= 32)


def test_image_folder_split_is_deterministic_and_no_image_is_in_both(tmp_path):
    _make_image_folder(tmp_path)
    a = load_image_folder(tmp_path)
    b = load_image_folder(tmp_path)
    assert np.array_equal(a.test_images, b.test_images)
    train = {img.tobytes() for img in a.train_images}
    assert all(img.tobytes() not in train for img in a.test_images)


def test_image_folder_with_train_and_test_subfolders_uses_them(tmp_path):
    _make_image_folder(tmp_path / "train", per_class=4)
    _make_image_folder(tmp_path / "test", per_class=2)
    splits = load_image_folder(tmp_path)
    assert splits.class_names == ["cat", "dog", "emu"]
    assert len(splits.train_labels) == 12 and splits.test_labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_load_dataset_imagefolder_normalises_with_its_training_statistics(tmp_path):
    _make_image_folder(tmp_path)
    bundle = load_dataset("imagefolder", str(tmp_path), image_size=8)
    assert bundle.image_shape == (3, 8, 8) and bundle.num_classes == 3
    pixels = bundle.train_images.numpy().astype(np.float64) / 255
    assert bundle.mean == pytest.approx(tuple(pixels.mean(axis=(0, 2, 3))))
    assert bundle.std == pytest.approx(tuple(pixels.std(axis=(0, 2, 3))))


def test_image_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="image folder .*missing: does not exist"):
        load_image_folder(tmp_path / "missing")
    empty = tmp_path / "empty"
    (empty / "cat").mkdir(parents=True)
    (empty / "cat" / "readme.txt").write_text("no images")
    with pytest.raises(DatasetError, match=f"^image folder {empty} has no class sub-folders with images"):
        load_image_folder(empty)
    one = tmp_path / "one"
    (one / "cat").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(one / "cat" / "a.png")
    with pytest.raises(DatasetError, match=r"only one class sub-folder with images \(cat\)"):
        load_image_folder(one)
    half = tmp_path / "half"
    _make_image_folder(half / "train", per_class=2)
    with pytest.raises(DatasetError, match="has train/ but no test/"):
        load_image_folder(half)
    with pytest.raises(DatasetError, match="dataset imagefolder needs a path"):
        load_dataset("imagefolder")


def test_an_unreadable_image_names_the_file(tmp_path):
    _make_image_folder(tmp_path, per_class=3)
    broken = tmp_path / "dog" / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match=f"image file {broken}: cannot be read as an image") as error:
        load_image_folder(tmp_path)
    assert "\n" not in str(error.value)
