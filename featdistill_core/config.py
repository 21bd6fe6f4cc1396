"""A run is one TOML file: this module reads, checks and writes it.

Two levels of checking, both before any training starts:

* :func:`config_from_dict` / :func:`load_config` check the *form*: every key known, every value of the
  right type and among the allowed values. No model is built.
* :func:`featdistill_core.validate.validate_run` checks the *meaning*: the models exist, the weights
  files load, every layer path exists and every pair's shapes can be matched.

Every problem is a :class:`ConfigError` whose message starts with the field's dotted name, e.g.
``optim.schedule: must be one of 'constant', 'step', 'cosine'; got 'linear'``.

The window saves exactly what the CLI runs: :func:`save_config` writes every field (defaults
included), so ``load_config(save_config(c)) == c``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featdistill_core.losses.methods import METHODS, validate_options

DATASETS = ("demo", "cifar10", "cifar100", "imagefolder")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "step", "cosine")
PAIR_STAGES = ("joint", "init")
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class ConfigError(ValueError):
    """A run file problem. ``field`` is the dotted name of the offending field ("" for the file)."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        self.reason = message
        super().__init__(f"{field_name}: {message}" if field_name else message)


@dataclass
class TeacherConfig:
    arch: str = "demo_teacher"
    weights: str = ""        # .safetensors, or a state-dict .pt/.pth; "" means: train it first
    train_epochs: int = 0    # epochs to train the teacher first when no weights are given


@dataclass
class StudentConfig:
    arch: str = "demo_student"
    weights: str = ""        # optional starting weights


@dataclass
class DataConfig:
    name: str = "demo"       # one of DATASETS
    path: str = ""           # folder for cifar10 / cifar100 / imagefolder
    image_size: int = 32     # image folder images are resized to this square size
    augment: bool = True     # random crop (padding 4) and horizontal flip on the training split
    demo_train: int = 5000   # demo dataset sizes
    demo_test: int = 2000


@dataclass
class OptimConfig:
    name: str = "sgd"        # one of OPTIMIZERS
    lr: float = 0.05
    momentum: float = 0.9    # SGD only
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # one of SCHEDULES
    milestones: list[int] = field(default_factory=list)   # epochs at which "step" multiplies lr by gamma
    gamma: float = 0.1


@dataclass
class KDConfig:
    weight: float = 0.0      # 0 turns logit distillation off
    temperature: float = 4.0


@dataclass
class PairConfig:
    method: str              # a key of featdistill_core.losses.METHODS: "hint", "at", "fsp"
    teacher: list[str]       # module paths in the teacher (two for FSP)
    student: list[str]       # module paths in the student (two for FSP)
    weight: float = 1.0
    stage: str = "joint"     # "joint": with the task loss; "init": only in the initialisation stage
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Readable loss-component name, e.g. ``at:layer2<-layer2``."""
        return f"{self.method}:{'+'.join(self.teacher)}<-{'+'.join(self.student)}"


@dataclass
class MonitorConfig:
    log_every: int = 10        # steps between step events (losses are averaged over them)
    snapshot_every: int = 50   # steps between attention snapshots (0: only at epoch ends)
    probe_images: int = 8      # fixed test images whose attention maps are recorded


@dataclass
class RunConfig:
    name: str = "run"
    seed: int = 0
    device: str = "auto"       # auto (CUDA, then MPS, then CPU) | cpu | cuda | cuda:N | mps
    mixed_precision: bool = False
    epochs: int = 10           # student epochs (0: only train the teacher)
    batch_size: int = 64
    ce_weight: float = 1.0
    init_epochs: int = 0       # distillation-only initialisation stage for pairs with stage = "init"
    output_dir: str = "runs"
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    pairs: list[PairConfig] = field(default_factory=list)

    @property
    def trains_teacher(self) -> bool:
        return not self.teacher.weights and self.teacher.train_epochs > 0

    @property
    def uses_teacher(self) -> bool:
        """Whether the student stage needs the teacher's forward pass."""
        return bool(self.pairs) or self.kd.weight > 0


# --------------------------------------------------------------------------------------------
# Reading


_SECTIONS = {
    "teacher": TeacherConfig,
    "student": StudentConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "kd": KDConfig,
    "monitor": MonitorConfig,
}


