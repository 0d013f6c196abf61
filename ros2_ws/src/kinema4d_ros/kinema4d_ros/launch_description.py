"""The launch description of one bring-up mode, built from ``graph.py``.

``launch/{sim,real,replay}.launch.py`` call ``generate(MODE)``; the bring-up runner
(``kinema4d-ros bringup``) reads the same ``graph`` description, so both start the same nodes
with the same parameters and remappings. Importing this module needs a full ROS 2 install
(``launch``, ``launch_ros``).
"""

from __future__ import annotations

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from kinema4d_ros import graph


def _node_actions(context, mode: str) -> list[Node]:
    args = {name: LaunchConfiguration(name).perform(context) for name in graph.defaults(mode)}
    graph.check_args(mode, args)
    return [Node(package=spec.package, executable=spec.executable, name=spec.name, output="screen",
                 parameters=[p for p in (spec.params_file, spec.parameters) if p],
                 remappings=list(spec.remappings))
            for spec in graph.nodes_for(mode, args)]


def generate(mode: str) -> LaunchDescription:
    """Launch arguments of ``mode`` (with graph.py's defaults and descriptions), its nodes, and RViz."""
    defaults = graph.defaults(mode)
    declared = [DeclareLaunchArgument(arg.name, default_value=defaults[arg.name], description=arg.description)
                for arg in graph.ARGUMENTS if mode in arg.modes]
    rviz = Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                arguments=["-d", str(graph.rviz_config())], condition=IfCondition(LaunchConfiguration("rviz")),
                parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}])
    return LaunchDescription([*declared, OpaqueFunction(function=_node_actions, args=[mode]), rviz])
