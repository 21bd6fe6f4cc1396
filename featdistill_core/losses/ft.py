"""Factor transfer (Kim, Park & Kwak, "Paraphrasing Complex Network: Network Compression via Factor
Transfer", NeurIPS 2018).

The teacher's feature map is first *paraphrased*: a small convolutional autoencoder (the paraphraser)
is trained, before distillation, to reconstruct the teacher's map through a bottleneck of
``k · C_t`` channels. Its encoder output is the teacher's "factor". A translator on the student
(three convs) produces the student's factor, and the two are compared after normalisation::

    paraphraser P = decoder ∘ encoder        trained first:  min ‖P(T) − T‖² (MSE), then frozen
    F_t = encoder(T),  F_s = translator(S)   both k · C_t channels
    f(F) = vec(mean_c F_c²) / ‖vec(mean_c F_c²)‖₂               per sample
    L    = mean |f(F_s) − f(F_t)|                                mean over batch and positions (p = 1)

This is RepDistiller's formulation (``distiller_zoo/FT.py`` with p1 = 2, p2 = 1; ``models/util.py``
``Paraphraser`` / ``Translator``, k = 0.5): the factor is reduced over channels by the mean of squares
(an attention-map-like summary) before the L2 normalisation. The paper normalises the whole factor
vector instead (``F/‖F‖₂`` over channels and positions). RepDistiller's version is followed because its
CIFAR-100 weight (β = 200) belongs to it. Architecture as RepDistiller: 3×3 convs with stride 1
(sizes kept) and LeakyReLU(0.1) after each; the paraphraser has no BatchNorm, the translator has one
after each conv; the decoder is three 3×3 transposed convs.

The paraphraser's pre-training is this term's ``prepare`` step (see
:class:`~featdistill_core.losses.registry.PrepareContext`): it runs once, before the first step of the
term's stage, when the teacher is final and frozen. RepDistiller (``helper/pretrain.py``) trains it for
``init_epochs = 30`` with SGD (lr 0.01 for its ResNet and WRN students, momentum 0.9, weight decay
5e-4) on the teacher's map, with the MSE of the reconstruction; then the paraphraser is frozen (in eval
mode, out of the optimizer). Here ``prepare_epochs`` and ``prepare_lr`` set those; the paraphraser's
weights are kept as *buffers*, not parameters, so the student's optimizer never sees them and they are
saved with the adapters (and a resumed run does not redo the pre-training).

When the two maps differ in spatial size, the larger factor is average-pooled to the smaller (as
RepDistiller; each dimension separately). The loss math runs in float32; the teacher map is detached.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import pool_to_common_size
from .registry import ONE_LAYER, Method, OptionSpec, PrepareContext, Taps, register_method, require_maps, size_text

SLOPE = 0.1   # LeakyReLU slope of RepDistiller's paraphraser and translator


def factor_channels(teacher_channels: int, rate: float) -> int:
    """The factor's channel count ``int(C_t · k)`` (at least 1)."""
    return max(1, int(teacher_channels * rate))


def _stack(channels: list[int], *, transposed: bool = False, batchnorm: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in, c_out in zip(channels, channels[1:]):
        conv = nn.ConvTranspose2d if transposed else nn.Conv2d
        layers.append(conv(c_in, c_out, kernel_size=3, stride=1, padding=1))
        if batchnorm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.LeakyReLU(SLOPE))
    return nn.Sequential(*layers)


