import threading

import numpy as np
import pytest
import torch

from featdistill_core.config import ConfigError, PairConfig
from featdistill_core.events import AttentionSnapshot, EpochEvent, Failed, Finished, StageStarted, StepEvent
from featdistill_core.models import create_model, load_weights, save_weights
from featdistill_core.runfolder import load_run
from featdistill_core.trainer import Trainer

from tests._tiny import tiny_config


def _run(config, **kwargs):
    trainer = Trainer(config, **kwargs)
    events = []
    trainer.subscribe(events.append)
    finished = trainer.run()
    return trainer, finished, events


def test_run_emits_events_in_order_and_writes_the_folder(tmp_path):
    trainer, finished, events = _run(tiny_config(tmp_path))
    stages = [e.stage for e in events if isinstance(e, StageStarted)]
    assert stages == ["teacher", "student"]
    steps = [e for e in events if isinstance(e, StepEvent) and e.stage == "student"]
    assert [s.step for s in steps] == list(range(1, 5))        # 128 images / 32, log_every=1
    assert {"ce", "at:layer2<-layer2", "hint:layer3<-layer3"} <= set(steps[0].losses)
    assert steps[0].total == pytest.approx(sum(steps[0].losses.values()), rel=1e-5)
    assert all(s.images_per_sec > 0 and s.lr > 0 for s in steps)
    epoch = [e for e in events if isinstance(e, EpochEvent) and e.stage == "student"][0]
    assert 0 <= epoch.test_acc <= 100 and epoch.teacher_acc == finished.metrics["teacher_test_acc"]
    snaps = [e for e in events if isinstance(e, AttentionSnapshot)]
    assert [s.step for s in snaps] == [2, 4]
    pair = snaps[0].pairs[0]
    assert pair.teacher.shape == pair.student.shape == (4, 16, 16)
    assert np.allclose(pair.teacher.reshape(4, -1).mean(1), 1.0, atol=1e-4)
    assert snaps[0].images.shape == (4, 32, 32, 3) and 0 <= snaps[0].images.min() and snaps[0].images.max() <= 1
    assert isinstance(events[-1], Finished) and not finished.stopped

    run_dir = trainer.run_dir
    for name in ("run.toml", "metrics.jsonl", "teacher.safetensors", "student.safetensors", "adapters.safetensors"):
        assert (run_dir / name).is_file(), name
    record = load_run(run_dir)
    assert record.config == trainer.config
    assert len(record.steps) == len([e for e in events if isinstance(e, StepEvent)])
    assert len(record.snapshots) == 2
    assert np.array_equal(record.snapshots[1].pairs[0].student, snaps[1].pairs[0].student)
    assert record.finished.metrics == finished.metrics


def test_teacher_is_frozen_during_distillation(tmp_path):
    first = tiny_config(tmp_path, epochs=0)
    trainer, _, _ = _run(first)                      # trains the teacher only
    teacher_file = trainer.run_dir / "teacher.safetensors"
    config = tiny_config(tmp_path)
    config.teacher.train_epochs = 0
    config.teacher.weights = str(teacher_file)
    trainer, finished, events = _run(config)
    assert [e.stage for e in events if isinstance(e, StageStarted)] == ["student"]
    before = create_model("demo_teacher", 10)
    load_weights(before, teacher_file)
    after = trainer.teacher
    for (name, a), b in zip(before.state_dict().items(), after.state_dict().values()):
        assert torch.equal(a, b.cpu()), name                 # BN statistics included
    assert all(p.grad is None for p in after.parameters())


def test_same_seed_same_numbers_on_cpu(tmp_path):
    losses = []
    for i in range(2):
        _, _, events = _run(tiny_config(tmp_path / str(i)))
        losses.append([e.total for e in events if isinstance(e, StepEvent)])
    assert losses[0] == losses[1]


def test_stop_from_another_thread_takes_effect_within_a_step(tmp_path):
    config = tiny_config(tmp_path, epochs=50)
    trainer = Trainer(config)
    events = []

    def on_event(event):
        events.append(event)
        if isinstance(event, StepEvent) and event.stage == "student" and event.step == 2:
            threading.Thread(target=trainer.request_stop).start()
            threading.Event().wait(0.5)     # the request lands while this step is still running

    trainer.subscribe(on_event)
    finished = trainer.run()
    student_steps = [e.step for e in events if isinstance(e, StepEvent) and e.stage == "student"]
    assert finished.stopped and student_steps[-1] == 2
    assert (trainer.run_dir / "student.safetensors").is_file()