def load_config(path: str | Path) -> RunConfig:
    """Read and check a run file. Raises :class:`ConfigError` naming the file or the field."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("", f"run file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"run file {path} cannot be read: {exc}") from None
    return config_from_toml(text, source=str(path))


def config_from_toml(text: str, source: str = "run file") -> RunConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{source} is not valid TOML: {exc}") from None
    return config_from_dict(raw)


def config_from_dict(raw: dict) -> RunConfig:
    """Build a :class:`RunConfig` from plain data, checking every key, type and value."""
    if not isinstance(raw, dict):
        raise ConfigError("", "a run file must be a table of settings")
    top: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _SECTIONS:
            top[key] = _read_section(key, _SECTIONS[key], value)
        elif key == "pairs":
            top[key] = _read_pairs(value)
        else:
            top[key] = value
    config = _read_fields("", RunConfig, top, skip=set(_SECTIONS) | {"pairs"})
    for key in _SECTIONS:
        if key in top:
            setattr(config, key, top[key])
    config.pairs = top.get("pairs", [])
    check_values(config)
    return config


def _read_section(name: str, cls: type, value: Any):
    if not isinstance(value, dict):
        raise ConfigError(name, f"must be a table ([{name}]); got {_type_name(value)}")
    return _read_fields(name + ".", cls, value)


def _read_pairs(value: Any) -> list[PairConfig]:
    if not isinstance(value, list):
        raise ConfigError("pairs", "must be an array of tables ([[pairs]])")
    pairs = []
    for i, item in enumerate(value):
        prefix = f"pairs[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(prefix, f"must be a table; got {_type_name(item)}")
        method = item.get("method")
        if method not in METHODS:
            raise ConfigError(prefix + ".method", f"must be one of {_choices(METHODS)}; got {method!r}")
        item = dict(item)
        item.setdefault("weight", METHODS[method].default_weight)
        for side in ("teacher", "student"):
            if isinstance(item.get(side), str):
                item[side] = [item[side]]
        pair = _read_fields(prefix + ".", PairConfig, item)
        try:
            pair.options = validate_options(method, pair.options)
        except ValueError as exc:
            raise ConfigError(prefix + ".options", str(exc)) from None
        pairs.append(pair)
    return pairs


def _read_fields(prefix: str, cls: type, values: dict, skip: frozenset | set = frozenset()):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key in skip:
            continue
        if key not in fields:
            allowed = ", ".join(sorted(set(fields) | set(skip)))
            raise ConfigError(prefix + key, f"unknown setting; allowed here: {allowed}")
        kwargs[key] = _coerce(prefix + key, fields[key].type, value)
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs and name not in skip
        and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(prefix + missing[0], "is required")
    return cls(**kwargs)


def _coerce(name: str, annotation: str, value: Any) -> Any:
    """Check ``value`` against a field's annotation (given as a string: ``from __future__``)."""
    if annotation == "bool":
        if isinstance(value, bool):
            return value
        raise ConfigError(name, f"must be true or false; got {value!r}")
    if annotation == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(name, f"must be a whole number; got {value!r}")
    if annotation == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(name, f"must be a finite number; got {value!r}")
            return float(value)
        raise ConfigError(name, f"must be a number; got {value!r}")
    if annotation == "str":
        if isinstance(value, str):
            return value
        raise ConfigError(name, f"must be a string; got {value!r}")
    if annotation == "list[str]":
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ConfigError(name, f"must be a list of strings; got {value!r}")
    if annotation == "list[int]":
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return list(value)
        raise ConfigError(name, f"must be a list of whole numbers; got {value!r}")
    if annotation == "dict[str, Any]":
        if isinstance(value, dict):
            return dict(value)
        raise ConfigError(name, f"must be a table; got {value!r}")
    raise TypeError(f"unhandled field type {annotation} for {name}")  # a bug in this module


