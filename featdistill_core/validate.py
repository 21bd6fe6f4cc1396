"""Check a run's meaning before any training, once, and keep what was learnt for the trainer.

:func:`validate_run` checks the form of the run (:mod:`featdistill_core.config`), then builds the two
models (on the CPU, no training), loads their weights, counts the data set's classes with the code
that loads it, lists the models' layers at the data's input size and checks every distillation term
with its method. It collects *every* problem and raises them together as one
:class:`~featdistill_core.errors.ConfigError`; each names its field (``teacher.weights``,
``pairs[2].student``, ``data.path`` …).

What it returns, a :class:`ValidatedRun`, is what the :class:`~featdistill_core.trainer.Trainer` runs:
the checked config (paths made absolute), the built models with their weights, the layer plan of each
term and the stage plan. Nothing is built or loaded twice.

The window uses the same pieces one at a time while the user edits: :func:`model_layers` lists a
model's layers, :func:`check_term_layers` checks one pair of layer paths, and
:func:`featdistill_core.data.dataset_classes` counts classes.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from featdistill_core.config import AUTO_WEIGHT, RunConfig, checked, read_run_file, term_names, with_absolute_paths
from featdistill_core.data import (
    NEEDS_PATH, DatasetError, DatasetInfo, choose_loader, dataset_classes, estimated_bytes, inspect_dataset,
)
from featdistill_core.device import DeviceError, resolve_device
from featdistill_core.distributed import launch_env, launch_problems
from featdistill_core.errors import ConfigError, Problem, Problems
from featdistill_core.layers import LayerInfo, list_layers, unknown_path_message
from featdistill_core.losses import BuildContext, Method, PairCheck, build_term, check_pair, get_method
from featdistill_core.models import UnknownModelError, WeightsError, check_weights_file, create_model, load_weights
from featdistill_core.runstate import capture_rng, restore_rng, seed_everything
from featdistill_core.stages import PlannedStage, plan_stages
from featdistill_core.timelimit import call_with_time_limit


@dataclass(frozen=True)
class TermPlan:
    """One distillation term of a validated run: what it pairs and how it was checked."""

    field: str                  # where it comes from in the run file: "pairs[2]", or "kd" for the shorthand
    name: str                   # its loss-component name (unique within the run)
    method: Method
    teacher_paths: tuple[str, ...]
    student_paths: tuple[str, ...]
    teacher_shapes: tuple[tuple[int, ...], ...]
    student_shapes: tuple[tuple[int, ...], ...]
    weight: float               # for an auto weight: the method's reference weight until calibration
    stage: str
    options: dict
    check: PairCheck
    auto: bool = False          # the weight is chosen from calibration batches (featdistill_core.balance)


@dataclass
class ValidatedRun:
    """A run that passed every check, with everything built for training it."""

    config: RunConfig
    num_classes: int
    input_shape: tuple[int, int, int]
    device: torch.device
    student: nn.Module
    teacher: Optional[nn.Module]
    student_layers: dict[str, LayerInfo]
    teacher_layers: dict[str, LayerInfo]
    terms: list[TermPlan]
    stages: tuple[PlannedStage, ...]
    rng_state: dict = field(default_factory=dict, repr=False)   # the generators just after the models were built
    dataset_size: int = 0                                       # training images
    data_loader: str = ""                                       # "memory" or "stream" (data.choose_loader)
    data_bytes: int = 0                                         # both splits as uint8 at the run's image size

    @property
    def pair_checks(self) -> list[PairCheck]:
        """The checks of the run file's ``[[pairs]]``, in order (the ``[kd]`` shorthand left out)."""
        return [term.check for term in self.terms if term.field.startswith("pairs[")]


def build_model(config: RunConfig, role: str, num_classes: int, *, load: bool = True) -> nn.Module:
    """Create the teacher or the student and load its weights file if it has one (ConfigError otherwise)."""
    section = getattr(config, role)
    try:
        model = create_model(section.arch, num_classes)
    except (UnknownModelError, ValueError, ImportError) as exc:
        raise ConfigError(f"{role}.arch", _one_line(exc)) from None
    if load and section.weights:
        try:
            load_weights(model, section.weights, name=section.arch)
        except (WeightsError, ValueError, OSError) as exc:
            field_name = f"{role}.weights"
            raise ConfigError(field_name, _one_line(exc), details={field_name: getattr(exc, "details", "")}) from None
    return model


