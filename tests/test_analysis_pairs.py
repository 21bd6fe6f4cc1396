"""pair_cka.json: the CKA of each distilled pair before and after training, written by the trainer's hook."""

import json

import pytest
import torch

from featdistill_core.analysis import (
    PAIR_CKA_FILE, PairCKA, cka_matrices, measure_pair_cka, read_pair_cka, record_pair_cka,
)
from featdistill_core.analysis.similarity import CKALayer
from featdistill_core.data import load_dataset
from featdistill_core.trainer import Trainer
from featdistill_core.validate import initial_student, validate_run

from tests._tiny import tiny_config


def test_initial_student_is_the_one_validation_built(tmp_path):
    config = tiny_config(tmp_path)
    run = validate_run(config)
    rebuilt = initial_student(run.config, run.num_classes)
    state = torch.get_rng_state()
    initial_student(run.config, run.num_classes)
    assert torch.equal(torch.get_rng_state(), state)            # rebuilding leaves the generators alone
    for (name, a), (_, b) in zip(run.student.state_dict().items(), rebuilt.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_finished_run_has_the_pair_cka_of_each_pair(tiny_trained_run):
    found = read_pair_cka(tiny_trained_run)
    assert found is not None and not found.error and found.probe_size == 64
    assert [(p.method, p.teacher, p.student) for p in found.pairs] == [("at", "layer2", "layer2"),
                                                                       ("hint", "layer3", "layer3")]
    for pair in found.pairs:
        assert -0.2 < pair.before < 1.0 and -0.2 < pair.after < 1.0 and pair.before != pair.after
    assert "layer2" in found.format_table()


def test_the_values_are_the_cka_of_the_saved_networks(tiny_trained_run):
    from featdistill_core.models import load_weights

    run = validate_run(tiny_config(tiny_trained_run.parent.parent))      # the same config as the fixture's
    teacher, student = run.teacher, run.student
    load_weights(teacher, tiny_trained_run / "teacher.safetensors")
    load_weights(student, tiny_trained_run / "student.safetensors")
    data = load_dataset("demo", demo_train=128, demo_test=64, seed=0)
    images, _, _ = data.probe_images(64, seed=0)
    after, = cka_matrices(teacher, [CKALayer("layer2", (32, 16, 16))], [(student, [CKALayer("layer2", (16, 16, 16))])],
                          images)
    assert read_pair_cka(tiny_trained_run).pairs[0].after == pytest.approx(after[0, 0], abs=1e-9)
    measured = measure_pair_cka(run, teacher, student, images)
    assert measured.pairs[1].after == pytest.approx(read_pair_cka(tiny_trained_run).pairs[1].after, abs=1e-9)


def test_input_taps_are_measured_on_the_tensor_entering_the_layer(tmp_path):
    run = validate_run(tiny_config(tmp_path))
    data = load_dataset("demo", demo_train=128, demo_test=64, seed=0)
    images, _, _ = data.probe_images(32, seed=0)
    rows = [CKALayer("fc", (64,), taps="input")]
    cols = [CKALayer("fc", (32,), taps="input"), CKALayer("fc", (10,))]
    matrix, = cka_matrices(run.teacher, rows, [(run.student, cols)], images, batch_size=16)
    assert matrix.shape == (1, 2) and matrix[0, 0] != pytest.approx(matrix[0, 1])


def test_no_pairs_no_file_and_a_failure_is_written_not_raised(tmp_path):
    config = tiny_config(tmp_path)
    run = validate_run(config)
    data = load_dataset("demo", demo_train=128, demo_test=64, seed=0)
    assert record_pair_cka(tmp_path, run, None, run.student, data) is None        # no teacher
    assert not (tmp_path / PAIR_CKA_FILE).exists()
    assert record_pair_cka(tmp_path, run, run.teacher, run.student, data, cancel=lambda: True) is None
    assert not (tmp_path / PAIR_CKA_FILE).exists()

    def boom(*_):
        raise RuntimeError("boom\nsecond line")

    run.teacher.layer1.register_forward_hook(boom)
    result = record_pair_cka(tmp_path, run, run.teacher, run.student, data)
    assert result.error == "RuntimeError: boom" and not result.pairs
    assert read_pair_cka(tmp_path).error == "RuntimeError: boom"


def test_a_run_without_layer_pairs_writes_no_pair_cka(tmp_path):
    config = tiny_config(tmp_path, pairs=[])
    config.kd.weight = 1.0
    trainer = Trainer(config)
    trainer.run()
    assert not (trainer.run_dir / PAIR_CKA_FILE).exists() and read_pair_cka(trainer.run_dir) is None


@pytest.mark.parametrize("text", ["{", "[]", '{"pairs": [{"term": "x"}]}',
                                  '{"pairs": [{"term": "a", "method": "at", "teacher": "l", "student": "l", "before": "high"}]}'])
def test_a_damaged_file_is_a_value_error_naming_it(tmp_path, text):
    (tmp_path / PAIR_CKA_FILE).write_text(text)
    with pytest.raises(ValueError, match=PAIR_CKA_FILE):
        read_pair_cka(tmp_path)


def test_round_trip_keeps_undefined_values(tmp_path):
    from featdistill_core.analysis import PairSimilarity
    from featdistill_core.analysis.pairs import write_pair_cka

    result = PairCKA((PairSimilarity("at:a<-b", "at", "a", "b", "output", None, 0.5),), 64, 32)
    write_pair_cka(tmp_path, result)
    assert json.loads((tmp_path / PAIR_CKA_FILE).read_text())["pairs"][0]["before"] is None
    back = read_pair_cka(tmp_path)
    assert back.pairs[0].before is None and back.pairs[0].after == 0.5 and back.pairs[0].change is None


def test_a_stopped_run_writes_no_pair_cka(tmp_path):
    from featdistill_core.events import StepEvent

    trainer = Trainer(tiny_config(tmp_path))
    trainer.subscribe(lambda event: trainer.request_stop() if isinstance(event, StepEvent) else None)
    finished = trainer.run()
    assert finished.stopped and not (trainer.run_dir / PAIR_CKA_FILE).exists()