class Paraphraser(nn.Module):
    """Convolutional autoencoder on the teacher map: ``encoder`` C→C→k→k, ``decoder`` k→k→C→C."""

    def __init__(self, channels: int, factor: int):
        super().__init__()
        self.encoder = _stack([channels, channels, factor, factor])
        self.decoder = _stack([factor, factor, channels, channels], transposed=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


def parameters_to_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter of ``module`` into a buffer of the same name (same state-dict keys)."""
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is None:
                continue
            del sub._parameters[name]
            sub.register_buffer(name, param.detach().clone())
    return module


def buffers_to_parameters(module: nn.Module) -> nn.Module:
    """The reverse of :func:`parameters_to_buffers` for the convolution weights and biases."""
    for sub in module.modules():
        if isinstance(sub, (nn.Conv2d, nn.ConvTranspose2d)):
            for name in ("weight", "bias"):
                value = sub._buffers.pop(name, None)
                if value is not None:
                    sub.register_parameter(name, nn.Parameter(value.detach().clone()))
    return module


def factor_vector(factor: Tensor) -> Tensor:
    """(B, C, H, W) → (B, H·W): the mean over channels of the squared factor, L2-normalised per sample."""
    return F.normalize(factor.float().pow(2).mean(1).flatten(1), p=2.0, dim=1, eps=1e-12)


def factor_loss(student_factor: Tensor, teacher_factor: Tensor) -> Tensor:
    """mean |f(F_s) − f(F_t)| after pooling the larger factor to the smaller size."""
    s, t = pool_to_common_size(student_factor.float(), teacher_factor.float())
    return (factor_vector(s) - factor_vector(t)).abs().mean()


def _positive(value, name: str, kind=float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"FT {name} must be a positive number; got {value!r}")
    return kind(value)


class FTLoss(nn.Module):
    """Factor transfer between one student and one teacher map (see the module docstring).

    ``self.translator`` (trained with the student) maps the student's C_s channels to the factor's
    ``int(C_t · rate)``; ``self.paraphraser`` is pre-trained by :meth:`prepare` and then frozen (its
    weights are buffers).
    """

    def __init__(self, student_channels: int, teacher_channels: int, *, rate: float = 0.5,
                 prepare_epochs: int = 30, prepare_lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 5e-4):
        super().__init__()
        rate = _positive(rate, "rate")
        if isinstance(prepare_epochs, bool) or not isinstance(prepare_epochs, int) or prepare_epochs < 0:
            raise ValueError(f"FT prepare_epochs must be a whole number ≥ 0; got {prepare_epochs!r}")
        self.student_channels, self.teacher_channels = int(student_channels), int(teacher_channels)
        self.factor = factor_channels(self.teacher_channels, rate)
        self.rate, self.prepare_epochs = rate, prepare_epochs
        self.prepare_lr = _positive(prepare_lr, "prepare_lr")
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        self.paraphraser = parameters_to_buffers(Paraphraser(self.teacher_channels, self.factor))
        self.translator = _stack([self.student_channels, self.student_channels, self.factor, self.factor],
                                 batchnorm=True)

    # ---- the paraphraser's pre-training ----------------------------------------------------
    def prepare(self, context: PrepareContext) -> None:
        """Train the paraphraser to reconstruct the teacher's map (MSE), SGD, ``prepare_epochs`` epochs."""
        model = buffers_to_parameters(copy.deepcopy(self.paraphraser)).to(context.device).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=self.prepare_lr, momentum=self.momentum,
                                    weight_decay=self.weight_decay)
        steps, total = 0, self.prepare_epochs * len(context.loader)
        for epoch in range(self.prepare_epochs):
            for batch in context.loader.epoch_batches(epoch):
                context.checkpoint()
                (feature,) = context.teacher_features(batch.images)
                feature = feature.detach().float()
                loss = F.mse_loss(model(feature), feature)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
                context.report(steps, total, float(loss.detach()))
        with torch.no_grad():
            trained = dict(model.named_parameters())
            for name, buffer in self.paraphraser.named_buffers():
                buffer.copy_(trained[name])

    def reconstruction_error(self, teacher_feat: Tensor) -> Tensor:
        """MSE of the paraphraser's reconstruction of a teacher map (what :meth:`prepare` minimises)."""
        with torch.no_grad():
            return F.mse_loss(self.paraphraser(teacher_feat.float()), teacher_feat.float())

    # ---- the loss -------------------------------------------------------------------------
    def forward(self, student_feat: Tensor, teacher_feat: Tensor) -> Tensor:
        for side, feat, channels in (("student", student_feat, self.student_channels),
                                     ("teacher", teacher_feat, self.teacher_channels)):
            if feat.dim() != 4 or feat.shape[1] != channels:
                raise ValueError(f"FT expects {side} feature maps (B, {channels}, H, W); got {tuple(feat.shape)}")
        with torch.no_grad():
            teacher_factor = self.paraphraser.encoder(teacher_feat.detach().float())
        student_factor = self.translator(student_feat.float())
        with torch.autocast(device_type=student_feat.device.type, enabled=False):
            return factor_loss(student_factor.float(), teacher_factor.float())

    def extra_repr(self) -> str:
        return (f"{self.student_channels}→factor {self.factor}←{self.teacher_channels}, rate={self.rate:g}, "
                f"prepare_epochs={self.prepare_epochs}, prepare_lr={self.prepare_lr:g}")


