"""PKTLoss against an independent loop-based computation of the KL between conditional distributions."""

import math

import numpy as np
import pytest
import torch

from featdistill_core.losses import METHODS, PKTLoss, check_pair

EPS = 1e-7


def _pkt(fs: np.ndarray, ft: np.ndarray) -> float:
    """Shifted-cosine kernel, rows normalised to probabilities (diagonal kept), KL averaged over B² entries."""
    def probabilities(x):
        x = x.reshape(len(x), -1).astype(np.float64)
        b = len(x)
        unit = [row / (math.sqrt(sum(v * v for v in row)) + EPS) for row in x]
        kernel = [[(float(np.dot(unit[i], unit[j])) + 1.0) / 2.0 for j in range(b)] for i in range(b)]
        return [[kernel[i][j] / sum(kernel[i]) for j in range(b)] for i in range(b)]

    p, q = probabilities(ft), probabilities(fs)
    b = len(p)
    return sum(p[i][j] * math.log((p[i][j] + EPS) / (q[i][j] + EPS)) for i in range(b) for j in range(b)) / (b * b)


def test_matches_the_formula_with_different_widths():
    rng = np.random.default_rng(0)
    fs, ft = rng.normal(size=(5, 7)), rng.normal(size=(5, 11))
    loss = PKTLoss()(torch.tensor(fs, dtype=torch.float32), torch.tensor(ft, dtype=torch.float32))
    assert loss.item() == pytest.approx(_pkt(fs, ft), rel=1e-4)


def test_feature_maps_are_flattened():
    rng = np.random.default_rng(1)
    fs, ft = rng.normal(size=(4, 2, 3, 3)), rng.normal(size=(4, 6))
    loss = PKTLoss()(torch.tensor(fs, dtype=torch.float32), torch.tensor(ft, dtype=torch.float32))
    assert loss.item() == pytest.approx(_pkt(fs, ft), rel=1e-4)


def test_zero_for_the_same_geometry_and_invariant_to_each_samples_scale():
    feat = torch.randn(6, 8)
    assert PKTLoss()(feat, feat).item() == pytest.approx(0.0, abs=1e-7)
    # cosine similarities ignore each vector's length and a rotation of the whole space
    rotation, _ = torch.linalg.qr(torch.randn(8, 8))
    scales = torch.rand(6, 1) * 5 + 0.1
    assert PKTLoss()(feat @ rotation * scales, feat).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(6, 8)
    assert PKTLoss()(other, feat).item() > 1e-4


def test_gradient_reaches_the_student_never_the_teacher():
    student = torch.randn(4, 5, requires_grad=True)
    teacher = torch.randn(4, 9, requires_grad=True)
    PKTLoss()(student, teacher).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_a_zero_vector_stays_finite():
    student = torch.randn(4, 5)
    student[2] = 0
    loss = PKTLoss()(student, torch.randn(4, 5))
    assert torch.isfinite(loss)


def test_registration_and_refusals():
    info = METHODS["pkt"]
    assert (info.default_weight, info.taps, info.placement) == (30000.0, "input", "embedding")
    assert check_pair("pkt", [(32,)], [(64,)]).adapter == "none"
    with pytest.raises(ValueError, match="batches of one size"):
        PKTLoss()(torch.randn(3, 4), torch.randn(2, 4))
