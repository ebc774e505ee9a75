"""Inference backends, one module each; ``depth_node.estimator`` imports a module only when its backend is chosen."""
