"""Two processes under torchrun on the CPU (gloo), against one process with the same global batch.

What agrees and what differs, and why:

* the data: each rank takes half of every global batch of the same permutation and the same crop
  and flip draws (``BatchLoader(rank=, world_size=)``), so the two ranks together see exactly the
  one-process batches;
* the gradients: DDP averages the two ranks' gradients, the gradient of the mean loss over the
  global batch, as one process computes it;
* what differs is BatchNorm: in training mode each rank normalises with the statistics of its own
  half batch (16 images here, not 32; no SyncBatchNorm on the CPU), and its running statistics are
  rank 0's. So the first step's losses agree to a few per cent (the models are the same, only the
  normalisation differs), and the runs drift apart a little as they train: accuracies are compared
  within :data:`ACC_TOLERANCE` points and final losses within :data:`LOSS_TOLERANCE` (relative).
  Measured when this was written: the first step's CE 2.3842 against 2.3813 (0.12 %), the last
  step's CE, AT and hint terms within 0.03 %, 5.7 % and 0.1 %, both test accuracies equal (the tiny
  demo run is near chance level, so the accuracy check is the weaker one).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from featdistill_core.config import MonitorConfig, config_to_toml, load_config
from featdistill_core.runfolder import run_status
from featdistill_core.trainer import Trainer
from tests._tiny import tiny_config

ROOT = Path(__file__).resolve().parents[1]
ACC_TOLERANCE = 10.0        # percentage points, on a 64-image test split (one image is 1.6 points)
LOSS_TOLERANCE = 0.15       # relative, final step's loss components
FIRST_STEP_TOLERANCE = 0.02  # relative, the first step (same weights, BatchNorm over 16 vs 32 images)
TIMEOUT = 120


def torchrun(*args, cwd=ROOT, wait=True, env=None):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--rdzv-backend", "c10d",
               "--rdzv-endpoint", f"localhost:{_free_port()}", *args]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=environment)
    if not wait:
        return process
    out, err = process.communicate(timeout=TIMEOUT)
    return process.returncode, out, err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def write_run_file(tmp_path, **changes) -> Path:
    config = tiny_config(tmp_path, **changes)
    path = tmp_path / "run.toml"
    path.write_text(config_to_toml(config), encoding="utf-8")
    return path


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_two_processes_train_like_one_and_write_one_folder(tmp_path):
    run_file = write_run_file(tmp_path, epochs=2)
    code, out, err = torchrun("tests/_ddp_worker.py", str(run_file), str(tmp_path))
    assert code == 0, err[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]

    # one run folder, written once: no duplicated record, every step logged once
    folders = list((tmp_path / "runs").iterdir())
    assert len(folders) == 1 and ranks[0]["run_dir"] == ranks[1]["run_dir"] == str(folders[0])
    logged = records(folders[0])
    lines = [json.dumps(r, sort_keys=True) for r in logged]
    assert len(lines) == len(set(lines))
    steps = [(r["stage"], r["step"]) for r in logged if r["type"] == "step"]
    assert len(steps) == len(set(steps)) == 4 + 2 * 4         # 128 images / 32: teacher 1 epoch, student 2
    assert [r["type"] for r in logged].count("finished") == 1
    assert (folders[0] / "checkpoint-last.pt").exists() and (folders[0] / "student.safetensors").exists()

    # every rank agrees: the same metrics, student and adapters (hint's regressor is trained by DDP)
    assert ranks[0]["metrics"] == ranks[1]["metrics"]
    for part in ("student", "terms"):
        assert ranks[0][part].keys() == ranks[1][part].keys()
        assert not any(k.startswith("module.") for k in ranks[0][part])
        for key in ranks[0][part]:
            assert torch.equal(ranks[0][part][key], ranks[1][part][key]), (part, key)
    assert any(v.dim() > 1 for v in ranks[0]["terms"].values())    # there is an adapter to compare

    # each rank computed its half batch, and its distillation terms were not silently 0
    student_steps = [[s for s in rank["local"] if "at:layer2<-layer2" in s] for rank in ranks]
    assert all(len(s) == 8 for s in student_steps)
    for rank_steps in student_steps:
        assert all(s["images"] == 16 for s in rank_steps)
        assert all(s["at:layer2<-layer2"] > 0 and s["hint:layer3<-layer3"] > 0 for s in rank_steps)

    # against one process with the same global batch
    single = Trainer(load_config(run_file), tmp_path / "single")
    single_records = []
    single.subscribe(lambda e: single_records.append(e))
    single.run()
    one = [e for e in single_records if type(e).__name__ == "StepEvent"]
    two = [r for r in logged if r["type"] == "step"]
    for name, value in one[0].losses.items():                  # step 1: same weights, same 32 images
        assert two[0]["losses"][name] == pytest.approx(value, rel=FIRST_STEP_TOLERANCE), name
    first_student = next(i for i, e in enumerate(one) if str(e.stage) == "student")
    for name, value in one[first_student].losses.items():
        assert two[first_student]["losses"][name] == pytest.approx(value, rel=FIRST_STEP_TOLERANCE), name
        assert value > 0
    for name, value in one[-1].losses.items():
        assert two[-1]["losses"][name] == pytest.approx(value, rel=LOSS_TOLERANCE), name
    for key in ("teacher_test_acc", "student_test_acc"):
        assert abs(ranks[0]["metrics"][key] - single.metrics[key]) <= ACC_TOLERANCE, key


def test_a_bad_run_file_fails_every_rank_with_the_same_line(tmp_path):
    run_file = write_run_file(tmp_path, batch_size=31)      # 31 is fine for one process, not for two
    code, out, err = torchrun("-m", "featdistill_core", "train", str(run_file))
    assert code != 0
    ours = [line for line in err.splitlines() if line.startswith("featdistill: error:")]
    assert len(ours) == 2 and ours[0] == ours[1]
    assert ours[0].startswith("featdistill: error: batch_size: is the global batch and must divide evenly over the 2")
    assert "featdistill_core/" not in err.split("ChildFailedError")[0]    # no traceback of ours (torchrun's own follows)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def _workers(parent: int) -> dict[int, int]:
    """rank -> pid of torchrun's worker processes."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        for item in environ:
            if item.startswith(b"RANK="):
                found[int(item[5:])] = int(entry.name)
    return found


