"""Launch the kinema4d node graph in mode 'real' (needs a full ROS 2 install: launch, launch_ros).

The nodes, parameters and remappings come from kinema4d_ros.graph, the same description the
bring-up runner (`kinema4d-ros bringup real`) uses. Example:
    ros2 launch kinema4d_ros real.launch.py robot:=panda backend:=static-scene rviz:=true
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from kinema4d_ros import graph

MODE = "real"


def _nodes(context):
    args = {name: LaunchConfiguration(name).perform(context) for name in graph.defaults(MODE)}
    graph.check_args(MODE, args)
    return [Node(package=spec.package, executable=spec.executable, name=spec.name, output="screen",
                 parameters=[p for p in (spec.params_file, spec.parameters) if p],
                 remappings=list(spec.remappings))
            for spec in graph.nodes_for(MODE, args)]


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(name, default_value=value, description=arg.description)
                for arg in graph.ARGUMENTS if MODE in arg.modes
                for name, value in [(arg.name, graph.defaults(MODE)[arg.name])]]
    rviz = Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                arguments=["-d", str(graph.rviz_config())], condition=IfCondition(LaunchConfiguration("rviz")),
                parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}])
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes), rviz])
