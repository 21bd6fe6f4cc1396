"""KDLoss against an independent numpy computation of KL(softmax(t/T) ‖ softmax(s/T))·T²."""

import math

import numpy as np
import pytest
import torch

from featdistill_core.losses import KDLoss

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def expected_kd(student: np.ndarray, teacher: np.ndarray, temperature: float) -> float:
    """Explicit loops: per sample Σ_k p_t (log p_t − log p_s), batch mean, times T²."""
    batch, classes = student.shape
    total = 0.0
    for b in range(batch):
        s = [float(v) / temperature for v in student[b]]
        t = [float(v) / temperature for v in teacher[b]]
        s_norm = math.log(sum(math.exp(v) for v in s))
        t_norm = math.log(sum(math.exp(v) for v in t))
        for k in range(classes):
            log_pt = t[k] - t_norm
            log_ps = s[k] - s_norm
            total += math.exp(log_pt) * (log_pt - log_ps)
    return total / batch * temperature**2


@pytest.mark.parametrize("temperature", [1.0, 4.0, 0.5])
def test_matches_hand_computed_formula(temperature):
    rng = np.random.default_rng(0)
    student = rng.normal(size=(3, 5)).astype(np.float32) * 3
    teacher = rng.normal(size=(3, 5)).astype(np.float32) * 3
    loss = KDLoss(temperature)(torch.from_numpy(student), torch.from_numpy(teacher))
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected_kd(student, teacher, temperature), rel=1e-5, abs=1e-7)


def test_default_temperature_is_four():
    assert KDLoss().temperature == 4.0


def test_zero_for_identical_logits_and_positive_otherwise():
    logits = torch.randn(4, 10)
    assert KDLoss()(logits, logits.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert KDLoss()(logits, torch.randn(4, 10)).item() > 0


def test_invariant_to_a_constant_shift_per_sample():
    student, teacher = torch.randn(4, 7), torch.randn(4, 7)
    shift = torch.randn(4, 1) * 10
    kd = KDLoss(3.0)
    assert kd(student + shift, teacher - shift).item() == pytest.approx(kd(student, teacher).item(), rel=1e-5)


def test_is_batch_mean_not_sum():
    student, teacher = torch.randn(2, 6), torch.randn(2, 6)
    doubled = KDLoss()(torch.cat([student, student]), torch.cat([teacher, teacher]))
    assert doubled.item() == pytest.approx(KDLoss()(student, teacher).item(), rel=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_reach_the_student_never_the_teacher(device):
    student = torch.randn(3, 5, device=device, requires_grad=True)
    teacher = torch.randn(3, 5, device=device, requires_grad=True)
    loss = KDLoss()(student, teacher)
    loss.backward()
    assert loss.dtype == torch.float32
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_autocast_bfloat16_inputs_give_float32_close_to_float32_result():
    student = torch.randn(4, 10).bfloat16()
    teacher = torch.randn(4, 10).bfloat16()
    reference = KDLoss()(student.float(), teacher.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = KDLoss()(student, teacher)
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-4)


@pytest.mark.parametrize("temperature", [0, -1.0, float("nan"), "4", True])
def test_rejects_a_bad_temperature(temperature):
    with pytest.raises(ValueError, match="KD temperature must be a positive number"):
        KDLoss(temperature)


def test_rejects_mismatched_or_non_2d_logits():
    with pytest.raises(ValueError, match=r"same shape; got student \(2, 5\) and teacher \(2, 6\)"):
        KDLoss()(torch.randn(2, 5), torch.randn(2, 6))
    with pytest.raises(ValueError, match=r"shape \(batch, classes\)"):
        KDLoss()(torch.randn(2, 5, 1), torch.randn(2, 5, 1))
