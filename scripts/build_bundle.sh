#!/usr/bin/env bash
# Build the one-folder desktop bundle with build.spec, then prove it runs on a machine without Python:
# its --self-test runs with an empty environment (no venv, no PYTHONPATH, no DISPLAY).
#
#   scripts/build_bundle.sh              build into dist/featdistill/ and self-test it
#   scripts/build_bundle.sh --no-build   self-test the bundle already in dist/featdistill/
#
# Uses .venv (scripts/env.sh creates it with the dev and build extras; build holds pyinstaller). FEATDISTILL_BUILD_PYTHON=/path/to/python uses that interpreter's
# environment instead, as is (for instance one with a CUDA torch, for a CUDA bundle); it needs
# pyinstaller and the app's dependencies. The PyInstaller log goes to build/pyinstaller.log; its
# tail is shown when the build fails.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -n "${FEATDISTILL_BUILD_PYTHON:-}" ]; then
    cd "$HERE/.."
    VPY="$FEATDISTILL_BUILD_PYTHON"
else
    source "$HERE/env.sh"   # cd to the repo root, set VPY; installs the dev and build extras
fi

BUNDLE="dist/featdistill"
EXE="$BUNDLE/featdistill"
LOG="build/pyinstaller.log"

if [ "${1:-}" != "--no-build" ]; then
    "$VPY" -c "import PyInstaller" 2>/dev/null || { echo "no pyinstaller in the environment of $VPY" >&2; exit 1; }
    mkdir -p build
    echo "building $BUNDLE with PyInstaller (about 2 minutes; log in $LOG)"
    started=$(date +%s)
    if ! "$VPY" -m PyInstaller --noconfirm --clean build.spec >"$LOG" 2>&1; then
        echo "PyInstaller failed; the end of $LOG:" >&2
        tail -n 40 "$LOG" >&2
        exit 1
    fi
    echo "built in $(( $(date +%s) - started )) s"
    grep "featdistill build:" "$LOG" || true
fi

if [ ! -x "$EXE" ]; then
    echo "no bundle at $EXE: run scripts/build_bundle.sh without --no-build first" >&2
    exit 1
fi
echo "bundle size: $(du -sh "$BUNDLE" | cut -f1) unpacked ($BUNDLE)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "self-test of the bundle in an empty environment (no Python, no display)"
if ! env -i PATH=/usr/bin:/bin HOME="$tmp" "$EXE" --self-test --screenshot "$tmp/shot.png" >"$tmp/selftest.log" 2>&1; then
    echo "the bundle's self-test failed:" >&2
    tail -n 40 "$tmp/selftest.log" >&2
    exit 1
fi
cat "$tmp/selftest.log"
if [ ! -s "$tmp/shot.png" ]; then
    echo "the bundle's self-test passed but wrote no screenshot at $tmp/shot.png" >&2
    exit 1
fi
echo "bundle self-test passed; screenshot $(du -h "$tmp/shot.png" | cut -f1)"
