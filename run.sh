#!/usr/bin/env bash
# kinema4d-ros entry point. Both commands set up the environment first (idempotent; the first
# run on a fresh machine takes ~2-3 minutes), then:
#
#   ./run.sh sim  [bring-up options]   simulated bring-up: sim world -> projector -> inference,
#                                      prints the run folder and a one-line summary
#   ./run.sh test [pytest options]     the whole test suite
#   ./run.sh setup                     only set up the environment
#
# Every ROS process started from here keeps DDS discovery on loopback with its own domain id.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
cmd="${1:-}"
[ $# -gt 0 ] && shift
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_LOCALHOST_ONLY=1
export MUJOCO_GL="${MUJOCO_GL:-egl}"
case "$cmd" in
  setup)
    scripts/setup_env.sh ;;
  sim)
    scripts/setup_env.sh
    exec .venv/bin/kinema4d-ros bringup sim "$@" ;;
  test)
    KINEMA4D_BROWSER_TESTS=1 scripts/setup_env.sh   # + Debian chromium for the 4D viewer browser test
    exec .venv/bin/python -m pytest -n "${KINEMA4D_TEST_WORKERS:-2}" "$@" ;;
  *)
    sed -n '2,11p' "$0"; exit 2 ;;
esac
