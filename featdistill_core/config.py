"""A run is one TOML file: this module reads, checks and writes it.

Two levels of checking, both before any training starts:

* :func:`config_from_dict` / :func:`load_config` check the *form*: every key known, every value of the
  right type, within its bounds and among the allowed values. No model is built.
* :func:`featdistill_core.validate.validate_run` checks the *meaning*: the models exist, the weights
  files load, every layer path exists and every pair's shapes can be matched.

Both collect *every* problem before raising one :class:`ConfigError` (see :mod:`featdistill_core.errors`),
each problem naming its field, e.g. ``optim.schedule: must be one of 'constant', 'step', 'cosine'; got 'linear'``.

The window saves exactly what the CLI runs: :func:`save_config` writes every field (defaults
included), so ``load_config(save_config(c)) == c`` for a config whose paths are absolute. Relative
paths in a run file (weights, data folder, output folder) are relative to the run file's folder.

For a config built in code, :func:`checked` reads it back as a file would be read (defaults filled,
numbers normalised, every value checked); a :class:`~featdistill_core.trainer.Trainer` does the full
validation itself, so the Python API refuses exactly what ``featdistill check`` refuses.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from featdistill_core.atomic import write_atomic
from featdistill_core.data import DATASETS, DEFAULT_TEST_FRACTION, FIXED_IMAGE_SIZES, LOADERS, NEEDS_PATH, STREAMABLE
from featdistill_core.distributed import LR_SCALINGS
from featdistill_core.errors import ConfigError, Problem, Problems
from featdistill_core.losses import METHODS, get_method, validate_options
from featdistill_core.speed import AMP_DTYPES, COMPILE_MODES
from featdistill_core.stages import LEGACY_TERM_STAGES, TERM_STAGES, Stage, plan_stages

OPTIMIZERS = ("sgd", "adamw")
NONFINITE_MODES = ("stop", "skip")
SCHEDULES = ("constant", "step", "cosine")
PAIR_STAGES = TERM_STAGES
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,3})?)$")
MAX_PATH_LENGTH = 4096
MAX_NAME_LENGTH = 120

__all__ = [
    "AUTO_WEIGHT", "BalanceConfig", "CheckpointConfig", "ConfigError", "DataConfig", "KD_METHOD", "KDConfig",
    "MonitorConfig", "OptimConfig",
    "PairConfig", "Problem",
    "RunConfig", "StudentConfig", "TeacherConfig", "check_values", "checked", "config_from_dict",
    "config_from_toml", "config_to_dict", "config_to_toml", "load_config", "read_config", "read_run_file",
    "save_config", "term_names", "with_absolute_paths",
]


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
    name: str = "demo"       # one of featdistill_core.data.DATASETS
    path: str = ""           # folder for cifar10 / cifar100 / imagefolder
    image_size: int = 32     # image folder images are resized to this square size
    augment: bool = True     # training augmentation: in memory random crop (padding 4) + flip; streamed
                             # random-resized crop + flip (streamed evaluation: resize + centre crop)
    demo_train: int = 5000   # demo dataset sizes
    demo_test: int = 2000
    test_fraction: float = DEFAULT_TEST_FRACTION   # image folder without train/ and test/: share of each class held out
    loader: str = "auto"     # one of LOADERS: "auto" holds the data in memory up to 4 GiB of resized
                             # images and streams a larger image folder from disk; "memory" / "stream" force it
    workers: int = -1        # processes reading a streamed folder: -1 one per core less one (at most 8),
                             # 0 none (read in the training process); ignored in memory


@dataclass
class OptimConfig:
    name: str = "sgd"        # one of OPTIMIZERS
    lr: float = 0.05
    momentum: float = 0.9    # SGD only
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # one of SCHEDULES
    milestones: list[int] = field(default_factory=list)   # epochs at which "step" multiplies lr by gamma
    gamma: float = 0.1


KD_METHOD = "kd"
"""The method the ``[kd]`` table is a shorthand for (one term of it, on the logits)."""


@dataclass
class KDConfig:
    """Shorthand for one logit-KD term (method :data:`KD_METHOD`): ``weight`` 0 means none."""

    weight: float = 0.0
    temperature: float = 4.0


AUTO_WEIGHT = "auto"
"""A term's weight chosen from calibration batches when training starts (:mod:`featdistill_core.balance`)."""

