"""A name -> model-factory registry, in the style of timm's ``register_model`` / ``create_model``.

Built-in architectures register themselves with the :func:`register_model` decorator when their
module is imported; :mod:`featdistill_core.models` imports all of them, so ``create_model("resnet56",
100)`` works as soon as the package is imported. A name containing ``:`` is not looked up here
but handed to :mod:`featdistill_core.models.external` (a user's ``package.module:function``, or
``torchvision:NAME`` / ``timm:NAME``).

Every factory takes ``num_classes`` as its only argument and returns an ``nn.Module`` whose
``forward(x)`` gives logits; features are read with forward hooks on named modules elsewhere.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

from torch import nn

__all__ = ["ModelInfo", "UnknownModelError", "register_model", "create_model", "list_models"]

ModelFactory = Callable[..., nn.Module]

LIST_COMMAND = "featdistill models"


@dataclass(frozen=True)
class ModelInfo:
    """What :func:`list_models` tells about one registered model."""

    name: str
    family: str
    description: str


@dataclass(frozen=True)
class _Entry:
    info: ModelInfo
    factory: ModelFactory


_REGISTRY: dict[str, _Entry] = {}


class UnknownModelError(ValueError):
    """A model name that is neither registered nor a ``module:function`` spec."""

    def __init__(self, name: str, suggestions: list[str]):
        self.name = name
        self.suggestions = suggestions
        super().__init__(_unknown_model_message(name, suggestions))


def _unknown_model_message(name: str, suggestions: list[str]) -> str:
    message = f"unknown model {name!r}"
    if suggestions:
        quoted = [repr(s) for s in suggestions]
        choices = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
        message += f"; did you mean {choices}?"
    else:
        message += "."
    return (
        message
        + f" Run '{LIST_COMMAND}' to list the built-in models,"
        + " or give 'package.module:function' for your own."
    )


def register_model(name: str, family: str, description: str | None = None):
    """Decorator that registers ``factory(num_classes) -> nn.Module`` under ``name``.

    ``description`` defaults to the first line of the factory's docstring. Registering a second,
    different factory under a taken name is an error; re-registering the same function (a module
    reload) replaces the entry.
    """
    if not name or ":" in name or name != name.strip():
        raise ValueError(f"invalid model name {name!r}: use a non-empty name without ':' or spaces")
    if not family:
        raise ValueError(f"model {name!r} needs a non-empty family")

    def decorator(factory: ModelFactory) -> ModelFactory:
        existing = _REGISTRY.get(name)
        if existing is not None and not _same_function(existing.factory, factory):
            raise ValueError(f"model name {name!r} is already registered by {_qualname(existing.factory)}")
        doc_line = (factory.__doc__ or "").strip().splitlines()[0:1]
        text = description if description is not None else (doc_line[0].strip() if doc_line else "")
        _REGISTRY[name] = _Entry(ModelInfo(name=name, family=family, description=text), factory)
        return factory

    return decorator


def _qualname(function: Callable) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', repr(function))}"


def _same_function(a: Callable, b: Callable) -> bool:
    return _qualname(a) == _qualname(b)


def _check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")


def list_models() -> list[ModelInfo]:
    """Every registered model, sorted by name."""
    return [_REGISTRY[name].info for name in sorted(_REGISTRY)]


def create_model(name: str, num_classes: int) -> nn.Module:
    """Build the model called ``name`` with a ``num_classes``-way classifier, freshly initialised.

    ``name`` is a registered name (see :func:`list_models`), ``"package.module:function"`` (your
    own factory, called as ``function(num_classes=num_classes)``), ``"torchvision:NAME"`` or
    ``"timm:NAME"`` (built with random weights when that optional package is installed).
    Raises :class:`UnknownModelError` for an unknown name.
    """
    if not isinstance(name, str):
        raise ValueError(f"model name must be a string, got {type(name).__name__}")
    _check_num_classes(num_classes)
    name = name.strip()
    if ":" in name:
        from featdistill_core.models.external import create_external_model

        return create_external_model(name, num_classes)
    entry = _REGISTRY.get(name)
    if entry is None:
        raise UnknownModelError(name, _close_names(name))
    return entry.factory(num_classes=num_classes)


def _close_names(name: str) -> list[str]:
    """Up to three registered names that look like ``name`` (case-insensitive, difflib ratio >= 0.6)."""
    by_lower = {registered.lower(): registered for registered in _REGISTRY}
    matches = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    return [by_lower[m] for m in matches]
