"""The procedural demo dataset and the DataBundle built from it."""

import time

import numpy as np
import pytest
import torch

from featdistill_core.data import DATASETS, DatasetError, load_dataset
from featdistill_core.data.demo import CLASS_NAMES, SHAPES, load_demo, make_demo_images
from featdistill_core.data.transforms import channel_mean_std


def test_shapes_dtypes_and_balanced_labels():
    demo = make_demo_images(300, seed=0)
    assert demo.images.shape == (300, 3, 32, 32) and demo.images.dtype == np.uint8
    assert demo.labels.shape == (300,) and demo.labels.dtype == np.int64
    assert demo.masks.shape == (300, 32, 32) and demo.masks.dtype == bool
    assert np.bincount(demo.labels, minlength=10).tolist() == [30] * 10
    assert len(set(CLASS_NAMES)) == len(CLASS_NAMES) == len(SHAPES) == 10


def test_same_seed_gives_identical_bytes_and_another_seed_differs():
    a = make_demo_images(200, seed=7)
    b = make_demo_images(200, seed=7)
    c = make_demo_images(200, seed=8)
    assert a.images.tobytes() == b.images.tobytes()
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.masks, b.masks)
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.labels, c.labels)


def test_train_and_test_splits_come_from_different_streams():
    splits = load_demo(100, 100, seed=0)
    assert not np.array_equal(splits.train_images, splits.test_images)
    assert splits.class_names == list(CLASS_NAMES)


def test_the_object_mask_covers_a_uniformly_coloured_shape():
    demo = make_demo_images(200, seed=1)
    areas = demo.masks.sum(axis=(1, 2))
    assert areas.min() >= 12                     # never a speck: at least radius 5.5 pixels
    assert areas.max() <= 32 * 32 * 0.5
    # the object is drawn last and opaque: inside the mask only its colour plus pixel noise (sd 0.04)
    spreads = []
    for image, mask in zip(demo.images, demo.masks):
        inside = image[:, mask].astype(np.float64) / 255      # (3, K)
        spreads.append(inside.std(axis=1).max())
    assert np.median(spreads) < 0.06
    # and it stands out from the rest of the image
    contrasts = []
    for image, mask in zip(demo.images, demo.masks):
        inside = image[:, mask].astype(np.float64).mean(axis=1) / 255
        outside = image[:, ~mask].astype(np.float64).mean(axis=1) / 255
        contrasts.append(np.abs(inside - outside).max())
    assert np.median(contrasts) > 0.2


def test_the_ten_shapes_are_distinct():
    coords = np.linspace(-1.2, 1.2, 97, dtype=np.float32)
    v, u = np.meshgrid(coords, coords, indexing="ij")
    masks = [shape(u, v) for shape in SHAPES]
    for i, a in enumerate(masks):
        assert a.sum() > 0.05 * a.size, CLASS_NAMES[i]
        for j in range(i + 1, len(masks)):
            b = masks[j]
            iou = (a & b).sum() / (a | b).sum()
            assert iou < 0.85, (CLASS_NAMES[i], CLASS_NAMES[j], iou)   # circle/square, the closest pair: 0.79


def test_other_image_sizes_scale_the_drawing():
    demo = make_demo_images(50, seed=0, image_size=48)
    assert demo.images.shape == (50, 3, 48, 48)
    small = make_demo_images(50, seed=0, image_size=32)
    ratio = demo.masks.sum() / small.masks.sum()
    assert 1.8 < ratio < 2.7                    # area grows like (48 / 32) ** 2 = 2.25


def test_ten_thousand_images_are_quick():
    make_demo_images(100, seed=0)               # warm up imports and caches
    start = time.process_time()
    make_demo_images(10_000, seed=0)
    assert time.process_time() - start < 3.0    # about 0.5 s of CPU on a laptop core


def test_bad_demo_sizes_are_rejected():
    with pytest.raises(DatasetError, match="needs at least one train and one test image; got 0 and 5"):
        load_demo(0, 5)
    with pytest.raises(DatasetError, match="image_size must be at least 8; got 4"):
        make_demo_images(3, image_size=4)
    with pytest.raises(DatasetError, match="dataset demo: seed must be a non-negative integer; got -1"):
        load_dataset("demo", seed=-1)


# --- DataBundle, via load_dataset("demo") -------------------------------------------------------------

@pytest.fixture(scope="module")
def bundle():
    return load_dataset("demo", demo_train=300, demo_test=120, seed=0)


def test_load_dataset_demo_builds_a_bundle(bundle):
    assert bundle.name == "demo" and bundle.num_classes == 10
    assert bundle.class_names == list(CLASS_NAMES)
    assert bundle.image_shape == (3, 32, 32)
    assert bundle.train_images.dtype == torch.uint8 and bundle.train_images.shape == (300, 3, 32, 32)
    assert bundle.test_labels.dtype == torch.int64 and bundle.test_labels.shape == (120,)
    mean, std = channel_mean_std(bundle.train_images.numpy())
    assert bundle.mean == pytest.approx(mean) and bundle.std == pytest.approx(std)
    again = load_dataset("demo", demo_train=300, demo_test=120, seed=0)
    assert torch.equal(again.train_images, bundle.train_images)


def test_bundle_loaders(bundle):
    train = bundle.train_loader(64, seed=1)
    assert len(train) == 300 // 64 and train.shuffle and train.augment and train.drop_last
    x, y, _ = next(iter(train))
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    test = bundle.test_loader(50)
    assert len(test) == 3 and not test.shuffle and not test.augment
    labels = torch.cat([y for _, y, _ in test])
    assert torch.equal(labels, bundle.test_labels)


def test_probe_images_show_one_image_per_class_first(bundle):
    normalised, labels, display = bundle.probe_images(8, seed=0)
    assert normalised.shape == (8, 3, 32, 32) and normalised.dtype == torch.float32
    assert len(set(labels)) == 8
    assert display.shape == (8, 32, 32, 3) and display.dtype == np.float32
    assert 0.0 <= display.min() and display.max() <= 1.0
    index = bundle.probe_indices(8, seed=0)
    assert labels == bundle.test_labels[index].tolist()
    expected_display = bundle.test_images[index].permute(0, 2, 3, 1).numpy() / 255
    np.testing.assert_allclose(display, expected_display, atol=1e-6)
    mean = torch.tensor(bundle.mean).view(1, 3, 1, 1)
    std = torch.tensor(bundle.std).view(1, 3, 1, 1)
    torch.testing.assert_close(normalised, (bundle.test_images[index].float() / 255 - mean) / std, atol=1e-5, rtol=0)
    # deterministic, and with more probes than classes every class appears and the rest fill in
    assert bundle.probe_images(8, seed=0)[1] == labels
    _, many, _ = bundle.probe_images(14, seed=0)
    assert len(many) == 14 and set(many) == set(range(10)) and len(set(bundle.probe_indices(14))) == 14


def test_unknown_dataset_names_the_allowed_ones():
    with pytest.raises(DatasetError, match="unknown dataset 'mnist'; choose one of demo, cifar10, cifar100, imagefolder"):
        load_dataset("mnist")
    assert DATASETS == ("demo", "cifar10", "cifar100", "imagefolder")
