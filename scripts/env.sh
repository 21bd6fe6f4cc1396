# Sourced by run.sh and test.sh: create or reuse .venv in the checkout and install the project into it.
# torch is pinned through constraints.txt (a floating torch pulls a multi-GB CUDA build on the build machines).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv" >&2
    "$PYTHON" -m venv .venv
fi
VPY="$ROOT/.venv/bin/python"
stamp=".venv/.featdistill-installed"
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)-${FEATDISTILL_EXTRAS:-dev,build}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing featdistill into .venv (torch pinned by constraints.txt)" >&2
    "$VPY" -m pip install --quiet --disable-pip-version-check -c constraints.txt "torch==2.13.0" 2>&1 | grep -v "is ignored: it is neither" || true
    "$VPY" -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[${FEATDISTILL_EXTRAS:-dev,build}]" 2>&1 | grep -v "is ignored: it is neither" || true
    "$VPY" -c "import torch, featdistill_core" || { echo "install failed" >&2; exit 1; }
    echo "$want" > "$stamp"
fi
