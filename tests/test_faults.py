"""The fault suite: real `featdistill` processes killed, interrupted, starved of disk, raced.

* kill -9 at >= 20 seeded random moments (some in the middle of a checkpoint write, held open by the
  test hook FEATDISTILL_TEST_WRITE_PAUSE), every file checked after each kill, and every run resumed
  until it finishes with exactly the numbers of one uninterrupted run;
* SIGINT and SIGTERM (stop at the next step, checkpoint, exit 130/143, resumable), a second Ctrl-C;
* a full disk (a small tmpfs in a user namespace where the system allows one, and an injected ENOSPC);
* runs started together (threads and processes) get their own folders.

The fuzzer of run files is in test_fuzz.py, NaN and the checks of `check` in test_guard.py and test_check.py.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from featdistill_core.config import save_config
from featdistill_core.runfolder import load_run, run_status
from featdistill_core.trainer import Trainer

from tests._faults import assert_no_traceback, check_folder, run_numbers, start, wait_for
from tests._tiny import tiny_config

KILLS = 20
SEED = 20261201
pytestmark = [pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and kill -9"), pytest.mark.faults]


def fault_config(tmp_path: Path):
    config = tiny_config(tmp_path, epochs=4)
    config.output_dir = "runs"                       # relative to the run file
    config.teacher.train_epochs = 2
    config.data.demo_train = 160                     # 5 steps per epoch: 30 steps in all
    config.checkpoint.every_minutes = 0.002          # a checkpoint within an epoch every 0.12 s
    return config


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run of the fault config (in this process: the same numbers as a child's)."""
    root = tmp_path_factory.mktemp("faults-reference")
    config = fault_config(root)
    config.output_dir = str(root / "runs")
    trainer = Trainer(config)
    trainer.run()
    return run_numbers(load_run(trainer.run_dir))


def _run_folders(root: Path) -> list[Path]:
    runs = root / "runs"
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


def _count(path: Path, text: bytes) -> int:
    try:
        return path.read_bytes().count(text)
    except FileNotFoundError:
        return 0


CHECKPOINT_LINE = b'"type": "checkpoint"'


def test_kill_9_at_random_moments_then_resume_gives_the_same_run(tmp_path, reference):
    """Each process is killed at a seeded random moment of one of three kinds: during start-up (before
    any training), during training (a random time after the process has written a checkpoint), or in
    the middle of writing a checkpoint (held open by the write-pause hook; the second checkpoint write
    of the process, so that each process gets somewhere). Every file is checked after every kill;
    each run is resumed until it finishes and must equal the uninterrupted run exactly."""
    rng = random.Random(SEED)
    config = fault_config(tmp_path)
    run_file = save_config(config, tmp_path / "run.toml")
    kills = {"startup": 0, "training": 0, "checkpoint write": 0}
    chains = 0
    started = time.monotonic()
    while sum(kills.values()) < KILLS:
        chains += 1
        assert chains <= 8, f"runs kept finishing before they could be killed: {kills}"
        folder = None
        known = set(_run_folders(tmp_path))
        while True:
            mode = rng.choice(["startup", "training", "training", "training", "checkpoint write", "checkpoint write"])
            args = ["train", run_file] if folder is None else ["train", "--resume", folder]
            pause = {"FEATDISTILL_TEST_WRITE_PAUSE": 0.25, "FEATDISTILL_TEST_WRITE_PAUSE_MATCH": "checkpoint-last"} \
                if mode == "checkpoint write" else {"FEATDISTILL_TEST_WRITE_PAUSE": 0.02}
            before = _count(folder / "metrics.jsonl", CHECKPOINT_LINE) if folder else 0
            process, out, err = start(args, tmp_path, **pause)

            def metrics():
                if folder is not None:
                    return folder / "metrics.jsonl"
                new = set(_run_folders(tmp_path)) - known
                return next(iter(new)) / "metrics.jsonl" if new else tmp_path / "none"

            if sum(kills.values()) >= KILLS:
                process.wait(300)                      # enough kills: let this one finish
            elif mode == "startup":
                time.sleep(rng.uniform(0.2, 3.0))
            elif mode == "training":
                wanted = before + rng.randint(1, 3)
                wait_for(lambda: _count(metrics(), CHECKPOINT_LINE) >= wanted, 300, process)
                time.sleep(rng.uniform(0.0, 0.3))
            else:
                writes = rng.randint(2, 4)
                wait_for(lambda: err.read_bytes().count(b"writing checkpoint-last") >= writes, 300, process)
                time.sleep(rng.uniform(0.0, 0.2))
            finished = process.poll() is not None
            if not finished:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(30)
                kills[mode] += 1
            else:
                assert process.returncode == 0, err.read_text()
            assert_no_traceback(err.read_text())
            if folder is None:
                new = set(_run_folders(tmp_path)) - known
                if new and (next(iter(new)) / "run.toml").exists():
                    folder = next(iter(new))
                known |= new
            if folder is not None:
                check_folder(folder)
                finished = finished or run_status(folder).state == "finished"   # killed after its last line
            if finished:
                break
        record = load_run(folder)
        assert run_numbers(record) == reference, f"chain {chains} differs from the uninterrupted run"
        assert run_status(folder).state == "finished"
        assert check_folder(folder)["temporaries"] == 0
    assert kills["checkpoint write"] >= 4 and kills["training"] >= 4
    print(f"\nkill -9: {sum(kills.values())} kills {kills}, {chains} runs resumed to the end, "
          f"{time.monotonic() - started:.0f} s")


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_at_the_next_step_and_the_run_resumes(tmp_path, reference, signum, code):
    run_file = save_config(fault_config(tmp_path), tmp_path / "run.toml")
    process, out, err = start(["train", run_file], tmp_path, FEATDISTILL_TEST_WRITE_PAUSE=0.05)
    assert wait_for(lambda: b"[teacher] epoch 1/2" in err.read_bytes(), 120, process), err.read_text()
    process.send_signal(signum)
    assert process.wait(60) == code, err.read_text()
    text = err.read_text()
    assert_no_traceback(text)
    (folder,) = _run_folders(tmp_path)
    assert f"continue with: featdistill train --resume {folder}" in text and "stopped by SIG" in text
    check_folder(folder)
    status = run_status(folder)
    assert status.state == "stopped" and status.resumable and status.checkpoint is not None
    if signum == signal.SIGINT:            # (resuming is the same after either; the kill -9 test resumes 20 times)
        process, out, err = start(["train", "--resume", folder], tmp_path)
        assert process.wait(120) == 0, err.read_text()
        assert run_numbers(load_run(folder)) == reference


