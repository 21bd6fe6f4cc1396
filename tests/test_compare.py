"""``featdistill compare``: every method over seeds against the baseline, one leaderboard."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from featdistill_core import cli, compare as compare_module
from featdistill_core.compare import (
    BASELINE, CompareFolderError, CompareRunner, EntryStarted, SweepEstimator, default_init_epochs, leaderboard,
    parse_methods, parse_seeds, plan_compare, read_compare,
)
from featdistill_core.config import ConfigError, save_config
from featdistill_core.events import StepEvent
from featdistill_core.losses import METHODS, register_method
from featdistill_core.losses.registry import Method

from tests._tiny import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def _base(tmp_path, **changes):
    config = tiny_config(tmp_path, **changes)
    config.pairs = []
    return config


def test_a_sweep_of_two_methods_and_two_seeds(tmp_path):
    plan = plan_compare(_base(tmp_path), "at,kd", "0,1", folder=tmp_path / "cmp")
    assert [c.key for c in plan.candidates] == [BASELINE, "at", "kd"]
    at = plan.candidates[1]
    assert at.layers == "layer1←layer1; layer2←layer2; layer3←layer3" and at.weight == "1000"
    # teacher 1 epoch + baseline, at and kd, 2 seeds, 1 epoch each, 128 // 32 = 4 steps per epoch
    assert plan.total_steps == 4 + 3 * 2 * 4
    events = []
    runner = CompareRunner(plan)
    runner.subscribe(events.append)
    estimator = SweepEstimator(plan)
    runner.subscribe(estimator.update)
    result = runner.run()
    assert result.finished and not result.stopped
    assert estimator.done == plan.total_steps and estimator.fraction == 1.0
    assert result.teacher.status == "done" and (Path(result.teacher.run_dir) / "teacher.safetensors").is_file()
    started = [e for e in events if isinstance(e, EntryStarted) and e.count]
    assert [(e.candidate, e.seed) for e in started] == [(k, s) for k in (BASELINE, "at", "kd") for s in (0, 1)]
    assert all(e.status == "done" and 0 <= e.test_acc <= 100 and e.seconds_per_epoch > 0 for e in result.entries)
    # the teacher is trained once and loaded by every distilled run; the baseline has none
    for entry in result.entries:
        run_toml = (Path(entry.run_dir) / "run.toml").read_text()
        if entry.candidate == BASELINE:
            assert 'weights = ""' in run_toml.split("[student]")[0].split("[teacher]")[1]
        else:
            assert str(Path(result.teacher.run_dir) / "teacher.safetensors") in run_toml
            if entry.seed == 0:          # the demo draws each seed's test images afresh
                assert entry.teacher_acc == result.teacher.test_acc
    assert {e.seed for e in result.entries if e.candidate == "at"} == {0, 1}
    assert result.entry("at", 1).weights == {f"at:{l}<-{l}": 1000.0 for l in ("layer1", "layer2", "layer3")}

    rows = leaderboard(result)
    assert [r.rank for r in rows] == [1, 2, 3]
    by_key = {r.key: r for r in rows}
    base = {s: result.entry(BASELINE, s).test_acc for s in (0, 1)}
    kd = {s: result.entry("kd", s).test_acc for s in (0, 1)}
    assert by_key["kd"].gain == pytest.approx(sum(kd[s] - base[s] for s in (0, 1)) / 2)
    assert by_key["kd"].mean == pytest.approx(sum(kd.values()) / 2) and by_key[BASELINE].gain == 0
    folder = plan.folder
    for name in ("compare.json", "compare.toml", "leaderboard.csv", "leaderboard.md"):
        assert (folder / name).is_file(), name
    csv_lines = (folder / "leaderboard.csv").read_text().splitlines()
    assert csv_lines[0].startswith("rank,method,") and len(csv_lines) == 4
    assert "| at |" in (folder / "leaderboard.md").read_text()

    again = read_compare(folder)
    assert again.entries == result.entries and again.candidates == result.candidates
    assert [r.key for r in again.rows] == [r.key for r in rows]


def test_a_method_that_cannot_be_placed_is_reported_not_skipped(tmp_path, capsys):
    config = _base(tmp_path)
    config.student.arch = "tests._nets:flat_student"
    config.epochs = 1
    path = save_config(config, tmp_path / "run.toml")
    code = cli.main(["compare", str(path), "--methods", "at,kd", "--seeds", "0", "--output", str(tmp_path / "cmp")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "at: cannot be placed" in err
    result = read_compare(tmp_path / "cmp")
    row = {r.key: r for r in result.rows}["at"]
    assert row.runs == 0 and row.note.startswith("cannot be placed:") and "same spatial size" in row.note
    assert result.entry("at", 0).status == "cannot be placed"
    assert "cannot be placed" in out and "cannot be placed" in (tmp_path / "cmp" / "leaderboard.md").read_text()
    assert {r.key: r for r in result.rows}["kd"].runs == 1


def test_a_failed_entry_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
    real = compare_module.Trainer

    class Flaky(real):
        def run(self):
            if self.config.name.endswith("-kd-seed1"):
                raise RuntimeError("disk full")
            return super().run()

    monkeypatch.setattr(compare_module, "Trainer", Flaky)
    config = _base(tmp_path)
    config.teacher.train_epochs = 1
    result = CompareRunner(plan_compare(config, "kd", "0,1", folder=tmp_path / "cmp")).run()
    statuses = {(e.candidate, e.seed): e.status for e in result.entries}
    assert statuses == {(BASELINE, 0): "done", (BASELINE, 1): "done", ("kd", 0): "done", ("kd", 1): "failed"}
    assert result.entry("kd", 1).error == "disk full" and result.finished
    row = {r.key: r for r in result.rows}["kd"]
    assert row.runs == 1 and "1 of 2 failed: disk full" in row.note


def test_stop_ends_the_sweep_with_what_is_done_written(tmp_path):
    plan = plan_compare(_base(tmp_path, epochs=3), "kd", "0,1", folder=tmp_path / "cmp")
    runner = CompareRunner(plan)
    seen = []

    def on_event(event):
        seen.append(event)
        if isinstance(event, StepEvent) and len([e for e in seen if isinstance(e, EntryStarted) and e.count]) == 3:
            runner.request_stop()

    runner.subscribe(on_event)
    result = runner.run()
    assert result.stopped and not result.finished
    statuses = [(e.candidate, e.seed, e.status) for e in result.entries]
    assert statuses == [(BASELINE, 0, "done"), (BASELINE, 1, "done"), ("kd", 0, "stopped"), ("kd", 1, "not run")]
    data = json.loads((plan.folder / "compare.json").read_text())
    assert data["stopped"] is True and data["entries"][2]["status"] == "stopped"
    assert "1 stopped; 1 not run" in {r.key: r for r in read_compare(plan.folder).rows}["kd"].note


def test_ctrl_c_stops_the_command_cleanly(tmp_path):
    config = _base(tmp_path, epochs=200)
    config.teacher.train_epochs = 1
    path = save_config(config, tmp_path / "run.toml")
    folder = tmp_path / "cmp"
    process = subprocess.Popen(
        [sys.executable, "-m", "featdistill_core", "compare", str(path), "--methods", "kd", "--seeds", "0",
         "--output", str(folder)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and not (folder / "baseline-seed0" / "metrics.jsonl").is_file():
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "stopping after this step" in err
    result = read_compare(folder)
    assert result.stopped
    assert [e.status for e in result.entries] == ["stopped", "not run"]
    assert "baseline" in out and (folder / "leaderboard.md").is_file()


def test_methods_all_is_every_registered_method_also_one_added_later(monkeypatch):
    kd = METHODS["kd"]
    monkeypatch.setitem(METHODS, "zz_later", Method(**{**kd.__dict__, "key": "zz_later"}))
    assert parse_methods("all") == list(METHODS)
    assert parse_methods("kd,all") == list(METHODS)
    assert parse_methods("recipe,at,baseline") == ["recipe", "at"]
    with pytest.raises(ValueError, match="unknown methods 'nope', 'nah'"):
        parse_methods("nope,at,nah")
    assert parse_seeds("0,2-4,2") == [0, 2, 3, 4]
    for bad in ("", "a", "-1", "1,x"):
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_plan_problems_are_reported_together(tmp_path):
    config = _base(tmp_path)
    config.teacher.train_epochs = 0
    with pytest.raises(ConfigError) as error:
        plan_compare(config, "nope", "x", weights="heavy", init_epochs=0)
    fields = {p.field for p in error.value.problems}
    assert fields == {"methods", "seeds", "weights", "init_epochs", "teacher.weights"}


def test_an_init_stage_method_gets_an_init_stage_and_auto_weights(tmp_path):
    config = _base(tmp_path, epochs=8)
    assert default_init_epochs(config) == 1
    config.init_epochs = 2
    plan = plan_compare(config, "fsp,recipe", "0", weights="auto", folder=tmp_path / "cmp")
    fsp = {c.key: c for c in plan.candidates}["fsp+auto"]
    assert fsp.init_epochs == 2 and fsp.weight == "auto" and all(p["stage"] == "init" for p in fsp.pairs)
    run = plan.config_for(fsp, 0)
    assert run.init_epochs == 2 and run.balance.auto
    assert [s.stage for s in run.stages] == ["teacher", "init", "student"]
    recipe = {c.key: c for c in plan.candidates}["recipe+auto"]
    assert not recipe.placeable and "no distillation terms" in recipe.refusal


def test_a_damaged_or_foreign_folder_is_named(tmp_path):
    with pytest.raises(CompareFolderError, match="is not a compare folder"):
        read_compare(tmp_path)
    (tmp_path / "compare.json").write_text('{"version": 1, "entries": [')
    with pytest.raises(CompareFolderError, match="compare.json is damaged"):
        read_compare(tmp_path)
    plan = plan_compare(_base(tmp_path / "x"), "kd", "0", folder=tmp_path)
    with pytest.raises(CompareFolderError, match="holds a compare already"):
        CompareRunner(plan).run()
