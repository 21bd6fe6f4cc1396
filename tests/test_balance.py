"""Loss balance: each term measured against the task loss before training, warnings, ``weight = "auto"``."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from featdistill_core import cli
from featdistill_core.balance import auto_weight, calibrate, measure_run
from featdistill_core.config import (
    AUTO_WEIGHT, BalanceConfig, ConfigError, PairConfig, config_from_dict, config_to_toml, config_from_toml, load_config,
    save_config,
)
from featdistill_core.data import load_dataset
from featdistill_core.distiller import Distiller
from featdistill_core.events import LossBalance, StageStarted, StepEvent
from featdistill_core.losses import AttentionTransferLoss, KDLoss
from featdistill_core.runfolder import RunFolderError, load_run, read_balance
from featdistill_core.trainer import Trainer
from featdistill_core.validate import validate_run

from tests._tiny import tiny_config


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    """A demo teacher trained for one epoch on the tiny data (its weights give terms something to match)."""
    folder = tmp_path_factory.mktemp("teacher")
    trainer = Trainer(tiny_config(folder, epochs=0))
    trainer.run()
    return str(trainer.run_dir / "teacher.safetensors")


def _config(tmp_path, teacher_file, pairs, **balance):
    config = tiny_config(tmp_path)
    config.teacher.weights, config.teacher.train_epochs = teacher_file, 0
    config.pairs = pairs
    for key, value in balance.items():
        setattr(config.balance, key, value)
    return config


def _run(config):
    trainer = Trainer(config)
    events = []
    trainer.subscribe(events.append)
    trainer.run()
    return trainer, events


# ---- the run file ---------------------------------------------------------------------------------


def test_auto_weight_round_trips_through_a_run_file(tmp_path):
    config = config_from_dict({"teacher": {"weights": "t.safetensors"}, "balance": {"target": 0.2, "batches": 3},
                               "pairs": [{"method": "at", "teacher": "layer2", "student": "layer2", "weight": "auto"},
                                         {"method": "hint", "teacher": "layer3", "student": "layer3", "weight": 2.0}]})
    assert config.pairs[0].weight == AUTO_WEIGHT and config.pairs[1].weight == 2.0
    assert config.balance == BalanceConfig(auto=False, target=0.2, batches=3, warn_ratio=1.0)
    text = config_to_toml(config)
    assert 'weight = "auto"' in text
    assert config_from_toml(text) == config
    path = save_config(config, tmp_path / "run.toml")
    assert load_config(path).pairs[0].weight == AUTO_WEIGHT


@pytest.mark.parametrize("weight, words", [("Auto", 'a number or "auto"'), ("heavy", 'a number or "auto"'),
                                           (True, 'a number or "auto"'), (-1.0, "at least 0")])
def test_a_weight_is_a_number_or_auto(weight, words):
    with pytest.raises(ConfigError) as error:
        config_from_dict({"teacher": {"weights": "t.safetensors"},
                          "pairs": [{"method": "at", "teacher": ["layer2"], "student": ["layer2"], "weight": weight}]})
    problems = {p.field: p.message for p in error.value.problems}
    assert words in problems["pairs[0].weight"]


def test_auto_needs_calibration_batches_and_the_balance_section_is_checked():
    with pytest.raises(ConfigError) as error:
        config_from_dict({"teacher": {"weights": "t.safetensors"}, "kd": {"weight": 1.0},
                          "balance": {"batches": 0, "auto": True, "target": 0, "warn_ratio": -1, "extra": 1},
                          "pairs": [{"method": "at", "teacher": ["layer2"], "student": ["layer2"], "weight": "auto"}]})
    fields = {p.field: p.message for p in error.value.problems}
    assert "balance.batches" in fields and "balance.auto" in fields["balance.batches"]
    assert "balance.batches" in fields["pairs[0].weight"]
    assert "greater than 0" in fields["balance.target"] and "greater than 0" in fields["balance.warn_ratio"]
    assert "unknown setting" in fields["balance.extra"]


# ---- the measurement ----------------------------------------------------------------------------


def test_the_measurement_matches_an_independent_computation(tmp_path, teacher_file):
    config = _config(tmp_path, teacher_file, [PairConfig("at", ["layer3"], ["layer3"], 10.0)], batches=2)
    config.kd.weight = 0.5
    run = validate_run(config)
    report = measure_run(run)
    assert report.batches == 2 and [t.name for t in report.terms] == ["kd", "at:layer3<-layer3"]

    # by hand: the same two batches, the student in training mode, plain autograd
    data = load_dataset("demo", demo_train=128, demo_test=64, seed=0)
    loader = data.train_loader(32, augment=config.data.augment, seed=0)
    student, teacher = run.student, run.teacher.eval()
    params = [p for p in student.parameters()]
    feats = {}
    hooks = [student.layer3.register_forward_hook(lambda m, i, o: feats.__setitem__("s", o)),
             teacher.layer3.register_forward_hook(lambda m, i, o: feats.__setitem__("t", o))]
    sums = {"ce": [0, 0], "kd": [0, 0], "at": [0, 0]}
    state = {k: v.clone() for k, v in student.state_dict().items()}
    student.train()
    for b, batch in enumerate(loader.epoch_batches(0)):
        if b == 2:
            break
        with torch.no_grad():
            t_logits = teacher(batch.images)
        s_logits = student(batch.images)
        losses = {"ce": F.cross_entropy(s_logits, batch.labels), "kd": KDLoss(4.0)(s_logits, t_logits),
                  "at": AttentionTransferLoss()(feats["s"], feats["t"])}
        for name, value in losses.items():
            grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
            sums[name][0] += value.item() / 2
            sums[name][1] += math.sqrt(sum((g ** 2).sum().item() for g in grads if g is not None)) / 2
    for h in hooks:
        h.remove()
    student.load_state_dict(state)
    kd, at = report.terms
    assert report.task_loss == pytest.approx(sums["ce"][0], rel=1e-4)
    assert report.task_grad_norm == pytest.approx(sums["ce"][1], rel=1e-4)
    assert kd.loss == pytest.approx(sums["kd"][0], rel=1e-4) and kd.grad_norm == pytest.approx(sums["kd"][1], rel=1e-4)
    assert at.loss == pytest.approx(sums["at"][0], rel=1e-4) and at.grad_norm == pytest.approx(sums["at"][1], rel=1e-4)
    assert kd.loss_ratio == pytest.approx(0.5 * sums["kd"][0] / sums["ce"][0], rel=1e-4)
    assert at.grad_ratio == pytest.approx(10 * sums["at"][1] / sums["ce"][1], rel=1e-4)


def test_auto_weight_formula_and_its_refusals():
    assert auto_weight(0.1, 2.0, 4.0) == pytest.approx(0.05)
    assert auto_weight(0.1, 2.0, 0.0) is None and auto_weight(0.1, 0.0, 1.0) is None
    assert auto_weight(0.1, float("nan"), 1.0) is None
    assert auto_weight(1.0, 1.0, 1e-12) == 1e6           # capped at the largest weight a run file allows


def test_a_term_above_the_ratio_is_warned_about_and_check_prints_it(tmp_path, teacher_file, capsys):
    config = _config(tmp_path, teacher_file, [PairConfig("at", ["layer3"], ["layer3"], 1000.0),
                                              PairConfig("at", ["layer2"], ["layer2"], 1e-3)])
    report = measure_run(validate_run(config))
    loud, quiet = report.terms
    assert loud.grad_ratio > 1 and "may swamp the task loss" in loud.warning and quiet.warning == ""
    assert report.warnings == (f"{loud.name}: {loud.warning}",)
    relaxed = _config(tmp_path, teacher_file, config.pairs, warn_ratio=1e5)
    assert measure_run(validate_run(relaxed)).warnings == ()

    path = save_config(config, tmp_path / "run.toml")
    assert cli.main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "at:layer3<-layer3: weight 1000; starts at" in out and "the cross-entropy (gradient" in out
    assert "warning:" in out
    assert cli.main(["check", "--no-balance", str(path)]) == 0
    assert "starts at" not in capsys.readouterr().out


def test_measuring_leaves_the_models_and_the_random_state_alone(tmp_path, teacher_file):
    run = validate_run(_config(tmp_path, teacher_file, [PairConfig("hint", ["layer3"], ["layer3"], 1.0)]))
    before = {k: v.clone() for k, v in run.student.state_dict().items()}
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    measure_run(run)
    assert torch.equal(torch.rand(3), expected)
    assert all(torch.equal(before[k], v) for k, v in run.student.state_dict().items())   # BN statistics too


# ---- in training ---------------------------------------------------------------------------------


def test_auto_trains_exactly_as_the_chosen_weights_written_in(tmp_path, teacher_file):
    pairs = [PairConfig("at", ["layer2"], ["layer2"], AUTO_WEIGHT), PairConfig("hint", ["layer3"], ["layer3"], AUTO_WEIGHT)]
    auto, auto_events = _run(_config(tmp_path / "a", teacher_file, pairs, target=0.3))
    balance = [e for e in auto_events if isinstance(e, LossBalance)]
    assert len(balance) == 1
    chosen = balance[0].weights()
    assert all(t.auto and t.grad_ratio == pytest.approx(0.3) for t in balance[0].terms)

    # the balance event comes before the student's first step, and is in the run folder
    kinds = [type(e) for e in auto_events]
    first_student_step = next(i for i, e in enumerate(auto_events) if isinstance(e, StepEvent) and e.stage == "student")
    assert kinds.index(LossBalance) < first_student_step
    assert read_balance(auto.run_dir) == (balance[0],) == tuple(load_run(auto.run_dir).balance)
    assert json.loads((auto.run_dir / "balance.json").read_text())[0]["terms"][0]["weight"] == chosen["at:layer2<-layer2"]

    fixed_pairs = [PairConfig("at", ["layer2"], ["layer2"], chosen["at:layer2<-layer2"]),
                   PairConfig("hint", ["layer3"], ["layer3"], chosen["hint:layer3<-layer3"])]
    fixed, fixed_events = _run(_config(tmp_path / "f", teacher_file, fixed_pairs))
    unmeasured, unmeasured_events = _run(_config(tmp_path / "u", teacher_file, fixed_pairs, batches=0))
    assert not any(isinstance(e, LossBalance) for e in unmeasured_events)
    assert not (unmeasured.run_dir / "balance.json").exists()

    def losses(events):
        return [e.losses for e in events if isinstance(e, StepEvent) and e.stage == "student"]

    assert losses(auto_events) == losses(fixed_events) == losses(unmeasured_events)
    for other in (fixed, unmeasured):
        for (name, a), b in zip(auto.student.state_dict().items(), other.student.state_dict().values()):
            assert torch.equal(a, b), name


def test_balance_auto_applies_to_every_term_and_init_terms_are_measured(tmp_path, teacher_file):
    config = _config(tmp_path, teacher_file, [PairConfig("fsp", ["layer2", "layer3"], ["layer2", "layer3"], 1.0, "init"),
                                              PairConfig("at", ["layer3"], ["layer3"], 50.0)], auto=True)
    config.kd.weight, config.init_epochs = 1.0, 1
    trainer, events = _run(config)
    init, student = [e for e in events if isinstance(e, LossBalance)]      # one report per stage
    assert (init.stage, student.stage) == ("init", "student")
    assert [t.name for t in init.terms] == ["fsp:layer2+layer3<-layer2+layer3"]
    assert [t.name for t in student.terms] == ["kd", "at:layer3<-layer3"]
    terms = init.terms + student.terms
    assert all(t.auto for t in terms) and all(t.grad_ratio == pytest.approx(0.1) for t in terms)
    assert [e.stage for e in events if isinstance(e, StageStarted)] == ["init", "student"]
    assert {t.name: t.weight for t in trainer.distiller.terms} == {**init.weights(), **student.weights()}
    assert read_balance(trainer.run_dir) == (init, student)
    assert "loss balance (init stage) on 4 training batches" in init.lines()[0]


def test_a_resumed_run_takes_its_weights_from_the_run_folder(tmp_path, teacher_file):
    config = _config(tmp_path, teacher_file, [PairConfig("at", ["layer3"], ["layer3"], AUTO_WEIGHT)])
    first, _ = _run(config)
    (recorded,) = read_balance(first.run_dir)
    run = validate_run(config)
    data = load_dataset("demo", demo_train=128, demo_test=64, seed=0)
    distiller = Distiller(run.terms, run.teacher, run.student)
    emitted = []
    loader = data.train_loader(32, seed=0)
    calibrate(distiller, loader, run.config, stage="student", emit=emitted.append, run_dir=first.run_dir)
    assert emitted == [] and distiller.terms[0].weight == recorded.terms[0].weight
    calibrate(distiller, loader, run.config, stage="student", emit=emitted.append, run_dir=None)
    assert emitted == []                                       # once per stage and distiller


def test_a_damaged_balance_file_is_named(tmp_path):
    (tmp_path / "balance.json").write_text("{not json")
    with pytest.raises(RunFolderError, match="balance.json is damaged"):
        read_balance(tmp_path)
    (tmp_path / "balance.json").write_text(json.dumps({"batches": 1}))
    with pytest.raises(RunFolderError, match="damaged"):
        read_balance(tmp_path)
    assert read_balance(tmp_path / "nothing-here") == ()


def test_a_run_that_trains_its_teacher_is_measured_after_training_it(tmp_path):
    config = tiny_config(tmp_path)              # teacher trained in the run
    report = measure_run(validate_run(config))
    assert not report.teacher_trained and "yet to train" in "\n".join(report.lines())
    _, events = _run(config)
    (balance,) = [e for e in events if isinstance(e, LossBalance)]
    assert balance.teacher_trained
    kinds = [(type(e).__name__, str(getattr(e, "stage", ""))) for e in events]
    assert kinds.index(("StageStarted", "student")) < kinds.index(("LossBalance", "student")) \
        < kinds.index(("StepEvent", "student"))


def test_the_progress_bar_prints_the_balance(tmp_path):
    import io

    from featdistill_core.cli.output import ProgressBar
    from featdistill_core.events import TermBalance

    term = TermBalance(name="hint:layer3<-layer3", field="pairs[0]", method="hint", stage="student", weight=1.0,
                       auto=False, loss=2.95, grad_norm=1.0, loss_ratio=1.3, grad_ratio=1.7, warning="too loud")
    stream = io.StringIO()
    ProgressBar(stream=stream)(LossBalance(batches=4, task_loss=2.27, task_grad_norm=1.0, target=0.1, warn_ratio=1.0,
                                           terms=(term,)))
    text = stream.getvalue()
    assert "loss balance on 4 training batches: task loss 2.27" in text
    assert "hint:layer3<-layer3: weight 1; starts at 1.3× the cross-entropy (gradient 1.7×) — warning: too loud" in text
