"""Writing files so that a kill, a full disk or a second Ctrl-C never leaves half a file behind.

Every file of a run folder except ``metrics.jsonl`` is written with :func:`atomic_file` (or
:func:`write_atomic`): the bytes go to a temporary file in the same folder (``.NAME.XXXX.tmp``),
which is flushed, fsynced and renamed over ``NAME``; then the folder itself is fsynced. After a kill
at any moment ``NAME`` is absent, its previous complete version or its new complete version. On any
error (a full disk, a KeyboardInterrupt) the temporary file is removed; one left by ``kill -9`` is
removed by :func:`remove_stale_temporaries` when the folder is next written, and readers ignore it.

``metrics.jsonl`` is appended to, one event per line: :class:`LineLog` writes each whole line and
flushes it, and when a write fails part way (a full disk) it cuts the file back to its last whole
line, so the log is never torn and never left as an empty file.

A failed write raises :class:`WriteError`, an ``OSError`` whose message names the file and whose
``field`` names the run-file setting that chose its folder (``output_dir``).

These few functions are the only place a run folder's bytes are written: a distributed run that lets
only rank 0 write needs a test here and nowhere else.

Test hooks, read from the environment (used by the fault suite, never set in normal use):

* ``FEATDISTILL_TEST_WRITE_PAUSE=SECONDS`` pauses every atomic write half way through (after half the
  bytes are in the temporary file) and first prints ``featdistill-test: writing NAME`` on stderr, so
  a test can kill the process in the middle of a write. ``FEATDISTILL_TEST_WRITE_PAUSE_MATCH=TEXT``
  limits the pause to files whose name contains TEXT.
* ``FEATDISTILL_TEST_DISK_BYTES=N`` makes writes fail with ``ENOSPC`` (no space left on device) once
  N bytes have been written by this process: a full disk without a small file system.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
from pathlib import Path

TEMP_SUFFIX = ".tmp"
OUTPUT_FIELD = "output_dir"

__all__ = ["LineLog", "WriteError", "atomic_file", "is_temporary", "remove_stale_temporaries", "write_atomic"]


class WriteError(OSError):
    """A file that could not be written: ``str()`` is ``cannot write PATH: REASON``."""

    def __init__(self, path, cause: BaseException | str, field: str = OUTPUT_FIELD):
        reason = cause if isinstance(cause, str) else (getattr(cause, "strerror", None) or str(cause) or "write failed")
        code = getattr(cause, "errno", None)
        super().__init__(code, reason)
        self.path = str(path)
        self.reason = reason
        self.field = field

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"

    def __reduce__(self):
        return (_rebuild_write_error, (self.path, self.reason, self.field))


def _rebuild_write_error(path, reason, field):
    return WriteError(path, reason, field)


# ---- test hooks --------------------------------------------------------------------------------

_written = 0


def _count(nbytes: int) -> None:
    """The injected full disk of ``FEATDISTILL_TEST_DISK_BYTES``."""
    global _written
    limit = os.environ.get("FEATDISTILL_TEST_DISK_BYTES")
    if not limit:
        return
    _written += nbytes
    if _written > int(limit):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _pause_for(path: Path) -> float:
    pause = os.environ.get("FEATDISTILL_TEST_WRITE_PAUSE")
    if not pause:
        return 0.0
    match = os.environ.get("FEATDISTILL_TEST_WRITE_PAUSE_MATCH", "")
    return float(pause) if match in path.name else 0.0


class _TestFile:
    """A file object for the test hooks: counts bytes (injected full disk) and pauses half way."""

    def __init__(self, file, path: Path, pause: float, expected: int | None):
        self._file, self._path, self._pause = file, path, pause
        self._expected = expected
        self._done = 0
        self._paused = pause <= 0

    def write(self, data) -> int:
        data = bytes(data)
        if not self._paused and (self._expected is None or self._done + len(data) >= self._expected // 2):
            half = len(data) // 2 if self._expected is None else max(0, self._expected // 2 - self._done)
            self._raw_write(data[:half])
            self._file.flush()
            self._paused = True
            os.write(2, f"featdistill-test: writing {self._path.name}\n".encode())
            deadline = time.monotonic() + self._pause
            while time.monotonic() < deadline:      # in slices: a signal taken by another thread still
                time.sleep(0.01)                    # gets its Python handler run within 10 ms
            self._raw_write(data[half:])
            return len(data)
        self._raw_write(data)
        return len(data)

    def _raw_write(self, data: bytes) -> None:
        _count(len(data))
        self._file.write(data)
        self._done += len(data)

    def __getattr__(self, name):        # seek, tell, read, fileno …: the real file's (writers need them)
        return getattr(self._file, name)


def _hooks_active() -> bool:
    return bool(os.environ.get("FEATDISTILL_TEST_WRITE_PAUSE") or os.environ.get("FEATDISTILL_TEST_DISK_BYTES"))


# ---- atomic files ----------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_file(path, *, field: str = OUTPUT_FIELD, size_hint: int | None = None):
    """Open a temporary file next to ``path`` for writing (binary); on leaving the block without an
    error it becomes ``path`` (flushed, fsynced, renamed, folder fsynced). On any error the temporary
    file is removed, ``path`` is left as it was, and an ``OSError`` becomes a :class:`WriteError`."""
    path = Path(path)
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise WriteError(path, exc, field) from exc
    try:
        with os.fdopen(fd, "wb") as file:
            target = _TestFile(file, path, _pause_for(path), size_hint) if _hooks_active() else file
            yield target
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        _fsync_folder(path.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        interrupt = _interrupt_in(exc)
        if interrupt is not None and interrupt is not exc:
            raise interrupt from None       # Ctrl-C inside a serialiser's callback comes out as its own error
        cause = _os_error_in(exc)
        if cause is not None and not isinstance(exc, WriteError):
            raise WriteError(path, cause, field) from exc
        raise


def _interrupt_in(exc: BaseException) -> KeyboardInterrupt | None:
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _os_error_in(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``: itself, or one it was raised from or while handling (a serialiser
    such as ``torch.save`` may turn a full disk into its own error)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError):
            return exc
        if isinstance(exc, KeyboardInterrupt):
            return None
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def write_atomic(path, data: bytes | str, *, field: str = OUTPUT_FIELD) -> Path:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` atomically (see :func:`atomic_file`)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_file(path, field=field, size_hint=len(data)) as file:
        file.write(data)
    return Path(path)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_temporary(name: str) -> bool:
    """Whether a file name is one of :func:`atomic_file`'s temporary files."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def remove_stale_temporaries(folder) -> list[Path]:
    """Remove the temporary files a killed writer left in ``folder``; return what was removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if entry.is_file() and is_temporary(entry.name):
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed


# ---- the one appended file -------------------------------------------------------------------


class LineLog:
    """A file of whole lines, appended to and flushed one line at a time (``metrics.jsonl``).

    The file is created by the first line, so a run that cannot write even that leaves no empty file.
    A line that cannot be written in full is taken back out (the file is cut to its previous length).
    """

    def __init__(self, path, *, field: str = OUTPUT_FIELD):
        self.path = Path(path)
        self.field = field
        self._fd: int | None = None

    def repair(self) -> bool:
        """Cut a last line without its newline (a writer killed mid-line); True if something was cut."""
        try:
            with open(self.path, "rb+") as file:
                data = file.read()
                if not data or data.endswith(b"\n"):
                    return False
                file.truncate(data.rfind(b"\n") + 1)
                return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise WriteError(self.path, exc, self.field) from exc

    def append(self, line: str) -> None:
        data = (line.rstrip("\n") + "\n").encode("utf-8")
        created = False
        if self._fd is None:
            created = not self.path.exists()
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as exc:
                raise WriteError(self.path, exc, self.field) from exc
        fd = self._fd
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                _count(len(view))
                written = os.write(fd, view)
                view = view[written:]
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
                if start == 0 and created:
                    self.close()
                    os.unlink(self.path)
            if isinstance(exc, OSError):
                raise WriteError(self.path, exc, self.field) from exc
            raise

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)
