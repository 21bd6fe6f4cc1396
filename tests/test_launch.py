"""featdistill_core.launch: device choices, the command lines that train a run file, a training subprocess;
and `featdistill train --run-dir`."""

from __future__ import annotations

import signal
import sys
import time

import pytest
import torch

from featdistill_core import RunProcess, device_choices, remote_commands, train_command
from featdistill_core.cli import main as cli_main
from featdistill_core.config import save_config
from featdistill_core.runfolder import load_run, run_status

from tests._tiny import tiny_config


def fake_gpus(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: f"Fake GPU {i}")


def test_several_gpus_offer_all_of_them_as_one_choice(monkeypatch):
    fake_gpus(monkeypatch, 4)
    choices = device_choices()
    specs = [c.spec for c in choices]
    assert specs[:2] == ["auto", "auto"] and "cuda:3" in specs and "cpu" in specs
    every = choices[1]
    assert every.processes == 4 and every.distributed and every.available and "all 4 GPUs" in every.label
    assert [c for c in choices if c.distributed] == [every]


@pytest.mark.parametrize("count", [0, 1])
def test_one_gpu_or_none_offers_no_distributed_choice(monkeypatch, count):
    fake_gpus(monkeypatch, count)
    choices = device_choices()
    assert not any(c.distributed for c in choices)
    assert all(c.processes == 1 for c in choices)
    assert [c.spec for c in choices][0] == "auto"


def test_command_lines():
    assert train_command("run.toml") == ("featdistill", "train", "run.toml")
    assert train_command("run.toml", processes=4) == (
        "torchrun", "--nproc_per_node=4", "-m", "featdistill_core", "train", "run.toml")
    assert train_command("run.toml", processes=8, nnodes=2, endpoint="node0:29500", job_id="j") == (
        "torchrun", "--nnodes=2", "--nproc_per_node=8", "--rdzv-backend=c10d", "--rdzv-endpoint=node0:29500",
        "--rdzv-id=j", "-m", "featdistill_core", "train", "run.toml")
    assert train_command(None, resume="/r/x") == ("featdistill", "train", "--resume", "/r/x")
    # as the window starts it: this Python, torchrun's module, a free port, the folder it writes
    argv = train_command("/a b/run.toml", processes=2, run_dir="/runs/x", python="/py", standalone=True)
    assert argv == ("/py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                    "featdistill_core", "train", "/a b/run.toml", "--run-dir", "/runs/x")
    assert train_command("r.toml", python="/py", torchrun=True)[:4] == ("/py", "-m", "torch.distributed.run",
                                                                         "--nproc_per_node=1")
    with pytest.raises(ValueError, match="HOST:PORT"):
        train_command("run.toml", processes=2, nnodes=2)
    with pytest.raises(ValueError):
        train_command("run.toml", processes=0)


def test_remote_commands_are_quoted_for_a_shell():
    commands = remote_commands("/my runs/run.toml", processes=4, nnodes=3, endpoint="gpu01:29400",
                               run_dir="/my runs/x")
    texts = [c.text for c in commands]
    assert texts[0] == "featdistill train '/my runs/run.toml'"
    assert texts[1] == "torchrun --nproc_per_node=4 -m featdistill_core train '/my runs/run.toml'"
    assert texts[2].startswith("torchrun --nnodes=3 --nproc_per_node=4 --rdzv-backend=c10d "
                               "--rdzv-endpoint=gpu01:29400 --rdzv-id=featdistill -m featdistill_core train")
    assert texts[3] == "featdistill train --resume '/my runs/x'"
    assert "HOST:29500" in remote_commands("r.toml")[2].text      # a placeholder until an endpoint is given


def test_train_into_a_given_run_dir(tmp_path, capsys):
    config = tiny_config(tmp_path, epochs=1)
    run_file = tmp_path / "run.toml"
    save_config(config, run_file)
    target = tmp_path / "chosen"
    assert cli_main(["train", str(run_file), "--run-dir", str(target)]) == 0
    assert load_run(target).finished is not None
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    # a folder holding a run is refused, and so are --run-dir with --output-dir or --resume
    assert cli_main(["train", str(run_file), "--run-dir", str(target)]) != 0
    assert "holds a run already" in capsys.readouterr().err
    assert cli_main(["train", str(run_file), "--run-dir", str(target), "--output-dir", str(tmp_path)]) != 0
    assert cli_main(["train", "--resume", str(target), "--run-dir", str(target)]) != 0


def _sleeper(code: str) -> RunProcess:
    return RunProcess((sys.executable, "-c", code), stop_grace_s=0.5, term_grace_s=0.5).start()


def test_a_process_that_ignores_the_stop_is_terminated_then_killed():
    # ignores SIGINT and SIGTERM, and starts a child that does too: both must go
    code = ("import signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); signal.signal(signal.SIGINT, signal.SIG_IGN); "
            "time.sleep(60)'], start_new_session=True)\n"
            "print('ready', flush=True); time.sleep(60)\n")
    process = _sleeper(code)
    deadline = time.monotonic() + 30
    while "ready" not in process.output_tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.poll()                                  # learns its child
    assert len(process.alive()) == 2
    process.stop()
    while process.poll() is None and time.monotonic() < deadline:
        process.escalate()
        time.sleep(0.05)
    process.escalate()                              # the command ended: what it left is killed
    assert process.signals_sent == [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
    time.sleep(0.2)
    assert process.alive() == []
    process.close()
    assert not process.log_path.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the process tree is read from Linux's /proc")
def test_the_process_tree_is_read_from_the_childrens_lists_as_from_a_scan_of_every_process():
    from pathlib import Path

    from featdistill_core import launch

    code = ("import subprocess, sys, time\n"
            "inner = 'import subprocess, sys, time; subprocess.Popen([sys.executable, \"-c\", \"import time; time.sleep(60)\"]); "
            "print(\"ready\", flush=True); time.sleep(60)'\n"
            "subprocess.Popen([sys.executable, '-c', inner], start_new_session=True)\n"
            "time.sleep(60)\n")
    process = _sleeper(code)
    try:
        deadline = time.monotonic() + 30
        while "ready" not in process.output_tail() and time.monotonic() < deadline:
            time.sleep(0.05)
        from_lists = launch._children_from_lists(Path("/proc"), process.pid)
        assert len(from_lists) == 2                          # its child (a session of its own) and grandchild
        assert sorted(from_lists) == sorted(launch._children_by_scan(Path("/proc"), process.pid))
        assert sorted(launch._children(process.pid)) == sorted(from_lists)
    finally:
        process.poll()                                       # learns them: killed with it
        process.kill_leftovers()
        process.close()


def test_a_stopped_training_command_writes_its_stopped_record(tmp_path):
    config = tiny_config(tmp_path, epochs=300)
    run_file = tmp_path / "run.toml"
    save_config(config, run_file)
    run_dir = tmp_path / "runs" / "given"
    process = RunProcess(train_command(run_file, run_dir=run_dir, python=sys.executable)).start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (run_dir / "metrics.jsonl").exists() and b'"step"' in (run_dir / "metrics.jsonl").read_bytes():
            break
        time.sleep(0.1)
    process.stop()
    assert process.wait(120) == 130, process.output_tail()
    status = run_status(run_dir)
    assert status.state == "stopped" and status.resumable, status
    assert "continue with: featdistill train --resume" in process.output_tail()
    process.close()
