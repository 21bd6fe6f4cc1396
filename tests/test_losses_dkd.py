"""DKDLoss against an independent numpy computation of α·TCKD + β·NCKD, and its warm-up."""

import numpy as np
import pytest
import torch

from featdistill_core.losses import DKDLoss, KDLoss, METHODS, StepContext, TrainingProgress, BuildContext, build_term


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _kl(p, q):
    mask = p > 0
    return float(np.sum(np.where(mask, p * (np.log(np.where(mask, p, 1)) - np.log(np.where(mask, q, 1))), 0.0)))


def _dkd(zs, zt, labels, alpha, beta, t):
    """Decoupled KD from its definition: binary (target, rest) KL and the KL over non-target classes."""
    ps, pt = _softmax(zs / t), _softmax(zt / t)
    n = len(labels)
    tckd = nckd = 0.0
    for i, y in enumerate(labels):
        bs = np.array([ps[i, y], 1 - ps[i, y]])
        bt = np.array([pt[i, y], 1 - pt[i, y]])
        tckd += _kl(bt, bs)
        others = [k for k in range(zs.shape[1]) if k != y]
        qs, qt = _softmax(zs[i:i + 1, others] / t)[0], _softmax(zt[i:i + 1, others] / t)[0]
        nckd += _kl(qt, qs)
    return alpha * tckd * t * t / n + beta * nckd * t * t / n


@pytest.mark.parametrize("alpha, beta, t", [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0), (2.0, 0.0, 3.0)])
def test_matches_the_definition(alpha, beta, t):
    rng = np.random.default_rng(0)
    zs, zt = rng.normal(size=(6, 7)) * 3, rng.normal(size=(6, 7)) * 3
    labels = rng.integers(0, 7, size=6)
    loss = DKDLoss(alpha, beta, t)(torch.tensor(zs), torch.tensor(zt), torch.tensor(labels))
    assert loss.item() == pytest.approx(_dkd(zs, zt, labels, alpha, beta, t), rel=1e-4)


def test_tckd_plus_nckd_decomposes_kd_when_weighted_by_the_target_probability():
    """Zhao et al. eq. (1): KD = TCKD + (1 − p_t^gt) · NCKD, per sample; checked with one sample."""
    rng = np.random.default_rng(3)
    zs, zt = rng.normal(size=(1, 5)), rng.normal(size=(1, 5))
    labels = np.array([2])
    t = 2.0
    tckd = DKDLoss(1.0, 0.0, t)(torch.tensor(zs), torch.tensor(zt), torch.tensor(labels)).item()
    nckd = DKDLoss(0.0, 1.0, t)(torch.tensor(zs), torch.tensor(zt), torch.tensor(labels)).item()
    kd = KDLoss(t)(torch.tensor(zs), torch.tensor(zt)).item()
    p_target = _softmax(zt / t)[0, 2]
    assert kd == pytest.approx(tckd + (1 - p_target) * nckd, rel=1e-4)


def test_warmup_ramps_with_the_one_based_epoch_like_mdistiller():
    loss = DKDLoss(warmup=20)
    assert [loss.warmup_factor(e) for e in (1, 10, 20, 25)] == [0.05, 0.5, 1.0, 1.0]
    assert DKDLoss(warmup=0).warmup_factor(1) == 1.0


def test_the_term_reads_labels_and_epoch_from_the_step():
    term = build_term(BuildContext(method="dkd", options={"warmup": 4}))
    zs, zt = torch.randn(4, 10, requires_grad=True), torch.randn(4, 10)
    labels = torch.tensor([0, 3, 3, 9])
    full = DKDLoss(warmup=4)(zs, zt, labels)
    for epoch, factor in ((1, 0.25), (2, 0.5), (9, 1.0)):
        step = StepContext((), (), zs, zt, labels, torch.arange(4), TrainingProgress("student", epoch, 10, 1, 10, 1))
        assert term(step).item() == pytest.approx(factor * full.item(), rel=1e-6)
    assert METHODS["dkd"].default_weight == 1.0
    assert {k: s.default for k, s in METHODS["dkd"].options.items()} == {"alpha": 1.0, "beta": 8.0, "temperature": 4.0, "warmup": 20}


def test_no_gradient_reaches_the_teacher():
    zs, zt = torch.randn(3, 5, requires_grad=True), torch.randn(3, 5, requires_grad=True)
    DKDLoss()(zs, zt, torch.tensor([0, 1, 2])).backward()
    assert zs.grad is not None and zt.grad is None
