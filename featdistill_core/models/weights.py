"""Loading and saving model weights without ever unpickling code.

Formats read by :func:`load_weights`:

- ``.safetensors`` (read with ``safetensors.torch.load_file``);
- ``.pt`` / ``.pth`` (read with ``torch.load(..., weights_only=True)``, which accepts tensors,
  containers and plain numbers but refuses any other Python object). The file may hold a state
  dict, or a training checkpoint that keeps one under ``"state_dict"`` or ``"model"`` (RepDistiller
  and CRD save ``{"epoch": ..., "model": state_dict, ...}``).

A ``module.`` prefix that ``nn.DataParallel`` / DistributedDataParallel put on every key, or the
``_orig_mod.`` prefix of ``torch.compile``, is stripped when the model's own keys lack it.
:func:`save_weights` always writes safetensors.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Union

import torch
from torch import nn

from featdistill_core.atomic import write_atomic

__all__ = ["WeightsError", "LoadReport", "check_weights_file", "load_weights", "save_weights", "read_state_dict"]

PathLike = Union[str, "os.PathLike[str]"]

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth")
WRAPPER_KEYS = ("state_dict", "model")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
MAX_LISTED_KEYS = 5


class WeightsError(ValueError):
    """A weights file that is missing, unreadable, unsafe, or does not fit the model.

    ``str(error)`` is one line for people; ``details`` holds what does not fit on it (every key that
    does not fit, with its shapes), for a "details" box ("" when there is nothing more to say).
    """

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_weights` did: the keys it loaded and (with ``strict=False``) those it skipped."""

    loaded: list[str]
    missing: list[str] = field(default_factory=list)     # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model
    mismatched: list[str] = field(default_factory=list)  # in both, with different shapes


