"""Typed config: YAML + overrides, loud failures on typos."""

import pytest
from depth_node_training.config import Config, config_from_dict, config_to_dict, load_config


def test_default_yaml_equals_dataclass_defaults_where_listed():
    cfg = load_config()
    assert cfg.model == Config().model and cfg.loss == Config().loss and cfg.data == Config().data


def test_overrides_are_typed():
    cfg = load_config(None, ["train.steps=7", "loss.w_affinity=0", "data.hflip=false", "loss.affinity_grid=[6,8]",
                             "loss.form=berhu"])
    assert cfg.train.steps == 7 and isinstance(cfg.loss.w_affinity, float) and cfg.data.hflip is False
    assert cfg.loss.affinity_grid == (6, 8) and cfg.loss.form == "berhu"
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_unknown_keys_fail_loudly():
    with pytest.raises(ValueError, match="unknown train option"):
        load_config(None, ["train.stepz=3"])
    with pytest.raises(ValueError, match="section.key=value"):
        load_config(None, ["steps=3"])
