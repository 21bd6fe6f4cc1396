"""Models that are not in the registry: a user's own factory, torchvision's and timm's models.

A spec with a colon is ``"SOURCE:NAME"``:

- ``"package.module:function"`` imports ``package.module`` and calls ``function(num_classes=N)``
  (``NAME`` may be dotted, e.g. ``"mypkg.nets:Factory.small"``); it must return an ``nn.Module``.
  Importing runs the module's code, so it happens only when a run (or a command) names the model,
  on a helper thread with a time limit: a factory that hangs or calls ``sys.exit()`` is reported.
- ``"torchvision:NAME"`` calls ``torchvision.models.get_model(NAME, weights=None, num_classes=N)``.
- ``"timm:NAME"`` calls ``timm.create_model(NAME, pretrained=False, num_classes=N)``.

Pretrained weights are never downloaded. torchvision and timm are optional: they are imported only
here, only when asked for, and a missing one gives a one-line error that says so.
"""

from __future__ import annotations

import difflib
import importlib
from types import ModuleType

from torch import nn

from featdistill_core.timelimit import ExitCalled, TimeLimitExceeded, call_with_time_limit

__all__ = ["ModelFactoryError", "create_external_model"]

OPTIONAL_PACKAGES = ("torchvision", "timm")


class ModelFactoryError(ValueError):
    """A ``module:function`` / ``torchvision:`` / ``timm:`` model spec that cannot be built."""


def create_external_model(spec: str, num_classes: int) -> nn.Module:
    """Build the model named by ``spec`` (``"SOURCE:NAME"``, see the module docstring)."""
    source, sep, name = spec.partition(":")
    source, name = source.strip(), name.strip()
    if not sep or not source or not name or ":" in name:
        raise ModelFactoryError(
            f"invalid model spec {spec!r}: expected 'package.module:function', 'torchvision:NAME' or 'timm:NAME'"
        )
    if source == "torchvision":
        return _create_torchvision_model(name, num_classes)
    if source == "timm":
        return _create_timm_model(name, num_classes)
    return _create_user_model(spec, source, name, num_classes)


def _one_line(error: BaseException) -> str:
    """The first line of the message of an exception raised by someone else's code (its class name
    left out: the message says what went wrong; ``ModuleNotFoundError: …`` becomes ``No module named …``)."""
    text = str(error).strip().splitlines()
    return text[0] if text else "an error without a message"


def _create_user_model(spec: str, module_name: str, attribute_path: str, num_classes: int) -> nn.Module:
    """Import the module and call the factory on a helper thread with a time limit
    (:mod:`featdistill_core.timelimit`): a factory that hangs or calls ``sys.exit()`` is reported."""
    try:
        return call_with_time_limit(lambda: _build_user_model(spec, module_name, attribute_path, num_classes),
                                    f"importing and calling {spec}(num_classes={num_classes})")
    except (TimeLimitExceeded, ExitCalled) as error:
        raise ModelFactoryError(str(error)) from None


def _build_user_model(spec: str, module_name: str, attribute_path: str, num_classes: int) -> nn.Module:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and (module_name == error.name or module_name.startswith(error.name + ".")):
            raise ModelFactoryError(
                f"cannot import module {module_name!r} for model {spec!r}: no module named {error.name!r}"
                " (is it installed, or its folder on PYTHONPATH?)"
            ) from error
        raise ModelFactoryError(f"importing module {module_name!r} for model {spec!r} failed: {_one_line(error)}") from error
    except Exception as error:
        raise ModelFactoryError(f"importing module {module_name!r} for model {spec!r} failed: {_one_line(error)}") from error

    factory: object = module
    for part in attribute_path.split("."):
        if not hasattr(factory, part):
            owner = module_name if factory is module else f"{module_name}:{attribute_path}"
            hint = _did_you_mean(part, [n for n in dir(factory) if not n.startswith("_")])
            raise ModelFactoryError(f"{owner!r} has no attribute {part!r} (model {spec!r}){hint}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ModelFactoryError(f"{spec!r} is a {type(factory).__name__}, not a function that builds a model")

    try:
        model = factory(num_classes=num_classes)
    except Exception as error:
        raise ModelFactoryError(f"calling {spec}(num_classes={num_classes}) failed: {_one_line(error)}") from error
    if not isinstance(model, nn.Module):
        raise ModelFactoryError(f"{spec}(num_classes={num_classes}) returned {type(model).__name__}, expected a torch.nn.Module")
    return model


def _did_you_mean(name: str, candidates: list[str]) -> str:
    matches = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""


def _import_optional(package: str, spec: str) -> ModuleType:
    try:
        return importlib.import_module(package)
    except ModuleNotFoundError as error:
        if error.name == package:
            raise ModelFactoryError(
                f"model {spec!r} needs {package}, an optional package that is not installed;"
                f" install it ('pip install {package}', a build matching your torch) or pick a built-in model"
            ) from error
        raise ModelFactoryError(f"{package} is installed but failed to import: {_one_line(error)}") from error
    except Exception as error:
        raise ModelFactoryError(f"{package} is installed but failed to import: {_one_line(error)}") from error


def _create_torchvision_model(name: str, num_classes: int) -> nn.Module:
    spec = f"torchvision:{name}"
    _import_optional("torchvision", spec)
    models = importlib.import_module("torchvision.models")
    available = list(models.list_models())  # torchvision >= 0.14, which every torch >= 2.2 pairs with
    if name not in available:
        raise ModelFactoryError(f"torchvision has no model {name!r}{_did_you_mean(name, available)}")
    try:
        return models.get_model(name, weights=None, num_classes=num_classes)
    except Exception as error:
        raise ModelFactoryError(f"building {spec} with num_classes={num_classes} failed: {_one_line(error)}") from error


def _create_timm_model(name: str, num_classes: int) -> nn.Module:
    spec = f"timm:{name}"
    timm = _import_optional("timm", spec)
    if not timm.is_model(name):
        raise ModelFactoryError(f"timm has no model {name!r}{_did_you_mean(name, list(timm.list_models()))}")
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    except Exception as error:
        raise ModelFactoryError(f"building {spec} with num_classes={num_classes} failed: {_one_line(error)}") from error
