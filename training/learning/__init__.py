"""Training data -> model: frames and datasets, training pairs, the teacher, losses, the objective, the training loop
and checkpoints. The estimator network itself is the runtime's (``depth_node.network``)."""
