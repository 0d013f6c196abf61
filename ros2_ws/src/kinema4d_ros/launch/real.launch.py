"""Launch the kinema4d node graph in mode 'real' (needs a full ROS 2 install: launch, launch_ros).

The nodes, parameters and remappings come from kinema4d_ros.graph, the same description the
bring-up runner (`kinema4d-ros bringup real`) uses. Example:
    ros2 launch kinema4d_ros real.launch.py calibration:=/path/to/calib.yaml \
        image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info rviz:=true
"""

from kinema4d_ros.launch_description import generate

MODE = "real"


def generate_launch_description():
    return generate(MODE)
