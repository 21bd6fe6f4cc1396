"""Distributed training facts in one place: which process this is, and the few collectives a run needs.

``torchrun --nproc_per_node=N -m featdistill_core train RUN.toml`` starts N processes (ranks), each
with ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` in its
environment. :func:`launch_env` reads them; :func:`start` opens the process group (NCCL when the run
trains on CUDA, gloo on the CPU) and :func:`stop` closes it. Everything else asks :func:`current`,
which is the one-process :data:`SINGLE` when no group was started, so a run without torchrun takes
no collective at all.

What a distributed run does differently (the trainer's lines, each guarded by :attr:`Dist.active`):

* the loader gives each rank its share of every global batch (``batch_size`` is the global batch);
* the student and the terms' adapters are trained inside one ``DistributedDataParallel`` module,
  so every trainable gradient is averaged over the ranks;
* the losses, train accuracy and test accuracy are summed over the ranks (:meth:`Dist.sum`), so
  every rank reports, checkpoints and decides the same;
* only rank 0 (:attr:`Dist.is_main`) writes the run folder, its snapshots, checkpoints and models.

This module imports only torch.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist

LR_SCALINGS = ("none", "linear")
"""``lr_scaling``: ``"none"`` keeps ``optim.lr``; ``"linear"`` multiplies it by the world size."""

TIMEOUT_MINUTES = 10.0
"""How long a collective waits for a rank that does not come (a rank killed, a node gone)."""


@dataclass(frozen=True)
class LaunchEnv:
    """What torchrun told this process: its rank, its rank on this node, and how many ranks there are."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def launched(self) -> bool:
        """Whether this process was started by torchrun (or another launcher setting ``WORLD_SIZE``)."""
        return self.world_size > 1


