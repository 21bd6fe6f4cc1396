"""featdistill export: the student alone, in a form that loads without featdistill, checked, with a card."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from featdistill_core.export import ExportError, TOLERANCES, export_student
from featdistill_core.models import create_model, load_weights, read_state_dict


@pytest.fixture()
def run_copy(tiny_trained_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(tiny_trained_run, target, ignore=shutil.ignore_patterns("export", "eval", "cka"))
    return target


def _student(run_dir):
    model = create_model("demo_student", 10)
    load_weights(model, run_dir / "student.safetensors")
    return model.eval()


def test_torchscript_reloads_in_a_process_without_featdistill(run_copy, tmp_path):
    result = export_student(run_copy, "torchscript", tmp_path / "out", probe=16)
    assert result.path.name == "student.pt" and result.max_abs_diff <= 1e-5 and result.probe_size == 16
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.save(images, tmp_path / "x.pt")
    script = textwrap.dedent(f"""
        import sys, torch
        model = torch.jit.load({str(result.path)!r}).eval()
        with torch.no_grad():
            torch.save(model(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'y.pt')!r})
        assert not any(name.startswith("featdistill") for name in sys.modules), "featdistill was imported"
        print(sorted(k for k in model.state_dict()))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    with torch.no_grad():
        expected = _student(run_copy)(images)
    assert torch.allclose(torch.load(tmp_path / "y.pt"), expected, atol=1e-5, rtol=1e-5)
    # the bare student: exactly its own state, none of the run's adapters
    keys = eval(done.stdout.strip().splitlines()[-1])
    assert keys == sorted(create_model("demo_student", 10).state_dict())
    adapters = read_state_dict(run_copy / "adapters.safetensors")
    assert adapters and not set(adapters) & set(keys)


def test_safetensors_and_the_model_card(run_copy, tmp_path):
    from safetensors import safe_open

    out = tmp_path / "out"
    result = export_student(run_copy, "safetensors", out, probe=8)
    assert result.max_abs_diff == 0.0 and TOLERANCES["safetensors"] == (0.0, 0.0)
    with safe_open(str(result.path), "pt") as handle:
        meta = handle.metadata()
        assert sorted(handle.keys()) == sorted(create_model("demo_student", 10).state_dict())
    assert meta["arch"] == "demo_student" and meta["num_classes"] == "10" and meta["input"] == "3x32x32"
    card = json.loads(result.card_json.read_text())
    assert card["student"]["arch"] == "demo_student" and card["teacher"]["arch"] == "demo_teacher"
    assert card["student"]["parameters"] == sum(p.numel() for p in create_model("demo_student", 10).parameters())
    assert [t["method"] for t in card["distillation"]["terms"]] == ["at", "hint"]
    metrics = [json.loads(line) for line in (run_copy / "metrics.jsonl").read_text().splitlines()]
    finished = [m for m in metrics if m["type"] == "finished"][0]["metrics"]
    assert card["accuracy"]["student"] == finished["student_test_acc"]
    assert card["accuracy"]["teacher"] == finished["teacher_test_acc"] and card["accuracy"]["baseline"] is None
    assert card["pair_cka"] and card["pair_cka"][0]["teacher"] == "layer2"
    assert 'arch = "demo_student"' in card["run_file"] and len(card["data"]["class_names"]) == 10
    markdown = result.card_markdown.read_text()
    for words in ("demo_student", "demo_teacher", "Attention transfer", "[[pairs]]", "student.safetensors", "mean ("):
        assert words in markdown
    # a second format keeps the first one's entry; the baseline run's accuracy goes on the card
    export_student(run_copy, "torchscript", out, probe=8, baseline_dir=run_copy)
    card = json.loads(result.card_json.read_text())
    assert set(card["exports"]) == {"safetensors", "torchscript"}
    assert card["accuracy"]["baseline"] == finished["student_test_acc"]


def test_onnx_with_onnxruntime_or_the_reference_evaluator(run_copy, tmp_path):
    pytest.importorskip("onnx")
    result = export_student(run_copy, "onnx", tmp_path / "out", probe=12)
    assert result.path.name == "student.onnx" and result.max_abs_diff <= 1e-4
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    images = torch.randn(3, 3, 32, 32)
    got = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(got), _student(run_copy)(images), atol=1e-4, rtol=1e-4)


def test_onnx_without_the_onnx_package_says_what_to_install(run_copy, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)          # import onnx now raises ImportError
    with pytest.raises(ExportError, match=r"featdistill\[onnx\]"):
        export_student(run_copy, "onnx")


def test_without_the_data_set_it_checks_on_random_images(run_copy, tmp_path):
    text = (run_copy / "run.toml").read_text().replace('name = "demo"', 'name = "imagefolder"')
    text = text.replace('path = ""', f'path = "{tmp_path / "gone"}"')
    (run_copy / "run.toml").write_text(text)
    result = export_student(run_copy, "torchscript", tmp_path / "out", probe=4)
    assert result.probe_source.startswith("random images") and "gone" in result.probe_source
    assert json.loads(result.card_json.read_text())["student"]["num_classes"] == 10   # read off fc.weight


def test_refusals(run_copy, tmp_path):
    with pytest.raises(ExportError, match="must be one of"):
        export_student(run_copy, "tflite")
    with pytest.raises(ExportError, match="not a run folder"):
        export_student(tmp_path, "torchscript")
    with pytest.raises(ExportError, match="probe"):
        export_student(run_copy, "torchscript", probe=0)
    (run_copy / "student.safetensors").unlink()
    with pytest.raises(ExportError, match="no student.safetensors"):
        export_student(run_copy, "torchscript")


def test_a_student_that_does_not_fit_its_file(run_copy):
    text = (run_copy / "run.toml").read_text().replace('arch = "demo_student"', 'arch = "resnet8"')
    (run_copy / "run.toml").write_text(text)
    with pytest.raises(ExportError, match="cannot rebuild the student resnet8"):
        export_student(run_copy, "safetensors")


def test_an_unwritable_output_folder(run_copy, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="cannot create the output folder"):
        export_student(run_copy, "torchscript", blocker / "sub")


def test_an_export_that_does_not_match_is_refused_and_leaves_no_file(run_copy, tmp_path, monkeypatch):
    import featdistill_core.export as export

    real = export._run_torchscript
    monkeypatch.setattr(export, "_run_torchscript", lambda path, images: real(path, images) + 1e-3)
    with pytest.raises(ExportError, match="does not give the student's outputs"):
        export_student(run_copy, "torchscript", tmp_path / "out", probe=8)
    assert not list((tmp_path / "out").iterdir())


def test_a_full_disk_is_one_error_and_leaves_no_partial_file(run_copy, tmp_path, monkeypatch):
    def full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch.jit, "save", full)
    with pytest.raises(ExportError, match="No space left"):
        export_student(run_copy, "torchscript", tmp_path / "out", probe=8)
    assert not list((tmp_path / "out").iterdir())