# ---- the method ---------------------------------------------------------------------------------


def _check(student: list, teacher: list, options: dict) -> str:
    require_maps(METHOD, student, "student")
    require_maps(METHOD, teacher, "teacher")
    (s,), (t,) = student, teacher
    k = factor_channels(t[0], options["rate"])
    epochs = options["prepare_epochs"]
    parts = [f"paraphraser {t[0]}→{k}→{t[0]} channels on the teacher (pre-trained {epochs} "
             f"epoch{'' if epochs == 1 else 's'} first); translator {s[0]}→{k} channels on the student"]
    common = (min(s[1], t[1]), min(s[2], t[2]))
    for side, shape in (("student", s), ("teacher", t)):
        if shape[1:] != common:
            parts.append(f"{side} factor pooled {size_text(shape[1:])}→{size_text(common)}")
    return "; ".join(parts)


def _build(context) -> nn.Module:
    (s,), (t,) = context.student_shapes, context.teacher_shapes
    o = context.options
    return FTLoss(s[0], t[0], rate=o["rate"], prepare_epochs=o["prepare_epochs"], prepare_lr=o["prepare_lr"])


METHOD = register_method(Method(
    key="ft",
    title="Factor transfer (FT)",
    short_name="FT",
    paper=("Kim, Park & Kwak, “Paraphrasing Complex Network: Network Compression via Factor Transfer”, "
           "NeurIPS 2018"),
    formula="F_t = encoder(T) (paraphraser pre-trained to reconstruct T),  F_s = translator(S),  L = mean |f(F_s) − f(F_t)|,  f(F) = vec(mean_c F²)/‖·‖₂",
    summary=(
        "A small autoencoder is first trained to paraphrase the teacher's feature map through a narrow "
        "bottleneck; the student, through its own translator, is then trained to produce the same "
        "normalised factors. The paraphrase keeps what the teacher's map says and drops its exact form."
    ),
    options={
        "rate": OptionSpec(0.5, float, minimum=0.01, maximum=4.0,
                           help="paraphrase rate k: the factor has int(k · teacher channels) channels (RepDistiller: 0.5)"),
        "prepare_epochs": OptionSpec(30, int, minimum=0, maximum=10_000,
                                     help="epochs of the paraphraser's pre-training before the stage (RepDistiller: 30)"),
        "prepare_lr": OptionSpec(0.01, float, minimum=1e-8, maximum=10.0,
                                 help="SGD learning rate of the paraphraser's pre-training (RepDistiller: 0.01)"),
    },
    layers=ONE_LAYER,
    taps=Taps.OUTPUT,
    # RepDistiller scripts/run_cifar_distill.sh: --distill factor -a 0 -b 200 (the FT term at β = 200
    # with the cross-entropy at weight 1), on feat[-2], the last stage's output.
    default_weight=200.0,
    check=_check,
    build=_build,
    placement="last_stage",
))


__all__ = ["FTLoss", "METHOD", "Paraphraser", "factor_loss", "factor_vector"]
