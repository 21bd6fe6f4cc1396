import dataclasses

import pytest

from featdistill_core.config import (
    ConfigError, PairConfig, RunConfig, config_from_dict, config_from_toml, config_to_toml, load_config, save_config,
    with_absolute_paths,
)
from featdistill_core.demo import demo_config


def _field_error(raw) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    return info.value


def test_demo_config_round_trips_exactly(tmp_path):
    config = demo_config(seed=3)
    path = save_config(config, tmp_path / "run.toml")
    again = config_from_toml(path.read_text())
    assert again == config
    assert config_to_toml(again) == path.read_text()
    absolute = with_absolute_paths(config, tmp_path)
    assert load_config(save_config(absolute, tmp_path / "abs.toml")) == absolute


def test_round_trip_keeps_awkward_values(tmp_path):
    config = RunConfig(name="x", output_dir='/runs/"quoted"\\x', teacher=dataclasses.replace(RunConfig().teacher, weights="/tmp/t.pt"))
    config.optim.lr = 1e-5
    config.optim.milestones = [150, 180, 210]
    config.optim.schedule = "step"
    config.pairs = [PairConfig("at", ["layer1"], ["layer1"], 1000.0, "joint", {"p": 2, "normalize": "l1"})]
    again = load_config(save_config(config, tmp_path / "r.toml"))
    assert again == config
    assert again.optim.lr == 1e-5
    assert again.pairs[0].stage == "student"          # 0.1's "joint" is read as the one stage word


def test_relative_paths_resolve_against_the_run_file_folder(tmp_path, monkeypatch):
    folder = tmp_path / "some" / "dir"
    folder.mkdir(parents=True)
    (folder / "run.toml").write_text(
        'output_dir = "out"\n[teacher]\nweights = "teacher.safetensors"\n[student]\nweights = "../s.pt"\n'
        '[data]\nname = "imagefolder"\npath = "images"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config("some/dir/run.toml")
    assert config.teacher.weights == str(folder / "teacher.safetensors")
    assert config.student.weights == str(tmp_path / "some" / "s.pt")
    assert config.data.path == str(folder / "images")
    assert config.output_dir == str(folder / "out")


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        config_from_dict({"optim": {"lr": 0, "schedule": "linear"}, "batch_size": 0, "epoch": 3,
                          "pairs": [{"method": ["at"]}, {"method": "at", "teacher": ["a"], "student": []}]})
    fields = [p.field for p in info.value.problems]
    assert set(fields) == {"optim.lr", "optim.schedule", "batch_size", "epoch", "pairs[0].method", "pairs[1].student",
                           "teacher.weights"}
    assert len(str(info.value).splitlines()) == len(fields)


def test_empty_run_file_is_refused():
    with pytest.raises(ConfigError, match="is empty"):
        config_from_toml("# nothing\n")


@pytest.mark.parametrize("raw, field", [
    ({"epochs": 10**400}, "epochs"),
    ({"optim": {"lr": 10**400}}, "optim.lr"),
    ({"seed": 4294967296}, "seed"),
    ({"data": {"demo_train": 9223372036854775807}}, "data.demo_train"),
    ({"data": {"image_size": 9223372036854775807}}, "data.image_size"),
    ({"data": {"demo_train": -1}}, "data.demo_train"),
    ({"name": "a\u202eb"}, "name"),
    ({"output_dir": "runs\x00x"}, "output_dir"),
    ({"output_dir": "x" * 5000}, "output_dir"),
    ({"pairs": [{"method": "at", "teacher": ["a"], "student": ["b"], "weight": 1e30}]}, "pairs[0].weight"),
])
def test_numbers_and_names_are_bounded_before_use(raw, field):
    error = _field_error(raw)
    assert field in [p.field for p in error.problems]
    assert "Error" not in str(error)


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
    ({"pairs": [{"method": "at", "teacher": ["layer1"], "student": ["layer1"]}]}, "teacher.weights", "train the teacher first"),
    ({"teacher": {"weights": "t.pt"}, "pairs": [{"method": "magic", "teacher": ["a"], "student": ["b"]}]},
     "pairs[0].method", "'hint', 'at', 'fsp'"),
    ({"teacher": {"weights": "t.pt"}, "pairs": [{"method": "fsp", "teacher": ["a"], "student": ["b", "c"]}]},
     "pairs[0].teacher", "takes 2 layers on each side"),
    ({"teacher": {"weights": "t.pt"}, "pairs": [{"method": "at", "teacher": ["a"], "student": ["b"], "stage": "pre"}]},
     "pairs[0].stage", "'student', 'init'"),
    ({"teacher": {"weights": "t.pt"}, "pairs": [{"method": "at", "teacher": ["a"], "student": ["b"], "options": {"normalize": "l3"}}]},
     "pairs[0].options", "normalize"),
    ({"teacher": {"weights": "t.pt"}, "pairs": [{"method": "at", "teacher": ["a"], "student": ["b"], "stage": "init"}]},
     "init_epochs", "at least 1"),
    ({"teacher": {"weights": "t.pt"}, "pairs": [{"method": "at", "student": ["b"]}]}, "pairs[0].teacher", "takes 1 layer on each side"),
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
