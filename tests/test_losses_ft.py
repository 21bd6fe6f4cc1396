"""FTLoss: the factor distance against numpy, the paraphraser's pre-training, and what is trained when."""

import numpy as np
import pytest
import torch

from featdistill_core.losses import METHODS, FTLoss, PrepareContext
from featdistill_core.losses.ft import factor_loss
from featdistill_core.data.loader import BatchLoader


def _factor(f):
    """mean over channels of f², flattened, divided by its L2 norm, per sample."""
    a = (f.astype(np.float64) ** 2).mean(axis=1).reshape(f.shape[0], -1)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _pool(f, size):
    b, c, h, w = f.shape
    return f.reshape(b, c, size, h // size, size, w // size).mean(axis=(3, 5))


def test_factor_distance_matches_numpy_and_pools_the_larger_factor():
    rng = np.random.default_rng(0)
    fs, ft = rng.normal(size=(3, 4, 6, 6)), rng.normal(size=(3, 2, 6, 6))
    value = factor_loss(torch.tensor(fs), torch.tensor(ft)).item()
    assert value == pytest.approx(np.abs(_factor(fs) - _factor(ft)).mean(), rel=1e-5)
    big = rng.normal(size=(3, 4, 8, 8))
    small = rng.normal(size=(3, 4, 4, 4))
    value = factor_loss(torch.tensor(big), torch.tensor(small)).item()
    assert value == pytest.approx(np.abs(_factor(_pool(big, 4)) - _factor(small)).mean(), rel=1e-5)


def test_factor_distance_is_zero_for_proportional_factors():
    f = torch.randn(2, 3, 5, 5)
    assert factor_loss(3.0 * f, f).item() == pytest.approx(0.0, abs=1e-6)


def test_the_paraphraser_is_buffers_not_parameters_and_saved_with_the_adapters():
    loss = FTLoss(8, 16, rate=0.5)
    names = {name for name, _ in loss.named_parameters()}
    assert names and all(name.startswith("translator.") for name in names)
    state = loss.state_dict()
    assert "paraphraser.encoder.0.weight" in state and "paraphraser.decoder.4.weight" in state
    assert loss.factor == 8 and loss.paraphraser.encoder[-2].out_channels == 8


class _Teacher(torch.nn.Module):
    """A fixed random conv as the 'teacher layer' the paraphraser learns to reconstruct."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x))


def _context(teacher, loader, reports):
    return PrepareContext(stage="student", loader=loader, teacher_features=lambda images: (teacher(images).detach(),),
                          teacher=teacher, report=lambda done, total, loss: reports.append((done, total, loss)))


def test_prepare_trains_the_paraphraser_to_reconstruct_the_teacher_and_reports_progress():
    torch.manual_seed(0)
    teacher = _Teacher().eval().requires_grad_(False)
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    loader = BatchLoader(images, torch.zeros(16, dtype=torch.long), 8, shuffle=True, mean=(0.5,) * 3, std=(0.25,) * 3)
    loss = FTLoss(4, 6, prepare_epochs=20, prepare_lr=0.05)
    probe = teacher(next(iter(loader.epoch_batches(0))).images)
    before = loss.reconstruction_error(probe).item()
    translator = {k: v.clone() for k, v in loss.translator.state_dict().items()}
    reports = []
    loss.prepare(_context(teacher, loader, reports))
    after = loss.reconstruction_error(probe).item()
    assert after < 0.8 * before
    assert [r[0] for r in reports] == list(range(1, 20 * 2 + 1)) and {r[1] for r in reports} == {40}
    assert reports[-1][2] < reports[0][2]
    assert all(torch.equal(v, translator[k]) for k, v in loss.translator.state_dict().items())   # only the paraphraser


def test_a_step_trains_the_translator_only_and_never_reaches_the_teacher():
    loss = FTLoss(4, 6)
    paraphraser = {k: v.clone() for k, v in loss.paraphraser.state_dict().items()}
    s = torch.randn(2, 4, 8, 8, requires_grad=True)
    t = torch.randn(2, 6, 8, 8, requires_grad=True)
    value = loss(s, t)
    value.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None
    assert all(p.grad is not None for p in loss.translator.parameters())
    assert all(torch.equal(v, paraphraser[k]) for k, v in loss.paraphraser.state_dict().items())


def test_refuses_wrong_channel_counts_and_options():
    with pytest.raises(ValueError, match="FT expects student"):
        FTLoss(4, 6)(torch.randn(2, 5, 4, 4), torch.randn(2, 6, 4, 4))
    with pytest.raises(ValueError, match="rate"):
        FTLoss(4, 6, rate=0)


def test_registration_follows_repdistiller():
    info = METHODS["ft"]
    assert info.default_weight == 200.0 and info.placement == "last_stage" and info.default_stage == "student"
    assert {k: s.default for k, s in info.options.items()} == {"rate": 0.5, "prepare_epochs": 30, "prepare_lr": 0.01}
