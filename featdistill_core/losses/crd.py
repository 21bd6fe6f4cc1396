"""Contrastive representation distillation (Tian, Krishnan & Isola, "Contrastive Representation
Distillation", ICLR 2020).

The student's embedding of an image should be closer to the teacher's embedding of the *same* image
than to the teacher's embeddings of other images. Both penultimate embeddings go through a trainable
linear head to a common width d and are L2-normalised; a momentum memory bank per network keeps one
d-vector per training image and supplies the "other images" (K negatives per sample) without
computing them. Noise-contrastive estimation (NCE) then tells the positive pair from the negatives::

    v_s = normalise(W_s x_s + b_s),   v_t = normalise(W_t x_t + b_t)      (teacher network frozen)
    M_s, M_t                      memories, N × d (N = training images), rows indexed by sample index
    idx_i = (i, j_1..j_K)         the sample's own index, then K negatives drawn for it
    h_s(i, j) = exp(M_t[j] · v_s,i / τ) / Z_s         student anchor against the teacher memory
    h_t(i, j) = exp(M_s[j] · v_t,i / τ) / Z_t         teacher anchor against the student memory
    NCE(h)  = −1/B Σ_i [ log(h(i,i) / (h(i,i) + K/N)) + Σ_k log((K/N) / (h(i,j_k) + K/N)) ]
    L       = NCE(h_s) + NCE(h_t)
    after each optimizer step:  M[i] ← normalise(m · M[i] + (1 − m) · v_i)  for the batch's samples

Z_s and Z_t are the contrast normalisation constants of the reference: set once, on the first batch,
to N × the mean of exp(M · v / τ) over that batch's (B, K+1) scores, then kept fixed (they are saved
with the memories, so a resumed run keeps them). The memories start uniform in ±1/√(d/3), not
normalised, as in the reference. Both heads are trained with the student (the teacher's head gets its
gradient from h_t); the memories are read without gradient.

This follows the reference code (RepDistiller ``crd/criterion.py``, ``crd/memory.py``; mdistiller
``CRD.py``, which copies it) in every formula above: the ε = 1e-7 in the NCE denominators, the
momentum update with renormalisation, and the fixed Z. Two points differ, both for this workbench:

* **Negatives.** The paper's negatives are pairs of *different* images; RepDistiller's CIFAR data set
  (``mode = "exact"``) draws them among the images of the *other classes*, without replacement
  (``np.random.choice(cls_negative[target], K, replace=False)``), which needs every training label up
  front. Here they are drawn uniformly without replacement among all *other* images (the sample's own
  index never appears among its negatives, as in the reference; images of its class may). On
  CIFAR-100 the reference's class exclusion removes 1 % of the candidates.
* **K ≥ N: a documented cap, not a refusal.** Drawn without replacement there are only N − 1
  distinct negatives, so K is capped at N − 1 (every other image), and the NCE's K/N uses the capped
  K. (The reference switches to drawing *with* replacement when K exceeds its candidates, repeating
  negatives instead.) A refusal would reject the recipe's K = 16384 on every data set under 16385
  images — the demo's 4000, any small image folder — when a K beyond N − 1 could add no distinct
  negative anyway. The memory bank always holds all N images either way.

The memory update runs in :meth:`CRDLoss.after_step` (the trainer calls it after the optimizer step),
with the embeddings of that step's forward pass, as the reference updates its memory with the same
vectors inside its forward. The scores take each embedding's dot product with all N memory rows in
one matrix product and pick the (K + 1) contrast entries from it, rather than gathering B × (K + 1)
rows of d values first: the same numbers, with no (B, K + 1, d) intermediate (537 MB per side at the
CIFAR-100 recipe). RepDistiller's CIFAR-100 recipe: d = 128, K = 16384, τ = 0.07, m = 0.5,
weight β = 0.8 next to a cross-entropy at weight 1. The math runs in float32 (autocast disabled).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import ONE_LAYER, Method, OptionSpec, StepContext, Taps, register_method

EPS = 1e-7   # the reference's ε in the NCE denominators


def nce_loss(scores: Tensor, dataset_size: int) -> Tensor:
    """The reference's NCE loss for (B, K+1) normalised scores, the positive in column 0."""
    batch, negatives = scores.shape[0], scores.shape[1] - 1
    noise = negatives / float(dataset_size)                      # K · P_n, P_n = 1/N uniform
    positive = scores[:, 0]
    log_d1 = torch.log(positive / (positive + noise + EPS))
    log_d0 = torch.log(noise / (scores[:, 1:] + noise + EPS))
    return -(log_d1.sum() + log_d0.sum()) / batch


