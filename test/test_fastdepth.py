"""FastDepth rebuilt in PyTorch from its int8 TFLite file: equal to the file's own output, metric on real frames, any
input size, selectable as ``model.arch``, through checkpoints and ONNX, and one clear error for a bad file.

Parity tolerances come from the file's quantisation: its output is uint8 with a step of 0.0717 m, and every one of its
38 convolutions rounds its activations to int8 (about 1/255 of each layer's calibrated range), so the float rebuild
differs by a fraction of an output step on average and by a few steps at depth edges. Simulating that activation
rounding in the float rebuild reproduces the file's output to most pixels exactly, which pins the rebuild far tighter.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from depth_node_training.config import load_config
from depth_node_training.deployment.export import export_onnx
from depth_node_training.learning.checkpoint import save_checkpoint
from depth_node_training.learning.fastdepth_tflite import fastdepth_state_dict, load_fastdepth_prior

from depth_node.network.checkpoint import build_network, load_network
from depth_node.network.depth_estimator import DepthEstimator
from depth_node.network.factory import make_network
from depth_node.network.fastdepth import FastDepth
from depth_node.network.model_config import ModelConfig

SHARED = Path(os.environ.get("DEPTH_NODE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")).parent
PRIOR = SHARED / "weights" / "fastdepth" / "fast_depth_224.tflite"
FRAMES = (0, 300, 450)  # spread over the sequence: a wall, the counter, the kitchen
OUTPUT_STEP = 0.07169981  # metres per step of the file's uint8 output
FASTDEPTH = ["model.arch=fastdepth", "model.mean=[0,0,0]", "model.std=[1,1,1]"]
EFFICIENTNET = ["model.arch=efficientnet_lite0", "model.mean=[0.5,0.5,0.5]", "model.std=[0.5,0.5,0.5]"]


@pytest.fixture(scope="module")
def prior() -> Path:
    if not PRIOR.exists():
        pytest.skip(f"FastDepth TFLite file not found at {PRIOR} (shared/weights beside the checkout)")
    return PRIOR


@pytest.fixture(scope="module")
def prior_net(prior) -> FastDepth:
    net = FastDepth(ModelConfig(arch="fastdepth", min_depth=1e-3, max_depth=100.0)).eval()  # range: the file's own
    net.load_state_dict(fastdepth_state_dict(prior))
    return net


@pytest.fixture(scope="module")
def frames(redkitchen) -> list[tuple[np.ndarray, np.ndarray]]:
    """(RGB uint8, depth metres with 0 invalid) at 480x640."""
    out = []
    for i in FRAMES:
        rgb = cv2.cvtColor(cv2.imread(str(redkitchen / f"frame-{i:06d}.color.jpg")), cv2.COLOR_BGR2RGB)
        depth = cv2.imread(str(redkitchen / f"frame-{i:06d}.depth.png"), cv2.IMREAD_UNCHANGED).astype(np.float32)
        out.append((rgb, np.where(depth == 65535, 0, depth) / 1000))
    return out


def nyu_view(image: np.ndarray, interpolation: int) -> np.ndarray:
    """FastDepth's NYU input: 480x640 -> 240x320, centre crop 228x304, -> 224x224."""
    small = cv2.resize(image, (320, 240), interpolation=interpolation)[6:234, 8:312]
    return cv2.resize(small, (224, 224), interpolation=interpolation)


def run(net: torch.nn.Module, rgb: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255)[0, 0].numpy()


def interpreter_depth(prior: Path, rgb224: np.ndarray) -> np.ndarray:
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    interpreter = litert.Interpreter(model_path=str(prior))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], rgb224[None])
    interpreter.invoke()
    out = interpreter.get_output_details()[0]
    scale, zero = out["quantization"]
    return (interpreter.get_tensor(out["index"])[0, ..., 0].astype(np.float32) - zero) * scale


def activation_grids(prior: Path) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    """(scale, zero point) of every convolution's and every ADD's int8 output, in graph order."""
    import tflite

    model = tflite.Model.GetRootAs(prior.read_bytes(), 0)
    graph = model.Subgraphs(0)
    convs, adds = [], []
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        quant = graph.Tensors(op.Outputs(0)).Quantization()
        grid = (quant.Scale(0), quant.ZeroPoint(0)) if quant and quant.ScaleLength() else None
        if builtin in (tflite.BuiltinOperator.CONV_2D, tflite.BuiltinOperator.DEPTHWISE_CONV_2D):
            convs.append(grid)
        elif builtin == tflite.BuiltinOperator.ADD:
            adds.append(grid)
    return convs, adds