def test_a_second_ctrl_c_exits_at_once_and_leaves_valid_files(tmp_path, reference):
    run_file = save_config(fault_config(tmp_path), tmp_path / "run.toml")
    process, out, err = start(["train", run_file], tmp_path, FEATDISTILL_TEST_WRITE_PAUSE=2.0,
                              FEATDISTILL_TEST_WRITE_PAUSE_MATCH="checkpoint-last")
    assert wait_for(lambda: b"writing checkpoint-last" in err.read_bytes(), 120, process), err.read_text()
    process.send_signal(signal.SIGINT)               # stop at the next step … (the write goes on)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)               # … no: now
    began = time.monotonic()
    assert process.wait(30) == 130
    assert time.monotonic() - began < 1.5            # not after the 2 s pause of the write under way
    text = err.read_text()
    assert_no_traceback(text)
    assert "interrupted at once" in text and "--resume" in text
    (folder,) = _run_folders(tmp_path)
    check_folder(folder)
    assert run_status(folder).state == "interrupted"
    process, out, err = start(["train", "--resume", folder], tmp_path)
    assert process.wait(120) == 0, err.read_text()
    assert run_numbers(load_run(folder)) == reference


def _user_namespaces() -> bool:
    if shutil.which("unshare") is None:
        return False
    result = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    return result.returncode == 0


@pytest.mark.skipif(not _user_namespaces(), reason="no unprivileged user namespaces to mount a small tmpfs in")
def test_a_full_disk_names_the_file_and_leaves_no_broken_or_empty_file(tmp_path, reference):
    """A 3 MiB tmpfs filled up mid-run: the error names the file and output_dir, the folder holds only
    whole files, and once space is freed the run resumes to the same numbers."""
    save_config(fault_config(tmp_path), tmp_path / "run.toml")
    script = Path(__file__).with_name("_fulldisk.py")
    result = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", sys.executable, str(script),
                             str(tmp_path)], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    import json

    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["code"] == 1
    assert "featdistill: error: output_dir: cannot write " in report["stderr"]
    assert "No space left on device" in report["stderr"]
    assert_no_traceback(report["stderr"])
    assert report["empty_files"] == [] and report["temporaries"] == 0
    assert report["resumed_code"] == 0
    folder = tmp_path / "copy"
    assert run_numbers(load_run(folder)) == reference


def test_an_injected_full_disk_fails_cleanly(tmp_path):
    run_file = save_config(fault_config(tmp_path), tmp_path / "run.toml")
    process, out, err = start(["train", run_file], tmp_path, FEATDISTILL_TEST_DISK_BYTES=700_000)
    code = process.wait(120)
    text = err.read_text()
    assert code == 1, text
    assert_no_traceback(text)
    assert "featdistill: error: output_dir: cannot write " in text and "No space left on device" in text
    (folder,) = _run_folders(tmp_path)
    found = check_folder(folder)
    assert found["temporaries"] == 0
    assert run_status(folder).state in ("failed", "interrupted")


def test_runs_started_together_get_their_own_folders(tmp_path):
    """0.1 gave two runs started at once the same folder. Now eight trainers made at the same moment
    in threads, two of them run at once, and two `featdistill train` processes started together all
    get their own folders."""
    config = tiny_config(tmp_path, epochs=1)
    config.teacher.train_epochs = 1
    trainers, errors = [None] * 8, []
    barrier = threading.Barrier(8)

    def build(i):
        try:
            barrier.wait()
            trainers[i] = Trainer(config)
            if i < 2:
                trainers[i].run()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=build, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors
    assert len({t.run_dir for t in trainers}) == 8
    assert all(run_status(t.run_dir).state == "finished" for t in trainers[:2])

    (tmp_path / "p").mkdir()
    small = tiny_config(tmp_path / "p", epochs=1)
    small.output_dir = "runs"
    run_file = save_config(small, tmp_path / "p" / "run.toml")
    children = [start(["train", run_file], tmp_path / "p") for _ in range(2)]
    for process, out, err in children:
        assert process.wait(300) == 0, err.read_text()
    folders = _run_folders(tmp_path / "p")
    assert len(folders) == 2
    for folder in folders:
        check_folder(folder)
        assert run_status(folder).state == "finished"
