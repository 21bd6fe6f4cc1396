"""Checkpoints and exact resume, in one process (the kill -9 suite in test_faults.py does it across processes)."""

import json
import threading

import pytest
import torch

from featdistill_core.checkpoint import CHECKPOINT_BEST, CHECKPOINT_LAST, CheckpointError, read_checkpoint
from featdistill_core.events import Checkpointed, Resumed, StepEvent
from featdistill_core.runfolder import RunFolderError, RunFollower, load_run, run_status
from featdistill_core.trainer import Trainer

from tests._tiny import tiny_config


def _config(tmp_path, **changes):
    config = tiny_config(tmp_path, epochs=2, **changes)
    config.teacher.train_epochs = 2
    return config


def _numbers(record):
    """Everything a resumed run must reproduce exactly (images/s, being timing, is left out)."""
    return ([(e.stage, e.step, e.epoch, e.losses, e.total, e.lr) for e in record.steps],
            [(e.stage, e.epoch, e.train_acc, e.test_acc, e.teacher_acc) for e in record.epochs],
            [(s.stage, s.step, [p.student.tobytes() for p in s.pairs]) for s in record.snapshots],
            record.finished.metrics)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    trainer = Trainer(_config(tmp_path_factory.mktemp("reference")))
    trainer.run()
    return _numbers(load_run(trainer.run_dir)), trainer.run_dir


def _stop_at(trainer, stage, step):
    def on_event(event):
        if isinstance(event, StepEvent) and event.stage == stage and event.step == step:
            trainer.request_stop()
    trainer.subscribe(on_event)


@pytest.mark.parametrize("stage, step", [("teacher", 4), ("student", 5)])   # an epoch's end; mid-epoch
def test_stop_then_resume_equals_an_uninterrupted_run(tmp_path, reference, stage, step):
    trainer = Trainer(_config(tmp_path))
    _stop_at(trainer, stage, step)
    finished = trainer.run()
    assert finished.stopped
    status = run_status(trainer.run_dir)
    assert status.state == "stopped" and status.resumable and status.checkpoint["step"] == step
    payload = torch.load(trainer.run_dir / CHECKPOINT_LAST, weights_only=True)   # plain data only
    assert payload["reason"] == "stop" and payload["state"]["position"]["step"] == step
    if stage == "teacher":
        assert (trainer.run_dir / "teacher.safetensors").is_file()      # the teacher trained so far
        assert not (trainer.run_dir / "student.safetensors").exists()   # never an untrained student

    resumed = Trainer.resume_from(trainer.run_dir)
    events = []
    resumed.subscribe(events.append)
    again = resumed.run()
    assert not again.stopped and isinstance(events[0], Resumed) and events[0].step == step
    assert _numbers(load_run(trainer.run_dir)) == reference[0]
    assert run_status(trainer.run_dir).state == "finished"
    lines = (trainer.run_dir / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines) and any('"resumed"' in line for line in lines)


def test_timed_checkpoints_mid_epoch_and_best(tmp_path, reference):
    config = _config(tmp_path)
    config.checkpoint.every_minutes = 1e-6          # after every step
    trainer = Trainer(config)
    seen = []
    trainer.subscribe(lambda e: seen.append(e) if isinstance(e, Checkpointed) else None)
    trainer.run()
    reasons = {e.reason for e in seen}
    assert reasons == {"timed", "epoch"}
    assert [e.batch for e in seen if e.reason == "timed"][:3] == [1, 2, 3]
    assert (trainer.run_dir / CHECKPOINT_BEST).is_file()
    best = read_checkpoint(trainer.run_dir / CHECKPOINT_BEST)["state"]
    history = best["history"]
    student = [h["test_acc"] for h in history if h["stage"] == "student"]
    assert student[-1] == max(student)
    assert _numbers(load_run(trainer.run_dir)) == reference[0]      # checkpoints change nothing


def test_resume_without_checkpoint_starts_over_in_the_same_folder(tmp_path, reference):
    trainer = Trainer(_config(tmp_path))
    _stop_at(trainer, "teacher", 1)
    trainer.run()
    (trainer.run_dir / CHECKPOINT_LAST).unlink()
    assert run_status(trainer.run_dir).resumable
    Trainer.resume_from(trainer.run_dir).run()
    assert _numbers(load_run(trainer.run_dir)) == reference[0]


def test_resume_refuses_finished_running_and_changed_runs(tmp_path, reference):
    with pytest.raises(RunFolderError, match="finished"):
        Trainer.resume_from(reference[1])
    with pytest.raises(RunFolderError, match="not a run folder"):
        Trainer.resume_from(tmp_path)

    trainer = Trainer(_config(tmp_path))
    _stop_at(trainer, "student", 2)
    trainer.run()
    run_toml = trainer.run_dir / "run.toml"
    run_toml.write_text(run_toml.read_text().replace("seed = 0", "seed = 1"))
    with pytest.raises(CheckpointError, match="was changed"):
        Trainer.resume_from(trainer.run_dir).run()
    run_toml.write_text(run_toml.read_text().replace("seed = 1", "seed = 0"))

    from featdistill_core.runfolder import RunLock
    with RunLock(trainer.run_dir):               # as another process training into it would
        assert run_status(trainer.run_dir).state == "running"
        with pytest.raises(RunFolderError, match="another featdistill process"):
            Trainer.resume_from(trainer.run_dir)
    Trainer.resume_from(trainer.run_dir).run()
    assert _numbers(load_run(trainer.run_dir)) == reference[0]


