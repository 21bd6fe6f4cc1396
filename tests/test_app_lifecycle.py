"""The window's side of a run's life (pytest-qt, offscreen): Resume from the runs panel, following a run
folder another process writes, torchrun started from the window and stopped, Run elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PySide6 import QtWidgets

from featdistill_core import load_run, run_status, save_config

from app.launch import chosen_processes, choose_processes
from app.main_window import PROGRESS_STEPS, MainWindow
from tests.test_app_window import RUN_TIMEOUT_MS, settings_file, tiny_config  # noqa: F401 - fixture

SUBPROCESS_TIMEOUT_MS = 180_000


@pytest.fixture
def make_window(qtbot, settings_file):  # noqa: F811 - the fixture imported above
    made = []

    def make(config):
        win = MainWindow(config=config)
        win.show_error_dialogs = False
        win.prompt_unsaved = False
        qtbot.addWidget(win)
        win.show()
        qtbot.waitUntil(lambda: not win.form.layers_busy(), timeout=20000)
        made.append(win)
        return win

    yield make
    for win in made:
        win.shutdown(120)


@pytest.fixture
def one_thread(monkeypatch):
    """Subprocesses train on one thread (two cores shared by everyone)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _points(window, name: str) -> int:
    """How many points the loss curve ``name`` of the run shown has (0 before it exists)."""
    return len(window.loss_plot.curve_data(name)[0]) if name in window.loss_plot.curve_names() else 0


def _row(window, path) -> int:
    window.runs_panel.refresh()
    keys = [entry.key for entry in window.runs_panel.entries()]
    return keys.index(str(Path(path).resolve()))


def _action(menu, name):
    found = [a for a in menu.actions() if a.objectName() == name]
    return found[0] if found else None


def test_stop_then_resume_from_the_runs_panel_finishes_the_run(qtbot, make_window, tmp_path):
    window = make_window(tiny_config(tmp_path, epochs=2))
    steps = []
    window.worker.stepsReceived.connect(lambda batch: steps.extend(batch))
    assert window.start_run()
    qtbot.waitUntil(lambda: len(steps) >= 2, timeout=RUN_TIMEOUT_MS)
    with qtbot.waitSignal(window.runEnded, timeout=RUN_TIMEOUT_MS):
        window.stop_run()
    run_dir = Path(window.worker.run_dir)
    status = run_status(run_dir)
    assert status.state == "stopped" and status.resumable
    stopped_at = len(load_run(run_dir).steps)

    menu = window.runs_panel.context_menu(_row(window, run_dir))
    resume = _action(menu, "resumeAction")
    assert resume is not None and resume.isEnabled() and resume.text() == "Resume this run"
    histories = []
    window.worker.historyReceived.connect(lambda record: histories.append(len(record.steps)))
    with qtbot.waitSignal(window.runEnded, timeout=RUN_TIMEOUT_MS):
        resume.trigger()
        assert window.worker.mode == "resume" and not window.start_button.isEnabled()
    assert histories and histories[0] == stopped_at       # the history came first, then the run went on
    assert "Finished" in window.status_text(), window.status_text()
    assert window.progress_bar.value() == PROGRESS_STEPS

    record = load_run(run_dir)
    assert record.finished is not None and not record.finished.stopped and len(record.resumes) == 1
    teacher = [e.step for e in record.steps if e.stage == "teacher"]
    student = [e.step for e in record.steps if e.stage == "student"]
    assert teacher == list(range(1, 7)) and student == list(range(1, 13))    # complete, nothing twice
    assert [(e.stage, e.epoch) for e in record.epochs] == [("teacher", 1), ("student", 1), ("student", 2)]
    # the plots show the whole run: its history and what the resumed run added, without duplicates
    assert window.loss_plot.curve_data("total")[0].tolist() == student
    assert window.loss_plot.curve_data("teacher total")[0].tolist() == teacher
    assert window.attention_view.snapshot_count() == len(record.snapshots)
    assert run_status(run_dir).state == "finished"
    assert _action(window.runs_panel.context_menu(_row(window, run_dir)), "resumeAction") is None


