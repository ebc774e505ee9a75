"""Inference backends, one module each; ``depth_node.estimator`` imports a module only when its backend is chosen.

``nvidia`` holds the TensorRT / cuda-python imports and GPU identity shared by the TensorRT runner and
``depth_node.engine_build``.
"""
