"""Model smoke: shapes at any input size, strictly positive depth in range, pretrained weights, no NaN."""

import pytest
import torch
from depth_node_training.learning.networks import ReconstructionNet

from depth_node.network.depth_estimator import DepthEstimator, EfficientNetLite0Encoder, imagenet_weights
from depth_node.network.model_config import ModelConfig


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return DepthEstimator(ModelConfig(pretrained=False, min_depth=0.2, max_depth=8.0)).eval()


@pytest.mark.parametrize("size", [(120, 160), (60, 80), (97, 131), (32, 32)])
def test_any_input_size_gives_same_size_positive_depth(model, size):
    with torch.no_grad():
        depth = model(torch.randn(2, 3, *size))
    assert depth.shape == (2, 1, *size)
    assert torch.isfinite(depth).all() and depth.min() >= 0.2 and depth.max() <= 8.0


def test_output_is_cropped_back_from_the_internal_stride_padding(model):
    """A 100x140 input is padded to 128x160 inside; the output equals that of the explicitly padded image, cropped."""
    x = torch.randn(1, 3, 100, 140)
    padded = torch.nn.functional.pad(x, (0, 20, 0, 28), mode="replicate")
    with torch.no_grad():
        a = model(x)
        b = model(padded)[..., :100, :140]
    assert a.shape == (1, 1, 100, 140)
    torch.testing.assert_close(a, b)


def test_pretrained_weights_are_the_packages_imagenet_weights():
    encoder = EfficientNetLite0Encoder(pretrained=True)
    weights = imagenet_weights()
    assert torch.equal(encoder._conv_stem.weight, weights["_conv_stem.weight"])
    assert torch.equal(encoder._blocks[15]._project_conv.weight, weights["_blocks.15._project_conv.weight"])


def test_reconstruction_net_reconstructs_shape_and_ignores_invalid_input_values():
    net = ReconstructionNet(0.1, 10.0).eval()
    depth = torch.rand(1, 1, 30, 40) * 3 + 0.5
    depth[..., :5, :5] = 0
    with torch.no_grad():
        out = net(depth)
        feats = net.forward_features(depth)
    assert out.shape == depth.shape and (out > 0).all()
    assert [f.shape[-2:] for f in feats] == [(8, 10), (15, 20), (30, 40)]