Weight = Optional[Union[float, str]]


@dataclass
class PairConfig:
    """One distillation term: a method, the layers it pairs (none for a method on logits), its weight.

    ``weight`` None means the method's reference weight (``METHODS[method].default_weight``), filled
    in when the pair is made, whether in code or from a file. ``weight = "auto"`` (:data:`AUTO_WEIGHT`)
    lets the trainer choose it from a few calibration batches (see :class:`BalanceConfig`).
    """

    method: str              # a key of featdistill_core.losses.METHODS
    teacher: list[str] = field(default_factory=list)   # module paths in the teacher (two for FSP)
    student: list[str] = field(default_factory=list)   # module paths in the student
    weight: Weight = None
    stage: str = Stage.STUDENT.value   # "student": with the task loss; "init": only in the initialisation stage
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.weight is None and isinstance(self.method, str) and self.method in METHODS:
            self.weight = METHODS[self.method].default_weight
        if self.stage in LEGACY_TERM_STAGES:
            self.stage = LEGACY_TERM_STAGES[self.stage]

    @property
    def name(self) -> str:
        """Readable loss-component name, e.g. ``at:layer2<-layer2``; the method alone on logits."""
        if not self.teacher and not self.student:
            return str(self.method)
        return f"{self.method}:{'+'.join(self.teacher)}<-{'+'.join(self.student)}"


@dataclass
class BalanceConfig:
    """How the distillation terms are weighed against the task loss (:mod:`featdistill_core.balance`).

    Before the student's first step the trainer measures every term on ``batches`` training batches:
    its loss and the norm of its gradient at the student's parameters, each relative to the
    cross-entropy's. A term whose weight is ``"auto"`` (every term, with ``auto = true``) gets the
    weight that makes its gradient ``target`` times the cross-entropy's; a term whose gradient starts
    above ``warn_ratio`` times the cross-entropy's is warned about.
    """

    auto: bool = False         # every term's weight chosen as for weight = "auto"
    target: float = 0.1        # an auto weight makes the term's gradient this fraction of the cross-entropy's
    batches: int = 4           # calibration batches (0: no measurement; "auto" weights need at least 1)
    warn_ratio: float = 1.0    # warn when a term's gradient starts above this multiple of the cross-entropy's


@dataclass
class MonitorConfig:
    log_every: int = 10        # steps between step events (losses are averaged over them)
    snapshot_every: int = 50   # steps between attention snapshots (0: only at epoch ends)
    probe_images: int = 8      # fixed test images whose attention maps are recorded


@dataclass
class CheckpointConfig:
    """When the run state is written to the run folder's ``checkpoint-last.pt`` besides the end of
    every epoch and a stop or failure (see :mod:`featdistill_core.checkpoint`)."""

    every_minutes: float = 10.0   # also within an epoch, this often (0: only at epoch ends, stop and failure)


@dataclass
class RunConfig:
    name: str = "run"
    seed: int = 0
    device: str = "auto"       # auto (CUDA, then MPS, then CPU) | cpu | cuda | cuda:N | mps
    mixed_precision: bool = False
    amp_dtype: str = "auto"    # with mixed_precision, one of AMP_DTYPES: "auto" = bfloat16 where the device
                               # supports it (CPU, CUDA Ampere+), else float16 with a gradient scaler
    channels_last: bool = False  # NHWC memory layout for models and batches (faster convolutions on CUDA with AMP)
    compile: str = "off"       # one of COMPILE_MODES: torch.compile the student and teacher ("off": eager)
    sync_batchnorm: bool = False  # under torchrun: the student's BatchNorms use the statistics of the global batch
                                  # (SyncBatchNorm, CUDA only); ignored in one process
    lr_scaling: str = "none"   # under torchrun, one of LR_SCALINGS: "none" keeps optim.lr for the global batch,
                               # "linear" multiplies it by the number of processes
    epochs: int = 10           # student epochs (0: only train the teacher)
    batch_size: int = 64
    ce_weight: float = 1.0
    init_epochs: int = 0       # distillation-only initialisation stage for pairs with stage = "init"
    output_dir: str = "runs"
    on_nonfinite: str = "stop"  # a NaN/Inf loss or gradient: "stop" the run, or "skip" the step (counted)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    balance: BalanceConfig = field(default_factory=BalanceConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    pairs: list[PairConfig] = field(default_factory=list)

    @property
    def terms(self) -> list[PairConfig]:
        """Every distillation term: the ``[kd]`` shorthand (as a ``"kd"`` term, first) and the pairs."""
        terms = []
        if self.kd.weight > 0:
            terms.append(PairConfig(KD_METHOD, [], [], self.kd.weight, Stage.STUDENT.value,
                                    {"temperature": self.kd.temperature}))
        return terms + list(self.pairs)

    @property
    def trains_teacher(self) -> bool:
        return not self.teacher.weights and self.teacher.train_epochs > 0

    @property
    def uses_teacher(self) -> bool:
        """Whether the student needs the teacher's forward pass (any distillation term)."""
        return bool(self.terms)

    @property
    def stages(self):
        """The stages this run goes through (:func:`featdistill_core.stages.plan_stages`)."""
        return plan_stages(self)