def int8_rounded(x: torch.Tensor, grid: tuple[float, int]) -> torch.Tensor:
    scale, zero = grid
    return (torch.clamp(torch.round(x / scale) + zero, -128, 127) - zero) * scale


def test_float_rebuild_matches_the_tflite_interpreter_within_int8_rounding(prior, prior_net, frames):
    """Measured on frames 0/300/450: mean |diff| 0.036/0.041/0.028 m (half an output step), 99th percentile
    0.19/0.19/0.10 m, correlation 0.998; over 24 frames of the sequence the mean stays under 0.077 m."""
    for rgb, _ in frames:
        image = nyu_view(rgb, cv2.INTER_AREA)
        expected, got = interpreter_depth(prior, image), run(prior_net, image)
        diff = np.abs(got - expected)
        assert diff.mean() < OUTPUT_STEP, diff.mean()
        assert np.percentile(diff, 99) < 4 * OUTPUT_STEP, np.percentile(diff, 99)
        assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.99


def test_with_the_files_activation_rounding_simulated_it_reproduces_the_file(prior, frames):
    """The float rebuild plus int8 rounding at each op's output grid: about 80% of pixels give the file's exact
    output step, the rest differ by TFLite's fixed-point rounding (measured mean 0.013-0.02 m)."""
    convs, adds = activation_grids(prior)
    net = FastDepth(ModelConfig(arch="fastdepth", min_depth=1e-3, max_depth=100.0)).eval()
    net.load_state_dict(fastdepth_state_dict(prior))
    layers = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(layers) == len(convs) and len(adds) == 3
    for layer, grid in zip(layers, convs):
        layer.register_forward_hook(lambda _m, _i, out, grid=grid: int8_rounded(out, grid))
    stages, rounded_adds = net.decoder.stages, iter(adds)

    def decoder(encoded: list[torch.Tensor]) -> list[torch.Tensor]:  # NNConv5Decoder with its ADDs rounded too
        *skips, x = encoded
        out = []
        for i, stage in enumerate(stages):
            if i > 0:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
                if i >= 2:
                    x = int8_rounded(x + skips[::-1][i - 2], next(rounded_adds))
            x = stage(x)
            out.append(x)
        return out

    net.decoder.forward = decoder
    for rgb, _ in frames:
        image = nyu_view(rgb, cv2.INTER_AREA)
        rounded_adds = iter(adds)
        diff = np.abs(run(net, image) - interpreter_depth(prior, image))
        assert np.mean(diff < OUTPUT_STEP / 2) > 0.6 and diff.mean() < 0.03, (np.mean(diff < OUTPUT_STEP / 2), diff)


@pytest.mark.parametrize("view", ["nyu224", "256x320"])
def test_depth_is_metric_on_real_frames(prior_net, frames, view):
    """NYU-trained, run on 7-Scenes: measured AbsRel 0.135/0.240/0.137 at the NYU view and median(gt/pred)
    1.05/0.88/1.03 (over 24 frames: AbsRel 0.23, median ratio 0.99); at 256x320, the whole frame: AbsRel
    0.17/0.40/0.16, median ratio 1.05/0.83/1.10."""
    absrels = []
    for rgb, depth in frames:
        if view == "nyu224":
            image, gt = nyu_view(rgb, cv2.INTER_AREA), nyu_view(depth, cv2.INTER_NEAREST)
        else:
            image = cv2.resize(rgb, (320, 256), interpolation=cv2.INTER_AREA)
            gt = cv2.resize(depth, (320, 256), interpolation=cv2.INTER_NEAREST)
        pred = run(prior_net, image)
        valid = (gt > 0.1) & (gt < 10)
        absrels.append(np.mean(np.abs(pred[valid] - gt[valid]) / gt[valid]))
        assert 0.75 < np.median(gt[valid] / pred[valid]) < 1.35
    assert np.mean(absrels) < 0.3, absrels