def test_pause_blocks_until_resume(tmp_path):
    config = tiny_config(tmp_path, epochs=3)
    trainer = Trainer(config)
    seen = []
    paused_at = threading.Event()

    def on_event(event):
        if isinstance(event, StepEvent) and event.stage == "student":
            seen.append(event.step)
            if event.step == 1:
                trainer.pause()
                paused_at.set()

    trainer.subscribe(on_event)
    worker = threading.Thread(target=trainer.run)
    worker.start()
    assert paused_at.wait(30)
    threading.Event().wait(0.5)
    assert seen == [1] and trainer.paused
    trainer.resume()
    worker.join(60)
    assert not worker.is_alive() and seen[-1] == 12


def test_failure_emits_failed_and_keeps_files(tmp_path, monkeypatch):
    config = tiny_config(tmp_path)
    trainer = Trainer(config)
    events = []
    trainer.subscribe(events.append)

    def broken(*args, **kwargs):
        raise RuntimeError("loss exploded")

    monkeypatch.setattr(trainer, "_losses", lambda planned, *args: broken() if planned.stage == "student" else
                        Trainer._losses(trainer, planned, *args))
    with pytest.raises(RuntimeError):
        trainer.run()
    assert isinstance(events[-1], Failed) and events[-1].error == "loss exploded"
    assert (trainer.run_dir / "error.txt").read_text().startswith("loss exploded")
    assert (trainer.run_dir / "teacher.safetensors").is_file()
    assert load_run(trainer.run_dir).failed.error == "loss exploded"


def test_bad_layer_refused_before_training(tmp_path):
    config = tiny_config(tmp_path)
    config.pairs[0] = PairConfig("at", ["layer9"], ["layer2"], 1000.0, "joint", {"p": 2, "normalize": "l2"})
    with pytest.raises(ConfigError) as info:
        Trainer(config)                             # the Python API validates as `featdistill check` does
    assert info.value.field == "pairs[0].teacher" and "layer2" in str(info.value)
    assert not (tmp_path / "runs").exists()


def test_the_api_refuses_what_check_refuses(tmp_path):
    config = tiny_config(tmp_path)
    config.teacher.train_epochs = 0                 # AT pairs, no teacher weights: a random teacher
    config.epochs = -1
    with pytest.raises(ConfigError) as info:
        Trainer(config)
    assert {"teacher.weights", "epochs"} <= {p.field for p in info.value.problems}


def test_default_weight_is_the_reference_weight_in_code_and_in_files(tmp_path):
    from featdistill_core.config import config_from_dict
    assert PairConfig("at", ["layer2"], ["layer2"]).weight == 1000.0
    assert PairConfig("nst", ["layer2"], ["layer2"]).weight == 50.0
    loaded = config_from_dict({"teacher": {"weights": "t.pt"},
                               "pairs": [{"method": "at", "teacher": "layer2", "student": "layer2"}]})
    assert loaded.pairs[0].weight == 1000.0


def test_fsp_init_stage_then_student(tmp_path):
    config = tiny_config(tmp_path, init_epochs=1)
    config.pairs = [PairConfig("fsp", ["layer1", "layer2"], ["layer1", "layer2"], 1.0, "init", {})]
    _, finished, events = _run(config)
    stages = [e.stage for e in events if isinstance(e, StageStarted)]
    assert stages == ["teacher", "init", "student"]
    init_steps = [e for e in events if isinstance(e, StepEvent) and e.stage == "init"]
    assert set(init_steps[0].losses) == {"fsp:layer1+layer2<-layer1+layer2"}
    student_steps = [e for e in events if isinstance(e, StepEvent) and e.stage == "student"]
    assert set(student_steps[0].losses) == {"ce"}


def test_two_methods_on_the_same_layers_give_one_attention_row(tmp_path):
    config = tiny_config(tmp_path)
    config.pairs = [PairConfig("at", ["layer2"], ["layer2"], 1000.0, "joint", {"p": 2.0, "normalize": "l2"}),
                    PairConfig("hint", ["layer2"], ["layer2"], 1.0, "joint", {"regressor": "conv_bn_relu"})]
    _, _, events = _run(config)
    snaps = [e for e in events if isinstance(e, AttentionSnapshot)]
    assert snaps and all([p.name for p in s.pairs] == ["at:layer2<-layer2"] for s in snaps)
    steps = [e for e in events if isinstance(e, StepEvent) and e.stage == "student"]
    assert {"at:layer2<-layer2", "hint:layer2<-layer2"} <= set(steps[0].losses)   # both still trained
