"""featdistill cka / export / eval from the command line: outputs, files, and one-line errors."""

import csv
import json
import re
import tomllib

import pytest

from featdistill_core import cli
from featdistill_core.config import save_config

from tests._tiny import tiny_config


def run_cli(capsys, *args):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code, err, words):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("featdistill: error:"), err
    assert words in lines[0] and "Traceback" not in err


def test_cka_on_a_run_file_prints_the_matrix_and_pairs_and_writes_files(capsys, tmp_path):
    path = save_config(tiny_config(tmp_path), tmp_path / "run.toml")
    code, out, err = run_cli(capsys, "cka", path, "--probe", 32, "--batch-size", 16, "--out", tmp_path / "cka")
    assert code == 0, err
    assert "untrained demo_teacher" in err                      # the run trains its teacher first
    assert "linear CKA on 32 test images" in out and "s1 = conv1" in out
    marker = "paste into the run file:\n"
    blocks = out[out.index(marker) + len(marker):out.index("written:")]
    parsed = tomllib.loads(blocks)
    assert len(parsed["pairs"]) == 3 and parsed["pairs"][0]["method"] == "at"   # the run's first pair's method
    with open(tmp_path / "cka" / "cka.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][1:] == ["conv1", "layer1", "layer2", "layer3"] and len(rows) == 5
    assert json.loads((tmp_path / "cka" / "cka.json").read_text())["probe_size"] == 32
    assert (tmp_path / "cka" / "cka.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cka_on_a_run_folder_uses_the_trained_networks(capsys, tiny_trained_run, tmp_path):
    code, out, err = run_cli(capsys, "cka", tiny_trained_run, "--probe", 16, "--pairs", 2, "--method", "hint",
                             "--layers", "stages", "--out", tmp_path / "c")
    assert code == 0, err
    assert "untrained" not in err and "trained one" in err
    assert out.count("[[pairs]]") == 2 and 'method = "hint"' in out


@pytest.mark.parametrize("args, words", [
    (("--probe", "2"), "--probe must be at least 4"),
    (("--batch-size", "1"), "--batch-size must be at least 4"),
    (("--pairs", "0"), "--pairs must be at least 1"),
    (("--method", "nope"), "unknown distillation method"),
    (("--method", "kd"), "takes no layer pairs"),
])
def test_cka_bad_options(capsys, tmp_path, args, words):
    path = save_config(tiny_config(tmp_path), tmp_path / "run.toml")
    code, _, err = run_cli(capsys, "cka", path, *args, "--out", tmp_path / "c")
    _one_line_error(code, err, words)


def test_cka_on_a_folder_that_is_not_a_run(capsys, tmp_path):
    code, _, err = run_cli(capsys, "cka", tmp_path)
    _one_line_error(code, err, "without run.toml")


def test_export_prints_the_check_and_refuses_in_one_line(capsys, tiny_trained_run, tmp_path):
    code, out, err = run_cli(capsys, "export", tiny_trained_run, "--format", "safetensors", "--out", tmp_path / "e",
                             "--probe", 8)
    assert code == 0, err
    assert "student.safetensors" in out and re.search(r"outputs on 8 test images match", out)
    assert (tmp_path / "e" / "MODEL_CARD.md").is_file()
    code, _, err = run_cli(capsys, "export", tmp_path, "--format", "torchscript")
    _one_line_error(code, err, "not a run folder")


def test_eval_a_run_folder_and_a_model_with_weights(capsys, tiny_trained_run, tmp_path):
    code, out, err = run_cli(capsys, "eval", tiny_trained_run, "--out", tmp_path / "ev")
    assert code == 0, err
    assert re.search(r"top-1 \d+\.\d\d%  top-5 \d+\.\d\d%  \(64 test images, 10 classes\)", out)
    summary = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert summary["images"] == 64 and len(summary["per_class"]) == 10
    rows = (tmp_path / "ev" / "confusion.csv").read_text().splitlines()
    assert len(rows) == 11 and sum(int(v) for row in rows[1:] for v in row.split(",")[1:-1]) == 64
    assert (tmp_path / "ev" / "confusion.png").is_file()

    code, out, err = run_cli(capsys, "eval", "demo_teacher", "--weights", tiny_trained_run / "teacher.safetensors",
                             "--data", "demo", "--demo-train", 128, "--demo-test", 40, "--out", tmp_path / "ev2")
    assert code == 0, err and "(40 test images" in out


@pytest.mark.parametrize("args, words", [
    (("demo_student",), "--weights is needed"),
    (("demo_student", "--weights", "missing.safetensors"), "not found"),
    (("resnet8", "--weights", "RUN/student.safetensors"), "is for a different network"),
    (("nonsense_model", "--weights", "RUN/student.safetensors"), "nonsense_model"),
    (("RUN", "--data", "cifar10"), "cifar10 needs a path"),
    (("demo_student", "--weights", "RUN/student.safetensors", "--batch-size", "0"), "--batch-size must be at least 1"),
])
def test_eval_refusals(capsys, tiny_trained_run, args, words):
    args = [str(a).replace("RUN", str(tiny_trained_run)) for a in args]
    small = ["--demo-train", "16", "--demo-test", "16"] if "--data" not in args else []
    code, _, err = run_cli(capsys, "eval", *args, *small)
    _one_line_error(code, err, words)
