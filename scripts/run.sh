#!/usr/bin/env bash
# Install (or reuse) .venv and run the main job: the demo, headless.
source "$(dirname "$0")/env.sh"
"$VPY" -m featdistill_core demo "$@"