def test_follows_a_headless_train_until_it_finishes(qtbot, make_window, tmp_path, one_thread):
    config = tiny_config(tmp_path, epochs=3)
    run_file = tmp_path / "run.toml"
    save_config(config, run_file)
    run_dir = tmp_path / "runs" / "headless"
    window = make_window(tiny_config(tmp_path))
    lengths = []
    window.worker.stepsReceived.connect(lambda _b: lengths.append(_points(window, "total")
                                                                 + _points(window, "teacher total")))
    assert window.follow_run_folder(run_dir)              # before the folder exists: it waits for it
    assert window.worker.following and not window.pause_button.isEnabled() and window.stop_button.isEnabled()
    process = subprocess.Popen([sys.executable, "-m", "featdistill_core", "train", str(run_file),
                                "--run-dir", str(run_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with qtbot.waitSignal(window.runEnded, timeout=SUBPROCESS_TIMEOUT_MS):
            pass
        assert process.wait(120) == 0, process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    assert "Finished" in window.status_text(), window.status_text()
    assert window.progress_bar.value() == PROGRESS_STEPS
    record = load_run(run_dir)
    assert window.loss_plot.curve_data("total")[0].tolist() == [e.step for e in record.steps if e.stage == "student"]
    assert window.attention_view.snapshot_count() == len(record.snapshots) > 0
    assert window.accuracy_plot.series("test")[0].tolist() == [1, 2, 3]
    assert len(lengths) >= 2 and lengths == sorted(lengths) and lengths[-1] > lengths[0]   # grew, live
    assert window.form.config().name == config.name       # the followed run's set-up is in the form
    assert not window.worker.running and window.start_button.isEnabled()


def test_follow_stops_following_without_touching_the_writer(qtbot, make_window, tmp_path):
    window = make_window(tiny_config(tmp_path))
    assert window.follow_run_folder(tmp_path / "not-yet")
    ended = []
    window.worker.followEnded.connect(lambda message, kind: ended.append(message))
    with qtbot.waitSignal(window.runEnded, timeout=20_000):
        window.stop_run()
    assert ended and ended[0].startswith("Stopped following")
    assert window.status_text().startswith("Stopped following")


def test_opening_a_folder_being_written_follows_it(qtbot, make_window, tmp_path, one_thread):
    config = tiny_config(tmp_path, epochs=400)
    run_file = tmp_path / "run.toml"
    save_config(config, run_file)
    run_dir = tmp_path / "runs" / "busy"
    window = make_window(tiny_config(tmp_path))
    process = subprocess.Popen([sys.executable, "-m", "featdistill_core", "train", str(run_file), "--run-dir",
                                str(run_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        qtbot.waitUntil(lambda: (run_dir / "metrics.jsonl").exists() and run_status(run_dir).state == "running",
                        timeout=SUBPROCESS_TIMEOUT_MS)
        window.runs_panel.refresh()
        assert window.runs_panel.state_of(str(run_dir.resolve())) == "running"     # another process writes it
        assert _action(window.runs_panel.context_menu(_row(window, run_dir)), "followAction") is not None
        assert window.open_run_folder(run_dir)
        assert window.worker.following
        qtbot.waitUntil(lambda: _points(window, "teacher total") > 0,
                        timeout=SUBPROCESS_TIMEOUT_MS)
        process.send_signal(__import__("signal").SIGINT)          # the writer stops: following ends
        with qtbot.waitSignal(window.runEnded, timeout=SUBPROCESS_TIMEOUT_MS):
            pass
        assert window.status_text().startswith("Stopped."), window.status_text()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_all_gpus_start_torchrun_and_follow_it(qtbot, make_window, tmp_path, monkeypatch, one_thread):
    """A fake 2-GPU machine: the Device field offers "all 2 GPUs"; Start saves the run file and starts
    torchrun into a new run folder (run here with one process on the CPU), then follows it to the end."""
    from tests.test_launch import fake_gpus

    fake_gpus(monkeypatch, 2)
    window = make_window(tiny_config(tmp_path))
    assert choose_processes(window.form.device, 2)
    assert window.form.device.currentText().startswith("all 2 GPUs") and chosen_processes(window.form.device) == 2
    assert window.form.config().device == "auto"          # each rank takes its LOCAL_RANK
    window.save_run_file_to(tmp_path / "run.toml")

    import app.lifecycle as lifecycle

    started = []
    real = lifecycle.process_command

    def one_process_on_this_cpu(run_file, run_dir, processes=1, torchrun=None):
        started.append(real(run_file, run_dir, processes, torchrun))
        return real(run_file, run_dir, 1, True)          # no GPUs here: the same torchrun, one rank

    monkeypatch.setattr(lifecycle, "process_command", one_process_on_this_cpu)
    with qtbot.waitSignal(window.runEnded, timeout=SUBPROCESS_TIMEOUT_MS):
        assert window.start_run()
        process = window.worker.process
        assert process is not None and window.worker.following
    argv = started[0]
    run_dir = Path(argv[argv.index("--run-dir") + 1])
    assert argv[:5] == (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
    assert argv[5:9] == ("-m", "featdistill_core", "train", str((tmp_path / "run.toml").resolve()))
    assert "Finished" in window.status_text(), (window.status_text(), process.output_tail())
    assert load_run(run_dir).finished is not None
    assert len(window.loss_plot.curve_data("total")[0]) == 6
    assert process.poll() == 0 and process.alive() == []


def test_stop_ends_every_rank_of_a_torchrun_run(qtbot, make_window, tmp_path, one_thread):
    window = make_window(tiny_config(tmp_path, epochs=400))
    window.save_run_file_to(tmp_path / "run.toml")
    assert window.start_in_subprocess(processes=1, torchrun=True)
    process = window.worker.process
    assert process.argv[2] == "torch.distributed.run"
    run_dir = Path(window.worker.run_dir)
    qtbot.waitUntil(lambda: _points(window, "teacher total") >= 2 or _points(window, "total") >= 2,
                    timeout=SUBPROCESS_TIMEOUT_MS)
    qtbot.waitUntil(lambda: len(process._known) >= 1, timeout=10_000)         # torchrun's rank
    ranks = sorted(process._known)
    with qtbot.waitSignal(window.runEnded, timeout=SUBPROCESS_TIMEOUT_MS):
        window.stop_button.click()
    assert window.status_text().startswith("Stopped."), (window.status_text(), process.output_tail())
    status = run_status(run_dir)
    assert status.state == "stopped" and status.resumable, status
    assert process.poll() is not None and process.alive() == []
    for pid in ranks:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert _action(window.runs_panel.context_menu(_row(window, run_dir)), "resumeAction") is not None


def test_a_subprocess_refused_by_validation_is_reported(qtbot, make_window, tmp_path, one_thread):
    window = make_window(tiny_config(tmp_path))
    window.save_run_file_to(tmp_path / "run.toml")
    text = (tmp_path / "run.toml").read_text().replace('arch = "demo_student"', 'arch = "no_such_net"')
    (tmp_path / "run.toml").write_text(text)        # changed behind the window's back
    window._saved_config = window._form_config()
    failed = []
    window.worker.failed.connect(failed.append)
    with qtbot.waitSignal(window.runEnded, timeout=SUBPROCESS_TIMEOUT_MS):
        assert window.start_in_subprocess(processes=1)
    assert failed and "no_such_net" in failed[0].error and "exit status 2" in failed[0].error, failed
    assert "Training failed" in window.status_text()
    assert list((tmp_path / "runs").iterdir()) == []        # the folder made for it went with it


def test_an_error_while_following_is_reported_not_lost(qtbot, make_window, tmp_path, monkeypatch):
    import app.follow as follow

    def broken(*args, **kwargs):
        raise OSError("the disk went away (test)")

    monkeypatch.setattr(follow, "follow_folder", broken)
    window = make_window(tiny_config(tmp_path))
    failed = []
    window.worker.failed.connect(failed.append)
    with qtbot.waitSignal(window.runEnded, timeout=20_000):
        assert window.follow_run_folder(tmp_path / "somewhere")
    assert failed and "the disk went away (test)" in failed[0].error
    assert "Training failed" in window.status_text() and not window.worker.running


def test_run_elsewhere_shows_the_commands_for_the_saved_run_file(qtbot, make_window, tmp_path, monkeypatch):
    from tests.test_launch import fake_gpus

    fake_gpus(monkeypatch, 4)
    window = make_window(tiny_config(tmp_path))
    window.save_run_file_to(tmp_path / "run.toml")
    dialog = window.show_run_elsewhere()
    qtbot.addWidget(dialog)
    run_file = str(tmp_path / "run.toml")
    texts = dialog.command_texts()
    assert texts[0] == f"featdistill train {run_file}"
    assert texts[1] == f"torchrun --nproc_per_node=4 -m featdistill_core train {run_file}"
    dialog.endpoint.setText("gpu01:29400")
    dialog.nodes.setValue(3)
    assert dialog.command_texts()[2] == (f"torchrun --nnodes=3 --nproc_per_node=4 --rdzv-backend=c10d "
                                         f"--rdzv-endpoint=gpu01:29400 --rdzv-id=featdistill -m featdistill_core "
                                         f"train {run_file}")
    dialog.findChild(QtWidgets.QPushButton, "copy1").click()
    assert QtWidgets.QApplication.clipboard().text() == texts[1]
    assert "Follow run folder" in dialog.findChild(QtWidgets.QLabel, "followExplanation").text()
    dialog.close()


def test_a_writer_killed_while_followed_ends_following_and_can_be_resumed(qtbot, make_window, tmp_path, one_thread):
    import signal

    config = tiny_config(tmp_path, epochs=400)
    run_file = tmp_path / "run.toml"
    save_config(config, run_file)
    run_dir = tmp_path / "runs" / "killed"
    window = make_window(tiny_config(tmp_path))
    process = subprocess.Popen([sys.executable, "-m", "featdistill_core", "train", str(run_file), "--run-dir",
                                str(run_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert window.follow_run_folder(run_dir)
        qtbot.waitUntil(lambda: _points(window, "teacher total") >= 7 or _points(window, "total") > 0,
                        timeout=SUBPROCESS_TIMEOUT_MS)                  # past the first checkpoint
        ended = []
        window.worker.followEnded.connect(lambda message, kind: ended.append((message, kind)))
        with qtbot.waitSignal(window.runEnded, timeout=30_000):
            process.send_signal(signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert ended and ended[0][1] == "error" and "without a final record" in ended[0][0], ended
    assert "without a final record" in window.status_text()
    assert run_status(run_dir).state == "interrupted"
    assert _action(window.runs_panel.context_menu(_row(window, run_dir)), "resumeAction") is not None


def test_the_follow_option_of_the_command_line(tiny_trained_run, tmp_path):
    from app.__main__ import parse_args

    assert parse_args(["--follow", "some/run"]).follow == "some/run"
    for wrong in (["--follow", "x", "run.toml"], ["--follow", "x", "--self-test"]):
        with pytest.raises(SystemExit):
            parse_args(wrong)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", OMP_NUM_THREADS="1",
               FEATDISTILL_SETTINGS=str(tmp_path / "settings.ini"))
    result = subprocess.run([sys.executable, "-m", "app", "--follow", str(tiny_trained_run), "--exit-when-shown"],
                            capture_output=True, text=True, timeout=300, env=env,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert "workbench shown after" in result.stdout
    assert "Traceback" not in result.stderr


def test_following_a_folder_that_has_finished_shows_it_and_how_it_ended(qtbot, make_window, tmp_path,
                                                                        tiny_trained_run):
    window = make_window(tiny_config(tmp_path))
    finished = []
    window.worker.finished.connect(finished.append)
    with qtbot.waitSignal(window.runEnded, timeout=30_000):
        assert window.follow_run_folder(tiny_trained_run)
    record = load_run(tiny_trained_run)
    assert finished and finished[0].metrics == record.finished.metrics
    assert "Finished" in window.status_text() and window.progress_bar.value() == PROGRESS_STEPS
    assert window.loss_plot.curve_data("total")[0].tolist() == [e.step for e in record.steps if e.stage == "student"]
    assert window.attention_view.snapshot_count() == len(record.snapshots)
