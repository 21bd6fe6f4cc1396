#!/usr/bin/env bash
# Install (or reuse) .venv, run the whole test suite, then build the desktop bundle and run its
# self-test in an empty environment (scripts/build_bundle.sh), so every change proves the packaging.
source "$(dirname "$0")/env.sh"
export QT_QPA_PLATFORM=offscreen
"$VPY" -m pytest tests "$@"
if [ "${FEATDISTILL_SKIP_BUNDLE:-0}" != "1" ]; then
    bash scripts/build_bundle.sh
fi