def read_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` / ``.pt`` / ``.pth`` file into a flat ``{name: tensor}`` dict on the CPU."""
    path = check_weights_file(path)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        return _read_safetensors(path)
    return _unwrap_checkpoint(_read_torch_file(path), path)


def check_weights_file(path: PathLike) -> Path:
    """What can be said of a weights file without reading it: it exists, is a file, is not empty,
    and is of a kind :func:`read_state_dict` reads. Raises :class:`WeightsError`; returns the path."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file not found: {path}")
    if path.is_dir():
        raise WeightsError(f"weights path is a folder, not a file: {path}")
    suffix = path.suffix.lower()
    if suffix not in SAFETENSORS_SUFFIXES + TORCH_SUFFIXES:
        allowed = ", ".join(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)
        raise WeightsError(f"unsupported weights file type {path.suffix or '(none)'!r} for {path}; expected {allowed}")
    if path.stat().st_size == 0:
        raise WeightsError(f"weights file is empty: {path}")
    return path


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as error:
        raise WeightsError(f"cannot read safetensors file {path}: {_first_line(error)}") from error


def _read_torch_file(path: Path) -> object:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" in str(error):
            found = re.search(r"GLOBAL ([\w.]+)", str(error))
            what = f" ({found.group(1)})" if found else ""
            raise WeightsError(
                f"refusing to load {path}: it holds a pickled Python object{what}, not just tensors;"
                " re-save it as a state dict (torch.save(model.state_dict(), ...)) or as .safetensors"
            ) from error
        raise WeightsError(f"cannot read PyTorch file {path}: corrupt or not a PyTorch file ({_first_line(error)})") from error
    except Exception as error:
        raise WeightsError(f"cannot read PyTorch file {path}: corrupt or not a PyTorch file ({_first_line(error)})") from error


def _first_line(error: BaseException, limit: int = 120) -> str:
    """The first line of a reader's message, cut to ``limit`` characters (no exception class names:
    the user is told what is wrong with the file, not how the reader failed)."""
    lines = str(error).strip().splitlines()
    if not lines:
        return "unreadable content"
    text = lines[0] if len(lines[0]) <= limit else lines[0][: limit - 3] + "..."
    return re.sub(r"\b\w*(Error|Exception)\b:?\s*", "", text).strip() or "unreadable content"


def _unwrap_checkpoint(content: object, path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``content``: ``content`` itself, or its ``"state_dict"`` / ``"model"`` entry."""
    if not isinstance(content, Mapping):
        raise WeightsError(f"{path} holds a {type(content).__name__}, not a state dict")
    if not _is_state_dict(content):
        for key in WRAPPER_KEYS:
            inner = content.get(key)
            if isinstance(inner, Mapping) and _is_state_dict(inner):
                content = inner
                break
        else:
            keys = ", ".join(repr(k) for k in list(content)[:MAX_LISTED_KEYS])
            raise WeightsError(
                f"{path} is not a state dict: it has non-tensor entries (keys {keys}) and no"
                f" {' or '.join(repr(k) for k in WRAPPER_KEYS)} entry holding one"
            )
    return {str(key): value for key, value in content.items()}


def _is_state_dict(content: Mapping) -> bool:
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in content.items())


def _strip_wrapper_prefixes(state: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    """Remove a prefix that is on every key of ``state`` but on none of the model's keys."""
    for prefix in WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in model_keys):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED_KEYS])
    if len(keys) > MAX_LISTED_KEYS:
        shown += f" ... and {len(keys) - MAX_LISTED_KEYS} more"
    return shown


def _shape(tensor: torch.Tensor) -> str:
    return "[" + ", ".join(str(d) for d in tensor.shape) + "]"


MAX_INLINE_MISFITS = 3    # up to this many keys that do not fit are named in the one-line message


def _misfit_summary(path: Path, name: str, state, model_state, missing, unexpected, mismatched) -> str:
    """One line: how much of the file does not fit the model, naming the keys when they are few."""
    misfit = len(unexpected) + len(mismatched)
    if misfit + len(missing) <= MAX_INLINE_MISFITS:
        parts = ([f"{k} is {_shape(state[k])} in the file but {_shape(model_state[k])} in {name}" for k in mismatched]
                 + [f"{name} has no {k}" for k in unexpected] + [f"the file lacks {k}" for k in missing])
        return f"weights file {path} does not fit {name}: " + "; ".join(parts)
    fitting = len(state) - misfit
    different = misfit >= len(state) / 2 or fitting < len(model_state) / 2      # most of one does not fit the other
    what = "is for a different network" if different else f"does not fit {name}"
    parts = []
    if misfit:
        parts.append(f"{misfit} of its {len(state)} tensors do not fit {name}")
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        parts.append(f"{len(missing)} of the {len(model_state)} tensors of {name} {verb} not in it")
    return f"weights file {path} {what}: " + "; ".join(parts)


def _misfit_details(state, model_state, missing, unexpected, mismatched) -> str:
    """Every key that does not fit, one per line, by kind."""
    lines = []
    if missing:
        lines += [f"missing keys ({len(missing)}), in the model but not in the file:"] + [f"  {k}" for k in missing]
    if unexpected:
        lines += [f"unexpected keys ({len(unexpected)}), in the file but not in the model:"] + [f"  {k}" for k in unexpected]
    if mismatched:
        lines += [f"wrongly shaped keys ({len(mismatched)}):"] + [
            f"  {k}: file {_shape(state[k])} vs model {_shape(model_state[k])}" for k in mismatched]
    return "\n".join(lines)


def load_weights(model: nn.Module, path: PathLike, *, strict: bool = True, name: str | None = None) -> LoadReport:
    """Load the weights in ``path`` into ``model`` (in place) and return what was loaded.

    With ``strict=True`` the file must hold exactly the model's parameters and buffers with the
    same shapes, all finite; otherwise :class:`WeightsError` says in one line how much does not fit ``name``
    (the model's name for messages, e.g. its registry name; default its class name) — "is for a
    different network" when most of it does not — and its ``details`` list the missing keys, the
    unexpected keys and the wrongly shaped keys (file shape vs model shape). With ``strict=False``
    every key present in both with the same shape is loaded and the rest are reported, not raised
    (e.g. a teacher trained for 100 classes reused with a new 10-class ``fc``).
    """
    path = Path(path)
    state = read_state_dict(path)
    model_state = model.state_dict()
    state = _strip_wrapper_prefixes(state, set(model_state))

    missing = [k for k in model_state if k not in state]
    unexpected = [k for k in state if k not in model_state]
    mismatched = [k for k in model_state if k in state and state[k].shape != model_state[k].shape]
    if strict and (missing or unexpected or mismatched):
        raise WeightsError(_misfit_summary(path, name or type(model).__name__, state, model_state,
                                           missing, unexpected, mismatched),
                           _misfit_details(state, model_state, missing, unexpected, mismatched))

    usable = {k: v for k, v in state.items() if k in model_state and k not in mismatched}
    broken = [k for k, v in usable.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise WeightsError(f"weights file {path} holds NaN or infinite values in {len(broken)} "
                           f"tensor{'s' if len(broken) != 1 else ''}: {_listing(broken)}")
    model.load_state_dict(usable, strict=False)
    return LoadReport(loaded=list(usable), missing=missing, unexpected=unexpected, mismatched=mismatched)


def save_weights(state_or_module: nn.Module | Mapping[str, torch.Tensor], path: PathLike,
                 *, metadata: Mapping[str, str] | None = None) -> Path:
    """Write a module's state dict (or a ``{name: tensor}`` mapping) to ``path`` as safetensors.

    Tensors are copied to contiguous CPU clones first: safetensors refuses tensors that share
    memory (tied weights, views), and a clone never does. The file is written atomically
    (:func:`featdistill_core.atomic.write_atomic`): after a kill or a full disk ``path`` is the old
    file or the new one, never half of one, and the error names the file. Returns the path written.
    """
    path = Path(path)
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
        raise WeightsError(f"save_weights writes safetensors: give a path ending in .safetensors, not {path.name!r}")
    state = state_or_module.state_dict() if isinstance(state_or_module, nn.Module) else state_or_module
    if not isinstance(state, Mapping):
        raise WeightsError(f"save_weights needs an nn.Module or a mapping of tensors, got {type(state).__name__}")
    tensors = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"cannot save {key!r}: it is a {type(value).__name__}, not a tensor")
        tensors[str(key)] = value.detach().to("cpu").contiguous().clone()
    if not path.parent.is_dir():
        raise WeightsError(f"cannot save weights to {path}: folder {path.parent} does not exist")

    from safetensors.torch import save

    write_atomic(path, save(tensors, metadata=dict(metadata) if metadata else None))
    return path
