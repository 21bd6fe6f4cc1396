"""VIDLoss against an independent numpy computation of the Gaussian negative log-likelihood."""

import math

import numpy as np
import pytest
import torch

from featdistill_core.losses import METHODS, BuildContext, VIDLoss, build_term, check_pair
from featdistill_core.losses.vid import EPS, inverse_softplus


def _regress(loss_fn: VIDLoss, s: np.ndarray) -> np.ndarray:
    """The three 1×1 convs (no bias) with ReLUs, as per-position matrix products."""
    x = s.astype(np.float64)
    convs = [m for m in loss_fn.regressor if isinstance(m, torch.nn.Conv2d)]
    for index, conv in enumerate(convs):
        w = conv.weight.detach().double().numpy()[:, :, 0, 0]     # (out, in)
        x = np.einsum("oc,nchw->nohw", w, x)
        if index < len(convs) - 1:
            x = np.maximum(x, 0)
    return x


def _nll(mean: np.ndarray, target: np.ndarray, alpha: np.ndarray) -> float:
    var = np.log1p(np.exp(alpha)) + EPS
    n, c, h, w = target.shape
    total = 0.0
    for ch in range(c):
        total += (0.5 * ((target[:, ch] - mean[:, ch]) ** 2 / var[ch] + math.log(var[ch]))).sum()
    return total / (n * c * h * w)


def test_matches_the_formula():
    torch.manual_seed(0)
    loss_fn = VIDLoss(3, 5)
    with torch.no_grad():
        loss_fn.log_scale.copy_(torch.tensor([-1.0, 0.0, 0.5, 2.0, 4.0]))
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 5, 4, 4))
    loss = loss_fn(torch.tensor(s, dtype=torch.float32), torch.tensor(t, dtype=torch.float32))
    expected = _nll(_regress(loss_fn, s), t, loss_fn.log_scale.detach().double().numpy())
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_the_larger_map_is_pooled():
    torch.manual_seed(1)
    loss_fn = VIDLoss(2, 3)
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(2, 2, 8, 8)), rng.normal(size=(2, 3, 4, 4))
    pooled = s.reshape(2, 2, 4, 2, 4, 2).mean(axis=(3, 5))
    loss = loss_fn(torch.tensor(s, dtype=torch.float32), torch.tensor(t, dtype=torch.float32))
    expected = _nll(_regress(loss_fn, pooled), t, loss_fn.log_scale.detach().double().numpy())
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # and the teacher when it is the larger one
    t_big = rng.normal(size=(2, 3, 8, 8))
    loss = loss_fn(torch.tensor(pooled, dtype=torch.float32), torch.tensor(t_big, dtype=torch.float32))
    expected = _nll(_regress(loss_fn, pooled), t_big.reshape(2, 3, 4, 2, 4, 2).mean(axis=(3, 5)),
                    loss_fn.log_scale.detach().double().numpy())
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_initial_variance_and_its_learned_optimum():
    loss_fn = VIDLoss(4, 6, init_variance=5.0)
    assert torch.allclose(loss_fn.variance(), torch.full((6,), 5.0))
    assert inverse_softplus(2.0) == pytest.approx(math.log(math.exp(2.0) - 1.0))
    # for a fixed prediction the loss is smallest where σ² equals the mean squared error of each channel
    with torch.no_grad():
        for conv in loss_fn.regressor:
            if isinstance(conv, torch.nn.Conv2d):
                conv.weight.zero_()                  # μ = 0
    target = torch.randn(8, 6, 3, 3) * torch.tensor([0.5, 1, 2, 3, 4, 5]).view(1, 6, 1, 1)
    mse = target.pow(2).mean(dim=(0, 2, 3))
    optimum = torch.log(torch.expm1(mse - EPS))
    values = []
    for shift in (-0.3, 0.0, 0.3):
        with torch.no_grad():
            loss_fn.log_scale.copy_(optimum + shift)
        values.append(loss_fn(torch.randn(8, 4, 3, 3), target).item())
    assert values[1] < values[0] and values[1] < values[2]


def test_gradients_reach_the_student_and_the_adapter_never_the_teacher():
    loss_fn = VIDLoss(3, 4)
    student = torch.randn(2, 3, 4, 4, requires_grad=True)
    teacher = torch.randn(2, 4, 4, 4, requires_grad=True)
    loss_fn(student, teacher).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None
    for name, p in loss_fn.named_parameters():
        assert p.grad is not None, name


def test_registration_adapter_and_refusals():
    info = METHODS["vid"]
    assert (info.default_weight, info.taps, info.placement) == (1.0, "output", "stages")
    check = check_pair("vid", [(8, 16, 16)], [(16, 8, 8)])
    assert check.ok and "8→16→16→16" in check.adapter and "student map pooled 16×16→8×8" in check.adapter
    assert not check_pair("vid", [(32,)], [(64,)]).ok
    term = build_term(BuildContext(method="vid", options={"init_variance": 2.0}, student_shapes=[(8, 4, 4)],
                                   teacher_shapes=[(16, 4, 4)]))
    assert torch.allclose(term.loss.variance(), torch.full((16,), 2.0))
    assert [m.weight.shape[:2] for m in term.loss.regressor if isinstance(m, torch.nn.Conv2d)] == [(16, 8), (16, 16), (16, 16)]
    with pytest.raises(ValueError, match="4-D feature maps"):
        VIDLoss(3, 4)(torch.randn(2, 3), torch.randn(2, 4, 2, 2))
