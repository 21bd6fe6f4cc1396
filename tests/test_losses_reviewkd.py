"""ReviewKD: HCL against numpy, the ABF review order by hand, odd and non-square sizes, the warm-up."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from featdistill_core.losses import METHODS, BuildContext, ReviewKDLoss, StepContext, TrainingProgress, build_term, check_pair
from featdistill_core.losses.reviewkd import hcl, resize


def _pool(f, size):
    """Adaptive average pooling of (B, C, H, W) to (size, size) where H and W are multiples of size."""
    b, c, h, w = f.shape
    return f.reshape(b, c, size, h // size, size, w // size).mean(axis=(3, 5))


def _hcl(fs, ft):
    """The authors' hcl for square maps: full MSE, then levels 4, 2, 1 below the size weighted 1/2, 1/4, 1/8."""
    h = fs.shape[2]
    loss, weight, total = np.mean((fs - ft) ** 2), 1.0, 1.0
    for level in (4, 2, 1):
        if level >= h:
            continue
        weight /= 2
        loss += weight * np.mean((_pool(fs, level) - _pool(ft, level)) ** 2)
        total += weight
    return loss / total


@pytest.mark.parametrize("size", [1, 2, 4, 8])
def test_hcl_matches_the_authors_pyramid(size):
    rng = np.random.default_rng(size)
    fs, ft = rng.normal(size=(2, 3, size, size)), rng.normal(size=(2, 3, size, size))
    assert hcl(torch.tensor(fs), torch.tensor(ft)).item() == pytest.approx(_hcl(fs, ft), rel=1e-6)


def test_hcl_on_a_non_square_map_pools_each_dimension_to_at_most_its_size():
    fs, ft = torch.randn(2, 3, 8, 2), torch.randn(2, 3, 8, 2)
    expected = F.mse_loss(fs, ft)
    weights = [0.5, 0.25, 0.125]
    for weight, size in zip(weights, [(4, 2), (2, 2), (1, 1)]):
        expected = expected + weight * F.mse_loss(F.adaptive_avg_pool2d(fs, size), F.adaptive_avg_pool2d(ft, size))
    assert hcl(fs, ft).item() == pytest.approx((expected / (1 + sum(weights))).item(), rel=1e-6)


def test_resize_pools_down_and_takes_the_nearest_pixel_up():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(resize(x, (2, 2)), F.adaptive_avg_pool2d(x, 2))
    assert torch.equal(resize(x, (8, 8)), x.repeat_interleave(2, 2).repeat_interleave(2, 3))
    assert resize(x, (3, 5)).shape[-2:] == (3, 5)


def _review_by_hand(loss, maps):
    """The review from the deepest level up, written with the ABF's own convolutions."""
    levels = list(maps) + ([F.adaptive_avg_pool2d(maps[-1], 1)] if loss.pooled else [])
    outputs, residual = [None] * len(levels), None
    for i in reversed(range(len(levels))):
        abf = loss.abfs[i]
        x = abf.conv1(levels[i])
        if residual is not None:
            r = resize(residual, x.shape[-2:])
            a = abf.att_conv(torch.cat([x, r], 1))
            x = x * a[:, :1] + r * a[:, 1:]
        x = resize(x, loss.teacher_shapes[i][1:])
        outputs[i], residual = abf.conv2(x), x
    return outputs


@pytest.mark.parametrize("pooled", [True, False])
def test_odd_and_non_square_stage_sizes_and_channels_fuse_to_the_teachers_shapes(pooled):
    torch.manual_seed(0)
    student = [(5, 15, 9), (7, 7, 5), (11, 3, 3)]
    teacher = [(6, 8, 8), (9, 7, 4), (13, 2, 5)]
    loss = ReviewKDLoss(student, teacher, pooled=pooled).eval()
    maps = [torch.randn(2, *shape) for shape in student]
    fused = loss.fuse(maps)
    expected_shapes = [(2, *t) for t in teacher] + ([(2, 13, 1, 1)] if pooled else [])
    assert [tuple(y.shape) for y in fused] == expected_shapes
    assert loss.mid_channels == 11
    assert loss.abfs[-1].att_conv is None and all(abf.att_conv is not None for abf in loss.abfs[:-1])
    with torch.no_grad():
        for a, b in zip(fused, _review_by_hand(loss, maps)):
            assert torch.allclose(a, b, atol=1e-6)
        targets = [torch.randn(2, *shape) for shape in teacher]
        levels = targets + ([F.adaptive_avg_pool2d(targets[-1], 1)] if pooled else [])
        expected = sum(hcl(y, t) for y, t in zip(fused, levels))
        assert loss(maps, targets).item() == pytest.approx(expected.item(), rel=1e-5)


