"""The launch description of one bring-up mode, built from ``graph.py``.

``launch/{sim,real,replay}.launch.py`` call ``generate(MODE)``; the bring-up runner
(``kinema4d-ros bringup``) reads the same ``graph`` description, so both start the same nodes
with the same parameters and remappings. Importing this module needs a full ROS 2 install
(``launch``, ``launch_ros``).

Environment (ros_env's two rules): in ``sim`` and ``replay`` (and ``real`` with
``loopback:=true``) every node and RViz get the loopback environment explicitly
(``ros_env.loopback_env``: LOCALHOST discovery, the packaged Fast DDS profile, ROS_DOMAIN_ID from
``domain_id:=`` or a fresh random one in 1..101, logged at start). ``real`` passes nothing: the
nodes keep the user's ROS_DOMAIN_ID, discovery range, RMW and DDS profile.
"""

from __future__ import annotations

from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, LogInfo, OpaqueFunction, SetEnvironmentVariable,
                            UnsetEnvironmentVariable)
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from kinema4d_ros import graph
from kinema4d_ros.ros_env import ENV_KEYS, describe_env, loopback_env, user_env


def _env_actions(mode: str, args: dict[str, str]) -> list:
    """Set (rule 1) or keep (rule 2) the ROS environment of every process started after this."""
    if not graph.uses_loopback(mode, args):
        env = user_env(domain_id=graph.domain_arg(mode, args))
        actions: list = []
        if graph.domain_arg(mode, args) is not None:
            actions.append(SetEnvironmentVariable("ROS_DOMAIN_ID", env["ROS_DOMAIN_ID"]))
        return [*actions, LogInfo(msg=f"kinema4d {mode}: the user's ROS environment: {describe_env(env)}")]
    env = loopback_env(domain_id=graph.domain_arg(mode, args))
    actions = [SetEnvironmentVariable(k, env[k]) if env.get(k) else UnsetEnvironmentVariable(k)
               for k in ENV_KEYS if k != "ROS_LOG_DIR"]
    return [*actions, LogInfo(msg=f"kinema4d {mode}: loopback only, private domain: {describe_env(env)}")]


def _node_actions(context, mode: str) -> list:
    args = {name: LaunchConfiguration(name).perform(context) for name in graph.defaults(mode)}
    graph.check_args(mode, args)
    nodes = [Node(package=spec.package, executable=spec.executable, name=spec.name, output="screen",
                  parameters=[p for p in (spec.params_file, spec.parameters) if p],
                  remappings=list(spec.remappings))
             for spec in graph.nodes_for(mode, args)]
    return [*_env_actions(mode, args), *nodes, _rviz()]


def _rviz() -> Node:
    return Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                arguments=["-d", str(graph.rviz_config())], condition=IfCondition(LaunchConfiguration("rviz")),
                parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}])


def generate(mode: str) -> LaunchDescription:
    """Launch arguments of ``mode`` (with graph.py's defaults and descriptions), its nodes, and RViz."""
    defaults = graph.defaults(mode)
    declared = [DeclareLaunchArgument(arg.name, default_value=defaults[arg.name], description=arg.description)
                for arg in graph.ARGUMENTS if mode in arg.modes]
    # RViz starts inside the OpaqueFunction, after the environment actions, so it shares the domain
    return LaunchDescription([*declared, OpaqueFunction(function=_node_actions, args=[mode])])
