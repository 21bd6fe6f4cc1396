"""The method contract, walked for every registered method (a new method is tested here for free).

For each method in ``METHODS``: its shape check never raises, whatever it is given; placed at its
reference placement on the demo networks it builds through a validated run; one step gives the
student (and the method's adapters) gradients and the teacher none; it runs under bfloat16 autocast
on the CPU; its adapters and memories save to safetensors and load back. A method whose module has a
one-off ``prepare(context)`` (FT, OFD) is prepared by the helper, as the trainer does before the
stage; its preparation is checked to run once, to be recorded in the saved state, and to be required.
"""

import random

import pytest
import torch

from featdistill_core.config import DataConfig, PairConfig, RunConfig, TeacherConfig
from featdistill_core.data.loader import BatchLoader
from featdistill_core.distiller import Distiller
from featdistill_core.losses import METHODS, TrainingProgress, check_pair
from featdistill_core.models import read_state_dict, save_weights
from featdistill_core.placement import place_method
from featdistill_core.validate import model_layers, validate_run

KEYS = list(METHODS)
BATCH = 8
DATASET = 64


def _weird_shape(rng: random.Random):
    kind = rng.randrange(10)
    if kind == 0:
        return None
    if kind == 1:
        return "64x8x8"
    if kind == 2:
        return (rng.choice([0, -1, 2**70, 1.5, True, None]),) + tuple(rng.randrange(1, 9) for _ in range(rng.randrange(3)))
    return tuple(rng.randrange(1, 70) for _ in range(rng.randrange(0, 5)))


@pytest.mark.parametrize("key", KEYS)
def test_shape_check_never_raises(key):
    rng = random.Random(key)
    for _ in range(400):
        count = rng.randrange(0, 5)
        student = [_weird_shape(rng) for _ in range(count)]
        teacher = [_weird_shape(rng) for _ in range(count if rng.random() < 0.8 else rng.randrange(0, 5))]
        if rng.random() < 0.05:
            student = rng.choice([None, "abc", 3, [[[]]]])
        options = rng.choice([{}, None, {"bogus": 1}, "x", {name: rng.choice([0, -1, "x", 1e308, None])
                                                              for name in METHODS[key].options}])
        check = check_pair(key, student, teacher, options)
        assert isinstance(check.ok, bool) and isinstance(check.reason, str) and isinstance(check.adapter, str)
        if not check.ok:
            assert check.reason and "Traceback" not in check.reason


@pytest.mark.parametrize("key", KEYS)
def test_the_method_is_described_and_registered_completely(key):
    info = METHODS[key]
    assert info.title and info.paper and info.formula and info.summary
    assert any(str(year) in info.paper for year in range(2014, 2030))
    assert info.default_weight > 0
    assert info.default_stage in ("student", "init")
    for spec in info.options.values():
        assert spec.help and isinstance(spec.default, spec.type)
        assert spec.choices is None or spec.default in spec.choices


def _validated(key, seed=0):
    teacher_layers = model_layers("demo_teacher", 10)
    student_layers = model_layers("demo_student", 10)
    pairs = [PairConfig(key, t, s) for t, s in place_method(key, teacher_layers, student_layers)]
    config = RunConfig(
        name=f"every-{key}", seed=seed, device="cpu", epochs=1, batch_size=BATCH,
        teacher=TeacherConfig(arch="demo_teacher", train_epochs=1),
        data=DataConfig(name="demo", demo_train=DATASET, demo_test=16),
        pairs=pairs, init_epochs=1,
    )
    return validate_run(config)