@pytest.mark.parametrize("size", [(480, 640), (256, 320), (224, 224), (100, 140), (97, 131), (32, 32)])
def test_any_input_size_gives_same_size_positive_depth_in_range(size):
    torch.manual_seed(0)
    net = FastDepth(ModelConfig(arch="fastdepth", min_depth=0.2, max_depth=8.0)).eval()
    with torch.no_grad():
        depth = net(torch.rand(2, 3, *size))
    assert depth.shape == (2, 1, *size)
    assert torch.isfinite(depth).all() and depth.min() >= 0.2 and depth.max() <= 8.0


def test_output_is_cropped_back_from_the_stride_padding_and_features_have_their_strides(prior_net):
    x = torch.rand(1, 3, 100, 140)
    padded = F.pad(x, (0, 20, 0, 28), mode="replicate")
    with torch.no_grad():
        depth = prior_net(x)
        features = prior_net.forward_features(x)
        torch.testing.assert_close(depth, prior_net(padded)[..., :100, :140])
        torch.testing.assert_close(depth, prior_net.predict(features, (100, 140)))
    assert depth.min() > 0
    assert [f.shape[-2:] for f in features] == [(128 // s, 160 // s) for s in FastDepth.FEATURE_STRIDES]
    assert FastDepth.FEATURE_STRIDES == DepthEstimator.FEATURE_STRIDES


def test_make_network_builds_either_arch_and_training_can_split_its_parameters():
    assert isinstance(make_network(ModelConfig(arch="efficientnet_lite0", pretrained=False)), DepthEstimator)
    net = make_network(ModelConfig(arch="fastdepth"))
    assert isinstance(net, FastDepth) and isinstance(net.decoder, torch.nn.Module)
    groups = [*net.encoder.parameters()], [*net.decoder.parameters(), *net.head.parameters()]
    assert {id(p) for p in groups[0]} | {id(p) for p in groups[1]} == {id(p) for p in net.parameters()}
    assert sum(p.numel() for p in net.parameters()) == 1_352_225  # the README's "about 1.35 M parameters"
    with pytest.raises(ValueError, match=r"^model\.arch='resnet': unknown network; known: efficientnet_lite0, "):
        make_network(ModelConfig(arch="resnet"))


def test_training_loads_the_prior_only_when_it_is_named_and_fed_rgb_over_255(prior):
    net = make_network(load_config(None, FASTDEPTH).model)
    with pytest.raises(ValueError, match=r"^model\.prior is empty"):
        load_fastdepth_prior(net, load_config(None, [*FASTDEPTH, "model.prior="]).model)
    with pytest.raises(ValueError, match=r"^model\.mean=\[0\.5, 0\.5, 0\.5\], model\.std=\[0\.5, 0\.5, 0\.5\]"):
        load_fastdepth_prior(net, load_config(None, [*EFFICIENTNET[1:], f"model.prior={prior}"]).model)
    load_fastdepth_prior(net, load_config(None, [*FASTDEPTH, f"model.prior={prior}"]).model)
    torch.testing.assert_close(net.head.conv.weight, fastdepth_state_dict(prior)["head.conv.weight"])


def test_checkpoint_round_trip_and_onnx_export_give_the_same_depth(prior_net, tmp_path):
    cfg = load_config(None, [*FASTDEPTH, "model.pretrained=false", "model.input_height=256",
                             "model.input_width=320"])
    net = make_network(cfg.model)
    net.load_state_dict(prior_net.state_dict())
    path = save_checkpoint(tmp_path / "fastdepth.pt", net, cfg, 0, {"data": [], "git_rev": "test"})
    loaded, model_cfg, _ = load_network(path)
    assert isinstance(loaded, FastDepth) and model_cfg.arch == "fastdepth"
    rebuilt = build_network(cfg.model, torch.load(path, weights_only=True)["model"])
    image = torch.randint(0, 256, (1, 3, 256, 320)).float()
    with torch.no_grad():
        expected = net.eval()(image / 255)
        torch.testing.assert_close(loaded(image / 255), expected)
        torch.testing.assert_close(rebuilt(image / 255), expected)
    onnx_path = export_onnx(str(path), tmp_path / "fastdepth.onnx")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": image.numpy()})[0]
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-4)
    assert any(node.name.startswith("/net/head/") for node in onnx.load(str(onnx_path)).graph.node)


def test_a_bad_file_is_refused_in_one_line_naming_it(prior, tmp_path):
    import flatbuffers
    import tflite

    builder = flatbuffers.Builder(64)  # a valid TFLite file whose one graph has no inputs and no operators
    tflite.SubGraphStart(builder)
    graph = tflite.SubGraphEnd(builder)
    tflite.ModelStartSubgraphsVector(builder, 1)
    builder.PrependUOffsetTRelative(graph)
    graphs = builder.EndVector()
    tflite.ModelStart(builder)
    tflite.ModelAddVersion(builder, 3)
    tflite.ModelAddSubgraphs(builder, graphs)
    builder.Finish(tflite.ModelEnd(builder), file_identifier=b"TFL3")
    (tmp_path / "other.tflite").write_bytes(builder.Output())
    (tmp_path / "text.tflite").write_text("not a model\n")
    (tmp_path / "cut.tflite").write_bytes(prior.read_bytes()[:100_000])
    cases = {"missing.tflite": "No such file or directory", "text.tflite": "not a TFLite file",
             "cut.tflite": "damaged TFLite flatbuffer", "other.tflite": "unexpected graph: 0 inputs, FastDepth has 1"}
    for name, cause in cases.items():
        with pytest.raises(ValueError) as error:
            fastdepth_state_dict(tmp_path / name)
        assert str(error.value).startswith(f"FastDepth prior {tmp_path / name}: {cause}"), str(error.value)
        assert "\n" not in str(error.value)
        assert ("set model.prior=PATH, or train model.arch=efficientnet_lite0" in str(error.value)) == (
            name == "missing.tflite")  # a user without the file is told where it comes from and the way around it



def test_fastdepth_is_a_frozen_image_teacher_for_distillation(prior, redkitchen, tmp_path):
    """``loss.teacher=fastdepth``: it sees the HR image as RGB in [0, 1], its affinities reach the student's weights,
    and it is never updated (after training, the checkpoint's teacher is the file's network)."""
    from depth_node_training.config import load_config
    from depth_node_training.learning.checkpoint import read_checkpoint
    from depth_node_training.learning.objective import distilled, teacher_view, weak_losses
    from depth_node_training.learning.teacher import image_teacher
    from depth_node_training.learning.train import fit

    overrides = [*EFFICIENTNET, "model.pretrained=false", "train.batch_size=2", "data.crop_height=64",
                 "data.crop_width=96", "train.steps=2", "train.log_every=1", "loss.w_affinity=1",
                 "loss.teacher=fastdepth", f"loss.teacher_weights={prior}", "loss.affinity_grid=[4,6]",
                 "loss.affinity_warmup=0"]
    cfg = load_config(None, overrides)
    image = torch.rand(2, 3, 64, 96)
    assert torch.allclose(teacher_view((image - 0.5) / 0.5, None, None, cfg), image, atol=1e-6)

    on_lr_grid = tuple(s / 4 for s in FastDepth.FEATURE_STRIDES)  # x4: its HR strides 2-32 in LR pixels
    pairs = distilled([("lr", (16, 24)), ("hr", (64, 96))], (16, 24), "matched", on_lr_grid)
    assert [(f, stride, on_lr_grid[t] * size[0] / 16) for f, size, _, stride, t in pairs] == [
        ("lr", 2, 2), ("lr", 4, 4), ("hr", 2, 2), ("hr", 4, 4)]  # each pair covers the same area of the image
    teacher, student = image_teacher(cfg, torch.device("cpu")), DepthEstimator(cfg.model)
    terms = weak_losses(student, teacher, (image - 0.5) / 0.5, torch.rand(2, 1, 16, 24) + 1, torch.zeros(2, 1, 64, 96),
                        cfg)
    terms["l_affinity"].backward()
    assert terms["l_affinity"].item() > 0 and student.encoder.parameters().__next__().grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())

    fit(cfg, [f"{redkitchen}@0:4"], tmp_path, progress=False)
    saved = read_checkpoint(tmp_path / "checkpoint.pt")["teacher"]
    assert all(torch.equal(saved[k], v) for k, v in fastdepth_state_dict(prior).items())
    with pytest.raises(ValueError, match="loss.teacher_weights"):
        image_teacher(load_config(None, ["loss.teacher=fastdepth"]), torch.device("cpu"))