class CRDLoss(nn.Module):
    """CRD with its two linear heads and two momentum memories (see the module docstring).

    ``forward(student, teacher, indices)`` returns the loss and keeps this batch's embeddings for
    :meth:`after_step`, which writes them into the memories.
    """

    def __init__(self, student_dim: int, teacher_dim: int, dataset_size: int, feat_dim: int = 128,
                 nce_k: int = 16384, nce_t: float = 0.07, nce_m: float = 0.5):
        super().__init__()
        for name, value in (("student_dim", student_dim), ("teacher_dim", teacher_dim), ("feat_dim", feat_dim),
                            ("nce_k", nce_k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"CRD {name} must be a positive whole number; got {value!r}")
        if isinstance(dataset_size, bool) or not isinstance(dataset_size, int) or dataset_size < 2:
            raise ValueError(
                "CRD keeps one memory row per training image and draws its negatives among them, so it needs "
                f"the training set's size, at least 2 images; got {dataset_size!r}"
            )
        if isinstance(nce_t, bool) or not isinstance(nce_t, (int, float)) or not math.isfinite(nce_t) or nce_t <= 0:
            raise ValueError(f"CRD temperature nce_t must be a positive number; got {nce_t!r}")
        if isinstance(nce_m, bool) or not isinstance(nce_m, (int, float)) or not 0 <= nce_m < 1:
            raise ValueError(f"CRD momentum nce_m must be in [0, 1); got {nce_m!r}")
        self.embed_student = nn.Linear(student_dim, feat_dim)
        self.embed_teacher = nn.Linear(teacher_dim, feat_dim)
        self.dataset_size = dataset_size
        self.requested_k = nce_k
        self.nce_k = min(nce_k, dataset_size - 1)         # the documented cap: every other image
        self.temperature = float(nce_t)
        self.momentum = float(nce_m)
        stdv = 1.0 / math.sqrt(feat_dim / 3.0)
        self.register_buffer("memory_student", torch.rand(dataset_size, feat_dim).mul_(2 * stdv).sub_(stdv))
        self.register_buffer("memory_teacher", torch.rand(dataset_size, feat_dim).mul_(2 * stdv).sub_(stdv))
        self.register_buffer("normalizers", torch.full((2,), -1.0))   # Z_s, Z_t; < 0 until the first batch
        self._pending: tuple[Tensor, Tensor, Tensor] | None = None

    # ---- the pieces ----------------------------------------------------------------------------

    def embed(self, student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
        """L2-normalised (B, d) embeddings of both networks' features (the teacher's detached)."""
        dtype = self.memory_student.dtype        # float32 unless the whole module was converted
        v_s = F.normalize(self.embed_student(student.to(dtype).flatten(1)), p=2.0, dim=1, eps=1e-12)
        v_t = F.normalize(self.embed_teacher(teacher.detach().to(dtype).flatten(1)), p=2.0, dim=1, eps=1e-12)
        return v_s, v_t

    def _check_indices(self, indices: Tensor, batch: int) -> Tensor:
        if not isinstance(indices, Tensor) or indices.dim() != 1 or len(indices) != batch:
            shape = tuple(indices.shape) if isinstance(indices, Tensor) else type(indices).__name__
            raise ValueError(f"CRD needs one sample index per image of the batch ({batch}); got {shape}")
        if indices.dtype.is_floating_point or indices.dtype == torch.bool:
            raise ValueError(f"CRD sample indices must be integers; got {indices.dtype}")
        indices = indices.to(device=self.memory_student.device, dtype=torch.long)
        if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= self.dataset_size):
            raise ValueError(
                f"CRD sample indices must lie in 0..{self.dataset_size - 1} (its memory holds {self.dataset_size} "
                f"training images); got {int(indices.min())}..{int(indices.max())}"
            )
        return indices

    def contrast_indices(self, indices: Tensor) -> Tensor:
        """(B, K+1): each sample's own index, then K negatives drawn uniformly without replacement
        among the other N − 1 images (torch's global random stream, on the memory's device)."""
        keys = torch.rand(len(indices), self.dataset_size, device=indices.device)
        keys.scatter_(1, indices.view(-1, 1), 2.0)          # above every other key: never drawn
        negatives = keys.topk(self.nce_k, dim=1, largest=False, sorted=False).indices
        return torch.cat([indices.view(-1, 1), negatives], dim=1)

    def scores(self, v_s: Tensor, v_t: Tensor, contrast: Tensor) -> tuple[Tensor, Tensor]:
        """Unnormalised exp(M[j] · v_i / τ) of both anchors for the (B, K+1) contrast indices j.

        The dot products with all N memory rows are one (B, d)×(d, N) product, from which the contrast
        entries are picked: the same numbers as gathering (B, K+1, d) rows first (the reference), for a
        fraction of the memory traffic when K is a sizeable part of N."""
        out_s = torch.exp((v_s @ self.memory_teacher.t()).gather(1, contrast) / self.temperature)
        out_t = torch.exp((v_t @ self.memory_student.t()).gather(1, contrast) / self.temperature)
        return out_s, out_t

    # ---- a step --------------------------------------------------------------------------------

    def forward(self, student: Tensor, teacher: Tensor, indices: Tensor, contrast: Tensor | None = None) -> Tensor:
        if student.dim() < 2 or teacher.dim() < 2 or student.shape[0] != teacher.shape[0]:
            raise ValueError(
                f"CRD needs batches of one size (batch, features...); got {tuple(student.shape)} and "
                f"{tuple(teacher.shape)}"
            )
        indices = self._check_indices(indices, student.shape[0])
        with torch.autocast(device_type=student.device.type, enabled=False):
            v_s, v_t = self.embed(student, teacher)
            if contrast is None:
                contrast = self.contrast_indices(indices)
            else:
                contrast = contrast.to(device=indices.device, dtype=torch.long)
            out_s, out_t = self.scores(v_s, v_t, contrast)
            if bool(self.normalizers[0] < 0):
                with torch.no_grad():
                    self.normalizers.copy_(torch.stack([out_s.mean(), out_t.mean()]) * self.dataset_size)
            h_s = out_s / self.normalizers[0]
            h_t = out_t / self.normalizers[1]
            loss = nce_loss(h_s, self.dataset_size) + nce_loss(h_t, self.dataset_size)
        self._pending = (indices, v_s.detach(), v_t.detach())
        return loss

    @torch.no_grad()
    def update_memory(self, indices: Tensor, v_s: Tensor, v_t: Tensor) -> None:
        """M[i] ← normalise(m · M[i] + (1 − m) · v_i) for both memories."""
        indices = indices.to(device=self.memory_student.device, dtype=torch.long)
        for memory, v in ((self.memory_student, v_s), (self.memory_teacher, v_t)):
            rows = memory.index_select(0, indices) * self.momentum + v.to(memory.dtype) * (1.0 - self.momentum)
            memory.index_copy_(0, indices, F.normalize(rows, p=2.0, dim=1, eps=1e-12))

    @torch.no_grad()
    def after_step(self, step: StepContext) -> None:
        """Write the last forward pass's embeddings into the memories (or, without one, ``step``'s)."""
        if self._pending is not None:
            indices, v_s, v_t = self._pending
        else:
            indices = self._check_indices(step.indices, step.student[0].shape[0])
            with torch.autocast(device_type=step.student[0].device.type, enabled=False):
                v_s, v_t = self.embed(step.student[0], step.teacher[0])
        self._pending = None
        self.update_memory(indices, v_s, v_t)

    def extra_repr(self) -> str:
        capped = f" (asked {self.requested_k}, capped at N − 1)" if self.nce_k < self.requested_k else ""
        return (f"N={self.dataset_size}, nce_k={self.nce_k}{capped}, nce_t={self.temperature:g}, "
                f"nce_m={self.momentum:g}")


class _CRDTerm(CRDLoss):
    """CRD as a run's term: reads the tapped embeddings and the sample indices from the step."""

    def forward(self, step: StepContext) -> Tensor:  # type: ignore[override]
        return super().forward(step.student[0], step.teacher[0], step.indices)


# ---- the method ---------------------------------------------------------------------------------


def _check(student: list, teacher: list, options: dict) -> str:
    (s,), (t,) = student, teacher
    d = options["feat_dim"]
    return (f"linear embeddings {math.prod(s)}→{d} (student) and {math.prod(t)}→{d} (teacher), trained with the "
            f"student; two memories of {d} values per training image")


def _build(context) -> nn.Module:
    (s,), (t,) = context.student_shapes, context.teacher_shapes
    o = context.options
    return _CRDTerm(math.prod(s), math.prod(t), context.dataset_size, feat_dim=o["feat_dim"],
                    nce_k=o["nce_k"], nce_t=o["nce_t"], nce_m=o["nce_m"]).to(context.device)


METHOD = register_method(Method(
    key="crd",
    title="Contrastive representation distillation (CRD)",
    short_name="CRD",
    paper="Tian, Krishnan & Isola, “Contrastive Representation Distillation”, ICLR 2020",
    formula="L = NCE(h_s) + NCE(h_t),  h(i, j) = exp(M[j]·v_i/τ)/Z,  positive j = i, K negatives from a momentum memory",
    summary=(
        "The student's embedding of an image must pick out the teacher's embedding of the same image "
        "among many other images (a contrastive, noise-contrastive estimation objective). Two small "
        "linear heads are trained, and a memory bank keeps one vector per training image for the negatives."
    ),
    options={
        "feat_dim": OptionSpec(128, int, minimum=1, maximum=65536,
                               help="width d of the embeddings and memories (RepDistiller: 128)"),
        "nce_k": OptionSpec(16384, int, minimum=1, maximum=10**8,
                            help="negatives per sample (RepDistiller: 16384); capped at the number of "
                                 "training images − 1"),
        "nce_t": OptionSpec(0.07, float, minimum=1e-3, maximum=100.0,
                            help="temperature τ of the scores (RepDistiller: 0.07)"),
        "nce_m": OptionSpec(0.5, float, minimum=0.0, maximum=0.999,
                            help="momentum m of the memory update (RepDistiller: 0.5)"),
    },
    layers=ONE_LAYER,
    taps=Taps.INPUT,
    reads="context",
    # RepDistiller scripts/run_cifar_distill.sh: --distill crd -b 0.8; mdistiller CFG.CRD.LOSS.FEAT_WEIGHT = 0.8.
    default_weight=0.8,
    check=_check,
    build=_build,
    placement="embedding",
))


__all__ = ["CRDLoss", "METHOD", "nce_loss"]
