#!/usr/bin/env bash
# Build the project's ROS 2 interface packages into the virtual env (PyPI-wheels ROS 2).
#
#   scripts/build_interfaces.sh          # idempotent: skipped while the interface sources are unchanged
#   KINEMA4D_FORCE_INTERFACES=1 scripts/build_interfaces.sh   # rebuild anyway
#
# Packages, in order: third_party/tf2_msgs (TFMessage only; no tf2_msgs wheel exists) and
# ros2_ws/src/kinema4d_interfaces (Simulate.action). Both are installed into the venv prefix,
# because the wheels' bootstrap puts only sys.prefix/lib on LD_LIBRARY_PATH.
#
# The wheels' exported CMake files hard-code the wheel build machine's Python include dir
# (/opt/python/cp311-cp311/include/python3.11) and numpy include dir; they are rewritten to this
# interpreter's paths before configuring (once; later runs find nothing left to rewrite).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${KINEMA4D_VENV:-$ROOT/.venv}"
VPY="$VENV/bin/python"
PACKAGES=("$ROOT/third_party/tf2_msgs" "$ROOT/ros2_ws/src/kinema4d_interfaces")

log() { printf '[interfaces] %s\n' "$*"; }

[ -x "$VPY" ] || { echo "[interfaces] no python at $VPY: run scripts/setup_env.sh first" >&2; exit 1; }
command -v cmake >/dev/null 2>&1 || { echo "[interfaces] cmake not found: apt-get install cmake g++" >&2; exit 1; }

# Stamp: hash of every interface source file plus this script.
src_hash=$( (cd "$ROOT" && find third_party/tf2_msgs ros2_ws/src/kinema4d_interfaces -type f \
               \( -name '*.msg' -o -name '*.srv' -o -name '*.action' -o -name 'CMakeLists.txt' -o -name 'package.xml' \) \
               -print | LC_ALL=C sort | xargs sha256sum; sha256sum scripts/build_interfaces.sh) \
            | sha256sum | cut -c1-16)
stamp="$VENV/.kinema4d-interfaces-$src_hash"
if [ -f "$stamp" ] && [ -z "${KINEMA4D_FORCE_INTERFACES:-}" ] \
   && "$VPY" -c 'import kinema4d_interfaces.action, tf2_msgs.msg' >/dev/null 2>&1; then
  log "interfaces up to date"
  exit 0
fi

# 1. Rewrite the hard-coded include dirs in the wheels' CMake exports.
py_include=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_include=$("$VPY" -c 'import numpy; print(numpy.get_include())')
old_py="/opt/python/cp311-cp311/include/python3.11"
old_np="/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"
mapfile -t to_fix < <(grep -rlF -e "$old_py" -e "$old_np" "$VENV/share" --include='*.cmake' 2>/dev/null || true)
if [ "${#to_fix[@]}" -gt 0 ]; then
  log "rewriting Python/numpy include dirs in ${#to_fix[@]} CMake files"
  for f in "${to_fix[@]}"; do
    sed -i -e "s#$old_py#$py_include#g" -e "s#$old_np#$np_include#g" "$f"
  done
fi

# 2. Configure, build and install each package into the venv prefix.
build_root=$(mktemp -d "${TMPDIR:-/tmp}/kinema4d-interfaces.XXXXXX")
trap 'rm -rf "$build_root"' EXIT
for pkg in "${PACKAGES[@]}"; do
  name=$(basename "$pkg")
  log "building $name"
  start=$(date +%s)
  # ament's python helpers import lark etc.: run cmake with the venv first on PATH.
  PATH="$VENV/bin:$PATH" PYTHONWARNINGS="ignore::DeprecationWarning" \
    cmake -S "$pkg" -B "$build_root/$name" -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
      -DPython3_EXECUTABLE="$VPY" -DPYTHON_EXECUTABLE="$VPY" -DBUILD_TESTING=OFF \
      -DCMAKE_BUILD_TYPE=Release >"$build_root/$name.log" 2>&1 \
    || { cat "$build_root/$name.log" >&2; exit 1; }
  PATH="$VENV/bin:$PATH" PYTHONWARNINGS="ignore::DeprecationWarning" \
    cmake --build "$build_root/$name" -j"${KINEMA4D_BUILD_JOBS:-2}" >>"$build_root/$name.log" 2>&1 \
    || { tail -n 60 "$build_root/$name.log" >&2; exit 1; }
  cmake --install "$build_root/$name" >>"$build_root/$name.log" 2>&1 \
    || { tail -n 30 "$build_root/$name.log" >&2; exit 1; }
  log "built $name in $(( $(date +%s) - start )) s"
done

# 3. Check the generated Python types import, then stamp.
"$VPY" -c 'from kinema4d_interfaces.action import Simulate; from tf2_msgs.msg import TFMessage; print("[interfaces] import check ok:", Simulate.__name__, TFMessage.__name__)'
rm -f "$VENV"/.kinema4d-interfaces-*
touch "$stamp"