def test_killing_one_rank_ends_the_run_resumably_and_torchrun_resumes_it(tmp_path):
    run_file = write_run_file(tmp_path, epochs=8, monitor=MonitorConfig(log_every=4, snapshot_every=0, probe_images=4))
    process = torchrun("-m", "featdistill_core", "train", str(run_file), wait=False)
    deadline = time.monotonic() + TIMEOUT
    try:
        while True:                    # wait for the first student checkpoint, then kill rank 1
            folders = list((tmp_path / "runs").glob("*/metrics.jsonl"))
            if folders and any(r["type"] == "checkpoint" and r["stage"] == "student"
                               for r in records(folders[0].parent)):
                break
            assert process.poll() is None and time.monotonic() < deadline, "no student checkpoint came"
            time.sleep(0.05)
        os.kill(_workers(process.pid)[1], signal.SIGKILL)
        out, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    run_dir = folders[0].parent
    assert process.returncode != 0
    assert "another process of this torchrun launch stopped or cannot be reached" in err, err[-3000:]
    assert f"--resume {run_dir}" in err
    status = run_status(run_dir)
    assert status.resumable, status
    assert "Traceback" not in err.split("ChildFailedError")[0].split("torch/distributed/elastic")[0]

    code, out, err = torchrun("-m", "featdistill_core", "train", "--resume", str(run_dir))
    assert code == 0, err[-3000:]
    logged = records(run_dir)
    assert logged[-1]["type"] == "finished" and not logged[-1]["stopped"]
    epochs = [(r["stage"], r["epoch"]) for r in logged if r["type"] == "epoch"]
    assert ("student", 8) in epochs and ("teacher", 1) in epochs
    assert [r["type"] for r in logged].count("resumed") == 1
