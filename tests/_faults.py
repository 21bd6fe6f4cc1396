"""Helpers of the fault suite: a `featdistill` child process, and the check that a run folder is valid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from featdistill_core.atomic import is_temporary
from featdistill_core.checkpoint import read_checkpoint
from featdistill_core.config import load_config
from featdistill_core.runfolder import load_run

ROOT = Path(__file__).resolve().parents[1]


def run_numbers(record):
    """Everything a resumed run must reproduce exactly (images/s, being timing, is left out)."""
    return ([(str(e.stage), e.step, e.epoch, e.losses, e.total, e.lr) for e in record.steps],
            [(str(e.stage), e.epoch, e.train_acc, e.test_acc, e.teacher_acc) for e in record.epochs],
            [(str(s.stage), s.step, [p.student.tobytes() for p in s.pairs]) for s in record.snapshots],
            record.finished.metrics if record.finished else None)


def child_env(**extra) -> dict:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
    for key in [k for k in env if k.startswith("FEATDISTILL_TEST_")]:
        del env[key]
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start(args, folder: Path, **env) -> tuple[subprocess.Popen, Path, Path]:
    """``python -m featdistill_core ARGS`` in its own session (so SIGINT reaches Python as Ctrl-C does),
    its output going to files in ``folder``."""
    stamp = f"{time.monotonic_ns()}"
    out, err = folder / f"out-{stamp}.txt", folder / f"err-{stamp}.txt"
    with open(out, "wb") as o, open(err, "wb") as e:
        process = subprocess.Popen([sys.executable, "-m", "featdistill_core", *map(str, args)], stdout=o, stderr=e,
                                   env=child_env(**env), start_new_session=True, cwd=str(folder))
    return process, out, err


def wait_for(condition, timeout: float, process=None, poll: float = 0.01) -> bool:
    """Wait until ``condition()`` (True) or ``timeout`` or ``process`` has exited (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process is not None and process.poll() is not None:
            return bool(condition())
        time.sleep(poll)
    return False


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text, text[-3000:]


def check_folder(folder: Path) -> dict:
    """Assert that every file of a run folder is whole: absent, or a complete, readable file.

    Temporaries left by a kill (``.NAME.XXXX.tmp``) are allowed (readers ignore them; the next
    writer removes them). Returns what was found."""
    found = {"temporaries": 0, "files": 0}
    for path in sorted(folder.rglob("*")):
        if path.is_dir():
            continue
        if is_temporary(path.name):
            found["temporaries"] += 1
            continue
        found["files"] += 1
        size = path.stat().st_size
        assert size > 0, f"{path} is empty"
        name = path.name
        if name == "run.toml":
            load_config(path)
        elif name == "metrics.jsonl":
            data = path.read_bytes()
            assert data.endswith(b"\n"), f"{path}: last line torn"
            for line in data.decode("utf-8").splitlines():
                json.loads(line, parse_constant=_refuse)        # strict JSON: no NaN / Infinity tokens
        elif name.endswith(".safetensors"):
            from safetensors.torch import load_file

            load_file(str(path))
        elif name.endswith(".pt"):
            read_checkpoint(path)
        elif name.endswith(".npz"):
            with np.load(path) as arrays:
                for key in arrays.files:
                    arrays[key]
        elif name.endswith(".json"):
            json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse)
        elif name in ("error.txt", "run.lock"):
            path.read_text(encoding="utf-8")
        else:
            raise AssertionError(f"unexpected file {path}")
    if (folder / "metrics.jsonl").exists() and (folder / "run.toml").exists():
        load_run(folder)
    return found


def _refuse(token):
    raise ValueError(f"not strict JSON: {token}")
