"""config/estimator.yaml holds exactly the parameters the node declares, with their defaults; bad values are named."""

from __future__ import annotations

from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.exceptions import InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from depth_node.params import (
    FIELDS,
    MAX_INPUT_SIZE,
    NETWORK_STRIDE,
    NodeParams,
    check_value,
    declare,
    depth_range_problem,
    input_size,
    params_from_values,
    reload_names,
    with_changes,
)

CONFIG = Path(__file__).parents[1] / "config" / "estimator.yaml"
DOMAIN_ID = 41  # Linux: ids above 101 can collide with ephemeral ports


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def yaml_values() -> dict:
    return flatten(yaml.safe_load(CONFIG.read_text())["/**"]["ros__parameters"])


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    yield ctx
    rclpy.shutdown(context=ctx)


def declared(ctx: rclpy.Context, *cli: str, overrides: list[Parameter] | None = None) -> tuple[Node, NodeParams]:
    node = Node("estimator", context=ctx, cli_args=["--ros-args", *cli], parameter_overrides=overrides or [],
                start_parameter_services=False)
    return node, declare(node)


def test_yaml_keys_and_values_are_exactly_the_declared_defaults(context: rclpy.Context) -> None:
    values = yaml_values()
    assert set(values) == set(FIELDS), f"only in YAML: {set(values) - set(FIELDS)}; missing {set(FIELDS) - set(values)}"
    node, params = declared(context, "--params-file", str(CONFIG))
    try:
        assert params == NodeParams()
        ours = {name: node.get_parameter(name).value for name in FIELDS}
        assert ours == values
        assert all(type(values[name]) is type(f.default) for name, f in FIELDS.items())  # YAML 1 vs 1.0 would drift
        listed = set(node.list_parameters([], 10).names) - {"use_sim_time", "start_type_description_service"}
        assert listed == set(FIELDS)
    finally:
        node.destroy_node()


def test_descriptors_carry_ranges_choices_and_read_only(context: rclpy.Context) -> None:
    node, _ = declared(context)
    try:
        described = {d.name: d for d in node.describe_parameters(list(FIELDS))}
        assert described["points_decimation"].integer_range[0].from_value == 1
        assert described["min_depth"].floating_point_range[0].to_value == 1000.0
        assert "onnxruntime" in described["backend"].additional_constraints
        assert described["qos.input_reliability"].read_only and described["image_transport"].read_only
        assert not described["model"].read_only  # reloads the estimator instead
        assert all(d.description for d in described.values())
        refused = node.set_parameters([Parameter("points_decimation", value=0)])[0]
        assert not refused.successful
        refused = node.set_parameters([Parameter("image_transport", value="compressed")])[0]
        assert not refused.successful and "read-only" in refused.reason
    finally:
        node.destroy_node()


def test_overrides_apply_and_bad_values_refuse_to_start(context: rclpy.Context, tmp_path: Path) -> None:
    node, params = declared(context, "-p", "output_encoding:=16UC1", "-p", "qos.output_depth:=5")
    assert (params.output_encoding, params.qos_output_depth) == ("16UC1", 5)
    node.destroy_node()
    with pytest.raises(ValueError, match="backend must be one of"):
        declared(context, "-p", "backend:=tensorflow")
    with pytest.raises(InvalidParameterValueException):
        declared(context, "-p", "points_decimation:=0")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"min_depth": 5.0, "max_depth": 2.0}}}))
    with pytest.raises(ValueError, match="min_depth .* must be below max_depth"):
        declared(context, "--params-file", str(bad))


def test_run_time_changes_are_validated() -> None:
    params = NodeParams()
    assert with_changes(params, {"points_decimation": 4}).points_decimation == 4
    with pytest.raises(ValueError, match="output_encoding must be one of 32FC1, 16UC1"):
        with_changes(params, {"output_encoding": "8UC1"})
    assert check_value("nope", 1) == "unknown parameter 'nope'"
    assert {"model", "backend", "input_width", "input_height", "engine_cache_dir"} == reload_names()
    assert params_from_values({}) == params


def test_width_and_height_are_settable_one_at_a_time() -> None:
    params = NodeParams()
    assert input_size(params, (480, 640)) is None
    width_only = with_changes(params, {"input_width": 320})  # each accepted alone: 0 is the model's own value
    assert input_size(width_only, (480, 640)) == (480, 320)
    both = with_changes(width_only, {"input_height": 240})
    assert input_size(both, (480, 640)) == (240, 320) and input_size(both, None) == (240, 320)
    with pytest.raises(ValueError, match="input_width is set alone but the model records no input size"):
        input_size(width_only, None)


def test_input_size_is_0_or_between_the_network_stride_and_4096(context: rclpy.Context) -> None:
    from depth_node.network.depth_estimator import STRIDE

    assert NETWORK_STRIDE == STRIDE  # the network pads any input to a multiple of it
    for value in (0, 32, 33, 4096):  # a size off the stride is padded, as the network does for 120 (to 128)
        assert check_value("input_width", value) is None and check_value("input_height", value) is None
    assert check_value("input_height", 16).startswith("input_height 16 is below 32, the network's stride")
    assert "use 32..4096 or 0 for the model's own" in check_value("input_width", 31)
    assert check_value("input_width", 8192) == "input_width must be in [0, 4096], got 8192"
    with pytest.raises(ValueError, match="input_width 16 is below 32"):
        with_changes(NodeParams(), {"input_width": 16})
    with pytest.raises(ValueError, match="input_width 16 is below 32"):
        declared(context, "-p", "input_width:=16")  # at start: the node says `cannot start: ...`
    with pytest.raises(InvalidParameterValueException):
        declared(context, "-p", "input_height:=8192")
    node, _ = declared(context)
    try:
        described = {d.name: d for d in node.describe_parameters(["input_width", "input_height"])}
        for d in described.values():
            assert (d.integer_range[0].from_value, d.integer_range[0].to_value) == (0, MAX_INPUT_SIZE)
            assert d.additional_constraints == "0 or 32..4096" and "32..4096" in d.description
        refused = node.set_parameters([Parameter("input_width", value=8192)])[0]
        assert not refused.successful and "Max: 4096, value: 8192" in refused.reason
    finally:
        node.destroy_node()


def test_depth_range_must_lie_within_the_models() -> None:
    assert depth_range_problem(NodeParams(), 0.1, 10.0) is None
    assert depth_range_problem(with_changes(NodeParams(), {"min_depth": 0.5, "max_depth": 8.0}), 0.1, 10.0) is None
    far = with_changes(NodeParams(), {"min_depth": 20.0})
    assert "min_depth 20.0 m is outside the model's range 0.1..10.0 m" in depth_range_problem(far, 0.1, 10.0)
    assert "max_depth 0.05 m" in depth_range_problem(with_changes(NodeParams(), {"max_depth": 0.05}), 0.1, 10.0)
    inverted = with_changes(NodeParams(), {"max_depth": 0.1})  # against the model's own minimum
    assert "must be below" in depth_range_problem(inverted, 0.1, 10.0)
    with pytest.raises(ValueError, match="min_depth .* must be below max_depth"):
        with_changes(NodeParams(), {"min_depth": 5.0, "max_depth": 2.0})
