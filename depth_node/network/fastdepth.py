"""FastDepth as a float network: a depth prior that already knows metric indoor depth, to fine-tune from.

FastDepth (Wofk, Ma, Yang, Karaman, Sze, ICRA 2019) in its "MobileNet-NNConv5, depthwise decoder, additive skips,
pruned" form: a channel-pruned MobileNet-v1 encoder (ReLU6) and five decoder stages of 5x5 depthwise + 1x1 pointwise
convolutions (ReLU), each followed by x2 nearest upsampling, with the encoder features at strides 8, 4 and 2 added to
the upsampled decoder features; a 1x1 convolution then gives depth in metres. Trained on NYU Depth v2 (Kinect v1,
indoor). Code and models: MIT licence (dwofk/fast-depth); the int8 file these weights are read from: Apache-2.0
(STM32 model zoo); NYU Depth v2 itself states no licence.

The channel counts below are the pruned ones of that file. Its BatchNorm layers are folded into the convolutions'
biases, so there is no BatchNorm here: fresh BatchNorm layers would change the prior's function in training mode.

Input convention: FastDepth takes RGB / 255. ``DeployModel`` feeds ``(rgb/255 - mean) / std``, so a FastDepth config
must use ``mean = (0, 0, 0)`` and ``std = (1, 1, 1)`` (``training/learning/fastdepth_tflite.py`` refuses to load the
prior under any other). The runtime never reads the TFLite file: a checkpoint holds every weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .depth_estimator import STRIDE, pad_to_stride
from .model_config import ModelConfig

STEM_CHANNELS = 16
# (out channels, stride) of the 13 depthwise-separable MobileNet-v1 blocks after pruning.
ENCODER_BLOCKS = ((56, 1), (88, 2), (120, 1), (144, 2), (256, 1), (408, 2), (376, 1), (272, 1), (288, 1), (296, 1),
                  (328, 1), (480, 2), (512, 1))
SKIP_BLOCKS = (0, 2, 4)  # blocks whose outputs (strides 2, 4, 8) are added into the decoder
DECODER_CHANNELS = (200, 256, 120, 56, 16)  # output channels of the decoder stages, strides 32, 16, 8, 4, 2
DECODER_KERNEL = 5


class Separable(nn.Module):
    """Depthwise k x k (with bias) + activation, then pointwise 1x1 (with bias) + activation."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, relu6: bool) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, kernel, stride, kernel // 2, groups=cin)
        self.pointwise = nn.Conv2d(cin, cout, 1)
        self.act = nn.ReLU6() if relu6 else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.pointwise(self.act(self.depthwise(x))))


class MobileNetEncoder(nn.Module):
    """The pruned MobileNet-v1: returns the skip features (strides 2, 4, 8) and the stride-32 output, fine to coarse."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, STEM_CHANNELS, 3, 2, 1)
        cins = (STEM_CHANNELS, *(c for c, _ in ENCODER_BLOCKS[:-1]))
        self.blocks = nn.ModuleList(Separable(cin, cout, 3, s, relu6=True)
                                    for cin, (cout, s) in zip(cins, ENCODER_BLOCKS))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self.stem(x))
        features = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in SKIP_BLOCKS:
                features.append(x)
        return [*features, x]


class NNConv5Decoder(nn.Module):
    """Five separable stages, coarse to fine; between stages x2 nearest upsampling plus the matching encoder skip."""

    def __init__(self) -> None:
        super().__init__()
        cins = (ENCODER_BLOCKS[-1][0], *DECODER_CHANNELS[:-1])
        self.stages = nn.ModuleList(Separable(cin, cout, DECODER_KERNEL, 1, relu6=False)
                                    for cin, cout in zip(cins, DECODER_CHANNELS))

    def forward(self, encoded: list[torch.Tensor]) -> list[torch.Tensor]:
        *skips, x = encoded
        skips = skips[::-1]  # coarse to fine: strides 8, 4, 2
        first_skip = len(self.stages) - len(skips)  # the last stages take one skip each
        out = []
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
                if i >= first_skip:
                    x = x + skips[i - first_skip]
            x = stage(x)
            out.append(x)
        return out


class FastDepthHead(nn.Module):
    """The final 1x1 convolution to metres, clamped into [min_depth, max_depth], then x2 nearest upsampling.

    FastDepth upsamples before this convolution and ends in a ReLU; a 1x1 convolution and a clamp commute with nearest
    upsampling, so running them at stride 2 gives the same depth for a quarter of the work.
    """

    def __init__(self, channels: int, min_depth: float, max_depth: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1)
        self.min_depth, self.max_depth = min_depth, max_depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        depth = self.conv(x).clamp(self.min_depth, self.max_depth)
        return F.interpolate(depth, scale_factor=2.0, mode="nearest")


class FastDepth(nn.Module):
    """Monocular metric depth: RGB/255 (N,3,H,W), any H and W, to depth in metres (N,1,H,W) in [min, max]."""

    FEATURE_STRIDES = (32, 16, 8, 4, 2)  # of ``forward_features``' levels, relative to the padded input

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.encoder = MobileNetEncoder()
        self.decoder = NNConv5Decoder()
        self.head = FastDepthHead(DECODER_CHANNELS[-1], cfg.min_depth, cfg.max_depth)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Decoder features, coarse to fine (strides 32..2 of the padded input)."""
        return self.decoder(self.encoder(pad_to_stride(x, STRIDE)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(self.forward_features(x), x.shape[-2:])

    def predict(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Depth from decoder features, cropped back to the unpadded input ``size``."""
        h, w = size
        return self.head(features[-1])[..., :h, :w]
