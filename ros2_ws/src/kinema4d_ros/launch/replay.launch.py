"""Launch the kinema4d node graph in mode 'replay' (needs a full ROS 2 install: launch, launch_ros).

The nodes, parameters and remappings come from kinema4d_ros.graph, the same description the
bring-up runner (`kinema4d-ros bringup replay`) uses. Example:
    ros2 launch kinema4d_ros replay.launch.py bag:=/path/to/bag calibration:=/path/to/calib.yaml rviz:=true
"""

from kinema4d_ros.launch_description import generate

MODE = "replay"


def generate_launch_description():
    return generate(MODE)
