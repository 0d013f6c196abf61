#!/usr/bin/env bash
# Idempotent environment setup for kinema4d-ros.
#
#   scripts/setup_env.sh            # create/refresh .venv, install pinned deps, build ROS interfaces
#
# What it does, each step skipped when already done (stamp files under .venv/):
#   1. .venv with the machine's python3.11
#   2. torch==2.13.0 on its own first (CPU build here; KINEMA4D_TORCH_INDEX_URL selects
#      another wheel index, e.g. the CUDA one in the Dockerfile). Installing torch first and
#      pinning it in every later step means pip can never swap in a CUDA build.
#   3. requirements/requirements.txt under requirements/constraints.txt (every version pinned)
#   4. this repository (kinema4d_core, kinema4d_ros) in editable mode
#   5. the ROS 2 interface packages (scripts/build_interfaces.sh), built into the venv prefix
#   6. only with KINEMA4D_BROWSER_TESTS=1 (`./run.sh test` sets it): Chromium for the headless
#      browser test of the 4D web viewer, `apt-get install chromium` when /usr/bin/chromium is
#      missing and we are root with apt-get. A failure only warns: that test then skips.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${KINEMA4D_VENV:-$ROOT/.venv}"
PY="${KINEMA4D_PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

log() { printf '[setup] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual env $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1

deps_hash=$(cat requirements/requirements.txt requirements/constraints.txt | sha256sum | cut -c1-16)
deps_stamp="$VENV/.kinema4d-deps-$deps_hash"
if [ ! -f "$deps_stamp" ]; then
  log "installing torch==2.13.0 (CPU unless KINEMA4D_TORCH_INDEX_URL says otherwise)"
  if [ -n "${KINEMA4D_TORCH_INDEX_URL:-}" ]; then
    "$VPY" -m pip install -q --index-url "$KINEMA4D_TORCH_INDEX_URL" torch==2.13.0
  else
    "$VPY" -m pip install -q torch==2.13.0
  fi
  log "installing pinned requirements (about a minute on a fresh machine)"
  "$VPY" -m pip install -q -r requirements/requirements.txt -c requirements/constraints.txt torch==2.13.0
  rm -f "$VENV"/.kinema4d-deps-*
  touch "$deps_stamp"
else
  log "pinned requirements already installed"
fi

src_stamp="$VENV/.kinema4d-editable"
if [ ! -f "$src_stamp" ] || [ pyproject.toml -nt "$src_stamp" ] || [ ros2_ws/src/kinema4d_ros/setup.py -nt "$src_stamp" ]; then
  log "installing kinema4d_core and kinema4d_ros (editable)"
  "$VPY" -m pip install -q --no-deps --no-build-isolation -e .
  if [ -f ros2_ws/src/kinema4d_ros/setup.py ]; then
    "$VPY" -m pip install -q --no-deps --no-build-isolation -e ros2_ws/src/kinema4d_ros
  fi
  touch "$src_stamp"
fi

# The renderer's numba kernels, compiled once into numba's cache (kinema4d_core/__pycache__): a fresh
# environment would otherwise compile them in the first projector / calibration / inference process,
# about a minute on two busy cores, inside the time a bring-up or a ROS test gives its first output.
nb_index="$(ls -t kinema4d_core/__pycache__/render.*.nbi 2>/dev/null | head -n 1 || true)"
if [ -z "$nb_index" ] || [ kinema4d_core/render.py -nt "$nb_index" ]; then
  log "compiling the renderer's numba kernels into the numba cache (about a minute on a busy 2-core machine)"
  "$VPY" -c "from kinema4d_core.render import warm_up_kernels; from kinema4d_core.robot import load_robot; \
print('[setup] render kernels compiled in %.0f s' % warm_up_kernels(load_robot('panda').meshes), flush=True)"
fi

if [ -x scripts/build_interfaces.sh ]; then
  KINEMA4D_VENV="$VENV" scripts/build_interfaces.sh
fi
if [ "${KINEMA4D_BROWSER_TESTS:-0}" = "1" ]; then
  if [ -x /usr/bin/chromium ]; then
    log "chromium present (/usr/bin/chromium) for the browser tests"
  elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing chromium for the browser tests: apt-get update -qq && apt-get install -y -qq chromium"
    if DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
        && [ -x /usr/bin/chromium ]; then
      log "chromium installed: $(/usr/bin/chromium --version 2>/dev/null | head -n1)"
    else
      log "WARNING: could not install chromium; the headless browser test of the 4D viewer will be skipped"
    fi
  else
    log "WARNING: /usr/bin/chromium is missing and cannot be installed here (needs root and apt-get);" \
        "the headless browser test of the 4D viewer will be skipped"
  fi
fi
log "environment ready: $VENV"
