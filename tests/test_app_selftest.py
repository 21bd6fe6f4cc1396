"""``python -m app --self-test``: a real process, without a display, trains the demo and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6 import QtGui

import app.selftest as selftest

ROOT = Path(__file__).resolve().parents[1]


def app_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["FEATDISTILL_SETTINGS"] = str(tmp_path / "settings.ini")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_app(args: list[str], tmp_path: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=tmp_path, env=app_env(tmp_path),
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the display fallback is for Linux")
def test_self_test_without_display_trains_and_saves_a_screenshot(tmp_path):
    shot = tmp_path / "shots" / "window.png"
    result = run_app(["--self-test", "--screenshot", str(shot)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "self-test passed" in result.stdout
    image = QtGui.QImage(str(shot))
    assert (image.width(), image.height()) == (1400, 900)
    assert not (tmp_path / "runs").exists()        # the self-test cleans up its run folder


def test_screenshot_needs_self_test(tmp_path):
    result = run_app(["--screenshot", "x.png"], tmp_path, timeout=60)
    assert result.returncode == 2
    assert "--screenshot works with --self-test" in result.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the display check is for Linux")
def test_window_without_display_explains_instead_of_aborting(tmp_path):
    result = run_app([], tmp_path, timeout=60)
    assert result.returncode == 2
    assert "no display found" in result.stderr and "--self-test" in result.stderr


def test_self_test_reports_a_refused_run(qtbot, monkeypatch):
    def broken_config(output_dir):
        config = selftest.demo_config(output_dir=output_dir)
        config.batch_size = 0
        return config

    monkeypatch.setattr(selftest, "self_test_config", broken_config)
    result = selftest.run_self_test(timeout_s=30)
    assert not result.ok
    assert "refused" in result.message and "Batch size must be at least 1" in result.message


def test_main_survives_missing_streams(monkeypatch):
    """A windowed frozen build has no stdout/stderr: printing must not crash the app."""
    import app.__main__ as entry

    monkeypatch.setattr(sys, "stdout", None)
    monkeypatch.setattr(sys, "stderr", None)
    with pytest.raises(SystemExit) as caught:
        entry.main(["--screenshot", "x.png"])        # argparse reports the misuse on stderr
    assert caught.value.code == 2
    entry._say("nobody reads this")
