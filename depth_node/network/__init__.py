"""What runs a checkpoint in PyTorch: the estimator network, its config, the checkpoint loader, the confidence head
and the deploy wrapper (0..255 RGB in, metres out). Training and export import these; nothing here imports training.
"""
