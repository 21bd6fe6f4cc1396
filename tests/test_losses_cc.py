"""CCLoss against an independent computation: numpy embeddings, a loop-built Taylor kernel, and the
exact Gaussian RBF that the expansion approximates."""

import math

import numpy as np
import pytest
import torch

from featdistill_core.losses import METHODS, BuildContext, CCLoss, build_term, check_pair
from featdistill_core.losses.cc import correlation_matrix


def _unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _taylor_kernel(f: np.ndarray, gamma: float, order: int) -> np.ndarray:
    u = _unit_rows(f.astype(np.float64))
    b = len(u)
    c = np.zeros((b, b))
    for i in range(b):
        for j in range(b):
            s = float(u[i] @ u[j])
            c[i, j] = sum(math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * s ** p for p in range(order + 1))
    return c


def _embed(linear: torch.nn.Linear, x: np.ndarray) -> np.ndarray:
    w = linear.weight.detach().double().numpy()
    b = linear.bias.detach().double().numpy()
    return x.reshape(len(x), -1) @ w.T + b


def test_matches_the_formula_through_the_embeddings():
    torch.manual_seed(0)
    loss_fn = CCLoss(6, 10, feat_dim=5, gamma=0.4, order=2)
    rng = np.random.default_rng(0)
    xs, xt = rng.normal(size=(4, 6)), rng.normal(size=(4, 10))
    loss = loss_fn(torch.tensor(xs, dtype=torch.float32), torch.tensor(xt, dtype=torch.float32))
    cs = _taylor_kernel(_embed(loss_fn.embed_student, xs), 0.4, 2)
    ct = _taylor_kernel(_embed(loss_fn.embed_teacher, xt), 0.4, 2)
    expected = float(((ct - cs) ** 2).sum()) / 16
    assert loss.item() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("gamma, order", [(0.4, 0), (0.4, 1), (1.5, 3)])
def test_kernel_matches_the_taylor_sum(gamma, order):
    f = np.random.default_rng(1).normal(size=(5, 3))
    got = correlation_matrix(torch.tensor(f, dtype=torch.float32), gamma, order).double().numpy()
    assert np.allclose(got, _taylor_kernel(f, gamma, order), rtol=1e-5, atol=1e-6)


def test_high_order_expansion_is_the_gaussian_rbf_on_unit_vectors():
    f = np.random.default_rng(2).normal(size=(6, 4))
    u = _unit_rows(f)
    rbf = np.exp(-0.4 * ((u[:, None, :] - u[None, :, :]) ** 2).sum(-1))
    got = correlation_matrix(torch.tensor(f, dtype=torch.float64), 0.4, 12).numpy()
    assert np.allclose(got, rbf, atol=1e-6)
    # the default order 2 is close but not equal
    assert not np.allclose(correlation_matrix(torch.tensor(f), 0.4, 2).numpy(), rbf, atol=1e-4)


def test_same_embeddings_give_zero_and_heads_are_what_differ():
    loss_fn = CCLoss(4, 4, feat_dim=3)
    loss_fn.embed_teacher.load_state_dict(loss_fn.embed_student.state_dict())
    x = torch.randn(5, 4)
    assert loss_fn(x, x).item() == pytest.approx(0.0, abs=1e-9)
    assert loss_fn(torch.randn(5, 4), x).item() > 0


def test_gradients_reach_the_student_and_both_heads_never_the_teacher_features():
    loss_fn = CCLoss(3, 5, feat_dim=4)
    student = torch.randn(4, 3, requires_grad=True)
    teacher = torch.randn(4, 5, requires_grad=True)
    loss_fn(student, teacher).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None
    for name, p in loss_fn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_registration_adapter_and_options():
    info = METHODS["cc"]
    assert (info.default_weight, info.taps, info.placement) == (100.0, "input", "embedding")
    assert {k: s.default for k, s in info.options.items()} == {"feat_dim": 128, "gamma": 0.4, "order": 2}
    check = check_pair("cc", [(32,)], [(64,)])
    assert check.ok and "32→128" in check.adapter and "64→128" in check.adapter
    term = build_term(BuildContext(method="cc", options={"feat_dim": 16}, student_shapes=[(32,)], teacher_shapes=[(64,)]))
    assert term.loss.embed_student.weight.shape == (16, 32) and term.loss.embed_teacher.weight.shape == (16, 64)
    assert not check_pair("cc", [(32,)], [(64,)], {"gamma": 0.0}).ok
    with pytest.raises(ValueError, match="gamma"):
        CCLoss(3, 3, gamma=-1.0)
