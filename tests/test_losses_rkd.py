"""RKDLoss against an independent loop-based computation of the distance and angle potentials."""

import itertools
import math

import numpy as np
import pytest
import torch

from featdistill_core.losses import METHODS, RKDLoss, build_term, BuildContext


def _huber(d: float) -> float:
    return 0.5 * d * d if abs(d) < 1 else abs(d) - 0.5


def _potentials(x: np.ndarray):
    x = x.reshape(len(x), -1).astype(np.float64)
    b = len(x)
    dist = [[float(np.linalg.norm(x[i] - x[j])) for j in range(b)] for i in range(b)]
    mu = sum(dist[i][j] for i in range(b) for j in range(b) if i != j) / (b * (b - 1))
    psi_d = {(i, j): dist[i][j] / mu for i in range(b) for j in range(b)}

    def unit(v):
        n = float(np.linalg.norm(v))
        return v / n if n > 0 else v * 0

    psi_a = {}
    for i, j, k in itertools.product(range(b), repeat=3):   # the angle at x_j between x_i and x_k
        psi_a[(i, j, k)] = float(np.dot(unit(x[i] - x[j]), unit(x[k] - x[j])))
    return psi_d, psi_a


def _rkd(fs, ft, w_d, w_a) -> float:
    ds, as_ = _potentials(fs)
    dt, at = _potentials(ft)
    b = len(fs)
    loss_d = sum(_huber(ds[key] - dt[key]) for key in ds) / (b * b)
    loss_a = sum(_huber(as_[key] - at[key]) for key in as_) / (b ** 3)
    return w_d * loss_d + w_a * loss_a


@pytest.mark.parametrize("w_d, w_a", [(25.0, 50.0), (1.0, 0.0), (0.0, 2.0)])
def test_matches_the_formula(w_d, w_a):
    rng = np.random.default_rng(0)
    fs, ft = rng.normal(size=(5, 4)), rng.normal(size=(5, 9)) * 3
    loss = RKDLoss(w_d, w_a)(torch.tensor(fs, dtype=torch.float32), torch.tensor(ft, dtype=torch.float32))
    assert loss.item() == pytest.approx(_rkd(fs, ft, w_d, w_a), rel=1e-4)


def test_large_differences_use_the_linear_part_of_huber():
    """One far-away student sample makes some normalised distances differ by more than 1."""
    rng = np.random.default_rng(2)
    fs, ft = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    fs[0] *= 40
    ds, _ = _potentials(fs)
    dt, _ = _potentials(ft)
    assert max(abs(ds[k] - dt[k]) for k in ds) > 1
    loss = RKDLoss(1.0, 0.0)(torch.tensor(fs, dtype=torch.float32), torch.tensor(ft, dtype=torch.float32))
    assert loss.item() == pytest.approx(_rkd(fs, ft, 1.0, 0.0), rel=1e-4)


def test_invariant_to_scale_and_translation_of_either_side():
    student, teacher = torch.randn(6, 5), torch.randn(6, 8)
    base = RKDLoss()(student, teacher).item()
    assert RKDLoss()(student * 7.5 + 3.0, teacher).item() == pytest.approx(base, rel=1e-4)
    assert RKDLoss()(student, teacher * 0.01 - 1.0).item() == pytest.approx(base, rel=1e-4)
    assert RKDLoss()(teacher @ torch.linalg.qr(torch.randn(8, 8))[0] * 4, teacher).item() == pytest.approx(0.0, abs=1e-6)
    assert base > 0


def test_the_same_permutation_of_both_batches_leaves_the_loss():
    student, teacher = torch.randn(5, 4), torch.randn(5, 6)
    order = torch.tensor([3, 0, 4, 1, 2])
    assert RKDLoss()(student[order], teacher[order]).item() == pytest.approx(RKDLoss()(student, teacher).item(), rel=1e-5)


def test_gradient_reaches_the_student_never_the_teacher_and_stays_finite_with_duplicates():
    student = torch.randn(4, 3)
    student[1] = student[0]                     # two coincident samples: zero distance off the diagonal
    student.requires_grad_(True)
    teacher = torch.randn(4, 6, requires_grad=True)
    loss = RKDLoss()(student, teacher)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_registration_options_and_refusals():
    info = METHODS["rkd"]
    assert (info.default_weight, info.taps, info.placement) == (1.0, "input", "embedding")
    assert {k: s.default for k, s in info.options.items()} == {"distance_weight": 25.0, "angle_weight": 50.0}
    term = build_term(BuildContext(method="rkd", options={"angle_weight": 0.0}, student_shapes=[(4,)],
                                   teacher_shapes=[(6,)]))
    assert (term.loss.distance_weight, term.loss.angle_weight) == (25.0, 0.0)
    with pytest.raises(ValueError, match="angle_weight"):
        RKDLoss(1.0, -1.0)
    with pytest.raises(ValueError, match="batches of one size"):
        RKDLoss()(torch.randn(3, 4), torch.randn(2, 4))
    assert not math.isnan(RKDLoss()(torch.randn(1, 4), torch.randn(1, 4)).item())
