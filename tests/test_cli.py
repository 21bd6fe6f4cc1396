import subprocess
import sys

import pytest

from featdistill_core import cli
from featdistill_core.config import save_config

from tests._tiny import tiny_config


def run_cli(capsys, *args):
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_lists_the_registry(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    for name in ("resnet32x4", "wrn_40_2", "shufflenetv2", "demo_student"):
        assert name in out


def test_layers_prints_paths_and_shapes(capsys):
    code, out, _ = run_cli(capsys, "layers", "resnet8x4", "--input", "3x32x32")
    assert code == 0
    assert "layer2.0.conv1" in out and "128×16×16" in out


@pytest.mark.parametrize("args, words", [
    (("layers", "resnet9000"), "resnet9000"),
    (("layers", "resnet8", "--input", "32x32"), "--input must look like"),
    (("train", "missing.toml"), "does not exist"),
    (("check", "missing.toml"), "does not exist"),
])
def test_bad_input_is_one_line_and_nonzero(capsys, args, words):
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("featdistill: error:") and words in lines[0]
    assert "Traceback" not in err


def test_impossible_pair_is_refused_with_both_shapes(capsys, tmp_path):
    config = tiny_config(tmp_path)
    config.pairs[0].method = "at"
    config.pairs[0].teacher = ["fc"]          # a vector: no attention map
    path = save_config(config, tmp_path / "run.toml")
    code, _, err = run_cli(capsys, "check", str(path))
    assert code == 2
    assert "pairs[0]" in err and "fc" in err and "layer2" in err and "Traceback" not in err


def test_broken_toml_file(capsys, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("epochs = [\n")
    code, _, err = run_cli(capsys, "train", str(path))
    assert code == 2 and "not valid TOML" in err and len(err.strip().splitlines()) == 1


def test_train_runs_a_run_file_and_writes_outputs(capsys, tmp_path):
    path = save_config(tiny_config(tmp_path), tmp_path / "run.toml")
    code, out, err = run_cli(capsys, "train", str(path))
    assert code == 0, err
    assert "student_test_acc" in out and "epoch 1/1" in err
    run_dirs = list((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 1 and (run_dirs[0] / "student.safetensors").is_file()


def test_check_ok(capsys, tmp_path):
    path = save_config(tiny_config(tmp_path), tmp_path / "run.toml")
    code, out, _ = run_cli(capsys, "check", str(path))
    assert code == 0 and "ok" in out


def test_console_entry_point_module_runs():
    result = subprocess.run([sys.executable, "-m", "featdistill_core", "layers", "nope_model"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_progress_bar_draws_eta():
    import io

    from featdistill_core.events import StageStarted, StepEvent

    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    from featdistill_core.stages import PlannedStage, Stage

    bar = cli.ProgressBar([PlannedStage(Stage.STUDENT, 2)], 32, stream, min_interval=0)
    bar(StageStarted("student", 2, 5, 10, "x"))
    bar(StepEvent("student", 5, 1, 10, {"ce": 1.0}, 1.0, 0.1, 100.0))
    assert "50%" in stream.getvalue() and "ETA" in stream.getvalue() and "step 5/10" in stream.getvalue()


def test_missing_cifar_files_named_before_training(capsys, tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"")
    config = tiny_config(tmp_path)
    config.data.name = "cifar10"
    config.data.path = str(tmp_path)
    path = save_config(config, tmp_path / "run.toml")
    code, _, err = run_cli(capsys, "train", str(path))
    assert code == 2
    assert "data.path" in err and "missing: data_batch_2" in err and "test_batch" in err
    assert not (tmp_path / "runs").exists()          # refused before a run folder was made


def test_cifar_folder_of_real_format_trains(capsys, tmp_path):
    import pickle

    import numpy as np

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (40, 3072), dtype=np.uint8), b"labels": [i % 10 for i in range(40)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))
    config = tiny_config(tmp_path)
    config.data.name, config.data.path = "cifar10", str(folder)
    path = save_config(config, tmp_path / "run.toml")
    code, out, err = run_cli(capsys, "train", str(path))
    assert code == 0, err
    assert "student_test_acc" in out