def test_a_hostile_checkpoint_is_refused_without_running_code(tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    trainer = Trainer(_config(tmp_path))
    _stop_at(trainer, "teacher", 1)
    trainer.run()
    path = trainer.run_dir / CHECKPOINT_LAST
    payload = torch.load(path, weights_only=True)
    payload["state"]["metrics"] = Evil()
    torch.save(payload, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="refusing"):
        Trainer.resume_from(trainer.run_dir).run()
    assert not marker.exists()
    torch.save({"format": "featdistill-checkpoint", "fingerprint": payload["fingerprint"], "state": {"version": 1}}, path)
    with pytest.raises(CheckpointError, match="does not fit"):
        Trainer.resume_from(trainer.run_dir).run()
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="damaged"):
        Trainer.resume_from(trainer.run_dir).run()


def test_follower_reads_a_run_while_it_is_written(tmp_path, reference):
    early = RunFollower(tmp_path / "not yet")
    assert early.poll().events == [] and early.config is None and not early.ended     # no folder yet
    trainer = Trainer(_config(tmp_path))
    follower = RunFollower(trainer.run_dir)
    assert follower.poll().events == [] and follower.config == trainer.config        # no metrics.jsonl yet
    seen, polls = [], []
    release = threading.Event()

    def on_event(event):
        if isinstance(event, StepEvent) and event.step % 2 == 0:
            update = follower.poll()                 # the writer subscriber has written this line
            polls.append(len(update.events))
            seen.extend(update.events)

    trainer.subscribe(on_event)
    trainer.run()
    seen.extend(follower.poll().events)
    release.set()
    assert follower.ended and follower.config == trainer.config
    assert sum(1 for p in polls if p) >= 4            # it read a little at a time
    record = follower.record
    assert _numbers(record) == reference[0]
    assert [e.step for e in seen if isinstance(e, StepEvent)] == [e.step for e in record.steps]


def test_follower_tolerates_a_half_written_line_and_a_damaged_one(tmp_path, reference):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(reference[1], folder)
    lines = (folder / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    (folder / "metrics.jsonl").write_bytes(b"".join(lines[:3]) + lines[3][:10])
    follower = RunFollower(folder)
    assert len(follower.poll().events) == 3
    with open(folder / "metrics.jsonl", "ab") as stream:
        stream.write(lines[3][10:] + b"{not json\n" + b"".join(lines[4:]))
    update = follower.poll()
    assert len(update.events) == len(lines) - 3 and len(follower.problems) == 1
    assert follower.ended
    (folder / "metrics.jsonl").write_bytes(b"".join(lines[:2]))       # replaced by a shorter file
    assert follower.poll().reset and len(follower.record.steps) <= 2


def test_a_run_failing_at_data_loading_writes_no_model_and_says_so(tmp_path, monkeypatch):
    import featdistill_core.trainer as trainer_module
    from featdistill_core.data import DatasetError

    def broken(*args, **kwargs):
        raise DatasetError("image file x.png: cannot be read as an image")

    monkeypatch.setattr(trainer_module, "load_dataset", broken)
    trainer = Trainer(_config(tmp_path))
    with pytest.raises(DatasetError):
        trainer.run()
    names = {p.name for p in trainer.run_dir.iterdir()}
    assert "student.safetensors" not in names and "teacher.safetensors" not in names
    text = (trainer.run_dir / "error.txt").read_text()
    assert text.startswith("image file x.png") and "before training" in text and "no checkpoint" in text
    assert run_status(trainer.run_dir).state == "failed"


def test_a_run_killed_again_after_a_resumption_loads_without_the_snapshots_it_superseded(tmp_path, reference):
    """A resumption removes the snapshot files after its checkpoint; their lines stay before its
    record. Killed again before it re-reached them, the folder still loads (found by the kill -9
    fault test); a snapshot file missing with no resumption after it is still an error."""
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(reference[1], folder)
    log = folder / "metrics.jsonl"
    lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    last_snapshot = max(i for i, line in enumerate(lines) if '"type": "snapshot"' in line)
    gone = json.loads(lines[last_snapshot])
    (folder / gone["file"]).unlink()
    with pytest.raises(RunFolderError, match="snapshot file is missing"):
        load_run(folder)
    resumed = {"type": "resumed", "stage": gone["stage"], "epoch": 1, "batch": 0, "step": 0,
               "file": "checkpoint-last.pt", "run_dir": str(folder)}
    log.write_text("".join(lines[:last_snapshot + 1]) + json.dumps(resumed) + "\n", encoding="utf-8")
    record = load_run(folder)
    assert (gone["stage"], gone["step"]) not in [(s.stage, s.step) for s in record.snapshots]
