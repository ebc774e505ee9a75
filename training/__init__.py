"""Offline training of the depth estimator (installed as ``depth_node_training``; never imports rclpy)."""