def initial_student(config: RunConfig, num_classes: int) -> nn.Module:
    """The student exactly as :func:`validate_run` built it for ``config`` (a validated config): the same
    seed, built first, its weights file (if any) loaded. The "before" of a before/after comparison.
    The global random generators are left as they were."""
    state = capture_rng()
    try:
        seed_everything(config.seed)       # validate_run: seed, then the student first, then the teacher
        return build_model(config, "student", num_classes)
    finally:
        restore_rng(state)


def model_layers(arch: str, num_classes: int, input_shape: tuple[int, int, int] = (3, 32, 32)) -> list[LayerInfo]:
    """Every named module of a freshly built ``arch`` with its input and output shapes.

    Raises ValueError with one line when the model cannot be built or cannot run on that input
    (or hangs: see :mod:`featdistill_core.timelimit`).
    """
    try:
        model = create_model(arch, num_classes)
    except Exception as exc:  # noqa: BLE001 - a user's factory may raise anything
        raise ValueError(_one_line(exc)) from None
    return call_with_time_limit(lambda: _list_layers(model, input_shape, arch), f"the first forward pass of {arch}")


def _list_layers(model: nn.Module, input_shape, arch: str) -> list[LayerInfo]:
    try:
        return list_layers(model, input_shape)
    except Exception as exc:  # noqa: BLE001 - a user's model that cannot run on this input
        size = "×".join(map(str, input_shape))
        raise ValueError(f"{arch}: a forward pass on a 1×{size} input failed: {_one_line(exc)}") from None


def _check_model(model: nn.Module, input_shape, arch: str, sample, num_classes, trained: bool) -> list[LayerInfo]:
    """The model's layers, after checking that it can be trained on this data: it has parameters (if
    trained here) and, run once on real images of the data set, gives a floating-point tensor of
    logits, one row per image and one column per class. Raises ValueError with one line."""
    if trained and not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"{arch} has no trainable parameters: there is nothing to train")
    layers = _list_layers(model, input_shape, arch)
    if sample is None or num_classes is None:
        return layers
    images = (torch.from_numpy(sample.images).float() / 255.0 - 0.5) / 0.25
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(images)
    except Exception as exc:  # noqa: BLE001 - a user's model that cannot run on the data
        raise ValueError(f"{arch}: a forward pass on {len(images)} images of the data set failed: {_one_line(exc)}") from None
    finally:
        model.train(was_training)
    if not isinstance(output, torch.Tensor):
        raise ValueError(f"{arch} returns a {type(output).__name__}, not a tensor of logits "
                         f"(images × {num_classes} classes); make its forward return the logits alone")
    if output.dim() != 2 or output.shape[0] != len(images):
        raise ValueError(f"{arch} returns a tensor of shape {_fmt(tuple(output.shape))} for {len(images)} images; "
                         f"expected logits of shape ({len(images)}×{num_classes})")
    if output.shape[1] != num_classes:
        raise ValueError(f"{arch} gives {output.shape[1]} logits per image, but the data set has {num_classes} classes")
    if not output.is_floating_point():
        raise ValueError(f"{arch} returns {output.dtype} values, not floating-point logits")
    return layers


def _check_output_dir(path: str, problems: Problems) -> None:
    """``output_dir`` is a folder, or can be made one, in which files can be created (tried, not assumed)."""
    existing = Path(path)
    try:
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if not existing.is_dir():
            problems.add("output_dir", f"{existing} is a file, not a folder: run folders cannot be made in {path}")
            return
        handle, name = tempfile.mkstemp(prefix=".featdistill-check-", dir=existing)
        os.close(handle)
        os.unlink(name)
    except OSError as exc:
        problems.add("output_dir", f"run folders cannot be made in {path}: {existing} is not writable "
                                   f"({exc.strerror or 'permission denied'})")


def check_term_layers(method: str, teacher_paths, student_paths, options: dict | None,
                      teacher_layers: dict[str, LayerInfo], student_layers: dict[str, LayerInfo],
                      teacher_name: str = "the teacher", student_name: str = "the student") -> tuple[PairCheck, str]:
    """Check one term on layer paths: (the check, and ``"teacher"``/``"student"``/``""`` for the side at fault).

    A path that does not exist or gives no tensor is refused with the closest existing paths; then
    the method's shape check runs on the tensors it taps. Never raises.
    """
    try:
        info = get_method(method)
    except ValueError as exc:
        return PairCheck(False, "", str(exc)), ""
    shapes = {}
    for side, paths, layers, name in (("teacher", teacher_paths, teacher_layers, teacher_name),
                                      ("student", student_paths, student_layers, student_name)):
        found = []
        for path in paths:
            if path not in layers:
                return PairCheck(False, "", unknown_path_message(path, name, [p for p in layers if p])), side
            shape = layers[path].tapped_shape(info.taps)
            if shape is None:
                what = "receive" if info.taps == "input" else "output"
                return PairCheck(False, "", f"layer {path!r} of {name} does not {what} a tensor"), side
            found.append(shape)
        shapes[side] = found
    check = check_pair(method, shapes["student"], shapes["teacher"], options)
    if not check.ok:
        tap = " input" if info.taps == "input" else ""
        described = "; ".join(
            [f"teacher {p}{tap} {_fmt(s)}" for p, s in zip(teacher_paths, shapes["teacher"])]
            + [f"student {p}{tap} {_fmt(s)}" for p, s in zip(student_paths, shapes["student"])]
        )
        reason = f"{info.short_name} cannot match {described}: {check.reason}" if described else check.reason
        return PairCheck(False, "", reason), ""
    return check, ""


