"""DISTLoss against an independent numpy computation of its Pearson relations, and their invariances."""

import numpy as np
import pytest
import torch

from featdistill_core.losses import METHODS, DISTLoss, build_term, BuildContext
from featdistill_core.losses.dist import pearson_rows


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _pearson(u, v, eps=1e-8):
    """Pearson correlation of two vectors, written out with loops."""
    n = len(u)
    mu, mv = sum(u) / n, sum(v) / n
    num = sum((a - mu) * (b - mv) for a, b in zip(u, v))
    su = sum((a - mu) ** 2 for a in u) ** 0.5
    sv = sum((b - mv) ** 2 for b in v) ** 0.5
    return num / (su * sv + eps)


def _dist(zs, zt, beta, gamma, tau):
    ys, yt = _softmax(zs / tau), _softmax(zt / tau)
    inter = 1 - np.mean([_pearson(ys[i], yt[i]) for i in range(ys.shape[0])])
    intra = 1 - np.mean([_pearson(ys[:, k], yt[:, k]) for k in range(ys.shape[1])])
    return tau ** 2 * (beta * inter + gamma * intra)


@pytest.mark.parametrize("beta, gamma, tau", [(1.0, 1.0, 1.0), (1.0, 1.0, 4.0), (2.0, 0.5, 2.0), (0.0, 1.0, 3.0)])
def test_matches_the_definition(beta, gamma, tau):
    rng = np.random.default_rng(0)
    zs, zt = rng.normal(size=(6, 7)) * 3, rng.normal(size=(6, 7)) * 3
    loss = DISTLoss(beta, gamma, tau)(torch.tensor(zs), torch.tensor(zt))
    assert loss.item() == pytest.approx(_dist(zs, zt, beta, gamma, tau), rel=1e-5)


def test_pearson_is_invariant_to_positive_scale_and_shift_and_flips_with_a_negative_scale():
    rng = np.random.default_rng(1)
    a, b = torch.tensor(rng.normal(size=(4, 9))), torch.tensor(rng.normal(size=(4, 9)))
    base = pearson_rows(a, b)
    assert torch.allclose(pearson_rows(3.5 * a + 2.0, b), base, atol=1e-7)
    assert torch.allclose(pearson_rows(a, 0.2 * b - 7.0), base, atol=1e-7)
    assert torch.allclose(pearson_rows(-a, b), -base, atol=1e-7)
    assert torch.allclose(pearson_rows(a, a), torch.ones(4, dtype=a.dtype), atol=1e-7)
    assert float(pearson_rows(a, b).abs().max()) <= 1.0


def test_zero_for_identical_predictions_and_unchanged_by_a_constant_added_to_the_logits():
    torch.manual_seed(0)
    z = torch.randn(5, 10)
    assert DISTLoss(tau=1.0)(z, z).item() == pytest.approx(0.0, abs=1e-5)   # ε in ρ leaves ~1e-6 (~1e-4 at τ = 4)
    zs, zt = torch.randn(5, 10), torch.randn(5, 10)
    shifted = zs + torch.randn(5, 1) * 10       # a per-sample constant does not change the softmax
    assert DISTLoss(tau=2.0)(shifted, zt).item() == pytest.approx(DISTLoss(tau=2.0)(zs, zt).item(), rel=1e-4)


def test_a_batch_of_one_leaves_only_the_inter_class_relation():
    zs, zt = np.random.default_rng(2).normal(size=(2, 1, 6))
    intra_only = DISTLoss(beta=0.0, gamma=1.0)(torch.tensor(zs), torch.tensor(zt)).item()
    assert intra_only == pytest.approx(1.0)     # one value per class: no correlation, 1 − 0
    inter_only = DISTLoss(beta=1.0, gamma=0.0)(torch.tensor(zs), torch.tensor(zt)).item()
    assert inter_only == pytest.approx(_dist(zs, zt, 1.0, 0.0, 1.0), rel=1e-5)


def test_gradients_reach_the_student_never_the_teacher_and_the_math_is_float32():
    torch.manual_seed(0)
    zs, zt = torch.randn(4, 6, requires_grad=True), torch.randn(4, 6, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = DISTLoss(tau=4.0)(zs.bfloat16(), zt.bfloat16())
    assert loss.dtype == torch.float32
    loss.backward()
    assert zs.grad is not None and zs.grad.abs().sum() > 0 and zt.grad is None


def test_refuses_mismatched_logits_and_bad_parameters():
    with pytest.raises(ValueError, match="one shape"):
        DISTLoss()(torch.randn(2, 5), torch.randn(2, 6))
    with pytest.raises(ValueError, match="tau"):
        DISTLoss(tau=0.0)
    with pytest.raises(ValueError, match="beta"):
        DISTLoss(beta=-1.0)


def test_registration_follows_the_cifar_recipe():
    info = METHODS["dist"]
    assert info.on_logits and info.placement == "logits" and info.default_stage == "student"
    assert {k: s.default for k, s in info.options.items()} == {"beta": 1.0, "gamma": 1.0, "tau": 4.0}
    assert info.default_weight == 2.0
    term = build_term(BuildContext(method="dist", options={"tau": 2.0}))
    assert term.loss.tau == 2.0 and not term.needs_prepare
