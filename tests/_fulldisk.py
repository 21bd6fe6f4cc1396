"""Run inside `unshare --user --map-root-user --mount` by test_faults.py: a real full disk.

Mounts a small tmpfs in the test's folder, fills most of it with a ballast file, trains the run file
of the test's folder into it until the disk is full, checks what is left, frees the ballast, resumes the
run to its end and copies the run folder out (the mount ends with this process). Prints one JSON line.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests._faults import check_folder, child_env  # noqa: E402

root = Path(sys.argv[1])
disk = root / "disk"
disk.mkdir()
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(disk)], check=True)
shutil.copy(root / "run.toml", disk / "run.toml")
usage = shutil.disk_usage(disk)
with open(disk / "ballast", "wb") as ballast:
    ballast.write(b"\0" * (usage.free - 1_300_000))          # about two checkpoints of room

first = subprocess.run([sys.executable, "-m", "featdistill_core", "train", str(disk / "run.toml")],
                       capture_output=True, text=True, env=child_env(), timeout=300)
(folder,) = [p for p in (disk / "runs").iterdir() if p.is_dir()]
found = check_folder(folder)
empty = [str(p) for p in folder.rglob("*") if p.is_file() and p.stat().st_size == 0]
(disk / "ballast").unlink()
second = subprocess.run([sys.executable, "-m", "featdistill_core", "train", "--resume", str(folder)],
                        capture_output=True, text=True, env=child_env(), timeout=300)
check_folder(folder)
shutil.copytree(folder, root / "copy")
print(json.dumps({"code": first.returncode, "stderr": first.stderr, "empty_files": empty,
                  "temporaries": found["temporaries"], "resumed_code": second.returncode,
                  "resumed_stderr": second.stderr[-2000:]}))
