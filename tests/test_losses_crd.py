"""CRDLoss: the NCE loss against an independent numpy computation, the memories (rows chosen by the
sample indices, momentum update with renormalisation, saved and resumed), the negatives (the positive
never among them, no repeats, the cap at N − 1) and the normalisation constants."""

import math

import numpy as np
import pytest
import torch

from featdistill_core.losses import METHODS, BuildContext, CRDLoss, StepContext, TrainingProgress, build_term, check_pair
from featdistill_core.losses.crd import EPS, nce_loss


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _embed(linear, x):
    return _unit(x @ linear.weight.detach().double().numpy().T + linear.bias.detach().double().numpy())


def _nce(h: np.ndarray, n: int) -> float:
    """−1/B Σ_i [log(h_i0 / (h_i0 + K/N)) + Σ_k log((K/N) / (h_ik + K/N))], with the reference's ε."""
    b, k = h.shape[0], h.shape[1] - 1
    noise = k / n
    total = 0.0
    for i in range(b):
        total += math.log(h[i, 0] / (h[i, 0] + noise + EPS))
        for j in range(1, k + 1):
            total += math.log(noise / (h[i, j] + noise + EPS))
    return -total / b


def _reference_loss(crd: CRDLoss, xs, xt, contrast, z=None):
    """The loss from the module's memories and heads, computed in float64 with loops."""
    v_s, v_t = _embed(crd.embed_student, xs), _embed(crd.embed_teacher, xt)
    m_s = crd.memory_student.double().numpy()
    m_t = crd.memory_teacher.double().numpy()
    tau, n = crd.temperature, crd.dataset_size
    out_s = np.array([[math.exp(m_t[j] @ v_s[i] / tau) for j in row] for i, row in enumerate(contrast)])
    out_t = np.array([[math.exp(m_s[j] @ v_t[i] / tau) for j in row] for i, row in enumerate(contrast)])
    z_s, z_t = (out_s.mean() * n, out_t.mean() * n) if z is None else z
    return _nce(out_s / z_s, n) + _nce(out_t / z_t, n), (z_s, z_t), (v_s, v_t)


def _crd(n=20, k=5, dim=4, seed=0, **kw):
    torch.manual_seed(seed)
    return CRDLoss(6, 10, n, feat_dim=dim, nce_k=k, **kw).double()


def _batch(seed=0, b=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(b, 6)), rng.normal(size=(b, 10))


def test_loss_matches_the_formula_and_sets_the_normalisers_once():
    crd = _crd()
    xs, xt = _batch()
    indices = torch.tensor([4, 0, 17])
    contrast = torch.tensor([[4, 1, 2, 3, 5, 6], [0, 19, 18, 2, 9, 4], [17, 3, 3, 8, 11, 0]])
    loss = crd(torch.tensor(xs), torch.tensor(xt), indices, contrast)
    expected, z, _ = _reference_loss(crd, xs, xt, contrast.numpy())
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    assert crd.normalizers.tolist() == pytest.approx(list(z), rel=1e-9)
    # a second batch keeps the first batch's constants
    xs2, xt2 = _batch(seed=1)
    loss2 = crd(torch.tensor(xs2), torch.tensor(xt2), indices, contrast)
    expected2, _, _ = _reference_loss(crd, xs2, xt2, contrast.numpy(), z=z)
    assert loss2.item() == pytest.approx(expected2, rel=1e-9)
    assert crd.normalizers.tolist() == pytest.approx(list(z), rel=1e-12)


def test_the_indices_pick_the_memory_rows():
    crd = _crd(n=10, k=2)
    xs, xt = _batch(b=2)
    contrast = torch.tensor([[7, 1, 2], [3, 8, 9]])
    crd(torch.tensor(xs), torch.tensor(xt), torch.tensor([7, 3]), contrast)     # fixes Z
    base = crd(torch.tensor(xs), torch.tensor(xt), torch.tensor([7, 3]), contrast).item()
    with torch.no_grad():
        crd.memory_teacher[[0, 4, 5, 6]] = torch.randn(4, 4, dtype=torch.float64)   # rows not in the contrast
        crd.memory_student[[0, 4, 5, 6]] = torch.randn(4, 4, dtype=torch.float64)
    assert crd(torch.tensor(xs), torch.tensor(xt), torch.tensor([7, 3]), contrast).item() == pytest.approx(base, rel=1e-12)
    with torch.no_grad():
        v_s, v_t = crd.embed(torch.tensor(xs), torch.tensor(xt))
    for memory, anchor in (("memory_teacher", v_s), ("memory_student", v_t)):
        for row, sample in ((7, 0), (8, 1)):                                    # a positive, a negative
            saved = getattr(crd, memory)[row].clone()
            with torch.no_grad():                   # aligned with its anchor: the largest possible score
                getattr(crd, memory)[row] = anchor[sample]
            assert crd(torch.tensor(xs), torch.tensor(xt), torch.tensor([7, 3]), contrast).item() != pytest.approx(base, rel=1e-6)
            with torch.no_grad():
                getattr(crd, memory)[row] = saved
    # the scores read exactly those rows: h_s uses the teacher memory, h_t the student memory
    out_s, out_t = crd.scores(v_s, v_t, contrast)
    assert out_s[1, 1].item() == pytest.approx(math.exp(float(crd.memory_teacher[8] @ v_s[1]) / crd.temperature))
    assert out_t[0, 0].item() == pytest.approx(math.exp(float(crd.memory_student[7] @ v_t[0]) / crd.temperature))


