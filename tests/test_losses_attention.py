"""AttentionTransferLoss and attention_map against independent numpy computations, plus invariances."""

import numpy as np
import pytest
import torch

from featdistill_core.losses import AttentionTransferLoss, attention_map

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def np_attention_map(feat: np.ndarray, p: float) -> np.ndarray:
    """Explicit loops: A[b, h, w] = (1/C) Σ_c |F[b, c, h, w]|^p."""
    batch, channels, height, width = feat.shape
    out = np.zeros((batch, height, width))
    for b in range(batch):
        for h in range(height):
            for w in range(width):
                out[b, h, w] = sum(abs(float(feat[b, c, h, w])) ** p for c in range(channels)) / channels
    return out


def np_at_loss(student: np.ndarray, teacher: np.ndarray, p: float = 2, normalize: str = "l2") -> float:
    qs, qt = [], []
    for feat, out in ((student, qs), (teacher, qt)):
        maps = np_attention_map(feat, p).reshape(feat.shape[0], -1)
        for row in maps:
            norm = np.sqrt((row**2).sum()) if normalize == "l2" else row.sum()
            out.append(row / norm)
    diff = np.array(qs) - np.array(qt)
    return float((diff**2).sum() / diff.size)


def np_block_average(x: np.ndarray, factor: int) -> np.ndarray:
    batch, channels, height, width = x.shape
    return x.reshape(batch, channels, height // factor, factor, width // factor, factor).mean(axis=(3, 5))


@pytest.mark.parametrize("p", [1, 2, 3.5])
def test_attention_map_is_channel_mean_of_abs_power(p):
    feat = torch.randn(2, 3, 4, 5)
    result = attention_map(feat, p)
    assert result.shape == (2, 4, 5) and result.dtype == torch.float32
    np.testing.assert_allclose(result.numpy(), np_attention_map(feat.numpy(), p), rtol=1e-5)


@pytest.mark.parametrize("normalize", ["l2", "l1"])
@pytest.mark.parametrize("p", [1, 2, 4])
def test_loss_matches_hand_computed_formula(normalize, p):
    student, teacher = torch.randn(3, 4, 3, 3), torch.randn(3, 6, 3, 3)
    loss = AttentionTransferLoss(p=p, normalize=normalize)(student, teacher)
    assert loss.dim() == 0
    expected = np_at_loss(student.numpy(), teacher.numpy(), p, normalize)
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def test_default_is_p2_l2():
    loss_fn = AttentionTransferLoss()
    assert (loss_fn.p, loss_fn.normalize) == (2.0, "l2")


@pytest.mark.parametrize("student_first", [True, False])
def test_larger_map_is_average_pooled_to_the_smaller(student_first):
    large, small = torch.randn(2, 3, 8, 8), torch.randn(2, 5, 4, 4)
    pooled = np_block_average(large.numpy().astype(np.float64), 2)
    if student_first:
        loss = AttentionTransferLoss()(large, small)
        expected = np_at_loss(pooled, small.numpy())
    else:
        loss = AttentionTransferLoss()(small, large)
        expected = np_at_loss(small.numpy(), pooled)
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def test_zero_for_identical_maps():
    feat = torch.randn(2, 4, 5, 5)
    assert AttentionTransferLoss()(feat, feat.clone()).item() == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("normalize", ["l2", "l1"])
def test_unchanged_when_a_map_is_multiplied_by_a_positive_scalar(normalize):
    student, teacher = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    loss_fn = AttentionTransferLoss(normalize=normalize)
    base = loss_fn(student, teacher).item()
    assert base > 0
    assert loss_fn(student * 7.5, teacher).item() == pytest.approx(base, rel=1e-5)
    assert loss_fn(student, teacher * 0.01).item() == pytest.approx(base, rel=1e-5)


def test_independent_of_channel_count_for_replicated_channels():
    student, teacher = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    loss_fn = AttentionTransferLoss()
    base = loss_fn(student, teacher).item()
    replicated = torch.cat([student] * 4, dim=1)  # 12 channels, same channel mean
    assert loss_fn(replicated, teacher).item() == pytest.approx(base, rel=1e-5)
    assert loss_fn(replicated, student).item() == pytest.approx(0.0, abs=1e-10)


def test_l1_is_smaller_than_l2_by_about_the_number_of_positions():
    student, teacher = torch.rand(4, 8, 16, 16), torch.rand(4, 8, 16, 16)
    l1 = AttentionTransferLoss(normalize="l1")(student, teacher).item()
    l2 = AttentionTransferLoss(normalize="l2")(student, teacher).item()
    assert l1 < l2 / 50  # for near-uniform maps the ratio approaches H·W = 256


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_reach_the_student_never_the_teacher(device):
    student = torch.randn(2, 3, 8, 8, device=device, requires_grad=True)
    teacher = torch.randn(2, 5, 4, 4, device=device, requires_grad=True)
    loss = AttentionTransferLoss()(student, teacher)
    loss.backward()
    assert loss.dtype == torch.float32
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_gradient_is_finite_for_relu_features_with_zeros():
    student = torch.relu(torch.randn(2, 3, 4, 4)).requires_grad_()
    student.retain_grad()
    loss = AttentionTransferLoss(p=1)(student, torch.randn(2, 3, 4, 4))
    loss.backward()
    assert torch.isfinite(student.grad).all()


def test_autocast_bfloat16_inputs_give_float32_close_to_float32_result():
    student = torch.randn(4, 8, 8, 8).bfloat16()
    teacher = torch.randn(4, 16, 4, 4).bfloat16()
    reference = AttentionTransferLoss()(student.float(), teacher.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = AttentionTransferLoss()(student, teacher)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)


def test_rejects_flat_features_and_bad_options():
    with pytest.raises(ValueError, match=r"attention transfer needs 4-D feature maps \(N,C,H,W\); student gives \(2, 64\)"):
        AttentionTransferLoss()(torch.randn(2, 64), torch.randn(2, 64, 4, 4))
    with pytest.raises(ValueError, match="normalize must be one of 'l1', 'l2'; got 'l3'"):
        AttentionTransferLoss(normalize="l3")
    with pytest.raises(ValueError, match="attention exponent p must be a number >= 1; got 0.5"):
        AttentionTransferLoss(p=0.5)
    with pytest.raises(ValueError, match=r"attention_map needs a 4-D feature map \(N,C,H,W\); got shape \(3, 4, 4\)"):
        attention_map(torch.randn(3, 4, 4))
    with pytest.raises(ValueError, match="same batch size"):
        AttentionTransferLoss()(torch.randn(2, 3, 4, 4), torch.randn(3, 3, 4, 4))
