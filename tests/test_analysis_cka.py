"""Linear CKA with the mini-batch unbiased HSIC estimator, against independent numpy computations."""

import numpy as np
import pytest
import torch

from featdistill_core.analysis.cka import (
    MIN_BATCH, MinibatchCKA, batch_bounds, linear_cka, linear_gram, unbiased_hsic_matrix, unbiased_hsic_self,
)


def _song_hsic(K, L):
    """HSIC₁ of Song et al. (2012), term by term, with explicit trace and ones-vector products."""
    n = K.shape[0]
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0.0)
    np.fill_diagonal(Lt, 0.0)
    one = np.ones(n)
    return (np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (one @ Kt @ Lt @ one)) / (n * (n - 3))


def _u_centred(K):
    """U-centring of Székely & Rizzo (2014), the form of Kornblith et al.'s debiased CKA notebook."""
    n = K.shape[0]
    G = K.astype(np.float64).copy()
    np.fill_diagonal(G, 0.0)
    means = G.sum(axis=0) / (n - 2)
    means -= means.sum() / (2 * (n - 1))
    G -= means[:, None]
    G -= means[None, :]
    np.fill_diagonal(G, 0.0)
    return G


def _reference_cka(x, y):
    """Debiased linear CKA on all examples from U-centred Gram matrices (no centring of features)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    a, b = _u_centred(x @ x.T), _u_centred(y @ y.T)
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _features(seed, n=96):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 6, generator=g)
    x = torch.cat([z @ torch.randn(6, 20, generator=g), 0.3 * torch.randn(n, 20, generator=g)], 1) + 3.0
    y = torch.relu(z @ torch.randn(6, 4, 5, 5, generator=g).reshape(6, -1)).reshape(n, 4, 5, 5)   # a 4-D map
    return x, y


def test_hsic_matches_song_et_al_term_by_term():
    x, y = _features(0, n=24)
    K = (x.double() @ x.double().T).numpy()
    L = (y.double().reshape(24, -1) @ y.double().reshape(24, -1).T).numpy()
    ours = unbiased_hsic_matrix(torch.from_numpy(K)[None], torch.from_numpy(L)[None])[0, 0].item()
    assert ours == pytest.approx(_song_hsic(K, L), rel=1e-10)
    assert unbiased_hsic_self(torch.from_numpy(K)[None])[0].item() == pytest.approx(_song_hsic(K, K), rel=1e-10)


def test_centring_features_does_not_change_hsic():
    x, y = _features(1, n=20)
    raw_k = x.double() @ x.double().T
    raw_l = y.double().reshape(20, -1) @ y.double().reshape(20, -1).T
    centred = unbiased_hsic_matrix(linear_gram(x)[None], linear_gram(y)[None])
    raw = unbiased_hsic_matrix(raw_k[None], raw_l[None])
    assert centred.item() == pytest.approx(raw.item(), rel=1e-9)


def test_full_batch_cka_equals_the_debiased_reference():
    for seed in range(3):
        x, y = _features(seed)
        assert linear_cka(x, y) == pytest.approx(_reference_cka(x, y), abs=1e-9)


def test_cka_of_a_representation_with_itself_is_one():
    x, y = _features(2)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(y, y, batch_size=16) == pytest.approx(1.0, abs=1e-12)


def test_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    x, y = _features(3)
    g = torch.Generator().manual_seed(7)
    q, _ = torch.linalg.qr(torch.randn(x.shape[1], x.shape[1], generator=g, dtype=torch.float64))
    base = linear_cka(x, y, batch_size=32)
    assert linear_cka((x.double() @ q), y, batch_size=32) == pytest.approx(base, abs=1e-9)
    assert linear_cka(x * 17.5, y * 0.01, batch_size=32) == pytest.approx(base, abs=1e-9)
    assert 0.3 < base < 1.0                                   # the test is not about a trivial value


def test_not_invariant_to_an_arbitrary_linear_map():
    x, y = _features(4)
    scale = torch.ones(x.shape[1], dtype=torch.float64)
    scale[:3] = 30.0                                          # stretch three directions only
    assert abs(linear_cka(x.double() * scale, y) - linear_cka(x, y)) > 0.01


def test_independent_random_features_give_near_zero():
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(256, 500, generator=g), torch.randn(256, 500, generator=g)
    assert abs(linear_cka(x, y)) < 0.03
    assert abs(linear_cka(x, y, batch_size=64)) < 0.05
    # the biased estimator (plain centring) is far from 0 here: that is what the unbiased one fixes
    xc, yc = x - x.mean(0), y - y.mean(0)
    k, l = xc @ xc.T, yc @ yc.T
    biased = float((k * l).sum() / torch.sqrt((k * k).sum() * (l * l).sum()))
    assert biased > 0.3


def test_minibatch_estimate_agrees_with_the_full_one():
    """Tolerance: 0.02 for 1024 examples in batches of 128 (measured differences are below 0.004)."""
    g = torch.Generator().manual_seed(11)
    z = torch.randn(1024, 8, generator=g)
    x = torch.cat([z @ torch.randn(8, 32, generator=g), torch.randn(1024, 32, generator=g)], 1)
    y = torch.tanh(z @ torch.randn(8, 64, generator=g)) + 0.5 * torch.randn(1024, 64, generator=g)
    full = linear_cka(x, y)
    assert linear_cka(x, y, batch_size=128) == pytest.approx(full, abs=0.02)
    assert linear_cka(x, y, batch_size=1024) == pytest.approx(full, abs=1e-12)


def test_accumulator_state_does_not_grow_with_the_probe_size():
    acc = MinibatchCKA(3, 2)
    g = torch.Generator().manual_seed(0)
    sizes = []
    for _ in range(5):
        rows = torch.stack([linear_gram(torch.randn(8, 10, generator=g)) for _ in range(3)])
        cols = torch.stack([linear_gram(torch.randn(8, 4, generator=g)) for _ in range(2)])
        acc.update(rows, cols)
        sizes.append(acc.cross.numel() + acc.row_self.numel() + acc.col_self.numel())
    assert len(set(sizes)) == 1 and acc.examples == 40 and acc.result().shape == (3, 2)


def test_a_constant_layer_gives_nan_not_a_number_out_of_nowhere():
    acc = MinibatchCKA(1, 1)
    g = torch.Generator().manual_seed(0)
    acc.update(linear_gram(torch.ones(8, 5))[None], linear_gram(torch.randn(8, 5, generator=g))[None])
    assert np.isnan(acc.result()[0, 0])
    with pytest.raises(ValueError, match="no batch"):
        MinibatchCKA(1, 1).result()


def test_batch_bounds_keep_every_batch_at_least_four_long():
    assert batch_bounds(10, 4) == [(0, 4), (4, 10)]           # a last batch of 2 is merged
    assert batch_bounds(12, 4) == [(0, 4), (4, 8), (8, 12)]
    assert batch_bounds(5, 64) == [(0, 5)]
    with pytest.raises(ValueError, match="at least 4 probe images"):
        batch_bounds(3, 64)
    with pytest.raises(ValueError, match="batch size"):
        batch_bounds(100, 2)
    with pytest.raises(ValueError):
        unbiased_hsic_self(torch.zeros(1, MIN_BATCH - 1, MIN_BATCH - 1))
