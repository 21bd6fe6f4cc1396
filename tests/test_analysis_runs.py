"""One call per question about a run: the CKA map of a run (trained networks of a run folder) and the
per-class evaluation of a run folder's teacher and student."""

from __future__ import annotations


import numpy as np
import pytest

from featdistill_core import AnalysisCancelled, ConfigError, cka_map_for, evaluate_run, load_run
from featdistill_core.analysis.runs import UNTRAINED

from tests._tiny import tiny_config


def test_cka_map_for_a_run_file_says_the_teacher_is_untrained(tmp_path):
    seen = []
    mapped = cka_map_for(tiny_config(tmp_path), probe=16, batch_size=8, progress=lambda d, t: seen.append((d, t)))
    result = mapped.result
    assert result.matrix.shape == (len(result.teacher_layers), len(result.student_layers))
    assert {"layer1", "layer2", "layer3"} <= set(result.teacher_paths) & set(result.student_paths)
    assert mapped.teacher_source == UNTRAINED and any("untrained demo_teacher" in n for n in mapped.notes)
    assert seen[-1] == (16, 16) and len(seen) == 2
    finite = result.matrix[~np.isnan(result.matrix)]
    assert finite.size and np.all(finite <= 1.0 + 1e-6)


def test_cka_map_for_a_run_folder_uses_its_trained_networks(tmp_path, tiny_trained_run):
    record = load_run(tiny_trained_run)
    mapped = cka_map_for(record.config, run_dir=tiny_trained_run, probe=16, batch_size=8)
    assert mapped.teacher_source == mapped.student_source == f"trained in {tiny_trained_run}"
    assert not any("untrained" in n for n in mapped.notes)
    fresh = cka_map_for(record.config, probe=16, batch_size=8).result
    assert not np.allclose(np.nan_to_num(fresh.matrix), np.nan_to_num(mapped.result.matrix))   # other networks


def test_cka_map_for_refuses_a_bad_run_and_can_be_cancelled(tmp_path):
    config = tiny_config(tmp_path)
    config.batch_size = 0
    with pytest.raises(ConfigError):
        cka_map_for(config, probe=16)
    with pytest.raises(ValueError, match="at least 4"):
        cka_map_for(tiny_config(tmp_path), probe=2)
    with pytest.raises(AnalysisCancelled):
        cka_map_for(tiny_config(tmp_path), probe=16, batch_size=8, cancel=lambda: True)


def test_evaluate_run_gives_teacher_and_student_per_class(tiny_trained_run):
    seen = []
    evaluation = evaluate_run(tiny_trained_run, progress=lambda d, t: seen.append((d, t)))
    assert set(evaluation.evaluations) == {"teacher", "student"} and not evaluation.missing
    metrics = load_run(tiny_trained_run).finished.metrics
    for role in ("teacher", "student"):
        e = evaluation.evaluations[role]
        per_class = np.array(evaluation.per_class(role))
        counts = e.confusion.sum(axis=1)
        # the per-class accuracies, weighted by the class sizes, give the overall top-1 ...
        assert np.nansum(per_class * counts) / counts.sum() == pytest.approx(e.top1)
        # ... which is what the run measured at its end
        assert e.top1 == pytest.approx(metrics[f"{role}_test_acc"], abs=1e-6)
    assert len(evaluation.class_names) == len(evaluation.per_class("student"))
    assert seen[-1][0] == seen[-1][1]                    # progress covers both networks


def test_evaluate_run_names_a_missing_student(tmp_path, tiny_trained_run):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(tiny_trained_run, copy)
    (copy / "student.safetensors").unlink()
    evaluation = evaluate_run(copy)
    assert set(evaluation.evaluations) == {"teacher"} and "student.safetensors" in evaluation.missing["student"]
