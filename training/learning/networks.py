"""The depth reconstruction network: the depth-to-depth teacher of the affinity distillation (training only).

It is built from the estimator's own blocks (``depth_node.network.depth_estimator``), so its decoder features have the
same form as the student's.
"""

from __future__ import annotations

import torch
from torch import nn

from depth_node.network.depth_estimator import DepthHead, SkipDecoder, conv_bn_relu


class ReconstructionNet(nn.Module):
    """Depth-to-depth encoder-decoder on LR depth; its decoder features are the distillation teacher.

    Input: (N,1,h,w) depth in metres with 0 = invalid; it sees log-depth and the validity mask and predicts dense depth.
    It is pre-trained on a task that is not an identity (``teacher.py``: complete depth with most pixels
    removed, or super-resolve a coarser depth map), then frozen, so its features must encode the scene's depth
    structure (surfaces, edges, ordering) rather than copy their input.
    """

    CHANNELS = (16, 32, 64)
    FEATURE_STRIDES = (4, 2, 1)  # of ``forward_features``' levels, coarse to fine, relative to the input grid

    def __init__(self, min_depth: float, max_depth: float) -> None:
        super().__init__()
        c1, c2, c3 = self.CHANNELS
        self.encoder = nn.ModuleList([
            nn.Sequential(conv_bn_relu(2, c1), conv_bn_relu(c1, c1)),
            nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), conv_bn_relu(c1, c2), conv_bn_relu(c2, c2)),
            nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), conv_bn_relu(c2, c3), conv_bn_relu(c3, c3)),
        ])
        self.decoder = SkipDecoder((c1, c2, c3), (c3, c2, c1))
        self.head = DepthHead(c1, min_depth, max_depth)

    def forward_features(self, depth: torch.Tensor) -> list[torch.Tensor]:
        valid = (depth > 0).float()
        x = torch.cat([torch.log(depth.clamp(min=1e-3)) * valid, valid], 1)
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        return self.decoder(skips)

    def forward(self, depth: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(depth)[-1], depth.shape[-2:])
