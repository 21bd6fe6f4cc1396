"""The non-finite guard: a loss or gradient that becomes NaN or infinite never reaches the weights.

After each step's backward pass (before the optimizer step), :meth:`NonFiniteGuard.check` looks at
the summed loss and the largest absolute gradient in one go (one device synchronisation per step).
When either is not finite it names the culprit — the first non-finite loss component, else the first
parameter with a non-finite gradient — and, by the run file's ``on_nonfinite``:

* ``"stop"`` (the default): raises :class:`NonFiniteError`, whose message names the component, the
  stage, step and epoch, and the likely cause (the learning rate ``optim.lr``, or the term's weight when
  it happens on a stage's first step), and whose ``field`` is that setting. The trainer then fails the
  run without writing a checkpoint, so the last good one stays.
* ``"skip"``: the step is dropped (no optimizer step; the buffers the forward pass changed, such as
  BatchNorm statistics, are put back) and counted; :data:`MAX_SKIPPED_IN_A_ROW` skipped steps in a
  row stop the run as ``"stop"`` does.

With a gradient scaler enabled (float16 on CUDA) infinite gradients are the scaler's business (it
skips the step and lowers its scale), so only the loss is checked.

:func:`all_finite` tells whether a model's weights are finite: the trainer never saves non-finite
weights as a result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

MAX_SKIPPED_IN_A_ROW = 20

__all__ = ["MAX_SKIPPED_IN_A_ROW", "BufferBackup", "NonFiniteError", "NonFiniteGuard",
           "all_finite", "nonfinite_names"]


class NonFiniteError(ValueError):
    """A loss component or gradient that is NaN or infinite. ``field`` is the likely setting at fault."""

    def __init__(self, message: str, field: str, component: str, step: int):
        super().__init__(message)
        self.field = field
        self.component = component
        self.step = step


@dataclass(frozen=True)
class TermInfo:
    """Where a loss component comes from in the run file, for the message."""

    field: str          # "pairs[1]", "kd", or "" for the task loss
    weight: float


def _word(value: float) -> str:
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


class NonFiniteGuard:
    """Checks each step (see the module docstring). ``terms`` maps a loss-component name to its
    :class:`TermInfo`; ``lr`` is the run's base learning rate, for the message."""

    def __init__(self, mode: str, terms: dict[str, TermInfo], lr: float, role: str = "student"):
        self.mode = mode          # the run file's on_nonfinite: "stop" or "skip"
        self.role = role          # the network this stage trains: "teacher" or "student"
        self.terms = terms
        self.lr = lr
        self.skipped_in_a_row = 0

    def check(self, losses: dict[str, torch.Tensor], total: torch.Tensor, named_parameters, *,
              gradients: bool, stage: str, step: int, epoch: int, first_step: bool) -> bool:
        """True if the step may go on; False if it is to be skipped; raises :class:`NonFiniteError` otherwise."""
        parameters = [(name, p) for name, p in named_parameters if p.grad is not None]
        values = [total.detach().float().reshape(())]
        if gradients and parameters:
            norm = torch.nn.utils.get_total_norm([p.grad for _, p in parameters], norm_type=math.inf)
            values.append(norm.float().reshape(()))
        if bool(torch.isfinite(torch.stack(values)).all()):
            self.skipped_in_a_row = 0
            return True
        message, field, component = self._describe(losses, total, parameters, stage, step, epoch, first_step)
        if self.mode == "skip" and self.skipped_in_a_row + 1 < MAX_SKIPPED_IN_A_ROW:
            self.skipped_in_a_row += 1
            return False
        if self.mode == "skip":
            message += f" ({MAX_SKIPPED_IN_A_ROW} steps in a row were non-finite and skipped)"
        raise NonFiniteError(message, field, component, step)

    def _describe(self, losses, total, parameters, stage, step, epoch, first_step):
        where = f"{stage} step {step} (epoch {epoch})"
        for name, value in losses.items():
            number = float(value.detach().float())
            if not math.isfinite(number):
                return self._cause(f"{where}: the loss {name!r} is {_word(number)}", name, first_step)
        number = float(total.detach().float())
        if not math.isfinite(number):
            return self._cause(f"{where}: the summed loss is {_word(number)}", "", first_step)
        for name, p in parameters:
            bad = p.grad[~torch.isfinite(p.grad)]
            if bad.numel():
                return self._cause(f"{where}: the gradient of {name} is {_word(float(bad[0]))}", name, first_step,
                                   gradient=True)
        return self._cause(f"{where}: a value is not finite", "", first_step)

    def _cause(self, text: str, component: str, first_step: bool, gradient: bool = False):
        term = self.terms.get(component)
        if term is not None and term.field and first_step:
            field = f"{term.field}.weight"
            cause = (f"likely cause: the term's weight ({field} = {term.weight:g}) or the teacher's weights; "
                     "no update had been made yet in this stage")
        elif first_step and not gradient:
            field = f"{self.role}.weights" if component == "ce" else ""
            cause = "likely cause: the starting weights or the data; no update had been made yet in this stage"
        else:
            field = "optim.lr"
            weights = ", ".join(f"{t.field}.weight = {t.weight:g}" for t in self.terms.values() if t.field)
            cause = f"likely cause: the learning rate (optim.lr = {self.lr:g}) is too high"
            cause += f", or a term's weight is too large ({weights})" if weights else ""
        return f"{text}; {cause}", field, component


class BufferBackup:
    """The buffers (BatchNorm statistics …) of some modules, kept to be put back after a skipped step."""

    def __init__(self, modules: Iterable[nn.Module]):
        self._saved = [(buffer, buffer.detach().clone()) for module in modules for buffer in module.buffers()]

    def restore(self) -> None:
        with torch.no_grad():
            for buffer, saved in self._saved:
                buffer.copy_(saved)


def nonfinite_names(module_or_state) -> list[str]:
    """Names of the floating-point tensors of a module (parameters and buffers) or state dict that
    hold a NaN or an infinity."""
    state = module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    return [name for name, value in state.items()
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())]


def all_finite(module_or_state) -> bool:
    return not nonfinite_names(module_or_state)
