"""The non-finite guard and strict JSON: NaN never reaches the weights, the log or the results."""

from __future__ import annotations

import json
import math

import pytest
import torch

from featdistill_core.checkpoint import CHECKPOINT_LAST, read_checkpoint
from featdistill_core.events import Failed, StepEvent
from featdistill_core.guard import NonFiniteError, nonfinite_names
from featdistill_core.runfolder import decode_record, encode_record, load_run, run_status
from featdistill_core.trainer import Trainer

from tests._tiny import tiny_config


def _strict_lines(run_dir):
    def refuse(token):
        raise ValueError(token)
    return [json.loads(line, parse_constant=refuse) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_huge_learning_rate_stops_the_run_naming_the_loss_and_the_rate(tmp_path):
    config = tiny_config(tmp_path, epochs=3)
    config.teacher.train_epochs = 3
    config.optim.lr = 1e6
    config.checkpoint.every_minutes = 1e-6          # a checkpoint after every good step
    trainer = Trainer(config)
    events = []
    trainer.subscribe(events.append)
    with pytest.raises(NonFiniteError) as info:
        trainer.run()
    failed = events[-1]
    assert isinstance(failed, Failed) and failed.field == "optim.lr"
    assert "teacher step" in failed.error and "'ce'" in failed.error and "learning rate (optim.lr = 1e+06)" in failed.error
    assert info.value.step > 1
    run_dir = trainer.run_dir
    assert "student.safetensors" not in {p.name for p in run_dir.iterdir()}
    teacher = run_dir / "teacher.safetensors"
    if teacher.exists():                              # saved only if still finite
        from safetensors.torch import load_file
        assert not nonfinite_names(load_file(str(teacher)))
    state = read_checkpoint(run_dir / CHECKPOINT_LAST)["state"]      # the last good step
    assert 1 <= state["position"]["step"] < info.value.step       # the last step whose weights were finite
    assert not nonfinite_names(state["teacher"])
    _strict_lines(run_dir)
    assert load_run(run_dir).failed.field == "optim.lr"
    assert run_status(run_dir).state == "failed"
    assert "optim.lr" in (run_dir / "error.txt").read_text()


def test_a_nan_in_a_term_on_the_first_step_names_its_weight(tmp_path, monkeypatch):
    config = tiny_config(tmp_path)
    trainer = Trainer(config)
    original = trainer._losses

    def poisoned(planned, batch, progress):
        logits, losses = original(planned, batch, progress)
        if planned.stage == "student":
            losses["hint:layer3<-layer3"] = losses["hint:layer3<-layer3"] * float("inf")
        return logits, losses

    monkeypatch.setattr(trainer, "_losses", poisoned)
    with pytest.raises(NonFiniteError) as info:
        trainer.run()
    assert info.value.field == "pairs[1].weight" and "'hint:layer3<-layer3' is +Inf" in str(info.value)
    assert not (trainer.run_dir / "student.safetensors").exists()       # never trained


def test_skip_mode_skips_and_counts_and_restores_batchnorm(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, epochs=2)
    config.on_nonfinite = "skip"
    trainer = Trainer(config)
    original = trainer._losses
    calls = {"n": 0}

    def sometimes_nan(planned, batch, progress):
        logits, losses = original(planned, batch, progress)
        if planned.stage == "student":
            calls["n"] += 1
            if calls["n"] in (2, 3, 6):
                with torch.no_grad():               # what an exploding forward does to BatchNorm statistics
                    for module in trainer.student.modules():
                        if isinstance(module, torch.nn.BatchNorm2d):
                            module.running_mean.data.fill_(float("nan"))
                losses["ce"] = losses["ce"] * float("nan")
        return logits, losses

    monkeypatch.setattr(trainer, "_losses", sometimes_nan)
    events = []
    trainer.subscribe(events.append)
    finished = trainer.run()
    assert finished.metrics["skipped_steps"] == 3
    assert not nonfinite_names(trainer.student)
    steps = [e for e in events if isinstance(e, StepEvent) and e.stage == "student"]
    assert all(math.isfinite(e.total) for e in steps) and {2, 3, 6}.isdisjoint(e.step for e in steps)
    assert (trainer.run_dir / "student.safetensors").is_file()


def test_metrics_are_strict_json_with_non_finite_numbers_flagged():
    record = {"type": "step", "losses": {"ce": float("nan"), "at": 1.5}, "total": float("inf"), "lr": -float("inf")}
    line = encode_record(record)
    assert "NaN" not in line and "Infinity" not in line
    data = json.loads(line)
    assert data["losses"]["ce"] is None and data["nonfinite"] == {"losses.ce": "nan", "total": "inf", "lr": "-inf"}
    back = decode_record(line)
    assert math.isnan(back["losses"]["ce"]) and back["total"] == math.inf and back["lr"] == -math.inf
    assert back["losses"]["at"] == 1.5 and "nonfinite" not in back
