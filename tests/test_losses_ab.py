"""ABLoss against an element-by-element computation of the activation-boundary hinge."""

import numpy as np
import pytest
import torch

from featdistill_core.losses import METHODS, ABLoss, check_pair
from featdistill_core.losses.ab import boundary_loss, layer_weights


def _hinge(s, t, margin):
    """RepDistiller's criterion_alternative_l2, one element at a time, / batch · 3/1000."""
    total = 0.0
    for sv, tv in zip(s.ravel(), t.ravel()):
        if tv <= 0 and sv > -margin:
            total += (sv + margin) ** 2
        elif tv > 0 and sv <= margin:
            total += (sv - margin) ** 2
    return total / s.shape[0] * 3 / 1000


def _identity_loss(shapes, margin=1.0):
    loss = ABLoss(shapes, shapes, margin=margin)
    assert all(isinstance(c, torch.nn.Identity) for c in loss.connectors)
    return loss


def test_matches_the_hinge_element_by_element_with_the_layer_weights():
    rng = np.random.default_rng(0)
    shapes = [(3, 4, 4), (5, 2, 2), (2, 3, 3)]
    s = [rng.normal(size=(2, *shape)) * 1.5 for shape in shapes]
    t = [rng.normal(size=(2, *shape)) for shape in shapes]
    for margin in (1.0, 0.5):
        loss = _identity_loss(shapes, margin)([torch.tensor(x) for x in s], [torch.tensor(x) for x in t])
        expected = sum(w * _hinge(a, b, margin) for w, a, b in zip([0.25, 0.5, 1.0], s, t))
        assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_layer_weights_halve_towards_the_shallow_layers():
    assert layer_weights(1) == [1.0]
    assert layer_weights(3) == [0.25, 0.5, 1.0]


def test_zero_when_the_student_clears_the_margin_on_the_teachers_side():
    t = torch.tensor([[[[-2.0, 0.0], [0.3, 5.0]]]])
    s = torch.tensor([[[[-1.0, -3.0], [1.0, 2.0]]]])        # ≤ −μ where t ≤ 0, ≥ +μ where t > 0
    assert boundary_loss(s, t, 1.0).item() == 0.0
    wrong = torch.tensor([[[[0.0, -3.0], [1.0, 0.5]]]])      # (0 + 1)² and (0.5 − 1)²
    assert boundary_loss(wrong, t, 1.0).item() == pytest.approx(1.0 + 0.25)


def test_connectors_map_channels_and_sizes_and_take_gradients_the_teacher_none():
    loss = ABLoss([(4, 8, 8), (6, 4, 4)], [(8, 4, 4), (6, 4, 4)])
    assert not isinstance(loss.connectors[0], torch.nn.Identity)
    assert isinstance(loss.connectors[1], torch.nn.Identity)
    s = [torch.randn(3, 4, 8, 8, requires_grad=True), torch.randn(3, 6, 4, 4, requires_grad=True)]
    t = [torch.randn(3, 8, 4, 4, requires_grad=True), torch.randn(3, 6, 4, 4, requires_grad=True)]
    value = loss(s, t)
    value.backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in s)
    assert all(x.grad is None for x in t)
    assert all(p.grad is not None for p in loss.parameters())


def test_check_describes_the_connector_and_refuses_flat_features():
    check = check_pair("ab", [(16, 32, 32), (32, 16, 16)], [(16, 32, 32), (64, 8, 8)])
    assert check.ok and "32→64" in check.adapter and "16×16→8×8" in check.adapter
    assert not check_pair("ab", [(16,)], [(16,)]).ok


def test_registration_is_an_initialisation_stage_on_pre_activations():
    info = METHODS["ab"]
    assert info.default_stage == "init" and info.placement == "stage_preacts"
    assert info.default_weight == 1.0 and info.options["margin"].default == 1.0
    assert info.layers.minimum == 1 and info.layers.maximum is None
