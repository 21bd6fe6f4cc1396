"""FSPLoss and flow_matrix against independent numpy computations, plus invariances."""

import numpy as np
import pytest
import torch
from torch import nn

from featdistill_core.losses import FSPLoss, flow_matrix

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def np_flow(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Explicit loops: G[b, i, j] = (1/(H·W)) Σ_{h,w} F1[b, i, h, w] F2[b, j, h, w] (same-size maps)."""
    batch, c1, height, width = first.shape
    c2 = second.shape[1]
    out = np.zeros((batch, c1, c2))
    for b in range(batch):
        for i in range(c1):
            for j in range(c2):
                total = 0.0
                for h in range(height):
                    for w in range(width):
                        total += float(first[b, i, h, w]) * float(second[b, j, h, w])
                out[b, i, j] = total / (height * width)
    return out


def np_block_average(x: np.ndarray, factor: int) -> np.ndarray:
    batch, channels, height, width = x.shape
    return x.reshape(batch, channels, height // factor, factor, width // factor, factor).mean(axis=(3, 5))


def np_conv1x1(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return np.einsum("oc,bchw->bohw", weight[:, :, 0, 0].astype(np.float64), x.astype(np.float64)) + bias[None, :, None, None]


def mean_square(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a - b) ** 2).sum() / a.size)


def test_flow_matrix_matches_hand_computed():
    first, second = torch.randn(2, 3, 3, 4), torch.randn(2, 5, 3, 4)
    result = flow_matrix(first, second)
    assert result.shape == (2, 3, 5) and result.dtype == torch.float32
    np.testing.assert_allclose(result.numpy(), np_flow(first.numpy(), second.numpy()), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("larger_first", [True, False])
def test_the_larger_map_of_a_pair_is_average_pooled_to_the_smaller(larger_first):
    large, small = torch.randn(2, 3, 8, 8), torch.randn(2, 4, 4, 4)
    pooled = np_block_average(large.numpy().astype(np.float64), 2)
    if larger_first:
        result, expected = flow_matrix(large, small), np_flow(pooled, small.numpy())
    else:
        result, expected = flow_matrix(small, large), np_flow(small.numpy(), pooled)
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_loss_matches_hand_computed_formula():
    s1, s2 = torch.randn(2, 3, 8, 8), torch.randn(2, 4, 4, 4)
    t1, t2 = torch.randn(2, 3, 4, 4), torch.randn(2, 4, 4, 4)
    loss = FSPLoss()((s1, s2), (t1, t2))
    g_s = np_flow(np_block_average(s1.numpy().astype(np.float64), 2), s2.numpy())
    g_t = np_flow(t1.numpy(), t2.numpy())
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(mean_square(g_s, g_t), rel=1e-4)


def test_regressors_map_student_channels_to_the_teachers():
    torch.manual_seed(0)
    loss_fn = FSPLoss(student_channels=(2, 4), teacher_channels=(3, 4))
    assert isinstance(loss_fn.regressors[0], nn.Conv2d) and loss_fn.regressors[0].kernel_size == (1, 1)
    assert isinstance(loss_fn.regressors[1], nn.Identity)
    s1, s2 = torch.randn(2, 2, 4, 4), torch.randn(2, 4, 4, 4)
    t1, t2 = torch.randn(2, 3, 4, 4), torch.randn(2, 4, 4, 4)
    conv = loss_fn.regressors[0]
    projected = np_conv1x1(s1.numpy(), conv.weight.detach().numpy(), conv.bias.detach().numpy())
    expected = mean_square(np_flow(projected, s2.numpy()), np_flow(t1.numpy(), t2.numpy()))
    assert loss_fn((s1, s2), (t1, t2)).item() == pytest.approx(expected, rel=1e-4)


def test_no_regressors_without_channel_counts():
    loss_fn = FSPLoss()
    assert all(isinstance(m, nn.Identity) for m in loss_fn.regressors)
    assert list(loss_fn.parameters()) == []


def test_zero_for_identical_pairs():
    pair = (torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4))
    assert FSPLoss()(pair, tuple(f.clone() for f in pair)).item() == pytest.approx(0.0, abs=1e-12)


def test_invariant_to_nearest_upsampling_and_joint_position_permutation():
    s1, s2 = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)
    t1, t2 = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)
    base = FSPLoss()((s1, s2), (t1, t2)).item()

    def upsample(x):
        return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)

    # G averages over positions: replicating every position leaves it unchanged (teacher at 8×8 now).
    assert FSPLoss()((s1, s2), (upsample(t1), upsample(t2))).item() == pytest.approx(base, rel=1e-5)
    perm = torch.randperm(16)

    def shuffle(x):
        return x.flatten(2)[:, :, perm].reshape(x.shape)

    assert FSPLoss()((shuffle(s1), shuffle(s2)), (t1, t2)).item() == pytest.approx(base, rel=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_reach_student_and_regressors_never_the_teacher(device):
    loss_fn = FSPLoss(student_channels=(2, 3), teacher_channels=(4, 6)).to(device)
    s1 = torch.randn(2, 2, 8, 8, device=device, requires_grad=True)
    s2 = torch.randn(2, 3, 4, 4, device=device, requires_grad=True)
    t1 = torch.randn(2, 4, 8, 8, device=device, requires_grad=True)
    t2 = torch.randn(2, 6, 4, 4, device=device, requires_grad=True)
    loss = loss_fn((s1, s2), (t1, t2))
    loss.backward()
    assert loss.dtype == torch.float32
    for tensor in (s1, s2):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0
    params = list(loss_fn.parameters())
    assert len(params) == 4 and all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    assert t1.grad is None and t2.grad is None


def test_autocast_bfloat16_runs_the_matrix_product_in_float32():
    s1, s2 = torch.randn(4, 8, 8, 8).bfloat16(), torch.randn(4, 16, 4, 4).bfloat16()
    t1, t2 = torch.randn(4, 8, 8, 8).bfloat16(), torch.randn(4, 16, 4, 4).bfloat16()
    reference = FSPLoss()((s1.float(), s2.float()), (t1.float(), t2.float()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = FSPLoss()((s1, s2), (t1, t2))
        g = flow_matrix(s1, s2)
    assert loss.dtype == torch.float32 and g.dtype == torch.float32 and torch.isfinite(loss)
    # a bfloat16 matrix product would be off by ~1e-2 relative; float32 agrees to rounding
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)


def test_autocast_with_regressors_stays_close():
    torch.manual_seed(1)
    loss_fn = FSPLoss(student_channels=(4, 8), teacher_channels=(8, 8))
    s1, s2 = torch.randn(4, 4, 4, 4).bfloat16(), torch.randn(4, 8, 4, 4).bfloat16()
    t1, t2 = torch.randn(4, 8, 4, 4).bfloat16(), torch.randn(4, 8, 4, 4).bfloat16()
    reference = loss_fn((s1.float(), s2.float()), (t1.float(), t2.float()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = loss_fn((s1, s2), (t1, t2))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(reference.item(), rel=2e-2)


def test_clear_errors():
    with pytest.raises(ValueError, match="give both student_channels and teacher_channels"):
        FSPLoss(student_channels=(2, 3))
    with pytest.raises(ValueError, match=r"student_channels must be None or a pair of positive channel counts"):
        FSPLoss(student_channels=(2,), teacher_channels=(2, 3))
    with pytest.raises(ValueError, match=r"FSP needs 4-D feature maps \(N,C,H,W\); teacher map 2 is \(2, 5\)"):
        FSPLoss()((torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)), (torch.randn(2, 3, 4, 4), torch.randn(2, 5)))
    with pytest.raises(ValueError, match=r"FSP needs the student features as a pair"):
        FSPLoss()((torch.randn(2, 3, 4, 4),), (torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"FSP matrices differ in shape: student \(2, 3, 5\), teacher \(2, 4, 5\)"):
        FSPLoss()((torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)), (torch.randn(2, 4, 4, 4), torch.randn(2, 5, 4, 4)))
    with pytest.raises(ValueError, match="same batch size"):
        FSPLoss()((torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)), (torch.randn(3, 3, 4, 4), torch.randn(3, 5, 4, 4)))
