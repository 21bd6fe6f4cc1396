"""The distributed pieces that need no second process: the launch environment, what validation refuses
under torchrun, the in-memory loader's rank shares, the explicit learning-rate scaling, and the speed
options wired into the trainer (``tests/test_ddp.py`` launches torchrun itself)."""

from __future__ import annotations

import pytest
import torch

from featdistill_core import distributed, speed
from featdistill_core.config import ConfigError, RunConfig, checked
from featdistill_core.data import BatchLoader
from featdistill_core.distributed import Dist, LaunchEnv, launch_env, launch_problems
from featdistill_core.trainer import Trainer
from featdistill_core.validate import validate_run
from tests._tiny import tiny_config


# ---- the launch -------------------------------------------------------------------------------------

def test_launch_env_reads_torchrun_variables_and_refuses_nonsense():
    assert launch_env({}) == LaunchEnv(0, 0, 1) and not launch_env({}).launched
    env = launch_env({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"})
    assert env == LaunchEnv(3, 1, 4) and env.launched
    for bad in ({"WORLD_SIZE": "two"}, {"WORLD_SIZE": "2", "RANK": "2"}, {"WORLD_SIZE": "0"}):
        with pytest.raises(ValueError):
            launch_env(bad)


def test_one_process_takes_no_collective():
    single = distributed.current()
    assert single is distributed.SINGLE and not single.active and single.is_main
    tensor = torch.ones(2)
    assert single.sum(tensor) is tensor
    assert single.from_main(lambda: 7) == 7 and single.everywhere(lambda: 8) == 8
    assert single.device(torch.device("cuda")) == torch.device("cuda")
    assert Dist(1, 1, 2, "nccl").device(torch.device("cuda")) == torch.device("cuda", 1)   # cuda:LOCAL_RANK
    assert Dist(1, 1, 2, "gloo").device(torch.device("cpu")) == torch.device("cpu")


def test_launch_problems_name_their_fields():
    two = LaunchEnv(0, 0, 2)
    assert launch_problems(LaunchEnv(), batch_size=31, device_spec="cuda:1", device=None, sync_batchnorm=True) == []
    found = dict(launch_problems(two, batch_size=31, device_spec="cuda:1", device=torch.device("cpu"),
                                 sync_batchnorm=True))
    assert set(found) == {"batch_size", "device", "sync_batchnorm"}
    assert "divide evenly over the 2 processes" in found["batch_size"] and "got 31" in found["batch_size"]
    assert "cuda:LOCAL_RANK" in found["device"]
    assert launch_problems(two, batch_size=32, device_spec="auto", device=torch.device("cpu"),
                           sync_batchnorm=False) == []


def test_validation_under_torchrun_refuses_every_launch_problem_at_once(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, batch_size=31, sync_batchnorm=True)
    validate_run(config)                                  # fine in one process
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ConfigError) as error:
        validate_run(config)
    assert {p.field for p in error.value.problems} == {"batch_size", "sync_batchnorm"}


def test_new_options_default_off_and_are_checked():
    config = RunConfig()
    assert (config.sync_batchnorm, config.lr_scaling) == (False, "none")
    config.lr_scaling = "sqrt"
    with pytest.raises(ConfigError, match="lr_scaling: must be one of 'none', 'linear'"):
        checked(config)


# ---- the in-memory loader's shares --------------------------------------------------------------------

def _loader(images, labels, **kw):
    return BatchLoader(images, labels, 8, shuffle=True, augment=True, mean=(0.5,) * 3, std=(0.25,) * 3, seed=3,
                       drop_last=True, **kw)


def test_ranks_split_each_one_process_batch_with_the_same_augmentation():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (37, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(37) % 5
    one = _loader(images, labels)
    ranks = [_loader(images, labels, rank=r, world_size=2) for r in (0, 1)]
    assert len(one) == len(ranks[0]) == len(ranks[1]) == 4
    seen = []
    for epoch in (0, 1):
        for whole, *shares in zip(one.epoch_batches(epoch), *(r.epoch_batches(epoch) for r in ranks)):
            assert [len(s.labels) for s in shares] == [4, 4]
            assert torch.equal(torch.cat([s.indices for s in shares]), whole.indices)
            assert torch.equal(torch.cat([s.images for s in shares]), whole.images)    # same crops and flips
            assert torch.equal(torch.cat([s.labels for s in shares]), whole.labels)
            seen.append(set(shares[0].indices.tolist()) & set(shares[1].indices.tolist()))
        # resuming at batch 2 gives the same shares as the full pass
        again = list(ranks[1].epoch_batches(epoch, start=2))
        full = list(ranks[1].epoch_batches(epoch))[2:]
        assert all(torch.equal(a.images, b.images) for a, b in zip(again, full)) and len(again) == 2
    assert all(not overlap for overlap in seen)                  # disjoint shares
    assert ranks[0].num_samples == ranks[1].num_samples == 16


def test_test_loader_shares_cover_the_split_once():
    images = torch.randint(0, 256, (11, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(11)
    shares = [BatchLoader(images, labels, 4, mean=(0.5,) * 3, std=(0.25,) * 3, rank=r, world_size=3) for r in range(3)]
    got = sorted(i for s in shares for b in s for i in b.indices.tolist())
    assert got == list(range(11)) and sum(s.num_samples for s in shares) == 11
    with pytest.raises(ValueError, match="at least one image per rank"):
        BatchLoader(images, labels, 2, mean=(0.5,) * 3, std=(0.25,) * 3, rank=0, world_size=3)


# ---- the trainer's explicit choices ---------------------------------------------------------------------

def test_lr_scaling_is_explicit(tmp_path):
    for scaling, expected in (("none", 0.05), ("linear", 0.1)):
        trainer = Trainer(tiny_config(tmp_path, lr_scaling=scaling), tmp_path / scaling)
        trainer.dist = Dist(0, 0, 2, "gloo")             # as rank 0 of two, without a process group
        trainer.loader, trainer.teacher = [0] * 4, torch.nn.Linear(2, 2)
        optimizer, _, scaler = trainer._stage_objects(trainer.stages[0])
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected)
        assert not scaler.is_enabled()


def test_mixed_precision_channels_last_and_compile_are_wired_into_the_trainer(tmp_path, monkeypatch):
    """bf16 autocast on the CPU and NHWC models and batches train for real; compile is handed to
    :func:`~featdistill_core.speed.compile_in_place` for the student and the teacher after the hooks
    are in place (a real torch.compile of a whole run is too slow for CI on this machine; the helper
    itself is compiled with the "eager" backend in :func:`test_compile_in_place_keeps_names_and_hooks`)."""
    import featdistill_core.trainer as trainer_module

    calls = []
    monkeypatch.setattr(trainer_module, "compile_in_place", lambda m, mode: calls.append((m, mode)) or m)
    base = tiny_config(tmp_path)
    config = tiny_config(tmp_path, mixed_precision=True, channels_last=True, compile="max-autotune",
                         pairs=base.pairs[:1])
    trainer = Trainer(config)
    steps = []
    trainer.subscribe(lambda e: steps.append(e) if type(e).__name__ == "StepEvent" else None)
    finished = trainer.run()
    assert trainer._amp.dtype == torch.bfloat16 and not trainer._amp.scaler
    convs = [m for m in trainer.student.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert calls == [(trainer.student, "max-autotune"), (trainer.teacher, "max-autotune")]
    assert all(e.losses["at:layer2<-layer2"] > 0 for e in steps if str(e.stage) == "student")
    assert finished.metrics["student_test_acc"] >= 0


def test_compile_in_place_keeps_names_and_hooks(monkeypatch):
    """...and turns off donated buffers, which the loss-balance measurement's ``retain_graph`` needs
    (found by ``bench_gpu.py --cpu-smoke``: an inductor-compiled run failed in its calibration)."""
    import torch._functorch.config as functorch_config

    monkeypatch.setattr(speed, "COMPILE_BACKEND", "eager")
    monkeypatch.setattr(functorch_config, "donated_buffer", True)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    seen = []
    model[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    names = set(model.state_dict())
    assert speed.compile_in_place(model, "off") is model and model._compiled_call_impl is None
    assert speed.compile_in_place(model, "default") is model and model._compiled_call_impl is not None
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), model[1](model[0](x)))
    assert seen and set(model.state_dict()) == names
    assert functorch_config.donated_buffer is False
    with pytest.raises(ValueError, match="compile must be one of"):
        speed.compile_in_place(model, "fast")


class _TwoRanks(Dist):
    """Rank 0 of two, whose other rank computed the same and was asked to stop."""

    def sum(self, tensor):
        other = tensor.clone()
        other[-1] = 1.0
        return tensor + other


def test_a_stop_asked_of_one_rank_stops_every_rank_after_the_same_step(tmp_path):
    trainer = Trainer(tiny_config(tmp_path), tmp_path / "run")
    trainer.dist = _TwoRanks(0, 0, 2, "gloo")
    losses = {"ce": torch.tensor(2.0), "at": torch.tensor(0.5)}
    logits, labels = torch.eye(3)[[0, 1, 2, 0]], torch.tensor([0, 1, 0, 0])
    assert not trainer._control.stop_requested
    means, total, correct, images = trainer._across_ranks(losses, torch.tensor(2.5), logits, labels)
    assert trainer._control.stop_requested                 # asked of the other rank only
    assert means == {"ce": pytest.approx(2.0), "at": pytest.approx(0.5)} and float(total) == pytest.approx(2.5)
    assert int(correct) == 6 and images == 8               # sums over both ranks
