"""Where a run can train, and the command lines that train a saved run file elsewhere.

Qt-free; the window asks it three things:

* :func:`device_choices` — the Device field's choices on this machine: those of
  :func:`featdistill_core.device.available_devices` (``auto``, ``cuda:i``…, ``mps``, ``cpu``) and, when
  ``torch.cuda.device_count() > 1``, one more: *all N GPUs*, which keeps ``device = "auto"`` in the
  run file (under torchrun each process takes its ``LOCAL_RANK``) and starts ``N`` processes.
* :func:`train_command` — the one place a command line to train a run file is made: ``featdistill
  train RUN.toml``, ``torchrun --nproc_per_node=N -m featdistill_core train RUN.toml`` and the
  multi-node form (``--nnodes``, ``--rdzv-backend=c10d``, ``--rdzv-endpoint=HOST:PORT``); with
  ``python=`` the same command as this machine starts it (``python -m featdistill_core`` /
  ``python -m torch.distributed.run``). :func:`remote_commands` lists them for people.
* :class:`RunProcess` — a training command started as a subprocess in its own process group, with its
  output in a log file; :meth:`RunProcess.stop` asks it to stop (SIGINT: the run checkpoints and writes
  its "stopped" record; torchrun passes the signal on to each rank) and escalates (SIGTERM, then
  SIGKILL to the group and every process started under it) when it does not end. (Windows has no
  process groups to signal: there a stop ends the command at once, and its last checkpoint stays.)
  Started with ``control=True`` (the window's own runs), it also takes commands on its standard input
  — :data:`PAUSE`, :data:`RESUME`, :data:`STOP`, one a line — that ``featdistill train --control stdin``
  reads (:func:`obey_commands`): pause and resume work on every platform, and a stop is the same
  orderly stop as Ctrl-C, Windows included. When the pipe closes (the window is gone) the run stops
  the same way, so it is never left training unwatched and stays resumable.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DeviceChoice", "LaunchCommand", "PAUSE", "RESUME", "RunProcess", "STOP", "device_choices", "gpu_count",
           "obey_commands", "remote_commands", "start_training_process", "train_command", "new_run_folder"]

TORCHRUN_MODULE = "torch.distributed.run"     # what the ``torchrun`` script runs
DEFAULT_PORT = 29500
KILL = getattr(signal, "SIGKILL", signal.SIGTERM)   # Windows has no SIGKILL (and no process groups)
STOP_GRACE_S = 60.0        # after SIGINT: a checkpoint at the next step, the models, the "stopped" record
TERM_GRACE_S = 15.0        # after SIGTERM, before SIGKILL
PAUSE, RESUME, STOP = "pause", "resume", "stop"     # the commands of ``featdistill train --control stdin``


def gpu_count() -> int:
    """How many CUDA devices this torch sees (0 for a CPU build)."""
    import torch

    try:
        return int(torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - a broken driver counts as none
        return 0


@dataclass(frozen=True)
class DeviceChoice:
    """One choice of the Device field: ``spec`` goes into the run file; ``processes`` > 1 means the run
    is started as ``torchrun --nproc_per_node=processes`` (one process per GPU)."""

    spec: str
    label: str
    available: bool
    processes: int = 1

    @property
    def distributed(self) -> bool:
        return self.processes > 1


def device_choices() -> list[DeviceChoice]:
    """The Device field's choices on this machine, in order: ``auto``, *all N GPUs* (only when there
    are several), each device, greyed-out ones (``available`` False) for what this machine lacks."""
    from featdistill_core.device import available_devices

    choices = [DeviceChoice(o.spec, o.label, o.available) for o in available_devices()]
    count = gpu_count()
    if count > 1:
        choices.insert(1, DeviceChoice("auto", f"all {count} GPUs (torchrun, {count} processes)", True,
                                       processes=count))
    return choices


@dataclass(frozen=True)
class LaunchCommand:
    """A command line: ``argv`` to run, ``text`` to show and copy (quoted for a POSIX shell)."""

    title: str
    argv: tuple[str, ...]
    note: str = ""

    @property
    def text(self) -> str:
        return shlex.join(self.argv)


def train_command(run_file, *, processes: int = 1, nnodes: int = 1, endpoint: str = "",
                  job_id: str = "", run_dir=None, resume=None, python: str | None = None,
                  standalone: bool = False, torchrun: bool = False, control: bool = False) -> tuple[str, ...]:
    """The command that trains ``run_file`` (or resumes the run folder ``resume``).

    ``processes`` 1 and ``nnodes`` 1: ``featdistill train RUN.toml``; otherwise ``torchrun
    --nproc_per_node=N -m featdistill_core train RUN.toml``, with ``--nnodes=M --rdzv-backend=c10d
    --rdzv-endpoint=HOST:PORT --rdzv-id=JOB`` for several machines (``endpoint`` is required then).
    ``python`` (e.g. ``sys.executable``): the same command through that interpreter, as this machine
    starts it. ``standalone``: torchrun's single-machine rendezvous on a free port (``--standalone``),
    so two runs started here never meet on one port. ``run_dir``: train into that (new or empty) folder
    (``--run-dir``). ``torchrun``: through torchrun even for one process. ``control``: take pause, resume
    and stop on standard input (``--control stdin``; one process only)."""
    if processes < 1 or nnodes < 1:
        raise ValueError("processes and nnodes must be at least 1")
    if resume is not None:
        tail = ["train", "--resume", str(resume)]
    else:
        tail = ["train", str(run_file)]
        if run_dir is not None:
            tail += ["--run-dir", str(run_dir)]
    if control:
        if processes != 1 or nnodes != 1 or torchrun:
            raise ValueError("--control stdin is for one process; torchrun's ranks are stopped by signals")
        tail += ["--control", "stdin"]
    if processes == 1 and nnodes == 1 and not torchrun:
        head = [python, "-m", "featdistill_core"] if python else ["featdistill"]
        return tuple(head + tail)
    head = [python, "-m", TORCHRUN_MODULE] if python else ["torchrun"]
    if nnodes > 1:
        if not endpoint:
            raise ValueError("a run on several machines needs the rendezvous endpoint HOST:PORT")
        head += [f"--nnodes={nnodes}", f"--nproc_per_node={processes}", "--rdzv-backend=c10d",
                 f"--rdzv-endpoint={endpoint}"]
        if job_id:
            head.append(f"--rdzv-id={job_id}")
    else:
        if standalone:
            head.append("--standalone")
        head.append(f"--nproc_per_node={processes}")
    return tuple(head + ["-m", "featdistill_core"] + tail)


def remote_commands(run_file, *, processes: int = 2, nnodes: int = 2, endpoint: str = "",
                    job_id: str = "featdistill", run_dir=None) -> list[LaunchCommand]:
    """What to type on another machine to train the saved ``run_file`` there (for people)."""
    host = endpoint or f"HOST:{DEFAULT_PORT}"
    commands = [
        LaunchCommand("One process (one GPU, or the CPU)", train_command(run_file),
                      "The run file's device decides where it trains."),
        LaunchCommand(f"All {processes} GPUs of one machine", train_command(run_file, processes=processes),
                      "torchrun starts one process per GPU; each takes its GPU from LOCAL_RANK "
                      "(device = \"auto\")."),
        LaunchCommand(f"{nnodes} machines, {processes} GPUs each",
                      train_command(run_file, processes=processes, nnodes=nnodes, endpoint=host, job_id=job_id),
                      f"Run the same command on every machine; {host.rsplit(':', 1)[0]} is the first machine, "
                      "reachable from the others on that port."),
    ]
    if run_dir is not None:
        commands.append(LaunchCommand("Continue a stopped or killed run", train_command(None, resume=run_dir),
                                      "Continues the run from its last checkpoint in the same folder."))
    return commands


def start_training_process(config=None, run_dir=None, *, resume=None, env: dict | None = None) -> RunProcess:
    """Train ``config`` into the new, empty folder ``run_dir`` (or continue the run folder ``resume``)
    in a process of its own: ``featdistill train --control stdin`` through this interpreter (the
    frozen app takes the same ``-m featdistill_core`` arguments), controlled through its standard input
    (:meth:`RunProcess.send`). ``config`` is written to a temporary run file with absolute paths (as
    this process reads its relative paths: against the current folder), removed by
    :meth:`RunProcess.close`. ``env``: the process's environment (default: this one's); outside a frozen
    app the folder holding ``featdistill_core`` is put first on its ``PYTHONPATH``, so the command finds
    the same code as this process."""
    import sys

    from featdistill_core.config import save_config, with_absolute_paths

    env = dict(os.environ if env is None else env)
    if not getattr(sys, "frozen", False):
        here = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([here] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    temporary: tuple = ()
    if resume is None:
        if config is None or run_dir is None:
            raise ValueError("give the run's config and its run folder, or resume=RUN_DIR")
        handle, name = tempfile.mkstemp(prefix="featdistill-run-", suffix=".toml")
        os.close(handle)
        temporary = (Path(name),)
        try:
            save_config(with_absolute_paths(config), name)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        argv = train_command(name, run_dir=Path(run_dir).resolve(), python=sys.executable, control=True)
    else:
        argv = train_command(None, resume=Path(resume).resolve(), python=sys.executable, control=True)
    process = RunProcess(argv, env=env, control=True, temporary=temporary)
    try:
        return process.start()
    except BaseException:
        process.close()
        raise


def new_run_folder(config) -> Path:
    """A new, empty run folder for ``config`` (``output_dir/name-date-time``, made exclusively), to hand
    to ``featdistill train --run-dir`` so that whoever starts the command knows where it writes."""
    from featdistill_core.runfolder import new_run_dir

    return new_run_dir(config)


# ---- a training command as a subprocess ------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """Every process started under ``pid`` (Linux: read from /proc; elsewhere none are known).

    Each process's ``/proc/PID/task/TID/children`` lists its own children, so only the tree under
    ``pid`` is read; where the kernel keeps no such file, every process's ``stat`` is read once
    instead (hundreds of files on a desktop)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    if (proc / str(pid) / "task").is_dir() and (proc / "self" / "task" / str(os.getpid()) / "children").exists():
        return _children_from_lists(proc, pid)
    return _children_by_scan(proc, pid)


