# Sourced by run.sh and test.sh: create or reuse .venv in the checkout and install the project into it.
# torch is pinned through constraints.txt (a floating torch pulls a multi-GB CUDA build on the build machines).
# The first time, it says what it installs and shows the time going by (about 1–2 minutes: torch is ~750 MB).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VPY="$ROOT/.venv/bin/python"

# _fd_step N TOTAL TEXT COMMAND...: print "[N/TOTAL] TEXT", run COMMAND, print elapsed seconds every 5 s
_fd_step() {
    local number="$1" total="$2" text="$3"
    shift 3
    echo "featdistill setup [$number/$total] $text" >&2
    local started=$SECONDS
    ( while sleep 5; do echo "    … still working ($((SECONDS - started)) s)" >&2; done ) &
    local ticker=$!
    local status=0
    "$@" || status=$?
    kill "$ticker" 2>/dev/null || true
    wait "$ticker" 2>/dev/null || true
    if [ "$status" -ne 0 ]; then
        echo "featdistill setup: step $number failed (exit $status): $text" >&2
        return "$status"
    fi
    echo "    done in $((SECONDS - started)) s" >&2
}

_fd_pip() {
    "$VPY" -m pip install --quiet --disable-pip-version-check -c constraints.txt "$@" 2>&1 \
        | grep -v "is ignored: it is neither" >&2 || true
    # pip's own status (grep's is not it)
    "$VPY" -m pip show --quiet "${FD_CHECK:-pip}" >/dev/null 2>&1
}

stamp=".venv/.featdistill-installed"
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)-${FEATDISTILL_EXTRAS:-dev,build}"
if [ ! -x .venv/bin/python ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "featdistill setup: installing into $ROOT/.venv (once; later starts skip this)" >&2
    if [ ! -x .venv/bin/python ]; then
        _fd_step 1 4 "creating the virtual environment .venv" "$PYTHON" -m venv .venv
    else
        echo "featdistill setup [1/4] reusing .venv" >&2
    fi
    FD_CHECK=torch _fd_step 2 4 "installing PyTorch 2.13.0, CPU build (~750 MB; pinned by constraints.txt)" \
        _fd_pip "torch==2.13.0"
    FD_CHECK=featdistill _fd_step 3 4 "installing featdistill and the window (PySide6, pyqtgraph, numpy, safetensors, Pillow; extras: ${FEATDISTILL_EXTRAS:-dev,build})" \
        _fd_pip -e ".[${FEATDISTILL_EXTRAS:-dev,build}]"
    _fd_step 4 4 "checking that torch and featdistill import" "$VPY" -c "import torch, featdistill_core" \
        || { echo "install failed" >&2; exit 1; }
    echo "$want" > "$stamp"
fi
