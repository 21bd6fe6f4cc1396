import dataclasses

import pytest

from featdistill_core.config import (
    ConfigError, PairConfig, RunConfig, config_from_dict, config_from_toml, config_to_toml, load_config, save_config,
)
from featdistill_core.demo import demo_config


def _field_error(raw) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    return info.value


def test_demo_config_round_trips_exactly(tmp_path):
    config = demo_config(seed=3)
    path = save_config(config, tmp_path / "run.toml")
    again = load_config(path)
    assert again == config
    assert config_to_toml(again) == path.read_text()


def test_round_trip_keeps_awkward_values(tmp_path):
    config = RunConfig(name="x", output_dir='C:\\runs\\"quoted"', teacher=dataclasses.replace(RunConfig().teacher, weights="/tmp/t.pt"))
    config.optim.lr = 1e-5
    config.optim.milestones = [150, 180, 210]
    config.optim.schedule = "step"
    config.pairs = [PairConfig("at", ["layer1"], ["layer1"], 1000.0, "joint", {"p": 2, "normalize": "l1"})]
    again = load_config(save_config(config, tmp_path / "r.toml"))
    assert again == config
    assert again.optim.lr == 1e-5


def test_defaults_fill_missing_fields_and_pair_weight():
    config = config_from_dict({"teacher": {"weights": "t.safetensors"},
                               "pairs": [{"method": "at", "teacher": "layer2", "student": "layer2"}]})
    assert config.epochs == RunConfig().epochs
    assert config.pairs[0].weight == 1000.0            # the method's default (AT's β)
    assert config.pairs[0].teacher == ["layer2"]
    assert config.pairs[0].options["normalize"] == "l2"


@pytest.mark.parametrize("raw, field, words", [
    ({"epoch": 3}, "epoch", "unknown setting"),
    ({"optim": {"schedule": "linear"}}, "optim.schedule", "'constant', 'step', 'cosine'"),
    ({"optim": {"lr": "fast"}}, "optim.lr", "must be a number"),
    ({"optim": {"lr": 0}}, "optim.lr", "greater than 0"),
    ({"batch_size": 0}, "batch_size", "at least 1"),
    ({"batch_size": 3.5}, "batch_size", "whole number"),
    ({"mixed_precision": "yes"}, "mixed_precision", "true or false"),
    ({"device": "gpu"}, "device", "'auto', 'cpu'"),
    ({"data": {"name": "imagenet"}}, "data.name", "'demo', 'cifar10'"),
    ({"data": {"name": "cifar10"}}, "data.path", "needs the folder"),
    ({"teacher": "resnet"}, "teacher", "must be a table"),
    ({"pairs": [{"method": "at", "teacher": ["layer1"], "student": ["layer1"]}]}, "teacher.weights", "train_epochs"),
    ({"teacher": {"weights": "t.pt"}, "pairs": [{"method": "crd", "teacher": ["a"], "student": ["b"]}]},
     "pairs[0].method", "'hint', 'at', 'fsp'"),
    ({"teacher": {"weights": "t.pt"}, "pairs": [{"method": "fsp", "teacher": ["a"], "student": ["b", "c"]}]},
     "pairs[0].teacher", "takes 2 layer path(s)"),
    ({"teacher": {"weights": "t.pt"}, "pairs": [{"method": "at", "teacher": ["a"], "student": ["b"], "stage": "pre"}]},
     "pairs[0].stage", "'joint', 'init'"),
    ({"teacher": {"weights": "t.pt"}, "pairs": [{"method": "at", "teacher": ["a"], "student": ["b"], "options": {"normalize": "l3"}}]},
     "pairs[0].options", "normalize"),
    ({"teacher": {"weights": "t.pt"}, "pairs": [{"method": "at", "teacher": ["a"], "student": ["b"], "stage": "init"}]},
     "init_epochs", "at least 1"),
    ({"teacher": {"weights": "t.pt"}, "pairs": [{"method": "at", "student": ["b"]}]}, "pairs[0].teacher", "required"),
    ({"kd": {"temperature": -1.0}}, "kd.temperature", "greater than 0"),
    ({"optim": {"milestones": [180, 150]}}, "optim.milestones", "increasing"),
])
def test_bad_values_name_the_field(raw, field, words):
    error = _field_error(raw)
    assert error.field == field
    assert str(error).startswith(field + ":")
    assert words in str(error)


def test_broken_toml_and_missing_file_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config_from_toml("[teacher\narch='x'")
