"""Checkpoints: the whole run state in one file, written atomically, read without running code.

A run folder keeps two checkpoints:

* ``checkpoint-last.pt`` — the latest: written at the end of every epoch, every
  ``checkpoint.every_minutes`` within an epoch, and when the run stops (a stop request, Ctrl-C,
  SIGTERM) or fails between two steps. ``featdistill train --resume RUN_DIR`` continues from it.
* ``checkpoint-best.pt`` — the end of the epoch with the highest test accuracy in the run's last stage
  (a hard link to the last checkpoint when it was written, a copy where links are not supported).

Each is ``torch.save`` of a plain dict (``format``, ``reason``, ``fingerprint``, ``saved_at`` and the
:meth:`~featdistill_core.runstate.RunState.state_dict` under ``state``) holding only tensors, numbers,
strings, lists and dicts, and is read back with ``torch.load(..., weights_only=True)``, which refuses
any other Python object: a hostile checkpoint cannot run code. The file is written through
:func:`featdistill_core.atomic.atomic_file`, so after a kill it is the previous or the new checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import shutil
import time
from pathlib import Path

import torch

from featdistill_core.atomic import atomic_file

CHECKPOINT_LAST = "checkpoint-last.pt"
CHECKPOINT_BEST = "checkpoint-best.pt"
FORMAT = "featdistill-checkpoint"
REASONS = ("epoch", "timed", "stop", "failure")

__all__ = [
    "CHECKPOINT_BEST", "CHECKPOINT_LAST", "CheckpointError", "checkpoint_summary", "read_checkpoint",
    "save_checkpoint",
]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, is not a featdistill checkpoint, or does not fit the run."""


def save_checkpoint(run_dir, state: dict, *, reason: str, fingerprint: str, best: bool = False) -> Path:
    """Write ``state`` (a run state dict) as the run folder's last checkpoint, and as its best too if
    ``best``. Returns the path of the last checkpoint. Raises :class:`~featdistill_core.atomic.WriteError`."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT_LAST
    payload = {"format": FORMAT, "reason": reason, "fingerprint": fingerprint, "saved_at": time.time(),
               "state": state}
    with atomic_file(path) as file:
        torch.save(payload, file)
    if best:
        _copy_atomically(path, run_dir / CHECKPOINT_BEST)
    return path


def _copy_atomically(source: Path, target: Path) -> None:
    """``target`` becomes the same content as ``source``: a hard link renamed over it, or a copy."""
    link = target.with_name(f".{target.name}.link.tmp")
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    try:
        os.link(source, link)
        os.replace(link, target)
        return
    except OSError:
        with contextlib.suppress(OSError):
            link.unlink()
    with open(source, "rb") as original, atomic_file(target) as copy:
        shutil.copyfileobj(original, copy)


def read_checkpoint(path, *, mmap: bool = False) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code runs).

    With ``mmap`` the tensors are mapped, not read (cheap: for a quick look at the position)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty")
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:
            raise CheckpointError(f"refusing to load checkpoint {path}: it holds a Python object ({found.group(1)}), "
                                  "not only tensors and plain containers") from None
        raise CheckpointError(f"checkpoint {path} is damaged or not a checkpoint") from None
    except Exception:  # noqa: BLE001 - a damaged zip or pickle fails in many ways; all mean the same
        raise CheckpointError(f"checkpoint {path} is damaged or not a checkpoint") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or not isinstance(payload.get("state"), dict):
        raise CheckpointError(f"{path} is not a featdistill checkpoint")
    return payload


def checkpoint_summary(path) -> dict | None:
    """The position, reason and time of a checkpoint (None if it cannot be read)."""
    try:
        payload = read_checkpoint(path, mmap=True)
        position = payload["state"]["position"]
        return {"stage_index": int(position["stage_index"]), "epoch": int(position["epoch"]),
                "batch": int(position["batch"]), "step": int(position["step"]),
                "reason": str(payload.get("reason", "")), "saved_at": float(payload.get("saved_at", 0.0))}
    except (CheckpointError, KeyError, TypeError, ValueError):
        return None

