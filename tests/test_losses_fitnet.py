"""FeatureDistillationLoss (FitNets hint) against independent numpy computations."""

import numpy as np
import pytest
import torch
from torch import nn

from featdistill_core.losses import FeatureDistillationLoss, FitNetLoss, ResizeTo

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def mse(a: np.ndarray, b: np.ndarray) -> float:
    diff = a.astype(np.float64) - b.astype(np.float64)
    return float((diff**2).sum() / diff.size)


def conv1x1(x: np.ndarray, weight: np.ndarray, bias) -> np.ndarray:
    """Explicit loops: out[b, o, h, w] = Σ_c W[o, c] x[b, c, h, w] + bias[o]."""
    batch, channels, height, width = x.shape
    out_channels = weight.shape[0]
    out = np.zeros((batch, out_channels, height, width))
    for b in range(batch):
        for o in range(out_channels):
            for h in range(height):
                for w in range(width):
                    value = sum(weight[o, c, 0, 0] * x[b, c, h, w] for c in range(channels))
                    out[b, o, h, w] = value + (bias[o] if bias is not None else 0.0)
    return out


def block_average(x: np.ndarray, factor: int) -> np.ndarray:
    batch, channels, height, width = x.shape
    out = np.zeros((batch, channels, height // factor, width // factor))
    for i in range(height // factor):
        for j in range(width // factor):
            out[:, :, i, j] = x[:, :, i * factor:(i + 1) * factor, j * factor:(j + 1) * factor].mean(axis=(2, 3))
    return out


def bilinear_1d_matrix(source: int, target: int) -> np.ndarray:
    """Half-pixel-centre linear interpolation weights (align_corners=False), as a (target, source) matrix."""
    matrix = np.zeros((target, source))
    scale = source / target
    for i in range(target):
        position = max((i + 0.5) * scale - 0.5, 0.0)
        left = min(int(np.floor(position)), source - 1)
        right = min(left + 1, source - 1)
        frac = position - left
        matrix[i, left] += 1 - frac
        matrix[i, right] += frac
    return matrix


def batch_norm_train(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, axes, eps=1e-5) -> np.ndarray:
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)  # biased, as BatchNorm normalises in training
    shape = [1] * x.ndim
    shape[1] = -1
    return (x - mean) / np.sqrt(var + eps) * gamma.reshape(shape) + beta.reshape(shape)


def test_identity_when_channels_match_and_loss_is_plain_mse():
    loss_fn = FeatureDistillationLoss(8, 8)
    assert isinstance(loss_fn.regressor, nn.Identity)
    assert list(loss_fn.parameters()) == []
    student, teacher = torch.randn(2, 8, 3, 3), torch.randn(2, 8, 3, 3)
    assert loss_fn(student, teacher).item() == pytest.approx(mse(student.numpy(), teacher.numpy()), rel=1e-5)


def test_fitnet_loss_is_the_same_class():
    assert FitNetLoss is FeatureDistillationLoss


def test_auto_uses_a_1x1_conv_when_channels_differ():
    torch.manual_seed(0)
    loss_fn = FeatureDistillationLoss(3, 5)
    conv = loss_fn.regressor[0]
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.bias is not None
    student, teacher = torch.randn(2, 3, 2, 3), torch.randn(2, 5, 2, 3)
    projected = conv1x1(student.numpy(), conv.weight.detach().numpy(), conv.bias.detach().numpy())
    assert loss_fn(student, teacher).item() == pytest.approx(mse(projected, teacher.numpy()), rel=1e-5)


def test_conv_regressor_is_used_even_when_channels_match():
    loss_fn = FeatureDistillationLoss(4, 4, regressor="conv")
    assert isinstance(loss_fn.regressor[0], nn.Conv2d)


def test_conv_bn_relu_matches_hand_computed_batch_norm():
    torch.manual_seed(1)
    loss_fn = FeatureDistillationLoss(3, 4, regressor="conv_bn_relu")
    conv, bn, relu = loss_fn.regressor
    assert isinstance(conv, nn.Conv2d) and conv.bias is None
    assert isinstance(bn, nn.BatchNorm2d) and isinstance(relu, nn.ReLU)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    student, teacher = torch.randn(3, 3, 2, 2), torch.randn(3, 4, 2, 2)
    projected = conv1x1(student.numpy(), conv.weight.detach().numpy(), None)
    normalised = batch_norm_train(projected, bn.weight.detach().numpy(), bn.bias.detach().numpy(), axes=(0, 2, 3))
    expected = mse(np.maximum(normalised, 0.0), teacher.numpy())
    assert loss_fn(student, teacher).item() == pytest.approx(expected, rel=1e-4)


def test_larger_student_map_is_average_pooled_to_the_teacher_size():
    loss_fn = FeatureDistillationLoss(2, 2, student_size=(8, 8), teacher_size=(4, 4))
    assert isinstance(loss_fn.regressor[0], ResizeTo)
    student, teacher = torch.randn(2, 2, 8, 8), torch.randn(2, 2, 4, 4)
    expected = mse(block_average(student.numpy().astype(np.float64), 2), teacher.numpy())
    assert loss_fn(student, teacher).item() == pytest.approx(expected, rel=1e-5)


def test_smaller_student_map_is_bilinearly_upsampled_to_the_teacher_size():
    loss_fn = FeatureDistillationLoss(1, 1, student_size=(2, 3), teacher_size=(4, 6))
    student, teacher = torch.randn(2, 1, 2, 3), torch.randn(2, 1, 4, 6)
    rows, cols = bilinear_1d_matrix(2, 4), bilinear_1d_matrix(3, 6)
    upsampled = np.einsum("ih,bchw,jw->bcij", rows, student.numpy().astype(np.float64), cols)
    assert loss_fn(student, teacher).item() == pytest.approx(mse(upsampled, teacher.numpy()), rel=1e-5)


def test_resize_and_channel_regressor_together():
    loss_fn = FeatureDistillationLoss(3, 6, student_size=(8, 8), teacher_size=(4, 4))
    assert [type(m) for m in loss_fn.regressor] == [ResizeTo, nn.Conv2d]
    out = loss_fn.regressor(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 6, 4, 4)


def test_flat_features_use_a_linear_regressor():
    torch.manual_seed(2)
    loss_fn = FeatureDistillationLoss(4, 3, flat=True)
    linear = loss_fn.regressor[0]
    assert isinstance(linear, nn.Linear)
    student, teacher = torch.randn(5, 4), torch.randn(5, 3)
    weight, bias = linear.weight.detach().numpy(), linear.bias.detach().numpy()
    projected = np.array([[sum(weight[o, i] * student[b, i].item() for i in range(4)) + bias[o]
                           for o in range(3)] for b in range(5)])
    assert loss_fn(student, teacher).item() == pytest.approx(mse(projected, teacher.numpy()), rel=1e-5)


def test_flat_conv_bn_relu_uses_linear_batchnorm1d_relu():
    loss_fn = FeatureDistillationLoss(4, 3, regressor="conv_bn_relu", flat=True)
    assert [type(m) for m in loss_fn.regressor] == [nn.Linear, nn.BatchNorm1d, nn.ReLU]
    loss = loss_fn(torch.randn(6, 4), torch.randn(6, 3))
    assert loss.dim() == 0 and torch.isfinite(loss)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("regressor", ["auto", "conv", "conv_bn_relu"])
def test_gradients_reach_student_and_regressor_never_the_teacher(device, regressor):
    loss_fn = FeatureDistillationLoss(3, 5, regressor=regressor, student_size=(8, 8), teacher_size=(4, 4)).to(device)
    student = torch.randn(2, 3, 8, 8, device=device, requires_grad=True)
    teacher = torch.randn(2, 5, 4, 4, device=device, requires_grad=True)
    loss = loss_fn(student, teacher)
    loss.backward()
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert student.grad is not None and student.grad.abs().sum() > 0
    params = list(loss_fn.parameters())
    assert params and all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    assert teacher.grad is None


def test_autocast_bfloat16_inputs_give_float32_close_to_float32_result():
    torch.manual_seed(3)
    loss_fn = FeatureDistillationLoss(8, 16, regressor="conv_bn_relu")
    student = torch.randn(4, 8, 4, 4).bfloat16()
    teacher = torch.randn(4, 16, 4, 4).bfloat16()
    reference = loss_fn(student.float(), teacher.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = loss_fn(student, teacher)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(reference.item(), rel=2e-2)


def test_rejects_unknown_regressor_and_partial_sizes():
    with pytest.raises(ValueError, match="regressor must be one of 'auto', 'conv', 'conv_bn_relu'; got 'mlp'"):
        FeatureDistillationLoss(3, 4, regressor="mlp")
    with pytest.raises(ValueError, match="give both student_size and teacher_size"):
        FeatureDistillationLoss(3, 4, student_size=(4, 4))
    with pytest.raises(ValueError, match="student_channels must be a positive integer; got 0"):
        FeatureDistillationLoss(0, 4)
    with pytest.raises(ValueError, match="teacher_size must be None or a \\(height, width\\) pair"):
        FeatureDistillationLoss(3, 4, student_size=(4, 4), teacher_size=(4,))
    with pytest.raises(ValueError, match="flat features have no spatial size"):
        FeatureDistillationLoss(3, 4, student_size=(4, 4), teacher_size=(4, 4), flat=True)


def test_shape_mismatch_at_forward_is_one_clear_error():
    loss_fn = FeatureDistillationLoss(3, 4)
    with pytest.raises(ValueError, match=r"regressed student features have shape \(2, 4, 8, 8\) but the teacher"):
        loss_fn(torch.randn(2, 3, 8, 8), torch.randn(2, 4, 4, 4))
    with pytest.raises(ValueError, match=r"expects student features \(B, C, H, W\) with 3 channels; got \(2, 5, 8, 8\)"):
        loss_fn(torch.randn(2, 5, 8, 8), torch.randn(2, 4, 8, 8))