def test_mid_channels_are_capped_at_512():
    loss = ReviewKDLoss([(8, 4, 4), (600, 2, 2)], [(8, 4, 4), (16, 2, 2)])
    assert loss.mid_channels == 512


def test_the_check_accepts_any_maps_and_refuses_flat_features():
    assert check_pair("reviewkd", [(3, 7, 5), (9, 2, 3)], [(64, 32, 32), (5, 1, 1)]).ok
    assert not check_pair("reviewkd", [(3, 7, 5), (9,)], [(64, 32, 32), (5, 1, 1)]).ok


def test_the_term_warms_up_with_the_epoch_and_gradients_reach_the_student_only():
    term = build_term(BuildContext(method="reviewkd", options={"warmup": 4},
                                   student_shapes=[(4, 8, 8), (8, 4, 4)], teacher_shapes=[(6, 8, 8), (10, 4, 4)]))
    torch.manual_seed(1)
    s = [torch.randn(3, 4, 8, 8, requires_grad=True), torch.randn(3, 8, 4, 4, requires_grad=True)]
    t = [torch.randn(3, 6, 8, 8, requires_grad=True), torch.randn(3, 10, 4, 4, requires_grad=True)]
    term.eval()      # fixed BatchNorm statistics: the same value at every epoch
    values = {}
    for epoch in (1, 2, 4, 9):
        step = StepContext(tuple(s), tuple(t), torch.zeros(3, 10), None, torch.zeros(3), torch.zeros(3),
                           TrainingProgress("student", epoch, 10, 1, 10, 1))
        values[epoch] = term(step)
    full = values[9].item()
    assert [values[e].item() for e in (1, 2, 4)] == pytest.approx([full / 4, full / 2, full], rel=1e-6)
    values[9].backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in s)
    assert all(x.grad is None for x in t)


def test_registration_follows_the_cifar_recipe():
    info = METHODS["reviewkd"]
    assert info.default_weight == 5.0 and info.placement == "all_stages" and info.reads == "context"
    assert {k: s.default for k, s in info.options.items()} == {"pooled": True, "warmup": 20}


def test_a_step_on_networks_of_different_sizes_and_widths_through_a_validated_run():
    from featdistill_core.config import DataConfig, PairConfig, RunConfig, TeacherConfig, StudentConfig
    from featdistill_core.distiller import Distiller
    from featdistill_core.validate import validate_run

    layers_t, layers_s = ["layer1", "layer2", "layer3"], ["layer1", "layer2", "layer3"]
    config = RunConfig(name="review-mixed", device="cpu", epochs=1, batch_size=4,
                       teacher=TeacherConfig(arch="resnet8", train_epochs=1), student=StudentConfig(arch="shufflenetv1"),
                       data=DataConfig(name="demo", demo_train=16, demo_test=16),
                       pairs=[PairConfig("reviewkd", layers_t, layers_s)])
    run = validate_run(config)        # teacher stages 32/16/8 px, 16/32/64 ch; student 16/8/4 px, 240/480/960 ch
    distiller = Distiller(run.terms, run.teacher, run.student, ce_weight=0.0, num_classes=10)
    run.teacher.eval().requires_grad_(False)
    _, losses = distiller(torch.randn(4, 3, 32, 32), torch.arange(4), torch.arange(4),
                          TrainingProgress("student", 20, 20, 1, 1, 1))
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total) and all(p.grad is not None for p in distiller.term_losses.parameters())
    distiller.close()
