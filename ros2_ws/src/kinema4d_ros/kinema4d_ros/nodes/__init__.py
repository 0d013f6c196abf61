"""ROS 2 nodes of kinema4d-ros; each module has ``main()`` and a table of its topics, parameters and QoS."""
