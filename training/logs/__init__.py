"""Robot logs -> training data: read rosbag2 logs, pair colour with depth, register depth into the colour camera,
write and read extracted sets, and the built-in sample log."""