def launch_env(environ=None) -> LaunchEnv:
    """``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` of the environment (one process when unset).

    Raises ValueError for values that are not numbers or do not fit together."""
    environ = os.environ if environ is None else environ
    try:
        world = int(environ.get("WORLD_SIZE", "1"))
        rank = int(environ.get("RANK", "0"))
        local = int(environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ValueError("WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers (torchrun sets them)") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(f"RANK {rank} / WORLD_SIZE {world} / LOCAL_RANK {local} do not fit together")
    return LaunchEnv(rank, local, world)


def launch_problems(env: LaunchEnv, *, batch_size, device_spec: str, device: torch.device | None,
                    sync_batchnorm: bool) -> list[tuple[str, str]]:
    """(field, message) for each setting a run launched as ``env`` cannot take (none in one process):
    the global ``batch_size`` must split evenly over the ranks, ``device`` must not pin every rank to
    one GPU, and SyncBatchNorm needs CUDA."""
    if not env.launched:
        return []
    n = env.world_size
    problems = []
    if isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size % n:
        problems.append(("batch_size", f"is the global batch and must divide evenly over the {n} processes of "
                                       f"this torchrun launch (each takes batch_size / {n}); got {batch_size}"))
    if isinstance(device_spec, str) and device_spec.startswith("cuda:"):
        problems.append(("device", f"{device_spec!r} would put all {n} processes on one GPU; under torchrun use "
                                   "'auto' or 'cuda' (each process takes cuda:LOCAL_RANK)"))
    if sync_batchnorm is True and device is not None and device.type != "cuda":
        problems.append(("sync_batchnorm", f"needs CUDA GPUs (PyTorch's SyncBatchNorm has no {device.type} "
                                           "kernel); set it to false"))
    return problems


@dataclass(frozen=True)
class Dist:
    """This process's place in the run (:data:`SINGLE` when there is no process group)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str = ""

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run folder."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: ``cuda:LOCAL_RANK`` for a CUDA run, ``device`` otherwise."""
        if self.active and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over every rank (a copy; ``tensor`` itself when not distributed)."""
        if not self.active:
            return tensor
        total = tensor.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def from_main(self, make: Callable[[], Any]) -> Any:
        """``make()`` run on rank 0 only, its result (or its error) given to every rank.

        An error on rank 0 is re-raised there and raised on every other rank as the same type with the
        same message (so that every rank prints the same line)."""
        if not self.active:
            return make()
        box: list[Any] = [None]
        error = None
        if self.is_main:
            try:
                box[0] = ("ok", make())
            except Exception as exc:  # noqa: BLE001 - given to every rank, then re-raised
                error = exc
                box[0] = ("error", _picklable(exc))
        dist.broadcast_object_list(box, src=0)
        if error is not None:
            raise error
        if box[0][0] == "error":
            raise box[0][1]
        return box[0][1]

    def everywhere(self, make: Callable[[], Any]) -> Any:
        """``make()`` run on every rank (validation, say). If it raises on any rank, every rank raises:
        its own error, or that of the lowest rank that failed (so that no rank goes on alone and waits
        for the others in a collective)."""
        try:
            result, error = make(), None
        except Exception as exc:  # noqa: BLE001 - shared with every rank, then raised
            result, error = None, exc
        if self.active:
            gathered: list[Any] = [None] * self.world_size
            dist.all_gather_object(gathered, None if error is None else _picklable(error))
            first = next((e for e in gathered if e is not None), None)
            if error is None and first is not None:
                raise first
        if error is not None:
            raise error
        return result

    def all_agree(self, ok: bool) -> bool:
        """Whether ``ok`` holds on every rank (False everywhere if one rank says False)."""
        if not self.active:
            return ok
        flag = torch.tensor([0 if ok else 1], dtype=torch.int64, device=self._collective_device())
        dist.all_reduce(flag, op=dist.ReduceOp.SUM)
        return int(flag.item()) == 0

    def broadcast_module(self, module: torch.nn.Module, *, buffers_only: bool = False) -> None:
        """Rank 0's parameters and buffers (or its buffers only: BatchNorm statistics) copied into
        ``module`` on every rank."""
        if not self.active:
            return
        tensors = list(module.buffers()) + ([] if buffers_only else list(module.parameters()))
        with torch.no_grad():
            for tensor in tensors:
                dist.broadcast(tensor.data, src=0)

    def describe(self, exc: BaseException, text: str) -> str:
        """``text`` (the one line of ``exc``), saying so when a collective lost another rank."""
        lost = isinstance(exc, getattr(dist, "DistError", ())) or (
            isinstance(exc, RuntimeError) and any(word in text for word in _LOST_PEER))   # gloo in backward: plain
        if self.active and lost:
            return (f"another process of this torchrun launch stopped or cannot be reached (killed, failed, or its "
                    f"node gone), so this one (rank {self.rank} of {self.world_size}) stops too: {text}")
        return text

    def _collective_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")


_LOST_PEER = ("gloo", "NCCL", "Connection closed", "Connection reset", "c10d")

SINGLE = Dist()
_current = SINGLE


def current() -> Dist:
    """This process's :class:`Dist` (:data:`SINGLE` unless :func:`start` opened a process group)."""
    return _current


def start(env: LaunchEnv, *, cuda: bool) -> Dist:
    """Open the process group of a torchrun launch: NCCL when ``cuda`` (each rank on
    ``cuda:LOCAL_RANK``), gloo otherwise. A one-process launch opens nothing."""
    global _current
    if not env.launched:
        return SINGLE
    backend = "nccl" if cuda else "gloo"
    if cuda:
        if env.local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {env.local_rank} has no GPU: this node has {torch.cuda.device_count()} "
                             "CUDA GPU(s); start at most that many processes per node (--nproc_per_node)")
        torch.cuda.set_device(env.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=env.rank, world_size=env.world_size,
                                timeout=datetime.timedelta(minutes=TIMEOUT_MINUTES))
    _current = Dist(env.rank, env.local_rank, env.world_size, backend)
    return _current


def stop() -> None:
    """Close the process group (if :func:`start` opened one)."""
    global _current
    if _current.active and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a peer gone: nothing left to close cleanly
            pass
    _current = SINGLE


def _picklable(exc: Exception) -> Exception:
    """``exc`` if it survives pickling (ConfigError, WriteError ... do), else a RuntimeError of its text."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return RuntimeError(str(exc))


__all__ = ["LR_SCALINGS", "Dist", "LaunchEnv", "SINGLE", "current", "launch_env", "launch_problems", "start", "stop"]
