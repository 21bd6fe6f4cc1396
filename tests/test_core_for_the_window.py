"""What the core answers for the window: problem details, a run folder's state and list, the step-event
cadence (an ETA after the first steps), and the file checks run as the user types."""

from __future__ import annotations

import json
import os
import pickle
import time

import pytest

from featdistill_core import (
    RUN_STATES, ConfigError, Problem, Problems, Trainer, check_files, load_run, run_folders, run_state,
    step_event_due, validate_run,
)
from featdistill_core.events import StepEvent
from featdistill_core.models import create_model, save_weights

from tests._tiny import tiny_config


# ---- a problem's details ---------------------------------------------------------------------------


def test_details_travel_from_problems_to_the_error_and_survive_pickling():
    problems = Problems()
    problems.add("teacher.weights", "does not fit", details="missing keys (2):\n  a\n  b")
    problems.add("optim.lr", "must be greater than 0; got 0")
    with pytest.raises(ConfigError) as info:
        problems.raise_if_any()
    error = info.value
    assert error.details == {"teacher.weights": "missing keys (2):\n  a\n  b"}
    assert str(error).count("\n") == 1                  # still one line per problem
    again = pickle.loads(pickle.dumps(error))
    assert again.details == error.details and again.problems == error.problems
    plain = ConfigError("x", "y")
    assert plain.details == {} and pickle.loads(pickle.dumps(plain)).problems == (Problem("x", "y"),)


def test_weights_of_another_network_are_one_line_at_their_field_with_the_keys_in_the_details(tmp_path):
    path = tmp_path / "other.safetensors"
    save_weights(create_model("resnet8", 10), path)
    config = tiny_config(tmp_path)
    config.teacher.arch, config.teacher.weights, config.teacher.train_epochs = "wrn_16_1", str(path), 0
    with pytest.raises(ConfigError) as info:
        validate_run(config)
    error = info.value
    problem = next(p for p in error.problems if p.field == "teacher.weights")
    assert "\n" not in problem.message
    assert "is for a different network" in problem.message and "do not fit wrn_16_1" in problem.message
    assert "missing keys" in error.details["teacher.weights"]
    assert "  conv1.weight" in error.details["teacher.weights"] or "unexpected keys" in error.details["teacher.weights"]


# ---- run folders --------------------------------------------------------------------------------------


def _write_run(folder, *end_records):
    folder.mkdir(parents=True)
    (folder / "run.toml").write_text('name = "r"\n[student]\narch = "demo_student"\n', encoding="utf-8")
    lines = [{"type": "stage", "stage": "student", "epochs": 1, "steps_per_epoch": 2, "total_steps": 2,
              "run_dir": str(folder)}]
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines + list(end_records)) + "\n",
                                          encoding="utf-8")
    return folder


def test_run_state_of_each_ending(tmp_path):
    finished = {"type": "finished", "metrics": {"student_test_acc": 50.0}, "run_dir": "", "stopped": False}
    stopped = dict(finished, stopped=True)
    failed = {"type": "failed", "error": "out of memory", "kind": "RuntimeError", "run_dir": "", "details": "",
              "field": "", "problems": []}
    expected = {"finished": finished, "stopped": stopped, "failed": failed}
    for state, record in expected.items():
        assert run_state(load_run(_write_run(tmp_path / state, record))) == state
    assert run_state(load_run(_write_run(tmp_path / "killed"))) == "interrupted"
    assert set(RUN_STATES) == {"finished", "stopped", "failed", "interrupted"}


def test_run_folders_lists_only_run_folders_newest_first(tmp_path):
    old = _write_run(tmp_path / "old")
    new = _write_run(tmp_path / "new")
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "run.toml").write_text("", encoding="utf-8")
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    past = time.time() - 100
    os.utime(old / "metrics.jsonl", (past, past))
    assert run_folders(tmp_path) == [new, old]
    assert run_folders(tmp_path / "missing") == []
    assert run_folders(tmp_path / "file.txt") == []


def test_a_real_run_reads_back_without_its_snapshots_when_asked(tmp_path):
    finished = Trainer(tiny_config(tmp_path)).run()
    full = load_run(finished.run_dir)
    light = load_run(finished.run_dir, snapshots=False)
    assert full.snapshots and not light.snapshots
    assert light.steps == full.steps and light.epochs == full.epochs and run_state(light) == "finished"


# ---- step events early ---------------------------------------------------------------------------------


def test_step_events_come_early_then_every_log_every():
    due = [step for step in range(1, 51) if step_event_due(step, 10, 50)]
    assert due == [1, 2, 4, 8, 10, 20, 30, 40, 50]
    assert [s for s in range(1, 8) if step_event_due(s, 1, 7)] == list(range(1, 8))
    assert [s for s in range(1, 8) if step_event_due(s, 100, 7)] == [1, 2, 4, 7]     # and the stage's last step


def test_the_trainer_reports_the_first_steps_and_their_speed(tmp_path):
    config = tiny_config(tmp_path)
    config.monitor.log_every = 3          # 4 steps per stage: events at 1, 2, 3 and 4
    events = []
    trainer = Trainer(config)
    trainer.subscribe(events.append)
    trainer.run()
    steps = [e for e in events if isinstance(e, StepEvent) and e.stage == "student"]
    assert [e.step for e in steps] == [1, 2, 3, 4]
    assert all(e.images_per_sec > 0 for e in steps)


# ---- file checks as the user types ---------------------------------------------------------------------


def test_check_files_finds_missing_weights_and_data_folders_without_building_anything(tmp_path):
    config = tiny_config(tmp_path)
    config.teacher.train_epochs = 0
    config.teacher.weights = str(tmp_path / "nope.safetensors")
    config.student.weights = str(tmp_path / "student.txt")
    (tmp_path / "student.txt").write_text("x", encoding="utf-8")
    config.data.name, config.data.path = "cifar10", str(tmp_path / "no-cifar")
    problems = {p.field: p.message for p in check_files(config)}
    assert set(problems) == {"teacher.weights", "student.weights", "data.path"}
    assert "not found" in problems["teacher.weights"]
    assert "unsupported weights file type '.txt'" in problems["student.weights"]
    assert "does not exist" in problems["data.path"]
    # the same messages as the full validation's (which loads weights only once the data is found)
    config.data.name, config.data.path = "demo", ""
    with pytest.raises(ConfigError) as info:
        validate_run(config)
    full = {p.field: p.message for p in info.value.problems}
    assert full["teacher.weights"] == problems["teacher.weights"]


def test_check_files_passes_good_files_and_ignores_a_trained_teachers_leftover_path(tmp_path):
    config = tiny_config(tmp_path)
    path = tmp_path / "student.safetensors"
    save_weights(create_model("demo_student", 10), path)
    config.student.weights = str(path)
    assert check_files(config) == []
    config.pairs, config.teacher.train_epochs = [], 0       # no teacher used: its path is not checked
    config.teacher.weights = str(tmp_path / "nope.pt")
    assert check_files(config) == []
