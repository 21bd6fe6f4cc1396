"""BatchLoader and the batch transforms: batching, determinism, crop/flip augmentation, normalisation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from featdistill_core.data.loader import BatchLoader
from featdistill_core.data.transforms import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    channel_mean_std,
    denormalize,
    normalize,
    random_crop_flip,
)

MEAN = (0.25, 0.5, 0.75)
STD = (0.5, 0.25, 0.125)


def _data(n=50, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % 7
    return images, labels


def _batches(loader):
    return [(x.clone(), y.clone()) for x, y, _ in loader]


def test_len_counts_batches_with_and_without_drop_last():
    images, labels = _data(50)
    assert len(BatchLoader(images, labels, 16, mean=MEAN, std=STD)) == 4
    assert len(BatchLoader(images, labels, 16, mean=MEAN, std=STD, drop_last=True)) == 3
    assert len(BatchLoader(images, labels, 10, mean=MEAN, std=STD, drop_last=True)) == 5
    sizes = [len(y) for _, y, _ in BatchLoader(images, labels, 16, mean=MEAN, std=STD)]
    assert sizes == [16, 16, 16, 2]
    sizes = [len(y) for _, y, _ in BatchLoader(images, labels, 16, mean=MEAN, std=STD, drop_last=True, shuffle=True)]
    assert sizes == [16, 16, 16]


def test_unshuffled_batches_are_the_images_in_order_normalised_with_the_given_mean_and_std():
    images, labels = _data(20)
    loader = BatchLoader(images, labels, 8, mean=MEAN, std=STD)
    x, y, _ = next(iter(loader))
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    expected = (images[:8].double() / 255.0 - torch.tensor(MEAN).double().view(1, 3, 1, 1)) / torch.tensor(STD).double().view(1, 3, 1, 1)
    torch.testing.assert_close(x.double(), expected, atol=1e-5, rtol=0)
    assert torch.equal(y, labels[:8])


def test_shuffled_epoch_visits_every_image_once():
    images, labels = _data(48)
    loader = BatchLoader(images, torch.arange(48), 16, shuffle=True, mean=MEAN, std=STD, seed=3)
    seen = torch.cat([y for _, y, _ in loader])
    assert sorted(seen.tolist()) == list(range(48))
    assert seen.tolist() != list(range(48))          # actually shuffled


def test_same_seed_gives_identical_epochs_and_each_epoch_differs():
    images, labels = _data(40)

    def make(seed):
        return BatchLoader(images, labels, 8, shuffle=True, augment=True, mean=MEAN, std=STD, seed=seed)

    a, b = make(5), make(5)
    a1, a2 = _batches(a), _batches(a)
    b1, b2 = _batches(b), _batches(b)
    for (xa, ya), (xb, yb) in zip(a1 + a2, b1 + b2):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a1[0][0], a2[0][0])       # a new permutation and augmentation per epoch
    c1 = _batches(make(6))
    assert not torch.equal(a1[0][0], c1[0][0])


def test_an_epoch_does_not_depend_on_how_much_of_the_previous_one_was_read():
    images, labels = _data(40)
    full = BatchLoader(images, labels, 8, shuffle=True, augment=True, mean=MEAN, std=STD, seed=1)
    _batches(full)
    second_full = _batches(full)
    partial = BatchLoader(images, labels, 8, shuffle=True, augment=True, mean=MEAN, std=STD, seed=1)
    next(iter(partial))                               # epoch 0 abandoned after one batch
    second_partial = _batches(partial)
    resumed = BatchLoader(images, labels, 8, shuffle=True, augment=True, mean=MEAN, std=STD, seed=1)
    resumed.set_epoch(1)
    second_resumed = _batches(resumed)
    for (x1, y1), (x2, y2), (x3, y3) in zip(second_full, second_partial, second_resumed):
        assert torch.equal(x1, x2) and torch.equal(x1, x3) and torch.equal(y1, y3)


def _crop_flip_reference(image, padding):
    """Every (dy, dx, flipped) crop of the zero-padded image, computed one by one."""
    c, h, w = image.shape
    padded = F.pad(image, (padding,) * 4)
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[:, dy:dy + h, dx:dx + w]
            yield dy, dx, False, crop
            yield dy, dx, True, crop.flip(-1)


def test_random_crop_flip_output_is_a_padded_crop_possibly_mirrored():
    images, _ = _data(24, size=10, seed=1)
    out = random_crop_flip(images, padding=4, generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    flips = set()
    for image, augmented in zip(images, out):
        matches = [(dy, dx, flipped) for dy, dx, flipped, crop in _crop_flip_reference(image, 4) if torch.equal(crop, augmented)]
        assert matches, "augmented image is not a crop of the padded image"
        flips.add(matches[0][2])
    assert flips == {False, True}


def test_a_single_bright_pixel_moves_at_most_four_pixels_or_mirrors():
    size, row, col = 16, 5, 3
    images = torch.zeros(400, 3, size, size, dtype=torch.uint8)
    images[:, :, row, col] = 255
    out = random_crop_flip(images, padding=4, generator=torch.Generator().manual_seed(1))
    shifts_y, shifts_x, mirrored = [], [], 0
    for augmented in out:
        bright = torch.nonzero(augmented[0] == 255)
        assert len(bright) <= 1 and int(augmented.sum()) == 255 * 3 * len(bright)
        if len(bright) == 0:
            continue                                  # shifted out of the window
        r, c = bright[0].tolist()
        assert abs(r - row) <= 4
        direct, mirror = c - col, (size - 1 - c) - col
        assert abs(direct) <= 4 or abs(mirror) <= 4
        if abs(direct) > 4:
            mirrored += 1
        shifts_y.append(r - row)
        shifts_x.append(direct if abs(direct) <= 4 else mirror)
    assert min(shifts_y) == -4 and max(shifts_y) == 4
    assert min(shifts_x) == -3 and max(shifts_x) == 4     # col 3 can move at most 3 left (else it leaves)
    assert 100 < mirrored < 300                           # about half mirrored


def test_random_crop_flip_is_reproducible_with_a_seeded_generator():
    images, _ = _data(16)
    a = random_crop_flip(images, generator=torch.Generator().manual_seed(9))
    b = random_crop_flip(images, generator=torch.Generator().manual_seed(9))
    c = random_crop_flip(images, generator=torch.Generator().manual_seed(10))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augmented_loader_batches_are_crops_of_the_loaded_images():
    images, labels = _data(8, size=8)
    loader = BatchLoader(images, torch.arange(8), 8, shuffle=True, augment=True, mean=MEAN, std=STD, seed=2)
    x, y, _ = next(iter(loader))
    back = torch.round(denormalize(x, MEAN, STD) * 255).to(torch.uint8)
    zero = torch.round(denormalize(normalize(torch.zeros(1, 3, 1, 1, dtype=torch.uint8),
                                             torch.tensor(MEAN), torch.tensor(STD)), MEAN, STD) * 255)
    assert int(zero.max()) == 0
    for augmented, index in zip(back, y):
        assert any(torch.equal(crop, augmented) for *_, crop in _crop_flip_reference(images[index], 4))


def test_normalize_uses_the_cifar_statistics_and_denormalize_inverts_it():
    images = torch.full((2, 3, 4, 4), 128, dtype=torch.uint8)
    out = normalize(images, torch.tensor(CIFAR10_MEAN), torch.tensor(CIFAR10_STD))
    for channel in range(3):
        expected = (128 / 255 - CIFAR10_MEAN[channel]) / CIFAR10_STD[channel]
        assert torch.allclose(out[:, channel], torch.tensor(expected), atol=1e-6)
    images = torch.randint(0, 256, (3, 3, 5, 5), dtype=torch.uint8)
    back = denormalize(normalize(images, torch.tensor(MEAN), torch.tensor(STD)), MEAN, STD)
    torch.testing.assert_close(back, images.float() / 255, atol=1e-6, rtol=0)


def test_channel_mean_std_matches_numpy_over_all_pixels():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (37, 3, 6, 5), dtype=np.uint8)
    images[:, 2] //= 4                              # make the channels differ
    mean, std = channel_mean_std(images, chunk=8)   # several chunks
    x = images.astype(np.float64) / 255
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), atol=1e-12)
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3)), atol=1e-12)


def test_loader_rejects_bad_arguments_with_clear_messages():
    images, labels = _data(10)
    with pytest.raises(ValueError, match="batch_size must be a positive integer; got 0"):
        BatchLoader(images, labels, 0, mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="batch_size 16 is larger than the 10 images"):
        BatchLoader(images, labels, 16, mean=MEAN, std=STD, drop_last=True)
    with pytest.raises(ValueError, match="expects uint8 images"):
        BatchLoader(images.float(), labels, 4, mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="10 images but labels of shape \\(9,\\)"):
        BatchLoader(images, labels[:9], 4, mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="seed must be a non-negative integer; got -3"):
        BatchLoader(images, labels, 4, mean=MEAN, std=STD, seed=-3)
    with pytest.raises(ValueError, match="one value per channel"):
        BatchLoader(images, labels, 4, mean=(0.5,), std=(0.5,))
