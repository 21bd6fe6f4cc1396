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