@pytest.mark.parametrize("momentum", [0.5, 0.0, 0.9])
def test_memory_update_is_a_renormalised_momentum_average_of_the_forward_embeddings(momentum):
    crd = _crd(n=12, k=3, nce_m=momentum)
    xs, xt = _batch(b=3)
    indices = torch.tensor([2, 9, 5])
    before_s, before_t = crd.memory_student.clone(), crd.memory_teacher.clone()
    crd(torch.tensor(xs), torch.tensor(xt), indices)
    v_s, v_t = _embed(crd.embed_student, xs), _embed(crd.embed_teacher, xt)
    with torch.no_grad():                                  # the optimizer step moves the heads ...
        crd.embed_student.weight.add_(1.0)
        crd.embed_teacher.weight.mul_(-3.0)
    crd.after_step(None)                                   # ... the update still uses the forward's vectors
    for memory, before, v in ((crd.memory_student, before_s, v_s), (crd.memory_teacher, before_t, v_t)):
        expected = _unit(momentum * before[indices].numpy() + (1 - momentum) * v)
        assert np.allclose(memory[indices].numpy(), expected, atol=1e-12)
        assert np.allclose(np.linalg.norm(memory[indices].numpy(), axis=1), 1.0)
        others = [i for i in range(12) if i not in indices.tolist()]
        assert torch.equal(memory[others], before[others])
    assert crd._pending is None


def test_after_step_without_a_forward_embeds_the_steps_features():
    crd = _crd(n=8, k=2, nce_m=0.0)
    xs, xt = _batch(b=2)
    progress = TrainingProgress("student", 1, 1, 1, 1, 1)
    step = StepContext((torch.tensor(xs),), (torch.tensor(xt),), torch.zeros(2, 3), None, torch.zeros(2),
                       torch.tensor([6, 1]), progress)
    crd.after_step(step)
    assert np.allclose(crd.memory_student[[6, 1]].numpy(), _embed(crd.embed_student, xs))
    assert np.allclose(crd.memory_teacher[[6, 1]].numpy(), _embed(crd.embed_teacher, xt))


def test_negatives_exclude_the_positive_have_no_repeats_and_cover_the_others():
    torch.manual_seed(3)
    crd = CRDLoss(4, 4, 30, feat_dim=3, nce_k=7)
    indices = torch.tensor([0, 29, 13, 5])
    seen = torch.zeros(4, 30)
    for _ in range(300):
        contrast = crd.contrast_indices(indices)
        assert contrast.shape == (4, 8) and torch.equal(contrast[:, 0], indices)
        negatives = contrast[:, 1:]
        assert not (negatives == indices.view(-1, 1)).any()
        assert all(len(set(row.tolist())) == 7 for row in negatives)
        seen.scatter_add_(1, negatives, torch.ones_like(negatives, dtype=torch.float))
    for row, positive in enumerate(indices.tolist()):
        counts = torch.cat([seen[row, :positive], seen[row, positive + 1:]])
        assert seen[row, positive] == 0
        expected = 300 * 7 / 29                              # uniform over the 29 others: ≈ 72 each
        assert counts.min() > expected * 0.6 and counts.max() < expected * 1.4


def test_nce_k_is_capped_at_every_other_image():
    crd = CRDLoss(4, 4, 10, feat_dim=3, nce_k=16384)
    assert (crd.nce_k, crd.requested_k) == (9, 16384)
    assert "capped" in repr(crd)
    contrast = crd.contrast_indices(torch.tensor([3, 7]))
    for row, positive in zip(contrast.tolist(), (3, 7)):
        assert row[0] == positive and sorted(row[1:]) == [i for i in range(10) if i != positive]
    # the NCE's noise term uses the capped count
    h = torch.rand(2, 10)
    assert crd(torch.randn(2, 4), torch.randn(2, 4), torch.tensor([3, 7])).isfinite()
    assert nce_loss(h.double(), 10).item() == pytest.approx(_nce(h.double().numpy(), 10), rel=1e-12)


