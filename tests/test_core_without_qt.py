"""featdistill_core must never import Qt: import every module with Qt made unimportable."""

import pkgutil
import subprocess
import sys

import featdistill_core

SCRIPT = r"""
import importlib, pkgutil, sys

class BlockQt:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("PySide6", "PyQt5", "PyQt6", "PySide2", "pyqtgraph", "shiboken6"):
            raise ImportError(f"Qt is blocked: {name}")
        return None

sys.meta_path.insert(0, BlockQt())
import featdistill_core
names = [m.name for m in pkgutil.walk_packages(featdistill_core.__path__, "featdistill_core.") if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def test_every_core_module_imports_without_qt():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    expected = len([m for m in pkgutil.walk_packages(featdistill_core.__path__, "featdistill_core.")
                    if not m.name.endswith("__main__")])
    assert int(result.stdout.strip()) == expected > 10
