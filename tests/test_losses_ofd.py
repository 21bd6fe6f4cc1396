"""OFD: the margin against a numeric integral, the partial L2 element by element, the BatchNorm lookup."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from featdistill_core.losses import METHODS, BuildContext, OFDLoss, PrepareContext, build_term
from featdistill_core.losses.ofd import margin_from_batchnorm, partial_l2, teacher_batchnorm
from featdistill_core.models import create_model


def _negative_mean(mean, std):
    """E[x | x < 0] for x ~ N(mean, std²) by the trapezoid rule on a fine grid."""
    x = np.linspace(mean - 12 * std, 0.0, 200_001)
    pdf = np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
    return np.trapezoid(x * pdf, x) / np.trapezoid(pdf, x)


@pytest.mark.parametrize("gamma, beta", [(1.0, 0.0), (0.5, 0.3), (-2.0, 1.0), (1.5, -0.7), (0.2, 0.5)])
def test_margin_is_the_mean_of_the_negative_part_of_the_gaussian(gamma, beta):
    margin = margin_from_batchnorm(torch.tensor([gamma]), torch.tensor([beta])).item()
    assert margin == pytest.approx(_negative_mean(beta, abs(gamma)), rel=1e-4, abs=1e-6)
    assert margin < 0


def test_margin_falls_back_to_minus_three_sigma_when_the_negative_tail_is_tiny():
    # Φ(−β/|γ|) = Φ(−4) ≈ 3e-5 < 0.001: both references use −3|γ|
    assert margin_from_batchnorm(torch.tensor([0.5]), torch.tensor([2.0])).item() == pytest.approx(-1.5)
    assert margin_from_batchnorm(torch.tensor([0.0]), torch.tensor([-0.4])).item() == pytest.approx(-0.4)   # a constant
    assert margin_from_batchnorm(torch.tensor([0.0]), torch.tensor([0.4])).item() == pytest.approx(0.0, abs=1e-9)


def _partial(s, t, margin):
    """OFD's loss one element at a time: skip where the target is the margin and the student is below it."""
    total = 0.0
    for b in range(s.shape[0]):
        for c in range(s.shape[1]):
            for v, tv in zip(s[b, c].ravel(), t[b, c].ravel()):
                target = max(tv, margin[c])
                if v > target or target > 0:
                    total += (v - target) ** 2
    return total / s.shape[0]


def test_partial_l2_matches_the_element_rule():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(3, 4, 3, 3)), rng.normal(size=(3, 4, 3, 3))
    margin = np.array([-0.5, -1.0, -0.2, -2.0])
    value = partial_l2(torch.tensor(s), torch.tensor(t), torch.tensor(margin)).item()
    assert value == pytest.approx(_partial(s, t, margin), rel=1e-5)


def test_the_mask_skips_a_student_below_a_negative_target_only():
    margin = torch.tensor([-1.0])
    t = torch.tensor([-3.0, -3.0, -0.5, -0.5, 2.0, 2.0]).view(1, 1, 1, 6)
    s = torch.tensor([-4.0, 0.0, -0.7, -0.2, 1.0, 3.0]).view(1, 1, 1, 6)
    # targets max(t, −1) = −1, −1, −0.5, −0.5, 2, 2; counted: s > target, or target > 0
    expected = 0 + 1.0 ** 2 + 0 + 0.3 ** 2 + 1.0 + 1.0
    assert partial_l2(s, t, margin).item() == pytest.approx(expected)


def test_loss_weights_layers_and_pools_the_larger_map():
    loss = OFDLoss([4, 6], [4, 8], margins=[torch.full((4,), -0.5), torch.full((8,), -1.0)])
    s = [torch.randn(2, 4, 8, 8), torch.randn(2, 6, 4, 4)]
    t = [torch.randn(2, 4, 4, 4), torch.randn(2, 8, 4, 4)]
    with torch.no_grad():
        first = loss.connectors[0](s[0])
        expected = (partial_l2(nn.functional.adaptive_avg_pool2d(first, 4), t[0], torch.full((4,), -0.5)) / 2
                    + partial_l2(loss.connectors[1](s[1]), t[1], torch.full((8,), -1.0)))
        assert loss(s, t).item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_margin_batchnorm_is_found_for_preact_markers_and_batchnorms_and_refused_otherwise():
    resnet = create_model("resnet8", 10)
    assert teacher_batchnorm(resnet, "layer2.0.preact") == "layer2.0.bn2"
    assert teacher_batchnorm(resnet, "bn1") == "bn1"
    vgg = create_model("vgg8", 10)
    assert teacher_batchnorm(vgg, "layer2.bn1") == "layer2.bn1"
    wrn = create_model("wrn_16_1", 10)
    assert teacher_batchnorm(wrn, "layer3.0.bn1") == "layer3.0.bn1"
    with pytest.raises(ValueError, match="neither a BatchNorm2d nor a `preact`"):
        teacher_batchnorm(resnet, "layer2")


def test_prepare_reads_the_margins_of_the_final_teacher_and_gradients_reach_only_the_student():
    teacher = create_model("demo_teacher", 10).eval()
    term = build_term(BuildContext(method="ofd", options={}, student_shapes=[(16, 16, 16)], teacher_shapes=[(32, 16, 16)],
                                   student_paths=["layer2.0.preact"], teacher_paths=["layer2.0.preact"], teacher=teacher))
    bn = teacher.layer2[0].bn2
    with torch.no_grad():              # the teacher changes after the term is built (trained in the same run)
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
    assert term.needs_prepare and not term.is_prepared
    term.prepare(PrepareContext(stage="student", loader=None, teacher_features=None, teacher=teacher))
    assert torch.allclose(term.loss.margin0, margin_from_batchnorm(bn.weight, bn.bias))
    s = torch.randn(2, 16, 16, 16, requires_grad=True)
    t = torch.randn(2, 32, 16, 16, requires_grad=True)
    from featdistill_core.losses import StepContext, TrainingProgress
    step = StepContext((s,), (t,), torch.zeros(2, 10), None, torch.zeros(2), torch.zeros(2),
                       TrainingProgress("student", 1, 1, 1, 1, 1))
    term(step).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


def test_building_refuses_a_layer_without_a_batchnorm_and_names_it():
    teacher = create_model("demo_teacher", 10)
    with pytest.raises(ValueError, match="layer3"):
        build_term(BuildContext(method="ofd", options={}, student_shapes=[(32, 8, 8)], teacher_shapes=[(64, 8, 8)],
                                student_paths=["layer3"], teacher_paths=["layer3"], teacher=teacher))


def test_registration_follows_mdistiller():
    info = METHODS["ofd"]
    assert info.default_weight == 0.001 and info.placement == "stage_preacts" and info.default_stage == "student"