def term_names(terms: list[PairConfig]) -> list[str]:
    """Each term's loss-component name, made unique with ``#2``, ``#3`` … where two terms coincide."""
    names, seen = [], {}
    for term in terms:
        base = term.name
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return names


# --------------------------------------------------------------------------------------------
# Bounds: every number is checked against these before it is used.

_INT_BOUNDS = {
    "seed": (0, 2**32 - 1),
    "epochs": (0, 100_000),
    "batch_size": (1, 65_536),
    "init_epochs": (0, 100_000),
    "teacher.train_epochs": (0, 100_000),
    "data.image_size": (8, 2048),
    "data.demo_train": (10, 1_000_000),
    "data.demo_test": (10, 1_000_000),
    "data.workers": (-1, 256),
    "monitor.log_every": (1, 1_000_000),
    "monitor.snapshot_every": (0, 1_000_000),
    "monitor.probe_images": (1, 256),
    "balance.batches": (0, 1000),
}
_FLOAT_BOUNDS = {   # (minimum, maximum, minimum excluded)
    "ce_weight": (0.0, 1e6, False),
    "optim.lr": (0.0, 1e6, True),
    "optim.momentum": (0.0, 1.0, False),
    "optim.weight_decay": (0.0, 1e3, False),
    "optim.gamma": (0.0, 1e3, False),
    "kd.weight": (0.0, 1e6, False),
    "kd.temperature": (0.0, 1e3, True),
    "data.test_fraction": (0.0, 1.0, True),
    "balance.target": (0.0, 1e3, True),
    "balance.warn_ratio": (0.0, 1e6, True),
    "checkpoint.every_minutes": (0.0, 10_080.0, False),
}
_BELOW_ONE = ("optim.momentum", "data.test_fraction")   # bounded by 1, which is excluded
MAX_TERM_WEIGHT = 1e6
MAX_EPOCH = 100_000


# --------------------------------------------------------------------------------------------
# Reading


_SECTIONS = {
    "teacher": TeacherConfig,
    "student": StudentConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "kd": KDConfig,
    "monitor": MonitorConfig,
    "balance": BalanceConfig,
    "checkpoint": CheckpointConfig,
}
_PATH_FIELDS = (("teacher", "weights"), ("student", "weights"), ("data", "path"), (None, "output_dir"))


def load_config(path: str | Path) -> RunConfig:
    """Read and check a run file. Raises :class:`ConfigError` naming the file or every bad field.

    Relative paths in the file are resolved against the file's folder.
    """
    config, problems = read_run_file(path)
    problems.raise_if_any()
    return config


def read_run_file(path: str | Path) -> tuple[RunConfig | None, Problems]:
    """Read a run file without raising: the config as far as it could be read, and every problem.

    The config is None when the file itself cannot be read as TOML; otherwise bad fields hold their
    defaults. :func:`featdistill_core.validate.validate_run_file` goes on to check the meaning of
    what is sound, so ``featdistill check`` reports everything at once.
    """
    problems = Problems()
    path = Path(path)
    try:
        exists = path.is_file()
    except (OSError, ValueError) as exc:    # a name too long, a NUL byte …
        problems.add("", f"run file {str(path)[:200]!r} cannot be opened: {exc}")
        return None, problems
    if not exists:
        problems.add("", f"run file {path} does not exist")
        return None, problems
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.add("", f"run file {path} cannot be read: {exc}")
        return None, problems
    return _read_toml(text, f"run file {path}", path.absolute().parent, problems), problems


