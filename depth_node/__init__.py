"""depth_node runtime: HR metric depth from a color image, served over ROS 2."""
