"""`featdistill check` means `featdistill train` will start: broken data, models that cannot be
trained, unwritable output folders and non-finite weights are refused at the right field."""

from __future__ import annotations

import pickle
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from featdistill_core import cli
from featdistill_core.config import save_config

from tests._faults import child_env
from tests._tiny import tiny_config


def check(capsys, config, tmp_path) -> tuple[int, str]:
    path = save_config(config, tmp_path / "run.toml")
    code = cli.main(["check", str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, err


# ---- image folders -------------------------------------------------------------------------------


def _image_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def _png_claiming(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("damage, words", [
    (lambda f: f.write_bytes(b"not an image at all"), "is not an image"),
    (lambda f: f.write_bytes(b""), "is empty"),
    (lambda f: f.write_bytes(f.read_bytes()[:-30]), "cut short"),
    (lambda f: f.write_bytes(_png_claiming(60_000, 60_000)), "too large to decode safely"),
])
def test_broken_images_are_found_by_check(capsys, tmp_path, damage, words):
    folder = _image_folder(tmp_path / "images")
    victim = folder / "dogs" / "3.png"
    damage(victim)
    config = tiny_config(tmp_path)
    config.data.name, config.data.path = "imagefolder", str(folder)
    code, err = check(capsys, config, tmp_path)
    assert code == 2 and "data.path" in err and str(victim) in err and words in err, err


def test_a_sound_image_folder_passes(capsys, tmp_path):
    config = tiny_config(tmp_path)
    config.data.name, config.data.path = "imagefolder", str(_image_folder(tmp_path / "images"))
    config.batch_size = 4               # 8 images, some of them held out for testing
    code, err = check(capsys, config, tmp_path)
    assert code == 0, err


# ---- CIFAR --------------------------------------------------------------------------------------------


def _cifar(root: Path, **override) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), b"labels": [i % 10 for i in range(20)]}
        batch.update(override.get(name, {}))
        (folder / name).write_bytes(pickle.dumps(batch))
    return folder


@pytest.mark.parametrize("override, truncate, words", [
    ({}, "data_batch_4", "not a readable CIFAR pickle"),
    ({"data_batch_2": {b"labels": [10] * 20}}, None, "labels range over"),
    ({"test_batch": {b"data": np.zeros((20, 3072), np.float32)}}, None, "float32"),
    ({"data_batch_5": {b"labels": [1, 2]}}, None, "20 images but 2 labels"),
    ({"data_batch_3": {"data": 1}}, None, "expected a dict with b'data'"),
])
def test_broken_cifar_batches_are_found_by_check(capsys, tmp_path, override, truncate, words):
    folder = _cifar(tmp_path, **override)
    if override.get("data_batch_3"):
        (folder / "data_batch_3").write_bytes(pickle.dumps({"data": 1}))
    if truncate:
        data = (folder / truncate).read_bytes()
        (folder / truncate).write_bytes(data[: len(data) // 2])
    config = tiny_config(tmp_path)
    config.data.name, config.data.path = "cifar10", str(folder)
    code, err = check(capsys, config, tmp_path)
    assert code == 2 and "data.path" in err and words in err, err


def test_check_counts_the_real_cifar_sizes(tmp_path):
    from featdistill_core.validate import validate_run

    config = tiny_config(tmp_path)
    config.data.name, config.data.path = "cifar10", str(_cifar(tmp_path))
    assert validate_run(config).dataset_size == 100          # 5 × 20 images, not the published 50 000


# ---- models ---------------------------------------------------------------------------------------------

USER_NETS = '''
import sys
import time
import torch
from torch import nn


class Tuple(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(8, n)

    def forward(self, x):
        f = self.body(x)
        return self.fc(f), f


def tuple_out(num_classes):
    return Tuple(num_classes)


def three_logits(num_classes):
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))


def no_parameters(num_classes):
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())


def exits(num_classes):
    sys.exit(3)


def hangs(num_classes):
    while True:
        time.sleep(0.05)
'''


@pytest.fixture
def user_nets(tmp_path, monkeypatch):
    (tmp_path / "fd_check_nets.py").write_text(USER_NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "fd_check_nets"
    sys.modules.pop("fd_check_nets", None)


@pytest.mark.parametrize("factory, words", [
    ("tuple_out", "returns a tuple, not a tensor of logits"),
    ("three_logits", "gives 3 logits per image, but the data set has 10 classes"),
    ("no_parameters", "no trainable parameters"),
    ("exits", "called sys.exit(3)"),
])
def test_models_that_cannot_be_trained_are_refused_at_their_field(capsys, tmp_path, user_nets, factory, words):
    config = tiny_config(tmp_path)
    config.pairs = []
    config.teacher.train_epochs = 0
    config.student.arch = f"{user_nets}:{factory}"
    code, err = check(capsys, config, tmp_path)
    assert code == 2 and "student.arch" in err and words in err, err


def test_a_factory_that_hangs_is_reported_after_the_time_limit(tmp_path):
    (tmp_path / "fd_check_nets.py").write_text(USER_NETS)
    config = tiny_config(tmp_path)
    config.pairs = []
    config.teacher.train_epochs = 0
    config.student.arch = "fd_check_nets:hangs"
    path = save_config(config, tmp_path / "run.toml")
    env = child_env(FEATDISTILL_MODEL_TIME_LIMIT=2)
    env["PYTHONPATH"] += ":" + str(tmp_path)
    result = subprocess.run([sys.executable, "-m", "featdistill_core", "check", str(path)], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert "student.arch" in result.stderr and "did not finish within 2 s" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_user_factory_is_imported_only_when_asked_for(tmp_path):
    (tmp_path / "fd_loud.py").write_text("import sys\nsys.exit(7)\n")
    env = child_env()
    env["PYTHONPATH"] += ":" + str(tmp_path)
    for args in (["models"], ["methods"], ["layers", "resnet8"]):
        result = subprocess.run([sys.executable, "-m", "featdistill_core", *args], capture_output=True, text=True,
                                env=env, timeout=120)
        assert result.returncode == 0 and result.stdout
    result = subprocess.run([sys.executable, "-m", "featdistill_core", "layers", "fd_loud:f"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 2 and "sys.exit(7)" in result.stderr


def test_nan_teacher_weights_are_refused(capsys, tmp_path):
    from featdistill_core.models import create_model, save_weights

    model = create_model("demo_teacher", 10)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    save_weights(model, tmp_path / "nan.safetensors")
    config = tiny_config(tmp_path)
    config.teacher.train_epochs = 0
    config.teacher.weights = str(tmp_path / "nan.safetensors")
    code, err = check(capsys, config, tmp_path)
    assert code == 2 and "teacher.weights" in err and "NaN or infinite" in err


# ---- the output folder ----------------------------------------------------------------------------


def test_an_output_folder_that_is_a_file_is_refused(capsys, tmp_path):
    (tmp_path / "taken").write_text("a file")
    config = tiny_config(tmp_path)
    config.output_dir = str(tmp_path / "taken" / "runs")
    code, err = check(capsys, config, tmp_path)
    assert code == 2 and "output_dir" in err and "is a file" in err


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_an_unwritable_output_folder_is_refused(capsys, tmp_path):
    config = tiny_config(tmp_path)
    config.output_dir = "/proc/featdistill-runs"
    code, err = check(capsys, config, tmp_path)
    assert code == 2 and "output_dir" in err and "not writable" in err


# ---- the terminal -------------------------------------------------------------------------------------


def test_a_closed_pipe_exits_quietly():
    for command in ("models", "layers resnet110"):        # a short and a long output (longer than a pipe holds)
        result = subprocess.run(f"'{sys.executable}' -m featdistill_core {command} | head -1; "
                                "echo \"status=${PIPESTATUS[0]}\"", shell=True, executable="/bin/bash",
                                capture_output=True, text=True, env=child_env(), timeout=120)
        assert result.stdout.count("\n") == 2 and result.stdout.split("status=")[1].strip() in ("0", "141")
        assert result.stderr == ""


def test_a_closed_pipe_in_the_middle_of_the_output(monkeypatch, capsys):
    class Closed:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    assert cli.main(["models"]) == 141
    assert capsys.readouterr().err == ""