def _loader(seed=0) -> BatchLoader:
    """One batch of random images per epoch, the shape of the demo data."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (BATCH, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return BatchLoader(images, torch.arange(BATCH) % 10, BATCH, shuffle=True, mean=(0.5,) * 3, std=(0.25,) * 3,
                       seed=seed, drop_last=True)


def _distiller(run, prepare=True) -> Distiller:
    distiller = Distiller(run.terms, run.teacher, run.student, ce_weight=0.0, num_classes=run.num_classes,
                          dataset_size=DATASET)
    run.teacher.eval().requires_grad_(False)
    if prepare:
        distiller.prepare(_stage_of(run), _loader())
    return distiller


def _step(distiller, stage="student", epoch=25):
    torch.manual_seed(1)
    images = torch.randn(BATCH, 3, 32, 32)
    labels = torch.arange(BATCH) % 10
    indices = torch.randperm(DATASET)[:BATCH]
    progress = TrainingProgress(stage, epoch, 30, 3, 30 * 8, 8)
    return distiller(images, labels, indices, progress)


def _stage_of(run):
    return run.terms[0].stage


@pytest.mark.parametrize("key", KEYS)
def test_a_step_trains_the_student_and_adapters_never_the_teacher(key):
    run = _validated(key)
    assert run.terms, f"{key} could not be placed on the demo networks"
    distiller = _distiller(run)
    logits, losses = _step(distiller, _stage_of(run))
    assert losses and all(name != "ce" for name in losses)
    total = sum(losses.values())
    assert total.dim() == 0 and torch.isfinite(total)
    total.backward()
    moved = [p for p in run.student.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert moved, f"{key}: no student parameter received a gradient"
    for name, p in distiller.term_losses.named_parameters():
        assert p.grad is not None, f"{key}: adapter parameter {name} received no gradient"
    assert all(p.grad is None for p in run.teacher.parameters())
    distiller.after_step()
    distiller.close()


@pytest.mark.parametrize("key", KEYS)
def test_runs_under_bfloat16_autocast_on_the_cpu(key):
    run = _validated(key)
    distiller = _distiller(run)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, losses = _step(distiller, _stage_of(run))
        total = sum(losses.values())
    assert torch.isfinite(total.float())
    for name, value in losses.items():
        assert value.dtype == torch.float32, f"{name} is computed in {value.dtype}"
    total.backward()
    distiller.close()


@pytest.mark.parametrize("key", KEYS)
def test_adapters_and_memories_save_and_load(key, tmp_path):
    first = _distiller(_validated(key, seed=0))
    _, losses = _step(first, _stage_of(first))   # memories (if any) are filled by a step
    sum(losses.values()).backward()
    first.after_step()
    state = first.term_losses.state_dict()
    second = _distiller(_validated(key, seed=1))
    if not state:
        assert not second.term_losses.state_dict()
        return
    path = tmp_path / "adapters.safetensors"
    save_weights(first.term_losses, path)
    second.term_losses.load_state_dict(read_state_dict(path))
    for name, value in second.term_losses.state_dict().items():
        assert torch.equal(value, state[name]), name
    first.close()
    second.close()


PREPARED = [key for key in KEYS if _validated(key).terms and any(t.needs_prepare for t in _distiller(_validated(key), prepare=False).term_losses)]


def test_the_methods_with_a_preparation_are_found():
    assert {"ft", "ofd"} <= set(PREPARED)


@pytest.mark.parametrize("key", PREPARED)
def test_a_preparation_is_required_runs_once_reports_and_is_saved(key, tmp_path):
    run = _validated(key)
    distiller = _distiller(run, prepare=False)
    with pytest.raises(RuntimeError, match="not been prepared"):
        _step(distiller, _stage_of(run))
    reports, checkpoints = [], []
    prepared = distiller.prepare(_stage_of(run), _loader(), checkpoint=lambda: checkpoints.append(1),
                                 report=lambda done, total, loss: reports.append((done, total, loss)))
    assert prepared == [plan.name for plan in run.terms]
    assert all(bool(term.prepared) for term in distiller.term_losses)
    assert distiller.prepare(_stage_of(run), _loader()) == []            # done once, never again
    assert distiller.prepare("init" if _stage_of(run) == "student" else "student", _loader()) == []
    for done, total, loss in reports:
        assert 0 < done <= total and loss == loss
    state = distiller.term_losses.state_dict()
    path = tmp_path / "adapters.safetensors"
    save_weights(distiller.term_losses, path)
    resumed = _distiller(_validated(key, seed=1), prepare=False)
    resumed.term_losses.load_state_dict(read_state_dict(path))
    assert all(term.is_prepared for term in resumed.term_losses)         # a resumed run does not redo it
    assert resumed.prepare(_stage_of(run), _loader()) == []
    for name, value in resumed.term_losses.state_dict().items():
        assert torch.equal(value, state[name]), name
    _, losses = _step(resumed, _stage_of(run))
    assert torch.isfinite(sum(losses.values()))
    distiller.close()
    resumed.close()


def test_a_stop_during_a_preparation_leaves_it_unprepared():
    run = _validated("ft")
    distiller = _distiller(run, prepare=False)

    class Stop(Exception):
        pass

    def stop():
        raise Stop()

    with pytest.raises(Stop):
        distiller.prepare(_stage_of(run), _loader(), checkpoint=stop)
    assert not distiller.term_losses[0].is_prepared and not bool(distiller.term_losses[0].prepared)
    distiller.close()
