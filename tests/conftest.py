"""Shared test setup: Qt offscreen, deterministic small torch, and no thread may outlive a test."""

import os
import threading

import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The window remembers files and layout in QSettings: tests keep theirs away from the user's.
os.environ.setdefault("FEATDISTILL_SETTINGS", os.path.join(tempfile.mkdtemp(prefix="featdistill-test-"), "settings.ini"))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _no_leftover_threads():
    """Fail any test that leaves a Python thread running (the idea of napari's conftest)."""
    before = set(threading.enumerate())
    yield
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for t in leftover:
        t.join(timeout=5)
    leftover = [t for t in leftover if t.is_alive()]
    assert not leftover, f"test left threads running: {[t.name for t in leftover]}"


@pytest.fixture(scope="session")
def tiny_trained_run(tmp_path_factory):
    """One finished tiny run (tests/_tiny.py: teacher trained first, AT + hint pairs), shared read-only
    by the analysis, export and eval tests: its folder."""
    from featdistill_core.trainer import Trainer
    from tests._tiny import tiny_config

    base = tmp_path_factory.mktemp("trained")
    trainer = Trainer(tiny_config(base))
    trainer.run()
    return trainer.run_dir