def check_files(config: RunConfig) -> list[Problem]:
    """The checks of a run's files that read no file and build no model, for a form to run as the
    user types: each weights file the run will load exists, is a file and is of a kind featdistill
    reads (:func:`~featdistill_core.models.check_weights_file`), and the dataset's folder holds the
    dataset (found by the loader's own discovery, :func:`~featdistill_core.data.dataset_classes`).
    Relative paths are taken from the current folder, as :func:`validate_run` takes them.
    :func:`validate_run` reports the same problems, with the same messages, and more."""
    config = with_absolute_paths(config)
    problems = Problems()
    roles = ["student"] + (["teacher"] if config.uses_teacher or config.trains_teacher else [])
    for role in roles:
        path = getattr(config, role).weights
        if path:
            try:
                check_weights_file(path)
            except WeightsError as exc:
                problems.add(f"{role}.weights", _one_line(exc))
    if config.data.name in NEEDS_PATH and config.data.path:
        try:
            dataset_classes(config.data.name, config.data.path)
        except DatasetError as exc:
            problems.add("data.path", _one_line(exc))
    return list(problems)


def validate_run_file(path) -> ValidatedRun:
    """Read a run file and validate it: every problem of the file and of the run, together."""
    config, problems = read_run_file(path)
    if config is None:
        problems.raise_if_any()
    return validate_run(config, known=problems)


def validate_run(config: RunConfig, *, known: Problems | None = None) -> ValidatedRun:
    """Every check of a run, all problems reported together; returns the run ready to train.

    When the form of the run is broken (a bad number, an unknown key), the meaning is still checked
    where the fields it needs are sound (a missing data folder, an unknown model, a wrong layer path),
    so that one pass shows the user everything that needs fixing.
    """
    problems = Problems()
    for problem in known or ():
        problems.add(problem.field, problem.message)
    form_ok = not problems
    try:
        config = checked(config)
    except ConfigError as error:
        problems.extend(error)
        form_ok = False
    try:
        run = _check_meaning(config, problems)
    except Exception:  # noqa: BLE001 - with a broken form, the rest is checked on a best-effort basis
        if form_ok:
            raise
        run = None
    problems.raise_if_any()
    return run


