#!/usr/bin/env bash
# Install (or reuse) .venv and run the whole test suite.
source "$(dirname "$0")/env.sh"
export QT_QPA_PLATFORM=offscreen
"$VPY" -m pytest tests "$@"
