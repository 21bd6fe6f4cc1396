"""Streamed image folders: the epoch sampler (sharded by a fake world size), the ImageNet crops,
read_image, the stream loader's batches and failures, the automatic loader choice, a streamed run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import featdistill_core.data as data_module
from featdistill_core.config import ConfigError, DataConfig, checked
from featdistill_core.data import (
    Batch, DatasetError, DatasetInfo, StreamBundle, StreamLoader, choose_loader, estimated_bytes, load_dataset,
)
from featdistill_core.data.crops import eval_box, random_resized_box, sample_rng
from featdistill_core.data.imagefolder import centre_square, image_folder_files, load_image_folder, read_image
from featdistill_core.data.loader import BatchLoader
from featdistill_core.data.stream import EpochBatchSampler, ImageFileDataset, rank_share, resolve_workers

from tests._tiny import tiny_config

CLASSES = ("ant", "bee", "cat")
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def make_jpeg_tree(root, train=8, test=3, seed=0):
    """``root/train/CLASS/*.JPEG`` and ``root/val/CLASS/*.JPEG`` (the ImageNet layout): noise images
    of varied sizes and aspect ratios, tinted by class."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", test)):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                h, w = int(rng.integers(24, 80)), int(rng.integers(24, 80))
                pixels = rng.integers(0, 160, (h, w, 3)).astype(np.uint8)
                pixels[..., c] += 90
                Image.fromarray(pixels).save(folder / f"n{c:02d}_{i:03d}.JPEG", quality=92)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_jpeg_tree(tmp_path_factory.mktemp("jpegs"))


def _files(tree):
    return image_folder_files(tree)


# ---- the sampler ---------------------------------------------------------------------------------

def test_one_rank_uses_the_in_memory_loaders_permutation():
    count, batch = 50, 8
    images = torch.zeros(count, 3, 4, 4, dtype=torch.uint8)
    memory = BatchLoader(images, torch.zeros(count, dtype=torch.long), batch, shuffle=True, mean=MEAN, std=STD,
                         seed=7, drop_last=True)
    sampler = EpochBatchSampler(count, batch, shuffle=True, seed=7, drop_last=True)
    for epoch in (0, 3):
        expected = [b.indices.tolist() for b in memory.epoch_batches(epoch)]
        assert [t.tolist() for t in sampler.rank_batches(epoch)] == expected
    assert len(sampler) == len(memory) and sampler.num_samples == memory.num_samples


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("drop_last", [True, False])
def test_ranks_together_see_each_one_process_batch_once(world, drop_last):
    count, batch, seed = 103, 12, 5
    single = [t.tolist() for t in EpochBatchSampler(count, batch, shuffle=True, seed=seed,
                                                    drop_last=drop_last).rank_batches(2)]
    ranks = [EpochBatchSampler(count, batch, shuffle=True, seed=seed, drop_last=drop_last, rank=r, world_size=world)
             for r in range(world)]
    per_rank = [[t.tolist() for t in s.rank_batches(2)] for s in ranks]
    for r, s in enumerate(ranks):
        assert len(per_rank[r]) == len(s)                              # len() is this rank's count
    if drop_last:
        assert len({len(batches) for batches in per_rank}) == 1         # same number of steps everywhere
    # step j: the ranks' shares, in rank order, are the one-process batch j
    for j, expected in enumerate(single):
        joined = [i for r in range(world) if j < len(per_rank[r]) for i in per_rank[r][j]]
        assert joined == expected
        sizes = [len(per_rank[r][j]) for r in range(world) if j < len(per_rank[r])]
        assert max(sizes) - min(sizes) <= 1
    seen = [i for batches in per_rank for b in batches for i in b]
    assert len(seen) == len(set(seen))                                 # nothing twice, nothing padded
    expected_total = (count // batch) * batch if drop_last else count
    assert len(seen) == expected_total == sum(s.num_samples for s in ranks)


def test_sampler_resumes_at_a_batch_and_yields_epoch_keys():
    sampler = EpochBatchSampler(40, 8, shuffle=True, seed=1, drop_last=True, rank=1, world_size=2)
    full = [t.tolist() for t in sampler.rank_batches(4)]
    assert [t.tolist() for t in sampler.rank_batches(4, start=3)] == full[3:]
    sampler.set_epoch(4, start=2)
    keys = list(sampler)
    assert keys == [[(i, 4) for i in b] for b in full[2:]]


def test_rank_share_and_sampler_arguments():
    assert [rank_share(10, r, 3) for r in range(3)] == [(0, 4), (4, 7), (7, 10)]
    assert [rank_share(2, r, 4) for r in range(4)] == [(0, 1), (1, 2), (2, 2), (2, 2)]
    with pytest.raises(ValueError, match="at least one image per rank"):
        EpochBatchSampler(10, 2, shuffle=False, world_size=4)
    with pytest.raises(ValueError, match="rank"):
        EpochBatchSampler(10, 4, shuffle=False, rank=2, world_size=2)
    with pytest.raises(ValueError, match="no batch"):
        EpochBatchSampler(3, 4, shuffle=False, drop_last=True)
    assert resolve_workers(0) == 0 and resolve_workers(3) == 3 and 0 <= resolve_workers(-1) <= 8
    with pytest.raises(ValueError, match="workers"):
        resolve_workers(-2)


# ---- crops and read_image ----------------------------------------------------------------------------

def test_random_resized_box_respects_scale_ratio_and_bounds():
    rng = np.random.default_rng(0)
    areas, ratios = [], []
    for _ in range(2000):
        left, top, right, bottom = random_resized_box(300, 200, rng)
        w, h = right - left, bottom - top
        assert 0 <= left and 0 <= top and right <= 300 and bottom <= 200 and w > 0 and h > 0
        areas.append(w * h / (300 * 200))
        ratios.append(w / h)
    assert 0.07 <= min(areas) and max(areas) <= 1.0
    assert min(ratios) >= 0.73 and max(ratios) <= 1.35          # 3/4 .. 4/3, up to rounding to pixels
    # the area is uniform in [0.08, 1] *given that the box fits*: compare with that, simulated directly
    sim = np.random.default_rng(1)
    area = 300 * 200 * sim.uniform(0.08, 1.0, 200_000)
    aspect = np.exp(sim.uniform(np.log(3 / 4), np.log(4 / 3), 200_000))
    w, h = np.round(np.sqrt(area * aspect)), np.round(np.sqrt(area / aspect))
    fits = (w <= 300) & (h <= 200)
    assert np.median(areas) == pytest.approx(np.median(w[fits] * h[fits] / (300 * 200)), abs=0.04)
    assert min(ratios) < 0.8 and max(ratios) > 1.25              # the whole ratio range is used


def test_random_resized_box_falls_back_to_a_centre_crop_at_the_nearest_ratio():
    # a 400x10 strip: no 3/4..4/3 box of >= 8 % of the area fits in ten draws
    left, top, right, bottom = random_resized_box(400, 10, np.random.default_rng(0))
    assert (bottom - top) == 10 and (right - left) == round(10 * 4 / 3)
    assert left == (400 - (right - left)) // 2


def test_eval_box_is_the_centred_square_of_seven_eighths_of_the_short_side():
    assert eval_box(256, 320) == pytest.approx((16.0, 48.0, 240.0, 272.0))
    assert centre_square(40, 24) == (8.0, 0.0, 32.0, 24.0)


def test_read_image_default_is_imageops_fit(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "a.png"
    Image.fromarray(rng.integers(0, 256, (30, 47, 3), dtype=np.uint8)).save(path)
    with Image.open(path) as image:
        expected = np.asarray(ImageOps.fit(image.convert("RGB"), (16, 16), method=Image.Resampling.BILINEAR))
    assert np.array_equal(read_image(path, 16), expected)


def test_read_image_decodes_large_jpegs_at_reduced_scale_without_visible_change(tmp_path):
    y, x = np.mgrid[0:800, 0:1200]
    pixels = np.stack([(x / 1200 * 255), (y / 800 * 255), ((x + y) % 256)], -1).astype(np.uint8)
    path = tmp_path / "big.jpg"
    Image.fromarray(pixels).save(path, quality=95)
    fast = read_image(path, 64).astype(int)
    with Image.open(path) as image:                    # the same crop, decoded at full size
        full = np.asarray(ImageOps.fit(image.convert("RGB"), (64, 64), method=Image.Resampling.BILINEAR)).astype(int)
    assert fast.shape == (64, 64, 3)
    assert np.abs(fast - full)[..., :2].mean() < 3     # the smooth channels agree within a few levels


def test_read_image_applies_the_exif_orientation_before_cropping(tmp_path):
    pixels = np.zeros((20, 60, 3), np.uint8)           # wide, with a bright left end
    pixels[:, :10] = 255
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6                                    # "rotate 90 clockwise to view"
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    # upright it is tall (20 wide, 60 high) with the bright end at the top
    top_box = read_image(path, 8, box=lambda w, h: (0, 0, w, 10))
    bottom_box = read_image(path, 8, box=lambda w, h: (0, h - 10, w, h))
    assert top_box.mean() > 200 and bottom_box.mean() < 50


def test_training_crops_depend_only_on_seed_epoch_and_index(tree):
    _, train, _ = _files(tree)
    data = ImageFileDataset(train, 16, augment=True, seed=3)
    again = ImageFileDataset(train, 16, augment=True, seed=3)
    assert np.array_equal(data[(5, 2)][0], again[(5, 2)][0])
    assert not np.array_equal(data[(5, 2)][0], data[(5, 3)][0])
    assert not np.array_equal(data[(5, 2)][0], ImageFileDataset(train, 16, augment=True, seed=4)[(5, 2)][0])
    plain = data.variant(augment=False)
    assert np.array_equal(plain[5][0], read_image(train[5][0], 16, box=eval_box))
    # the flip is drawn after the box from the same per-sample stream
    rng = sample_rng(3, 2, 5)
    box = random_resized_box(*Image.open(train[5][0]).size, rng)
    crop = read_image(train[5][0], 16, box=lambda w, h: box)
    assert np.array_equal(data[(5, 2)][0], crop[:, ::-1] if rng.random() < 0.5 else crop)


# ---- the loader --------------------------------------------------------------------------------------

def _stream(tree, workers=0, **kwargs):
    return load_dataset("imagefolder", str(tree), image_size=16, loader="stream", workers=workers, **kwargs)


def test_stream_bundle_has_the_bundle_interface(tree):
    bundle = _stream(tree)
    assert isinstance(bundle, StreamBundle) and bundle.loader == "stream"
    assert bundle.class_names == list(CLASSES) and bundle.num_classes == 3 and bundle.image_shape == (3, 16, 16)
    assert len(bundle.train_labels) == 24 and bundle.test_labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    loader = bundle.train_loader(5, seed=0)
    assert len(loader) == 4 and loader.num_samples == 20
    batches = list(loader.epoch_batches(0))
    assert len(batches) == 4
    for batch in batches:
        assert isinstance(batch, Batch)
        assert batch.images.shape == (5, 3, 16, 16) and batch.images.dtype == torch.float32
        assert batch.labels.dtype == torch.int64 and batch.indices.dtype == torch.int64
        assert torch.equal(batch.labels, bundle.train_labels[batch.indices])
    test = list(bundle.test_loader(4).epoch_batches(0))
    assert [len(b.labels) for b in test] == [4, 4, 1]
    assert torch.cat([b.indices for b in test]).tolist() == list(range(9))
    probe, labels, display = bundle.probe_images(3)
    assert probe.shape == (3, 3, 16, 16) and sorted(labels) == [0, 1, 2] and display.shape == (3, 16, 16, 3)
    # images normalised with the bundle's statistics, estimated from the training images
    pixels = np.stack([bundle.train_set.variant(augment=False).read(i) for i in range(24)]) / 255.0
    assert bundle.mean == pytest.approx(tuple(pixels.mean(axis=(0, 1, 2))), abs=1e-6)


def test_stream_epochs_are_reproducible_resumable_and_independent_of_workers(tree):
    bundle0, bundle2 = _stream(tree, workers=0), _stream(tree, workers=2)
    a, b = bundle0.train_loader(6, seed=1), bundle2.train_loader(6, seed=1)
    try:
        first = [x.images for x in a.epoch_batches(1)]
        assert all(torch.equal(x, y.images) for x, y in zip(first, b.epoch_batches(1)))
        assert all(torch.equal(x, y.images) for x, y in zip(first[2:], b.epoch_batches(1, start=2)))
        assert len(list(b.epoch_batches(1, start=2))) == 2
        other = [x.images for x in a.epoch_batches(2)]
        assert not torch.equal(first[0], other[0])
        # iteration continues the epoch sequence; set_epoch rewinds it
        a.set_epoch(1)
        assert torch.equal(next(iter(a)).images, first[0])
    finally:
        b.close()


def test_stream_loader_shards_by_rank(tree):
    bundle = _stream(tree)
    whole = [b.indices.tolist() for b in bundle.train_loader(6, seed=2).epoch_batches(0)]
    ranks = [bundle.train_loader(6, seed=2, rank=r, world_size=2) for r in range(2)]
    parts = [[b.indices.tolist() for b in r.epoch_batches(0)] for r in ranks]
    assert [p0 + p1 for p0, p1 in zip(*parts)] == whole
    assert all(r.num_samples == 12 for r in ranks)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_unreadable_file_stops_the_epoch_with_one_line_naming_it(tmp_path, workers):
    root = make_jpeg_tree(tmp_path / "tree", train=4, test=2)
    bundle = load_dataset("imagefolder", str(root), image_size=16, loader="stream", workers=workers)
    broken = root / "train" / "bee" / "n01_001.JPEG"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")        # broken after the folder was opened
    loader = bundle.train_loader(12, seed=0)
    try:
        with pytest.raises(DatasetError, match=f"image file {broken}: cannot be read as an image") as error:
            list(loader.epoch_batches(0))
        assert "\n" not in str(error.value)
    finally:
        loader.close()
    # opening the folder again reads it for the statistics and says the same
    with pytest.raises(DatasetError, match=f"image file {broken}"):
        load_dataset("imagefolder", str(root), image_size=16, loader="stream", workers=0)


def test_val_is_read_as_test_and_both_is_refused(tmp_path):
    root = make_jpeg_tree(tmp_path / "tree", train=3, test=2)
    splits = load_image_folder(root, image_size=8)
    assert len(splits.train_labels) == 9 and len(splits.test_labels) == 6
    (root / "test" / "ant").mkdir(parents=True)
    with pytest.raises(DatasetError, match="both test/ and val/"):
        load_image_folder(root)


# ---- the choice --------------------------------------------------------------------------------------

def test_the_loader_is_chosen_by_the_estimated_size():
    small = DatasetInfo(10, 50_000, 10_000)
    imagenet = DatasetInfo(1000, 1_281_167, 50_000)
    assert estimated_bytes(imagenet, 224) == 1_331_167 * 3 * 224 * 224
    assert choose_loader("imagefolder", "auto", small, 32) == "memory"
    assert choose_loader("imagefolder", "auto", imagenet, 224) == "stream"
    assert choose_loader("imagefolder", "memory", imagenet, 224) == "memory"
    assert choose_loader("cifar100", "auto", DatasetInfo(100, 10**9, 0), 32) == "memory"
    assert choose_loader("imagefolder", "stream", small, 32) == "stream"
    with pytest.raises(DatasetError, match="only imagefolder can stream"):
        choose_loader("cifar10", "stream", small, 32)


def test_auto_streams_a_folder_over_the_limit(tree, monkeypatch):
    assert load_dataset("imagefolder", str(tree), image_size=16).loader == "memory"
    monkeypatch.setattr(data_module, "MEMORY_LIMIT_BYTES", 33 * 3 * 16 * 16 - 1)
    assert load_dataset("imagefolder", str(tree), image_size=16, workers=0).loader == "stream"


def test_run_file_loader_options_are_checked(tmp_path):
    config = tiny_config(tmp_path)
    config.data.loader = "disk"
    config.data.workers = -3
    with pytest.raises(ConfigError) as error:
        checked(config)
    fields = {p.field for p in error.value.problems}
    assert {"data.loader", "data.workers"} <= fields
    config = tiny_config(tmp_path)
    config.data.loader = "stream"                    # the demo is generated in memory
    with pytest.raises(ConfigError, match="data.loader: only 'imagefolder' can be streamed"):
        checked(config)
    assert DataConfig().loader == "auto" and DataConfig().workers == -1


def test_a_run_trains_and_evaluates_on_a_streamed_folder(tmp_path, tree):
    from featdistill_core.trainer import Trainer
    from featdistill_core.validate import validate_run

    config = tiny_config(tmp_path)
    config.data = DataConfig(name="imagefolder", path=str(tree), image_size=32, loader="stream", workers=0)
    config.batch_size = 8
    run = validate_run(checked(config))
    assert run.data_loader == "stream" and run.data_bytes == 33 * 3 * 32 * 32
    trainer = Trainer(run)
    finished = trainer.run()
    assert isinstance(trainer.data, StreamBundle)
    assert not finished.stopped and 0.0 <= finished.metrics["student_test_acc"] <= 100.0
    assert (tmp_path / "runs").exists()


# ---- the in-memory loader augments on its device -----------------------------------------------------

def test_in_memory_augmentation_runs_on_the_loaders_device(monkeypatch):
    import featdistill_core.data.loader as loader_module

    seen = []
    real = loader_module.random_crop_flip

    def spy(images, **kwargs):
        seen.append(images.device.type)
        return real(images, **kwargs)

    monkeypatch.setattr(loader_module, "random_crop_flip", spy)
    images = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8)
    loader = BatchLoader(images, torch.zeros(12, dtype=torch.long), 4, shuffle=True, augment=True, mean=MEAN,
                         std=STD, device="meta")
    batches = list(loader.epoch_batches(0))
    assert seen == ["meta"] * 3 and all(b.images.device.type == "meta" for b in batches)


def test_in_memory_resume_skips_without_gathering_and_matches_a_full_pass():
    images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    loader = BatchLoader(images, torch.arange(40), 8, shuffle=True, augment=True, mean=MEAN, std=STD, seed=2)
    full = [b.images for b in loader.epoch_batches(1)]
    tail = [b.images for b in loader.epoch_batches(1, start=3)]
    assert len(tail) == 2 and all(torch.equal(a, b) for a, b in zip(full[3:], tail))