def check_values(config: RunConfig) -> None:
    """Check ranges and choices that need no model or file. Raises :class:`ConfigError`."""
    c = config
    _at_least("seed", c.seed, 0)
    _at_least("epochs", c.epochs, 0)
    _at_least("batch_size", c.batch_size, 1)
    _at_least("init_epochs", c.init_epochs, 0)
    _at_least("ce_weight", c.ce_weight, 0.0)
    if not _DEVICE_PATTERN.match(c.device):
        raise ConfigError("device", f"must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; got {c.device!r}")
    if not c.name or "/" in c.name or "\\" in c.name:
        raise ConfigError("name", f"must be a non-empty name without slashes; got {c.name!r}")
    if not c.output_dir:
        raise ConfigError("output_dir", "must name a folder")
    if not c.teacher.arch:
        raise ConfigError("teacher.arch", "must name a model (see `featdistill models`)")
    if not c.student.arch:
        raise ConfigError("student.arch", "must name a model (see `featdistill models`)")
    _at_least("teacher.train_epochs", c.teacher.train_epochs, 0)
    if c.uses_teacher and not c.teacher.weights and c.teacher.train_epochs == 0:
        raise ConfigError(
            "teacher.weights",
            "a weights file is required, or set teacher.train_epochs > 0 to train the teacher first",
        )
    if c.epochs == 0 and not c.trains_teacher:
        raise ConfigError("epochs", "must be at least 1 (0 is only for a run that trains the teacher)")
    _one_of("data.name", c.data.name, DATASETS)
    if c.data.name in ("cifar10", "cifar100", "imagefolder") and not c.data.path:
        raise ConfigError("data.path", f"the {c.data.name} dataset needs the folder it is in")
    _at_least("data.image_size", c.data.image_size, 8)
    if c.data.name in ("cifar10", "cifar100") and c.data.image_size != 32:
        raise ConfigError("data.image_size", f"CIFAR images are 32×32; got {c.data.image_size}")
    if c.data.name == "demo" and c.data.demo_train < c.batch_size:
        raise ConfigError("batch_size", f"must not exceed data.demo_train ({c.data.demo_train}); got {c.batch_size}")
    _at_least("data.demo_train", c.data.demo_train, 10)
    _at_least("data.demo_test", c.data.demo_test, 10)
    _one_of("optim.name", c.optim.name, OPTIMIZERS)
    _one_of("optim.schedule", c.optim.schedule, SCHEDULES)
    if c.optim.lr <= 0:
        raise ConfigError("optim.lr", f"must be greater than 0; got {c.optim.lr}")
    _at_least("optim.momentum", c.optim.momentum, 0.0)
    if c.optim.momentum >= 1:
        raise ConfigError("optim.momentum", f"must be below 1; got {c.optim.momentum}")
    _at_least("optim.weight_decay", c.optim.weight_decay, 0.0)
    _at_least("optim.gamma", c.optim.gamma, 0.0)
    if any(m < 1 for m in c.optim.milestones) or c.optim.milestones != sorted(c.optim.milestones):
        raise ConfigError("optim.milestones", f"must be increasing epochs ≥ 1; got {c.optim.milestones}")
    _at_least("kd.weight", c.kd.weight, 0.0)
    if c.kd.temperature <= 0:
        raise ConfigError("kd.temperature", f"must be greater than 0; got {c.kd.temperature}")
    _at_least("monitor.log_every", c.monitor.log_every, 1)
    _at_least("monitor.snapshot_every", c.monitor.snapshot_every, 0)
    _at_least("monitor.probe_images", c.monitor.probe_images, 1)
    for i, pair in enumerate(c.pairs):
        _check_pair_form(f"pairs[{i}]", pair)
    if any(p.stage == "init" for p in c.pairs) and c.init_epochs == 0:
        raise ConfigError("init_epochs", "must be at least 1 when a pair has stage = \"init\"")


def _check_pair_form(prefix: str, pair: PairConfig) -> None:
    info = METHODS[pair.method]
    for side in ("teacher", "student"):
        layers = getattr(pair, side)
        if len(layers) != info.layers_per_side or not all(layers):
            raise ConfigError(
                f"{prefix}.{side}",
                f"method {pair.method!r} takes {info.layers_per_side} layer path(s) on each side; got {layers}",
            )
    _at_least(prefix + ".weight", pair.weight, 0.0)
    _one_of(prefix + ".stage", pair.stage, PAIR_STAGES)


def _at_least(name: str, value, minimum) -> None:
    if value < minimum:
        raise ConfigError(name, f"must be at least {minimum}; got {value}")


def _one_of(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(name, f"must be one of {_choices(allowed)}; got {value!r}")


def _choices(allowed) -> str:
    return ", ".join(repr(a) for a in allowed)


def _type_name(value: Any) -> str:
    return type(value).__name__


# --------------------------------------------------------------------------------------------
# Writing


def config_to_dict(config: RunConfig) -> dict:
    """Plain data with every field, in the order the file is written."""
    return dataclasses.asdict(config)


def checked(config: RunConfig) -> RunConfig:
    """A copy of a config built in code, read back as a file would be: defaults filled, types
    normalised (``p = 2`` becomes ``2.0``) and every value checked."""
    return config_from_dict(config_to_dict(config))


def save_config(config: RunConfig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_to_toml(config), encoding="utf-8")
    return path


def config_to_toml(config: RunConfig) -> str:
    data = config_to_dict(config)
    lines = ["# featdistill run file: `featdistill train THIS_FILE` runs it; the window opens it too.", ""]
    scalars = {k: v for k, v in data.items() if not isinstance(v, (dict, list))}
    lines += [f"{k} = {_toml_value(v)}" for k, v in scalars.items()]
    for section in _SECTIONS:
        lines += ["", f"[{section}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in data[section].items()]
    for pair in data["pairs"]:
        options = pair.pop("options")
        lines += ["", "[[pairs]]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in pair.items()]
        lines += [f"options = {_toml_value(options)}"]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} to TOML")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)