def test_refuses_what_cannot_work():
    with pytest.raises(ValueError, match="training set's size"):
        build_term(BuildContext(method="crd", options={}, student_shapes=[(8,)], teacher_shapes=[(16,)], dataset_size=0))
    with pytest.raises(ValueError, match="at least 2"):
        CRDLoss(4, 4, 1)
    crd = CRDLoss(4, 4, 10, feat_dim=3, nce_k=3)
    with pytest.raises(ValueError, match=r"0\.\.9"):
        crd(torch.randn(2, 4), torch.randn(2, 4), torch.tensor([3, 10]))
    with pytest.raises(ValueError, match="one sample index per image"):
        crd(torch.randn(2, 4), torch.randn(2, 4), torch.tensor([3]))
    with pytest.raises(ValueError, match="integers"):
        crd(torch.randn(2, 4), torch.randn(2, 4), torch.tensor([3.0, 1.0]))


def test_gradients_reach_the_student_and_both_heads_never_the_teacher():
    crd = CRDLoss(5, 7, 16, feat_dim=4, nce_k=6)
    student = torch.randn(3, 5, requires_grad=True)
    teacher = torch.randn(3, 7, requires_grad=True)
    crd(student, teacher, torch.tensor([1, 2, 3])).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None
    for name, p in crd.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert not any(b.requires_grad for b in crd.buffers())


def _train(crd, steps, start=0):
    """A few steps of plain SGD on the heads with memory updates; returns the losses."""
    optimizer = torch.optim.SGD(crd.parameters(), lr=0.5)
    losses = []
    for step in range(start, steps):
        generator = torch.Generator().manual_seed(100 + step)
        xs, xt = torch.randn(4, 6, generator=generator), torch.randn(4, 10, generator=generator)
        indices = torch.randperm(20, generator=generator)[:4]
        loss = crd(xs, xt, indices)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        crd.after_step(None)
        losses.append(loss.item())
    return losses


def test_a_resumed_state_continues_identically():
    torch.manual_seed(0)
    first = CRDLoss(6, 10, 20, feat_dim=4, nce_k=8)
    head = _train(first, 2)
    state = {k: v.clone() for k, v in first.state_dict().items()}
    rng = torch.get_rng_state()
    tail = _train(first, 5, start=2)
    assert set(state) >= {"memory_student", "memory_teacher", "normalizers"}

    torch.manual_seed(7)
    second = CRDLoss(6, 10, 20, feat_dim=4, nce_k=8)
    assert not torch.equal(second.memory_student, state["memory_student"])
    second.load_state_dict(state)
    torch.set_rng_state(rng)
    assert _train(second, 5, start=2) == tail
    for name, value in second.state_dict().items():
        assert torch.equal(value, first.state_dict()[name]), name
    assert len(head) == 2 and all(math.isfinite(v) for v in head + tail)


def test_registration_and_the_term_reads_the_indices():
    info = METHODS["crd"]
    assert (info.default_weight, info.taps, info.placement, info.reads) == (0.8, "input", "embedding", "context")
    assert {k: s.default for k, s in info.options.items()} == {"feat_dim": 128, "nce_k": 16384, "nce_t": 0.07, "nce_m": 0.5}
    check = check_pair("crd", [(32,)], [(64,)])
    assert check.ok and "32→128" in check.adapter and "memories" in check.adapter
    term = build_term(BuildContext(method="crd", options={"nce_k": 4, "feat_dim": 8}, student_shapes=[(32,)],
                                   teacher_shapes=[(64,)], dataset_size=50))
    assert term.loss.memory_student.shape == (50, 8) and term.loss.nce_k == 4
    progress = TrainingProgress("student", 1, 1, 1, 1, 1)
    step = StepContext((torch.randn(3, 32),), (torch.randn(3, 64),), torch.zeros(3, 10), None, torch.zeros(3),
                       torch.tensor([0, 49, 7]), progress)
    before = term.loss.memory_teacher.clone()
    assert torch.isfinite(term(step))
    term.after_step(step)
    changed = (term.loss.memory_teacher != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == [0, 7, 49]


def test_validation_accepts_the_recipe_k_on_a_small_data_set_and_the_trainer_caps_it():
    from featdistill_core.config import ConfigError, DataConfig, PairConfig, RunConfig, TeacherConfig
    from featdistill_core.distiller import Distiller
    from featdistill_core.validate import validate_run

    def config(options):
        return RunConfig(name="crd-cap", seed=0, device="cpu", epochs=1, batch_size=16,
                         teacher=TeacherConfig(arch="demo_teacher", train_epochs=1),
                         data=DataConfig(name="demo", demo_train=64, demo_test=16),
                         pairs=[PairConfig("crd", ["fc"], ["fc"], options=options)])

    run = validate_run(config({"nce_k": 16384}))
    assert run.dataset_size == 64
    distiller = Distiller(run.terms, run.teacher, run.student, dataset_size=run.dataset_size)
    assert distiller.term_losses[0].loss.nce_k == 63
    distiller.close()
    with pytest.raises(ConfigError) as caught:
        validate_run(config({"nce_m": 1.0}))
    assert any(p.field.startswith("pairs[0]") and "nce_m" in p.message for p in caught.value.problems)
