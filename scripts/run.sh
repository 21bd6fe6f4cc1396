#!/usr/bin/env bash
# Install (or reuse) .venv and run the main job: the window, opened on the embedded demo.
# On a machine without a display (a server, CI) it runs the same demo headless instead.
source "$(dirname "$0")/env.sh"
if [ "$(uname)" = "Linux" ] && [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
    echo "no display found: running the demo headless (featdistill demo)" >&2
    exec "$VPY" -m featdistill_core demo "$@"
fi
exec "$VPY" -m app "$@"