def _check_meaning(config: RunConfig, problems: Problems) -> ValidatedRun:
    config = with_absolute_paths(config)
    device = None
    if not problems.has("device"):
        try:
            device = resolve_device(config.device)
        except DeviceError as exc:
            problems.add("device", str(exc).split(": ", 1)[-1])
    try:                                              # under torchrun: what the launch cannot take
        for name, message in launch_problems(launch_env(), batch_size=config.batch_size, device_spec=config.device,
                                             device=device, sync_batchnorm=config.sync_batchnorm):
            if not problems.has(name):
                problems.add(name, message)
    except ValueError as exc:
        problems.add("", str(exc))

    if not problems.has("output_dir"):
        _check_output_dir(config.output_dir, problems)

    num_classes = None
    dataset_size = 0
    sample = info = None
    size = config.data.image_size if not problems.has("data.image_size") else 32
    if not problems.has("data") and not problems.has("seed"):
        try:
            sample = inspect_dataset(config.data.name, config.data.path or None, image_size=size,
                                     demo_train=config.data.demo_train, demo_test=config.data.demo_test,
                                     seed=config.seed,
                                     test_fraction=config.data.test_fraction)
            num_classes, dataset_size = sample.num_classes, sample.train_size
        except DatasetError as exc:
            problems.add("data.path", str(exc))
    if sample is not None:
        info = DatasetInfo(sample.num_classes, sample.train_size, sample.test_size)
    data_loader, data_bytes = "", 0
    if info is not None and not problems.has("data.loader"):
        try:
            data_loader, data_bytes = choose_loader(config.data.name, config.data.loader, info, size), \
                estimated_bytes(info, size)
        except DatasetError as exc:
            problems.add("data.loader", str(exc))
    input_shape = (3, size, size)
    classes_for_models = num_classes or 10    # layers can be listed even when the data is missing

    models: dict[str, Optional[nn.Module]] = {"student": None, "teacher": None}
    layers: dict[str, dict[str, LayerInfo]] = {"student": {}, "teacher": {}}
    uses_teacher = not problems.has("kd") and (config.uses_teacher or config.trains_teacher)
    roles = ["student"] + (["teacher"] if uses_teacher else [])
    seed_everything(config.seed if not problems.has("seed") else 0)   # initial weights depend on the seed alone
    for role in roles:
        if problems.has(f"{role}.arch"):
            continue
        try:
            load = num_classes is not None and not problems.has(f"{role}.weights")
            model = build_model(config, role, classes_for_models, load=load)
        except ConfigError as error:
            problems.extend(error)
            continue
        models[role] = model
        trained = role == "student" or config.trains_teacher
        try:
            found = call_with_time_limit(
                lambda: _check_model(model, input_shape, getattr(config, role).arch, sample, num_classes, trained),
                f"the first forward pass of {getattr(config, role).arch}")
            layers[role] = {info.path: info for info in found if info.path}
        except ValueError as exc:
            problems.add(f"{role}.arch", str(exc))

    rng_state = capture_rng()
    terms = _plan_terms(config, layers, problems, models)
    _try_building(terms, models, classes_for_models, dataset_size, device, problems)
    restore_rng(rng_state)
    return ValidatedRun(
        config=config, num_classes=num_classes, input_shape=input_shape, device=device,
        student=models["student"], teacher=models["teacher"],
        student_layers=layers["student"], teacher_layers=layers["teacher"],
        terms=terms, stages=plan_stages(config), rng_state=rng_state, dataset_size=dataset_size,
        data_loader=data_loader, data_bytes=data_bytes,
    )


def _plan_terms(config: RunConfig, layers, problems: Problems, models) -> list[TermPlan]:
    terms = config.terms
    names = term_names(terms)
    fields = (["kd"] if config.kd.weight > 0 else []) + [f"pairs[{i}]" for i in range(len(config.pairs))]
    plans = []
    for term, name, where in zip(terms, names, fields):
        if problems.has(where):
            continue               # its form is broken; that problem is reported already
        info = get_method(term.method)
        if info.on_logits:
            check = check_pair(term.method, [], [], term.options)
            side = ""
        else:
            if models["teacher"] is None or models["student"] is None or not layers["teacher"] or not layers["student"]:
                continue        # the model's own problem is reported already
            check, side = check_term_layers(term.method, term.teacher, term.student, term.options,
                                            layers["teacher"], layers["student"],
                                            config.teacher.arch, config.student.arch)
        if not check.ok:
            problems.add(f"{where}.{side}" if side and where != "kd" else where, check.reason)
            continue
        auto = term.weight == AUTO_WEIGHT or config.balance.auto
        plans.append(TermPlan(
            field=where, name=name, method=info,
            teacher_paths=tuple(term.teacher), student_paths=tuple(term.student),
            teacher_shapes=tuple(layers["teacher"][p].tapped_shape(info.taps) for p in term.teacher),
            student_shapes=tuple(layers["student"][p].tapped_shape(info.taps) for p in term.student),
            weight=info.default_weight if auto else float(term.weight), stage=term.stage,
            options=dict(term.options), check=check, auto=auto,
        ))
    return plans


def _try_building(terms: list[TermPlan], models, num_classes: int, dataset_size: int, device, problems: Problems) -> None:
    """Build each term once on the CPU, so a method's own objection (an option that does not fit the
    data set, say) is reported now, at the term's field, and not when training starts."""
    for plan in terms:
        try:
            build_term(BuildContext(
                method=plan.method.key, options=plan.options, student_shapes=plan.student_shapes,
                teacher_shapes=plan.teacher_shapes, student_paths=plan.student_paths,
                teacher_paths=plan.teacher_paths, num_classes=num_classes, dataset_size=dataset_size,
                device=torch.device("cpu"), teacher=models["teacher"], student=models["student"],
            ))
        except (ValueError, TypeError, RuntimeError) as exc:
            problems.add(plan.field, f"{plan.method.short_name} cannot be built: {_one_line(exc)}")


def _fmt(shape) -> str:
    return "(" + "×".join(str(s) for s in shape) + ")"


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else "an error without a message"


__all__ = [
    "TermPlan", "ValidatedRun", "build_model", "check_files", "check_term_layers", "initial_student", "model_layers",
    "validate_run",
    "validate_run_file",
]