def config_from_toml(text: str, source: str = "run file", base_dir: str | Path | None = None) -> RunConfig:
    """Read a run file's text. With ``base_dir``, relative paths are resolved against it."""
    problems = Problems()
    config = _read_toml(text, source, base_dir, problems)
    problems.raise_if_any()
    return config


def _read_toml(text: str, source: str, base_dir, problems: Problems) -> RunConfig | None:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problems.add("", f"{source} is not valid TOML: {exc}")
        return None
    except RecursionError:
        problems.add("", f"{source} is nested too deeply to be a run file")
        return None
    if not raw:
        problems.add("", f"{source} is empty: a run file names at least the student ([student] arch = …); "
                         "`featdistill demo` shows a complete one")
        return None
    config = read_config(raw, problems)
    return with_absolute_paths(config, base_dir) if base_dir is not None else config


def with_absolute_paths(config: RunConfig, base_dir: str | Path | None = None) -> RunConfig:
    """A copy of ``config`` whose relative paths are made absolute against ``base_dir`` (default: the
    current folder). Empty paths stay empty."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    result = dataclasses.replace(config)
    for section, name in _PATH_FIELDS:
        holder = result if section is None else dataclasses.replace(getattr(result, section))
        value = getattr(holder, name)
        if value:
            expanded = Path(value).expanduser()
            if not expanded.is_absolute():
                expanded = base / expanded
            setattr(holder, name, os.path.normpath(str(expanded)))
        if section is not None:
            setattr(result, section, holder)
    return result


def config_from_dict(raw: dict) -> RunConfig:
    """Build a :class:`RunConfig` from plain data, checking every key, type and value.

    Every problem is collected; one :class:`ConfigError` lists them all.
    """
    problems = Problems()
    config = read_config(raw, problems)
    problems.raise_if_any()
    return config


def read_config(raw: dict, problems: Problems) -> RunConfig:
    """Like :func:`config_from_dict`, but adds the problems to ``problems`` and returns the config
    as far as it could be read (bad fields keep their defaults)."""
    if not isinstance(raw, dict):
        problems.add("", "a run file must be a table of settings")
        return RunConfig()
    top: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _SECTIONS:
            top[key] = _read_section(key, _SECTIONS[key], value, problems)
        elif key == "pairs":
            top[key] = _read_pairs(value, problems)
        else:
            top[key] = value
    config = _read_fields("", RunConfig, top, problems, skip=set(_SECTIONS) | {"pairs"})
    for key in _SECTIONS:
        if key in top:
            setattr(config, key, top[key])
    config.pairs = top.get("pairs", [])
    collect_value_problems(config, problems)
    return config


def _read_section(name: str, cls: type, value: Any, problems: Problems):
    if not isinstance(value, dict):
        problems.add(name, f"must be a table ([{name}]); got {_type_name(value)}")
        return cls()
    return _read_fields(name + ".", cls, value, problems)


def _read_pairs(value: Any, problems: Problems) -> list[PairConfig]:
    if not isinstance(value, list):
        problems.add("pairs", "must be an array of tables ([[pairs]])")
        return []
    pairs = []
    for i, item in enumerate(value):
        prefix = f"pairs[{i}]"
        if not isinstance(item, dict):
            problems.add(prefix, f"must be a table; got {_type_name(item)}")
            pairs.append(PairConfig(method=""))      # keeps the numbering of the pairs after it
            continue
        method = item.get("method")
        try:
            get_method(method)
        except ValueError:
            shown = method if isinstance(method, (str, int, float)) else _type_name(method)
            problems.add(prefix + ".method", f"must be one of {_choices(METHODS)}; got {shown!r}")
            pairs.append(PairConfig(method=""))
            continue
        item = dict(item)
        for side in ("teacher", "student"):
            if isinstance(item.get(side), str):
                item[side] = [item[side]]
        before = len(problems)
        pair = _read_fields(prefix + ".", PairConfig, item, problems)
        if len(problems) == before or not problems.has(prefix + ".options"):
            try:
                pair.options = validate_options(method, pair.options)
            except ValueError as exc:
                problems.add(prefix + ".options", str(exc))
        pairs.append(pair)
    return pairs


class _Bad(ValueError):
    pass


def _read_fields(prefix: str, cls: type, values: dict, problems: Problems, skip: frozenset | set = frozenset()):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key in skip:
            continue
        name = prefix + str(key)
        if key not in fields:
            allowed = ", ".join(sorted(set(fields) | set(skip)))
            problems.add(name, f"unknown setting; allowed here: {allowed}")
            continue
        try:
            kwargs[key] = _coerce(name, fields[key].type, value)
        except _Bad as bad:
            problems.add(name, str(bad))
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in kwargs and name not in skip:
            if not problems.has(prefix + name):
                problems.add(prefix + name, "is required")
            kwargs[name] = ""        # a placeholder, so the rest can still be checked
    return cls(**kwargs)


def _number_text(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"a {len(text)}-digit number"


def _coerce(name: str, annotation: str, value: Any) -> Any:
    """Check ``value`` against a field's annotation (given as a string: ``from __future__``)."""
    if annotation == "bool":
        if isinstance(value, bool):
            return value
        raise _Bad(f"must be true or false; got {_short(value)}")
    if annotation == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Bad(f"must be a whole number; got {_short(value)}")
    if annotation == "Weight":
        if value == AUTO_WEIGHT:
            return value
        if isinstance(value, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad(f'must be a number or "{AUTO_WEIGHT}"; got {_short(value)}')
        annotation = "float"
    if annotation in ("float", "Optional[float]"):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                raise _Bad(f"must be a number of reasonable size; got {_number_text(value)}") from None
            if not math.isfinite(number):
                raise _Bad(f"must be a finite number; got {value!r}")
            return number
        raise _Bad(f"must be a number; got {_short(value)}")
    if annotation == "str":
        if isinstance(value, str):
            return value
        raise _Bad(f"must be a string; got {_short(value)}")
    if annotation == "list[str]":
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise _Bad(f"must be a list of strings; got {_short(value)}")
    if annotation == "list[int]":
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return list(value)
        raise _Bad(f"must be a list of whole numbers; got {_short(value)}")
    if annotation == "dict[str, Any]":
        if isinstance(value, dict):
            return dict(value)
        raise _Bad(f"must be a table; got {_short(value)}")
    raise TypeError(f"unhandled field type {annotation} for {name}")  # a bug in this module


def _short(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return _number_text(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def check_values(config: RunConfig) -> None:
    """Check ranges and choices that need no model or file. Raises :class:`ConfigError` with every problem."""
    problems = Problems()
    collect_value_problems(config, problems)
    problems.raise_if_any()


def collect_value_problems(config: RunConfig, problems: Problems) -> None:
    """Add every range, choice and consistency problem of ``config`` to ``problems``."""
    c = config

    def value_of(path: str):
        holder = c
        for part in path.split("."):
            holder = getattr(holder, part)
        return holder

    for path, (low, high) in _INT_BOUNDS.items():
        value = value_of(path)
        if problems.has(path):
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            problems.add(path, f"must be a whole number; got {_short(value)}")
        elif value < low:
            problems.add(path, f"must be at least {low}; got {_short(value)}")
        elif value > high:
            problems.add(path, f"must be at most {high:,}; got {_short(value)}".replace(",", " "))
    for path, (low, high, exclusive) in _FLOAT_BOUNDS.items():
        value = value_of(path)
        if problems.has(path):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problems.add(path, f"must be a finite number; got {_short(value)}")
        elif exclusive and value <= low:
            problems.add(path, f"must be greater than {low:g}; got {value:g}")
        elif value < low:
            problems.add(path, f"must be at least {low:g}; got {value:g}")
        elif value > high or (path in _BELOW_ONE and value >= 1):
            problems.add(path, f"must be below 1; got {value:g}" if path in _BELOW_ONE
                         else f"must be at most {high:g}; got {value:g}")

    if isinstance(c.device, str) and not _DEVICE_PATTERN.match(c.device):
        problems.add("device", f"must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; got {_short(c.device)}")
    _check_name(problems, "name", c.name)
    _check_path(problems, "output_dir", c.output_dir, required="must name a folder")
    for role in ("teacher", "student"):
        section = getattr(c, role)
        if not section.arch or not section.arch.strip():
            problems.add(f"{role}.arch", "must name a model (see `featdistill models`)")
        elif len(section.arch) > 500 or not section.arch.isprintable():
            problems.add(f"{role}.arch", "must be a model name (see `featdistill models`) or package.module:function")
        _check_path(problems, f"{role}.weights", section.weights)
    _check_path(problems, "data.path", c.data.path)

    if not problems.has("teacher.train_epochs") and c.uses_teacher and not c.teacher.weights and c.teacher.train_epochs == 0:
        problems.add(
            "teacher.weights",
            "is needed: the run distils from the teacher; give its weights file, or train the teacher "
            "first (teacher epochs above 0)",
        )
    if not problems.has("epochs") and c.epochs == 0 and not c.trains_teacher:
        problems.add("epochs", "must be at least 1 (0 is only for a run that trains the teacher and stops)")
    if c.data.name not in DATASETS:
        problems.add("data.name", f"must be one of {_choices(DATASETS)}; got {_short(c.data.name)}")
    else:
        if c.data.name in NEEDS_PATH and not c.data.path and not problems.has("data.path"):
            problems.add("data.path", f"the {c.data.name} dataset needs the folder it is in")
        fixed = FIXED_IMAGE_SIZES.get(c.data.name)
        if fixed is not None and c.data.image_size != fixed and not problems.has("data.image_size"):
            problems.add("data.image_size", f"{c.data.name} images are {fixed}×{fixed}; got {_short(c.data.image_size)}")
        if (c.data.name == "demo" and not problems.has("data.demo_train") and not problems.has("batch_size")
                and c.data.demo_train < c.batch_size):
            problems.add("batch_size", f"must not exceed the number of demo training images ({c.data.demo_train}); "
                                       f"got {c.batch_size}")
    _one_of(problems, "on_nonfinite", c.on_nonfinite, NONFINITE_MODES)
    _one_of(problems, "data.loader", c.data.loader, LOADERS)
    if (c.data.loader == "stream" and c.data.name in DATASETS and c.data.name not in STREAMABLE
            and not problems.has("data.loader")):
        problems.add("data.loader", f"only {_choices(STREAMABLE)} can be streamed from disk; {c.data.name} is read "
                                    "into memory whole (use 'auto' or 'memory')")
    _one_of(problems, "amp_dtype", c.amp_dtype, AMP_DTYPES)
    _one_of(problems, "compile", c.compile, COMPILE_MODES)
    _one_of(problems, "lr_scaling", c.lr_scaling, LR_SCALINGS)
    _one_of(problems, "optim.name", c.optim.name, OPTIMIZERS)
    _one_of(problems, "optim.schedule", c.optim.schedule, SCHEDULES)
    milestones = c.optim.milestones
    if not problems.has("optim.milestones") and (
            any(not isinstance(m, int) or m < 1 or m > MAX_EPOCH for m in milestones) or milestones != sorted(milestones)):
        problems.add("optim.milestones", f"must be increasing epochs from 1 to {MAX_EPOCH}; got {_short(milestones)}")
    if not problems.has("kd") and c.kd.weight > 0:
        try:
            validate_options(KD_METHOD, {"temperature": c.kd.temperature})
        except ValueError as exc:
            if not problems.has("kd.temperature"):
                problems.add("kd.temperature", str(exc).split("; ", 1)[-1] if "; got" in str(exc) else str(exc))
    for i, pair in enumerate(c.pairs):
        _check_pair_form(problems, f"pairs[{i}]", pair)
    auto = [i for i, pair in enumerate(c.pairs) if pair.weight == AUTO_WEIGHT]
    if not problems.has("balance.batches") and c.balance.batches == 0:
        if c.balance.auto and c.terms:
            problems.add("balance.batches", "must be at least 1 when balance.auto is true: the weights are "
                                            "chosen from these batches")
        for i in auto:
            if not problems.has(f"pairs[{i}].weight"):
                problems.add(f"pairs[{i}].weight", f'"{AUTO_WEIGHT}" needs calibration batches: set '
                                                   "balance.batches to at least 1, or give a number")
    if not problems.has("init_epochs") and any(t.stage == Stage.INIT.value for t in c.terms) and c.init_epochs == 0:
        problems.add("init_epochs", "must be at least 1 when a pair's stage is \"init\"")


def _check_name(problems: Problems, field_name: str, value: str) -> None:
    if problems.has(field_name):
        return
    if not value or not value.strip():
        problems.add(field_name, "must be a non-empty name")
    elif len(value) > MAX_NAME_LENGTH:
        problems.add(field_name, f"must be at most {MAX_NAME_LENGTH} characters; got {len(value)}")
    elif any(ch in value for ch in "/\\") or value in (".", ".."):
        problems.add(field_name, f"must be a name without slashes; got {_short(value)}")
    elif not value.isprintable() or _has_direction_marks(value):
        problems.add(field_name, "must be printable text (no control or text-direction characters)")


def _check_path(problems: Problems, field_name: str, value: str, required: str = "") -> None:
    if problems.has(field_name):
        return
    if not value:
        if required:
            problems.add(field_name, required)
        return
    if len(value) > MAX_PATH_LENGTH:
        problems.add(field_name, f"is too long for a path ({len(value)} characters; at most {MAX_PATH_LENGTH})")
    elif not value.isprintable() or _has_direction_marks(value):
        problems.add(field_name, "must be a path of printable characters (no NUL, newline, control or "
                                 "text-direction characters)")
    elif any(len(part.encode("utf-8", "replace")) > 255 for part in Path(value).parts):
        problems.add(field_name, "has a folder or file name longer than 255 bytes, which no file system allows")


def _has_direction_marks(text: str) -> bool:
    return any(0x202A <= ord(ch) <= 0x202E or 0x2066 <= ord(ch) <= 0x2069 or ord(ch) in (0x200E, 0x200F)
               for ch in text)


def _check_pair_form(problems: Problems, prefix: str, pair: PairConfig) -> None:
    try:
        info = get_method(pair.method)
    except ValueError:
        if not problems.has(prefix + ".method"):
            problems.add(prefix + ".method", f"must be one of {_choices(METHODS)}; got {_short(pair.method)}")
        return
    for side in ("teacher", "student"):
        layers = getattr(pair, side)
        if problems.has(f"{prefix}.{side}"):
            continue
        if not isinstance(layers, list) or not all(isinstance(p, str) and p for p in layers) \
                or not info.layers.allows(len(layers)):
            problems.add(f"{prefix}.{side}", f"{info.short_name} takes {info.layers.describe()}; got {_short(layers)}")
        elif any(len(p) > 1000 for p in layers):
            problems.add(f"{prefix}.{side}", "a layer path is too long to be one")
    if (not problems.has(prefix + ".teacher") and not problems.has(prefix + ".student")
            and len(pair.teacher) != len(pair.student)):
        problems.add(prefix + ".student", f"needs as many layers as the teacher side ({len(pair.teacher)}); "
                                          f"got {len(pair.student)}")
    weight = pair.weight
    if weight == AUTO_WEIGHT:
        pass       # chosen when training starts; balance.batches is checked with the run
    elif not problems.has(prefix + ".weight"):
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            problems.add(prefix + ".weight", f"must be a finite number; got {_short(weight)}")
        elif weight < 0:
            problems.add(prefix + ".weight", f"must be at least 0; got {weight:g}")
        elif weight > MAX_TERM_WEIGHT:
            problems.add(prefix + ".weight", f"must be at most {MAX_TERM_WEIGHT:g}; got {weight:g}")
    if pair.stage not in PAIR_STAGES and not problems.has(prefix + ".stage"):
        problems.add(prefix + ".stage", f"must be one of {_choices(PAIR_STAGES)}; got {_short(pair.stage)}")


def _one_of(problems: Problems, name: str, value, allowed) -> None:
    if not problems.has(name) and value not in allowed:
        problems.add(name, f"must be one of {_choices(allowed)}; got {_short(value)}")


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
    """Write the run file (every field), atomically: after a kill the file is the old one or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, config_to_toml(config), field="")
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
        lines += [f"{k} = {_toml_value(v)}" for k, v in pair.items() if v is not None]
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
        escaped = "".join(_TOML_ESCAPES.get(ch, ch if ch.isprintable() else _unicode_escape(ch)) for ch in value)
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} to TOML")


def _unicode_escape(ch: str) -> str:
    return f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}"


_TOML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)
