"""SPLoss against an independent loop-based computation, its permutation behaviour, and its placement."""

import math

import numpy as np
import pytest
import torch

from featdistill_core.losses import METHODS, SPLoss
from featdistill_core.placement import place_method
from featdistill_core.validate import model_layers


def _sp(fs: np.ndarray, ft: np.ndarray) -> float:
    """G_ij = <q_i, q_j>, each row divided by its L2 norm; squared Frobenius difference over B²."""
    def gram(x):
        q = x.reshape(len(x), -1).astype(np.float64)
        b = len(q)
        g = [[float(sum(q[i] * q[j])) for j in range(b)] for i in range(b)]
        return [[g[i][j] / math.sqrt(sum(v * v for v in g[i])) for j in range(b)] for i in range(b)]

    gs, gt = gram(fs), gram(ft)
    b = len(gs)
    return sum((gt[i][j] - gs[i][j]) ** 2 for i in range(b) for j in range(b)) / (b * b)


def test_matches_the_formula_with_different_channels_and_sizes():
    rng = np.random.default_rng(0)
    fs, ft = rng.normal(size=(5, 3, 4, 4)), rng.normal(size=(5, 7, 2, 2))
    loss = SPLoss()(torch.tensor(fs, dtype=torch.float32), torch.tensor(ft, dtype=torch.float32))
    assert loss.item() == pytest.approx(_sp(fs, ft), rel=1e-4)


def test_flat_features_too():
    rng = np.random.default_rng(1)
    fs, ft = rng.random(size=(4, 6)), rng.random(size=(4, 10))
    loss = SPLoss()(torch.tensor(fs, dtype=torch.float32), torch.tensor(ft, dtype=torch.float32))
    assert loss.item() == pytest.approx(_sp(fs, ft), rel=1e-4)


def test_permutations():
    student, teacher = torch.randn(6, 4, 3, 3), torch.randn(6, 8, 3, 3)
    base = SPLoss()(student, teacher).item()
    order = torch.tensor([2, 5, 0, 1, 4, 3])
    # the same permutation of both batches: G → P G Pᵀ on both sides, the loss is unchanged
    assert SPLoss()(student[order], teacher[order]).item() == pytest.approx(base, rel=1e-5)
    # permuting channels or positions of one side does not change its Gram matrix
    assert SPLoss()(student[:, torch.tensor([3, 1, 0, 2])], teacher).item() == pytest.approx(base, rel=1e-5)
    assert SPLoss()(student.flip(-1), teacher.transpose(2, 3)).item() == pytest.approx(base, rel=1e-5)
    # permuting only one side's batch pairs the wrong images: the loss changes
    assert SPLoss()(student[order], teacher).item() != pytest.approx(base, rel=1e-3)


def test_zero_when_the_similarities_agree_and_invariant_to_a_global_scale():
    feat = torch.randn(5, 4, 2, 2)
    assert SPLoss()(feat, feat).item() == pytest.approx(0.0, abs=1e-8)
    assert SPLoss()(feat * 9.0, feat).item() == pytest.approx(0.0, abs=1e-7)
    assert SPLoss()(torch.randn(5, 4, 2, 2), feat).item() > 0


def test_gradient_reaches_the_student_never_the_teacher():
    student = torch.randn(4, 3, 2, 2, requires_grad=True)
    teacher = torch.randn(4, 5, 2, 2, requires_grad=True)
    SPLoss()(student, teacher).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_placed_on_the_last_shared_stage_with_the_reference_weight():
    info = METHODS["sp"]
    assert (info.default_weight, info.taps, info.placement) == (3000.0, "output", "last_stage")
    terms = place_method("sp", model_layers("demo_teacher", 10), model_layers("demo_student", 10))
    assert terms == [(["layer3"], ["layer3"])]
    with pytest.raises(ValueError, match="batches of one size"):
        SPLoss()(torch.randn(3, 4), torch.randn(2, 4))
