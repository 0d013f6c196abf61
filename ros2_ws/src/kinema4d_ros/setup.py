"""ament_python package kinema4d_ros: the ROS 2 nodes and bring-up of kinema4d-ros.

Installed two ways: editable into the project venv (scripts/setup_env.sh; executables in
.venv/bin) and by `colcon build` (executables in install/kinema4d_ros/lib/kinema4d_ros, launch
files, parameter files and the RViz config in install/kinema4d_ros/share/kinema4d_ros).
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "kinema4d_ros"
NODES = ("projector_node", "inference_node", "calibration_node", "sim_world_node", "bag_player_node",
         "robot_state_node")

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "tests"]),
    package_data={PACKAGE: ["config/*.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", sorted(glob("launch/*.launch.py"))),
        (f"share/{PACKAGE}/config", sorted(glob("config/*.yaml") + glob("config/*.rviz"))),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="kinema4d-ros maintainers",
    maintainer_email="maintainers@kinema4d-ros.dev",
    description="ROS 2 nodes and bring-up of kinema4d-ros (Kinema4D 4D generative robot simulator).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [f"{name} = {PACKAGE}.nodes.{name}:main" for name in NODES]
        + ["kinema4d-ros = kinema4d_ros.bringup:main"],
    },
)
