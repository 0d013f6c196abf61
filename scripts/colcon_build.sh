#!/usr/bin/env bash
# colcon build of ros2_ws against the ROS 2 wheels installed in the venv.
#
#   scripts/colcon_build.sh [colcon build options...]     e.g. --build-base B --install-base I
#
# With the PyPI wheels there is no /opt/ros/<distro>/setup.bash: this script sets what it would
# (CMAKE_PREFIX_PATH and AMENT_PREFIX_PATH at the venv prefix, the venv's bin on PATH) and builds
# every package under ros2_ws/src (kinema4d_interfaces with ament_cmake, kinema4d_ros with
# ament_python). Used by the Dockerfile and tests/ros/test_colcon_build.py. COLCON_LOG_PATH
# chooses the log folder (default ros2_ws/log).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${KINEMA4D_VENV:-$ROOT/.venv}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export PATH="$VENV/bin:$PATH"
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::DeprecationWarning}"   # lark (rosidl) warns on import
cd "$ROOT/ros2_ws"
exec "$VENV/bin/colcon" build --base-paths "$ROOT/ros2_ws/src" "$@" \
  --cmake-args "-DPython3_EXECUTABLE=$VENV/bin/python" -DBUILD_TESTING=OFF
