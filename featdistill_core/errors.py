"""Problems with a run, each naming its field, and a collector that reports all of them at once.

Every user-facing problem of the core is a :class:`ConfigError`. It carries one or more
:class:`Problem`\\ s, each a field path (``"optim.lr"``, ``"pairs[1].teacher"``, ``""`` for the file as
a whole) and a message in plain words. Validation collects *every* problem of a run in a
:class:`Problems` before raising, so the CLI can print them all (one line each) and the window can
mark every bad field at once::

    problems = Problems()
    problems.add("optim.lr", "must be greater than 0; got 0")
    problems.add("batch_size", "must be at least 1; got 0")
    problems.raise_if_any()      # ConfigError with both

``str(error)`` is one ``field: message`` line per problem; ``error.field`` and ``error.reason`` are the
first problem's, for code that handles one. A problem's message is one line; what would not fit on
it (the full list of a weights file's keys that do not fit, say) can go into ``error.details[field]``,
for a window's "details" box (``problems.add(field, message, details=...)``). :func:`field_parts` splits a field path into its parts
(``"pairs[3].teacher"`` → ``("pairs", 3, "teacher")``), for code that places a problem at a widget.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping, NamedTuple


_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def field_parts(field: str) -> tuple[str | int, ...]:
    """The parts of a field path: names as strings, list indices as ints.

    ``"optim.lr"`` → ``("optim", "lr")``, ``"pairs[3].teacher"`` → ``("pairs", 3, "teacher")``,
    ``""`` (the file as a whole) → ``()``.
    """
    return tuple(int(index) if index else name for name, index in _PART.findall(field or ""))


class Problem(NamedTuple):
    """One thing wrong with a run: where (a dotted field path, "" for the whole file) and what."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class ConfigError(ValueError):
    """One or more problems with a run, found before (or, rarely, while) it trains.

    ``ConfigError(field, message)`` is a single problem; :meth:`from_problems` makes one of several.
    """

    def __init__(self, field_name: str, message: str, *, problems: Iterable[Problem] | None = None,
                 details: Mapping[str, str] | None = None):
        found = tuple(problems) if problems is not None else (Problem(field_name, message),)
        if not found:
            found = (Problem(field_name, message),)
        self.problems: tuple[Problem, ...] = found
        self.field = found[0].field
        self.reason = found[0].message
        self.details: dict[str, str] = {k: v for k, v in (details or {}).items() if v}   # field -> longer text
        super().__init__("\n".join(str(p) for p in found))

    @classmethod
    def from_problems(cls, problems: Iterable[Problem], details: Mapping[str, str] | None = None) -> "ConfigError":
        found = tuple(problems)
        if not found:
            raise ValueError("ConfigError.from_problems needs at least one problem")
        return cls(found[0].field, found[0].message, problems=found, details=details)

    def __reduce__(self):   # picklable (multiprocessing, torchrun ranks)
        return (_rebuild, (self.problems, self.details))


def _rebuild(problems, details=None):
    return ConfigError.from_problems((Problem(*p) for p in problems), details)


class Problems:
    """Collects problems; :meth:`raise_if_any` raises them together as one :class:`ConfigError`."""

    def __init__(self) -> None:
        self._items: list[Problem] = []
        self.details: dict[str, str] = {}

    def add(self, field_name: str, message: str, details: str = "") -> None:
        problem = Problem(field_name, message)
        if problem not in self._items:
            self._items.append(problem)
        if details:
            self.details.setdefault(field_name, details)

    def extend(self, error: ConfigError) -> None:
        for problem in error.problems:
            self.add(problem.field, problem.message, getattr(error, "details", {}).get(problem.field, ""))

    def has(self, prefix: str) -> bool:
        """Whether a problem was recorded at ``prefix`` or below it (``"pairs[0]"`` covers ``pairs[0].teacher``)."""
        return any(p.field == prefix or p.field.startswith(prefix + ".") or p.field.startswith(prefix + "[")
                   for p in self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(self._items)

    def raise_if_any(self) -> None:
        if self._items:
            raise ConfigError.from_problems(self._items, self.details)


__all__ = ["ConfigError", "Problem", "Problems", "field_parts"]
