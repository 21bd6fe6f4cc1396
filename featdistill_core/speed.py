"""Speed helpers for a GPU run, each small and testable on a CPU: mixed precision, channels-last
memory layout, the frozen teacher under inference mode, non-blocking copies, ``torch.compile``.

The run file's options (:mod:`featdistill_core.config`) that select them, all off or neutral by
default so nothing changes on a CPU:

* ``mixed_precision`` (bool) with ``amp_dtype = "auto" | "bfloat16" | "float16"`` — :func:`amp_plan`;
* ``channels_last`` (bool) — :func:`to_channels_last`;
* ``compile = "off" | "default" | "reduce-overhead" | "max-autotune"`` — :func:`maybe_compile`.

The frozen teacher (:func:`freeze`, :func:`frozen_forward`, :func:`as_autograd_tensor`) and
non-blocking copies (:func:`to_device`) need no option: they change speed, never results.

This module only imports torch. The trainer calls :func:`amp_plan` (autocast and the gradient
scaler), :func:`to_channels_last` (models and each batch), :func:`compile_in_place` (student and
teacher, after the distiller's hooks are in place); the :class:`~featdistill_core.distiller.Distiller`
runs the frozen teacher through :func:`frozen_forward` and :func:`as_autograd_tensor`; the loaders
copy batches with non-blocking copies from pinned memory.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

AMP_DTYPES = ("auto", "bfloat16", "float16")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def bf16_supported(device: torch.device) -> bool:
    """Whether autocast to bfloat16 runs at full speed on ``device`` (CUDA: compute capability >= 8.0,
    i.e. Ampere and later; the CPU: always, as PyTorch's CPU autocast is bfloat16 first)."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:                      # torch < 2.4 has no including_emulation
            return bool(torch.cuda.is_bf16_supported())
    return device.type == "cpu"


@dataclass(frozen=True)
class AmpPlan:
    """How a run uses mixed precision: whether, in which dtype, and whether a gradient scaler is needed
    (float16 only: its 5-bit exponent underflows small gradients; bfloat16 has float32's range)."""

    enabled: bool
    device_type: str
    dtype: torch.dtype | None
    scaler: bool

    def autocast(self):
        """The context to run forward passes and losses in (a no-op when disabled)."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled only where :attr:`scaler` says one is needed."""
        return torch.amp.GradScaler(self.device_type, enabled=self.scaler)


def amp_plan(device: torch.device | str, mixed_precision: bool, amp_dtype: str = "auto") -> AmpPlan:
    """The mixed-precision plan of a run on ``device``.

    ``amp_dtype = "auto"`` takes bfloat16 where :func:`bf16_supported`, else float16 with a gradient
    scaler; ``"bfloat16"`` / ``"float16"`` force one. Without ``mixed_precision`` everything is float32.
    """
    device = torch.device(device)
    if amp_dtype not in AMP_DTYPES:
        raise ValueError(f"amp_dtype must be one of {', '.join(AMP_DTYPES)}; got {amp_dtype!r}")
    if not mixed_precision:
        return AmpPlan(False, device.type, None, False)
    if amp_dtype == "auto":
        dtype = torch.bfloat16 if bf16_supported(device) else torch.float16
    else:
        dtype = _DTYPES[amp_dtype]
    return AmpPlan(True, device.type, dtype, scaler=dtype == torch.float16)


def to_channels_last(value):
    """A module converted in place to ``torch.channels_last`` (its 4-D weights; returned), or a 4-D
    tensor in that layout (other tensors unchanged). NHWC is the layout cuDNN's tensor-core
    convolutions want: with AMP on a recent GPU it saves the transposes around every convolution."""
    if isinstance(value, nn.Module):
        return value.to(memory_format=torch.channels_last)
    if isinstance(value, torch.Tensor) and value.dim() == 4:
        return value.contiguous(memory_format=torch.channels_last)
    return value


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``tensor.to(device)``, non-blocking when the copy goes host -> CUDA (it overlaps with
    compute when the source is pinned, and is an ordinary copy otherwise)."""
    device = torch.device(device)
    return tensor.to(device, non_blocking=device.type == "cuda" and tensor.device.type == "cpu")


def pin(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``tensor`` in pinned (page-locked) host memory when it is headed for CUDA, else unchanged."""
    if torch.device(device).type == "cuda" and tensor.device.type == "cpu" and not tensor.is_pinned():
        return tensor.pin_memory()
    return tensor


def freeze(model: nn.Module) -> nn.Module:
    """Evaluation mode (BatchNorm uses its running statistics) and no gradients, in place."""
    return model.eval().requires_grad_(False)


def frozen_forward(model: nn.Module, *args, **kwargs):
    """``model(*args)`` under :func:`torch.inference_mode`: no autograd bookkeeping at all (cheaper
    than ``no_grad``: no version counters or view tracking). The outputs (and anything a forward hook
    captured) are *inference tensors*: a loss may read them, but autograd may not save them for the
    backward pass (``mse_loss``'s target, a product's factor ...). Pass each through
    :func:`as_autograd_tensor` before it meets the student."""
    with torch.inference_mode():
        return model(*args, **kwargs)


def as_autograd_tensor(value: Any) -> Any:
    """An inference tensor copied into an ordinary one (others returned as they are); tuples, lists and
    dicts are walked. One device copy per teacher output, small next to the teacher's forward."""
    if isinstance(value, torch.Tensor):
        return value.clone() if value.is_inference() else value
    if isinstance(value, tuple):
        return tuple(as_autograd_tensor(v) for v in value)
    if isinstance(value, list):
        return [as_autograd_tensor(v) for v in value]
    if isinstance(value, dict):
        return {k: as_autograd_tensor(v) for k, v in value.items()}
    return value


def maybe_compile(model: nn.Module, mode: str = "off", *, backend: str | Callable = "inductor") -> nn.Module:
    """``torch.compile(model)`` in ``mode`` (``"off"``: the model itself).

    The compiled module shares the original's parameters and buffers, and forward hooks registered
    on the original's submodules keep firing (dynamo traces through them; a hook registered *after*
    compiling triggers a recompile). Save and load weights through the original module: the compiled
    wrapper's ``state_dict`` keys start with ``_orig_mod.`` (which :func:`~featdistill_core.models.load_weights`
    strips, but a plain ``load_state_dict`` does not).
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}; got {mode!r}")
    if mode == "off":
        return model
    return torch.compile(model, mode=None if mode == "default" else mode, backend=backend)


COMPILE_BACKEND = "inductor"
"""The backend :func:`compile_in_place` hands to ``torch.compile`` (tests set ``"eager"``: no C++ compiler)."""


def compile_in_place(model: nn.Module | None, mode: str = "off") -> nn.Module | None:
    """``model.compile(...)`` in ``mode`` (``"off"``: nothing): the module stays the same object, so its
    ``state_dict`` keys, its hooks and every reference to it are unchanged (no ``_orig_mod.`` prefix)."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}; got {mode!r}")
    if model is not None and mode != "off":
        _keep_backward_buffers()
        model.compile(mode=None if mode == "default" else mode, backend=COMPILE_BACKEND)
    return model


def _keep_backward_buffers() -> None:
    """Turn off AOTAutograd's *donated buffers* (its backward reusing forward buffers in place): the
    loss-balance measurement (:mod:`featdistill_core.balance`) takes each term's gradient with
    ``retain_graph=True``, which a backward compiled with donated buffers refuses. The cost is a little
    memory, not speed."""
    try:
        import torch._functorch.config as functorch_config
    except ImportError:                 # pragma: no cover - a torch without it has no donated buffers
        return
    if hasattr(functorch_config, "donated_buffer"):
        functorch_config.donated_buffer = False


def original_module(model: nn.Module) -> nn.Module:
    """The module a :func:`maybe_compile` result wraps (the module itself when not compiled)."""
    return getattr(model, "_orig_mod", model)


__all__ = [
    "AMP_DTYPES", "COMPILE_BACKEND", "COMPILE_MODES", "AmpPlan", "amp_plan", "as_autograd_tensor", "bf16_supported",
    "compile_in_place", "freeze",
    "frozen_forward", "maybe_compile", "original_module", "pin", "to_channels_last", "to_device",
]
