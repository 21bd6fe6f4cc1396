"""An image folder's test split does not move: not with the seed, not with the folder's place;
only ``data.test_fraction`` changes it, and the validation, the sizes and the loader agree."""

import shutil

import numpy as np
import pytest
from PIL import Image

from featdistill_core.config import ConfigError, DataConfig, config_from_dict, load_config, save_config
from featdistill_core.data import dataset_info, image_folder_files, load_dataset
from featdistill_core.data.imagefolder import split_key, held_out_count
from featdistill_core.trainer import Trainer
from featdistill_core.validate import validate_run

from tests._tiny import tiny_config


def image_folder_split(root, **kwargs):
    """(training files, test files) as the loader splits them."""
    _, train, test = image_folder_files(root, **kwargs)
    return [f for f, _ in train], [f for f, _ in test]


def _folder(root, per_class=(23, 17, 40)):
    for c, count in enumerate(per_class):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(count):
            pixel = (c * 80, (i * 7) % 256, (i * 13) % 256)
            Image.new("RGB", (12, 12), pixel).save(root / f"class{c}" / f"img{i:03d}.png")
    return root


def test_the_seed_does_not_move_the_split(tmp_path):
    _folder(tmp_path)
    tests = {tuple(load_dataset("imagefolder", str(tmp_path), image_size=8, seed=s).test_images.numpy().ravel())
             for s in (0, 1, 7)}
    assert len(tests) == 1
    # the fix for the issue: seed 1's test images are never seed 0's training images
    zero = load_dataset("imagefolder", str(tmp_path), image_size=8, seed=0)
    one = load_dataset("imagefolder", str(tmp_path), image_size=8, seed=1)
    train0 = {img.numpy().tobytes() for img in zero.train_images}
    assert not any(img.numpy().tobytes() in train0 for img in one.test_images)


def test_the_split_is_the_hash_rule_and_does_not_depend_on_the_folders_place(tmp_path):
    root = _folder(tmp_path / "a")
    train, test = image_folder_split(root, test_fraction=0.25)
    for c, count in enumerate((23, 17, 40)):
        names = sorted(f"img{i:03d}.png" for i in range(count))
        expected = sorted(names, key=lambda n: split_key(f"class{c}", n))[:held_out_count(count, 0.25)]
        assert sorted(p.name for p in test if p.parent.name == f"class{c}") == sorted(expected)
    moved = tmp_path / "elsewhere" / "b"
    shutil.copytree(root, moved)
    _, test_moved = image_folder_split(moved, test_fraction=0.25)
    assert [p.relative_to(moved) for p in test_moved] == [p.relative_to(root) for p in test]
    assert not set(train) & set(test)


def test_adding_a_class_does_not_move_the_others(tmp_path):
    root = _folder(tmp_path, per_class=(20, 20))
    _, before = image_folder_split(root)
    (root / "zzz").mkdir()
    for i in range(9):
        Image.new("RGB", (4, 4), (i, i, i)).save(root / "zzz" / f"{i}.png")
    _, after = image_folder_split(root)
    assert [p for p in after if p.parent.name != "zzz"] == before


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.3, 0.5, 0.9])
def test_the_fraction_is_honoured_and_info_agrees_with_the_loader(tmp_path, fraction):
    _folder(tmp_path)
    bundle = load_dataset("imagefolder", str(tmp_path), image_size=8, test_fraction=fraction)
    expected_test = sum(held_out_count(n, fraction) for n in (23, 17, 40))
    assert len(bundle.test_labels) == expected_test
    for label, n in enumerate((23, 17, 40)):
        assert int((bundle.test_labels == label).sum()) == held_out_count(n, fraction)
    info = dataset_info("imagefolder", str(tmp_path), test_fraction=fraction, seed=5)
    assert (info.train_size, info.test_size) == (len(bundle.train_labels), len(bundle.test_labels))
    assert info.num_classes == bundle.num_classes == 3


def test_a_smaller_fraction_gives_a_subset_of_a_larger_ones_test_split(tmp_path):
    _folder(tmp_path)
    small = set(image_folder_split(tmp_path, test_fraction=0.1)[1])
    large = set(image_folder_split(tmp_path, test_fraction=0.4)[1])
    assert small < large


@pytest.mark.parametrize("value, words", [(0.0, "greater than 0"), (1.0, "below 1"), (1.5, "below 1"),
                                          (-0.2, "greater than 0"), ("half", "must be a number")])
def test_test_fraction_is_validated_in_a_run_file(value, words):
    with pytest.raises(ConfigError) as error:
        config_from_dict({"data": {"test_fraction": value}})
    fields = {p.field: p.message for p in error.value.problems}
    assert "data.test_fraction" in fields and words in fields["data.test_fraction"]


def test_test_fraction_round_trips_and_the_run_uses_it(tmp_path):
    data = _folder(tmp_path / "data", per_class=(30, 30))
    config = tiny_config(tmp_path, data=DataConfig(name="imagefolder", path=str(data), image_size=16,
                                                   augment=False, test_fraction=0.2))
    config.pairs, config.epochs, config.teacher.train_epochs, config.batch_size = [], 1, 0, 8
    path = save_config(config, tmp_path / "run.toml")
    loaded = load_config(path)
    assert loaded.data.test_fraction == 0.2
    run = validate_run(loaded)
    assert run.dataset_size == 48
    trainer = Trainer(run)
    trainer.run()
    assert len(trainer.data.test_labels) == 12 and len(trainer.data.train_labels) == run.dataset_size


def test_demo_and_cifar_ignore_the_fraction():
    assert dataset_info("demo", demo_train=300, demo_test=50, test_fraction=0.5).test_size == 50