def _children_by_scan(proc: Path, pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _children_from_lists(proc: Path, pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list((proc / str(parent) / "task").iterdir())
        except OSError:
            continue                                   # it has ended meanwhile
        for task in tasks:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            for child in children:
                if child not in found:
                    found.append(child)
                    todo.append(child)
    return found


CHILDREN_CHECK_S = 2.0     # how often a running command's process tree is read again (RunProcess.poll)


@dataclass
class RunProcess:
    """A training command (``argv``) run as a subprocess in a session of its own, its output (stdout
    and stderr) in ``log_path`` (a temporary file unless given).

    Poll with :meth:`poll` (the exit status or None); :meth:`stop` asks it to stop and
    :meth:`escalate` (call it now and then until it has ended) sends SIGTERM after ``stop_grace_s``
    and SIGKILL after ``term_grace_s`` more, to the process group and to every process started under
    it (torchrun's ranks run in sessions of their own). ``control``: the command reads
    ``--control stdin`` (see :func:`train_command`); :meth:`send` writes it a command, :meth:`stop` asks
    through the pipe first."""

    argv: tuple[str, ...]
    log_path: Path | None = None
    env: dict | None = None
    control: bool = False
    temporary: tuple = ()             # files of the command's (a run file copy), removed by close()
    stop_grace_s: float = STOP_GRACE_S
    term_grace_s: float = TERM_GRACE_S
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)
    stop_requested_at: float | None = field(default=None, init=False)
    signals_sent: list = field(default_factory=list, init=False)
    _known: set = field(default_factory=set, init=False, repr=False)
    _children_due: float = field(default=0.0, init=False, repr=False)   # time.monotonic() of the next look

    def start(self) -> "RunProcess":
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="featdistill-run-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(self.log_path, "ab") as log:
            kwargs = {"start_new_session": True} if os.name == "posix" else {
                "creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
            self.process = subprocess.Popen(list(self.argv), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.PIPE if self.control else subprocess.DEVNULL,
                                            env=env, **kwargs)
        return self

    def send(self, command: str) -> bool:
        """Write ``command`` (:data:`PAUSE`, :data:`RESUME`, :data:`STOP`) to a ``control`` process;
        False when it cannot take it (not started with ``control``, or already gone)."""
        if command not in (PAUSE, RESUME, STOP):
            raise ValueError(f"unknown command {command!r}")
        stdin = self.process.stdin if self.process is not None else None
        if stdin is None or self.process.poll() is not None:
            return False
        try:
            stdin.write(f"{command}\n".encode())
            stdin.flush()
        except (OSError, ValueError):          # the pipe is closed: the process is ending
            return False
        return True

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def poll(self) -> int | None:
        """The exit status once the command has ended (None while it runs)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            if time.monotonic() >= self._children_due:
                self._remember_children()
            return None
        return self.process.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def _remember_children(self) -> None:
        self._children_due = time.monotonic() + CHILDREN_CHECK_S
        if self.process is not None and os.name == "posix":
            self._known.update(_children(self.process.pid))

    def _signal(self, signum: int, *, group: bool) -> None:
        """``signum`` to the command's process group; with ``group``, also to every process started
        under it (and their groups: torchrun's ranks each lead a session of their own)."""
        if self.process is None:
            return
        self.signals_sent.append(signum)
        if os.name != "posix":
            with contextlib.suppress(OSError):
                self.process.send_signal(signum if signum != signal.SIGINT else signal.SIGTERM)
            return
        with contextlib.suppress(OSError):
            os.killpg(self.process.pid, signum)
        if group:
            for pid in sorted(self._known):
                with contextlib.suppress(OSError):
                    os.killpg(pid, signum)
                with contextlib.suppress(OSError):
                    os.kill(pid, signum)

    def stop(self) -> None:
        """Ask the run to stop at its next step (SIGINT to its process group; torchrun hands it to its
        ranks). Call :meth:`escalate` until :meth:`poll` says it ended."""
        if self.process is None or self.process.poll() is not None or self.stop_requested_at is not None:
            return
        self._remember_children()
        self.stop_requested_at = time.monotonic()
        if not self.send(STOP):
            self._signal(signal.SIGINT, group=False)

    def escalate(self) -> None:
        """SIGTERM once ``stop_grace_s`` has passed since :meth:`stop`, SIGKILL ``term_grace_s`` later;
        also kills what is left of the group once the command itself has ended."""
        if self.process is None or self.stop_requested_at is None:
            return
        if self.process.poll() is not None:
            self.kill_leftovers()
            return
        waited = time.monotonic() - self.stop_requested_at
        if waited >= self.stop_grace_s + self.term_grace_s and KILL not in self.signals_sent[1:]:
            self._signal(KILL, group=True)
        elif waited >= self.stop_grace_s and signal.SIGTERM not in self.signals_sent:
            self._remember_children()
            self._signal(signal.SIGTERM, group=True)

    def kill_leftovers(self) -> None:
        """SIGKILL whatever the command started that outlived it."""
        if os.name != "posix":
            return
        for pid in sorted(self._known):
            with contextlib.suppress(OSError):
                os.kill(pid, KILL)
        if self.process is not None:
            with contextlib.suppress(OSError):
                os.killpg(self.process.pid, KILL)

    def alive(self) -> list[int]:
        """The processes of the command still running (itself and those started under it)."""
        alive = []
        for pid in ([self.process.pid] if self.process is not None else []) + sorted(self._known):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            except PermissionError:
                pass
            if _is_zombie(pid):
                continue
            alive.append(pid)
        return alive

    def output_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of its output."""
        if self.log_path is None:
            return ""
        try:
            with open(self.log_path, "rb") as stream:
                stream.seek(max(0, os.fstat(stream.fileno()).st_size - 65536))
                text = stream.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])

    def close(self) -> None:
        """Forget the log file (after the command has ended)."""
        if self.process is not None and self.process.poll() is None:
            return
        if self.process is not None and self.process.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                self.process.stdin.close()
        for path in self.temporary:
            with contextlib.suppress(OSError):
                Path(path).unlink()
        if self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()


def obey_commands(fd: int, trainer) -> None:
    """Read :data:`PAUSE`, :data:`RESUME` and :data:`STOP` lines from the file descriptor ``fd`` (standard
    input: 0) and hand each to ``trainer``, until it ends; its end asks the run to stop, as :data:`STOP`
    does (whoever started the process is gone). Unknown lines are ignored. Run it on a daemon thread:
    it reads the descriptor itself, not ``sys.stdin``, whose buffer lock a thread blocked in it would
    still hold when the interpreter shuts down (a fatal error at exit)."""
    actions = {PAUSE: trainer.pause, RESUME: trainer.resume, STOP: trainer.request_stop}
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            action = actions.get(line.decode("utf-8", "replace").strip().lower())
            if action is not None:
                action()
    trainer.request_stop()


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    try:
        return stat.rsplit(")", 1)[1].split()[0] == "Z"
    except IndexError:
        return False


