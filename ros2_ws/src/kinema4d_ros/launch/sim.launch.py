"""Launch the kinema4d node graph in mode 'sim' (needs a full ROS 2 install: launch, launch_ros).

The nodes, parameters and remappings come from kinema4d_ros.graph, the same description the
bring-up runner (`kinema4d-ros bringup sim`) uses. Example:
    ros2 launch kinema4d_ros sim.launch.py robot:=panda backend:=static-scene rviz:=true
"""

from kinema4d_ros.launch_description import generate

MODE = "sim"


def generate_launch_description():
    return generate(MODE)
