"""Linear CKA, estimated over mini-batches with the unbiased HSIC estimator.

Centered kernel alignment (Kornblith et al., "Similarity of Neural Network Representations
Revisited", ICML 2019) compares two representations of the same n examples through their Gram
matrices K = X Xᵀ and L = Y Yᵀ (linear kernel; a 4-D feature map is flattened per sample, C·H·W)::

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L))

Following Nguyen, Raghu & Kornblith ("Do Wide and Deep Networks Learn the Same Things?",
ICLR 2021, section 3.1), HSIC is estimated on mini-batches of m examples with the *unbiased*
estimator of Song et al. (2012), and the three HSIC terms are averaged over the k batches before
the ratio is taken::

    HSIC₁(K, L) = [ tr(K̃ L̃) + (1ᵀK̃1)(1ᵀL̃1) / ((m−1)(m−2)) − 2/(m−2) · 1ᵀK̃ L̃1 ] / (m(m−3))
    CKA_minibatch = mean_i HSIC₁(K_i, L_i) / sqrt(mean_i HSIC₁(K_i, K_i) · mean_i HSIC₁(L_i, L_i))

where K̃, L̃ are the Gram matrices with their diagonals set to zero. Memory is one m×m Gram matrix
per layer, whatever the number of probe images; the estimate of independent features is near 0
(the biased estimator is not: it grows with the feature dimension over m); with a single batch of
all n examples it is the unbiased ("debiased") CKA of Kornblith et al.'s reference notebook.

Where the code differs from the paper's description: the features of each batch are centred (their
batch mean subtracted) before the Gram matrix is formed. HSIC₁ is exactly invariant to that shift
(it removes every term of the form aᵢ + aⱼ from K), so the value is the same; the centring only
avoids the cancellation a large common offset (a post-ReLU map) causes in floating point.
Accumulation is in float64 (float32 on Apple's MPS, which has no float64).

Everything here is plain tensor code with no model in sight: :mod:`.similarity` collects the Gram
matrices of a network's layers with forward hooks and feeds them to :class:`MinibatchCKA`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

MIN_BATCH = 4
"""The unbiased HSIC estimator needs at least 4 examples per batch (it divides by m − 3)."""


def accumulation_dtype(device: torch.device | str) -> torch.dtype:
    """float64, except on MPS (no float64 there)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def linear_gram(features: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """The linear-kernel Gram matrix (m, m) of ``features`` (m, ...) flattened per sample, batch-centred."""
    x = features.detach().reshape(features.shape[0], -1).to(dtype)
    x = x - x.mean(dim=0, keepdim=True)
    return x @ x.T


def _zero_diagonal(grams: Tensor) -> Tensor:
    m = grams.shape[-1]
    eye = torch.eye(m, dtype=torch.bool, device=grams.device)
    return grams.masked_fill(eye, 0.0)


def unbiased_hsic_matrix(rows: Tensor, cols: Tensor) -> Tensor:
    """HSIC₁ between every Gram matrix of ``rows`` (A, m, m) and every one of ``cols`` (B, m, m): (A, B).

    The Gram matrices must be symmetric (linear kernels are). Uses tr(K̃L̃) = Σ K̃∘L̃ and
    1ᵀK̃L̃1 = (K̃1)·(L̃1), so all A·B pairs cost two matrix products.
    """
    m = rows.shape[-1]
    if m < MIN_BATCH or cols.shape[-1] != m:
        raise ValueError(f"unbiased HSIC needs two batches of the same size >= {MIN_BATCH}; got {m} and {cols.shape[-1]}")
    k = _zero_diagonal(rows)
    l = _zero_diagonal(cols)
    trace = k.reshape(k.shape[0], -1) @ l.reshape(l.shape[0], -1).T
    k_sums, l_sums = k.sum(dim=(1, 2)), l.sum(dim=(1, 2))
    k_rows, l_rows = k.sum(dim=2), l.sum(dim=2)
    middle = torch.outer(k_sums, l_sums) / ((m - 1) * (m - 2))
    last = (k_rows @ l_rows.T) * (2.0 / (m - 2))
    return (trace + middle - last) / (m * (m - 3))


def unbiased_hsic_self(grams: Tensor) -> Tensor:
    """HSIC₁(K, K) for each Gram matrix of ``grams`` (A, m, m): (A,)."""
    m = grams.shape[-1]
    if m < MIN_BATCH:
        raise ValueError(f"unbiased HSIC needs batches of at least {MIN_BATCH} examples; got {m}")
    k = _zero_diagonal(grams)
    trace = (k * k).sum(dim=(1, 2))
    sums = k.sum(dim=(1, 2))
    rows = k.sum(dim=2)
    return (trace + sums * sums / ((m - 1) * (m - 2)) - (rows * rows).sum(dim=1) * (2.0 / (m - 2))) / (m * (m - 3))


class MinibatchCKA:
    """Accumulates the mini-batch CKA between A "row" and B "column" representations.

    >>> acc = MinibatchCKA(len(teacher_layers), len(student_layers))
    >>> for batch in batches:
    ...     acc.update(teacher_grams, student_grams)   # (A, m, m) and (B, m, m), same m (>= 4)
    >>> acc.result()                                   # numpy (A, B); NaN where a layer never varied

    The state is three sums (A×B, A, B) and the batch count: independent of the number of examples.
    """

    def __init__(self, rows: int, cols: int, device: torch.device | str = "cpu", dtype: torch.dtype | None = None):
        device = torch.device(device)
        dtype = dtype or accumulation_dtype(device)
        self.cross = torch.zeros((rows, cols), dtype=dtype, device=device)
        self.row_self = torch.zeros(rows, dtype=dtype, device=device)
        self.col_self = torch.zeros(cols, dtype=dtype, device=device)
        self.batches = 0
        self.examples = 0

    def update(self, row_grams: Tensor, col_grams: Tensor) -> None:
        dtype = self.cross.dtype
        row_grams, col_grams = row_grams.to(dtype), col_grams.to(dtype)
        self.cross += unbiased_hsic_matrix(row_grams, col_grams)
        self.row_self += unbiased_hsic_self(row_grams)
        self.col_self += unbiased_hsic_self(col_grams)
        self.batches += 1
        self.examples += int(row_grams.shape[-1])

    def result(self) -> np.ndarray:
        """The CKA matrix (A, B) as float64; NaN where a representation has no (estimated) variance."""
        if self.batches == 0:
            raise ValueError("no batch was added: the CKA of nothing is undefined")
        denominator = torch.outer(self.row_self, self.col_self)
        positive = denominator > 0
        value = torch.where(positive, self.cross / denominator.clamp_min(1e-300).sqrt(),
                            torch.full_like(self.cross, float("nan")))
        return value.detach().cpu().to(torch.float64).numpy()


def linear_cka(x: Tensor, y: Tensor, batch_size: int | None = None) -> float:
    """Linear CKA of two representations of the same examples, ``x`` (n, ...) and ``y`` (n, ...).

    With ``batch_size`` None, one batch of all n examples (the unbiased CKA on the full set);
    otherwise the mini-batch estimate over consecutive batches (see :func:`batch_bounds`).
    """
    if len(x) != len(y):
        raise ValueError(f"linear_cka needs the same examples on both sides; got {len(x)} and {len(y)}")
    acc = MinibatchCKA(1, 1, device=x.device)
    dtype = acc.cross.dtype
    for start, stop in batch_bounds(len(x), batch_size or len(x)):
        acc.update(linear_gram(x[start:stop], dtype)[None], linear_gram(y[start:stop], dtype)[None])
    return float(acc.result()[0, 0])


def batch_bounds(count: int, batch_size: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` batches of ``count`` examples, every one at least :data:`MIN_BATCH`
    long: a last batch that would be shorter is merged into the one before it."""
    if batch_size < MIN_BATCH:
        raise ValueError(f"CKA batches need at least {MIN_BATCH} images; got a batch size of {batch_size}")
    if count < MIN_BATCH:
        raise ValueError(f"CKA needs at least {MIN_BATCH} probe images; got {count}")
    bounds = [(start, min(start + batch_size, count)) for start in range(0, count, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < MIN_BATCH:
        last = bounds.pop()
        bounds[-1] = (bounds[-1][0], last[1])
    return bounds


__all__ = [
    "MIN_BATCH", "MinibatchCKA", "accumulation_dtype", "batch_bounds", "linear_cka", "linear_gram",
    "unbiased_hsic_matrix", "unbiased_hsic_self",
]
