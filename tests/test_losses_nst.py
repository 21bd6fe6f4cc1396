"""NSTLoss against an independent numpy computation of the squared MMD with a (xᵀy)² kernel."""

import numpy as np
import pytest
import torch

from featdistill_core.losses import NSTLoss


def _patterns(feat: np.ndarray) -> np.ndarray:
    flat = feat.reshape(feat.shape[0], feat.shape[1], -1).astype(np.float64)
    return flat / np.maximum(np.linalg.norm(flat, axis=2, keepdims=True), 1e-12)


def _mmd2(fs: np.ndarray, ft: np.ndarray) -> float:
    """mean_ij k(t_i, t_j) + mean_ij k(s_i, s_j) − 2 mean_ij k(s_i, t_j), k(x, y) = (x·y)², per sample then batch mean."""
    s, t = _patterns(fs), _patterns(ft)
    total = 0.0
    for b in range(s.shape[0]):
        k_tt = np.mean([(x @ y) ** 2 for x in t[b] for y in t[b]])
        k_ss = np.mean([(x @ y) ** 2 for x in s[b] for y in s[b]])
        k_st = np.mean([(x @ y) ** 2 for x in s[b] for y in t[b]])
        total += k_tt + k_ss - 2 * k_st
    return total / s.shape[0]


def _pool(feat: np.ndarray, size: int) -> np.ndarray:
    b, c, h, w = feat.shape
    k = h // size
    return feat.reshape(b, c, size, k, size, k).mean(axis=(3, 5))


def test_matches_the_formula_with_different_channel_counts():
    rng = np.random.default_rng(0)
    fs, ft = rng.normal(size=(3, 4, 5, 5)), rng.normal(size=(3, 6, 5, 5))
    loss = NSTLoss()(torch.tensor(fs, dtype=torch.float32), torch.tensor(ft, dtype=torch.float32))
    assert loss.item() == pytest.approx(_mmd2(fs, ft), rel=1e-5)


def test_larger_map_is_pooled_to_the_smaller():
    rng = np.random.default_rng(1)
    fs, ft = rng.normal(size=(2, 3, 8, 8)), rng.normal(size=(2, 5, 4, 4))
    loss = NSTLoss()(torch.tensor(fs, dtype=torch.float32), torch.tensor(ft, dtype=torch.float32))
    assert loss.item() == pytest.approx(_mmd2(_pool(fs, 4), ft), rel=1e-5)


def test_zero_for_identical_maps_positive_otherwise_and_the_teacher_gets_no_gradient():
    feat = torch.randn(2, 4, 6, 6)
    assert NSTLoss()(feat, feat).item() == pytest.approx(0.0, abs=1e-6)
    student = torch.randn(2, 4, 6, 6, requires_grad=True)
    teacher = torch.randn(2, 4, 6, 6, requires_grad=True)
    loss = NSTLoss()(student, teacher)
    assert loss.item() > 0
    loss.backward()
    assert student.grad is not None and teacher.grad is None


def test_scale_invariant_per_channel():
    feat_s, feat_t = torch.rand(2, 3, 4, 4) + 0.1, torch.rand(2, 5, 4, 4)
    scale = torch.tensor([1.0, 7.0, 0.2]).view(1, 3, 1, 1)
    assert NSTLoss()(feat_s * scale, feat_t).item() == pytest.approx(NSTLoss()(feat_s, feat_t).item(), rel=1e-5)


def test_refuses_flat_features():
    with pytest.raises(ValueError, match="4-D feature maps"):
        NSTLoss()(torch.randn(2, 8), torch.randn(2, 8, 2, 2))
