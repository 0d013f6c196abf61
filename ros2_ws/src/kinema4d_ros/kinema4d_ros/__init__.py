"""kinema4d_ros: the ROS 2 layer of kinema4d-ros (nodes, bring-up). Thin over kinema4d_core."""
