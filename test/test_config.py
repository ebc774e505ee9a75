"""Typed config: YAML + overrides, loud failures on typos."""

import pytest
from depth_node_training.config import Config, config_from_dict, config_to_dict, load_config


def test_default_yaml_equals_dataclass_defaults_where_listed():
    cfg = load_config()
    assert cfg.model == Config().model and cfg.loss == Config().loss and cfg.data == Config().data


def test_overrides_are_typed():
    cfg = load_config(None, ["train.steps=7", "loss.w_affinity=0", "data.hflip=true", "loss.affinity_grid=[6,8]",
                             "loss.form=berhu"])
    assert cfg.train.steps == 7 and isinstance(cfg.loss.w_affinity, float) and cfg.data.hflip is True
    assert cfg.loss.affinity_grid == (6, 8) and cfg.loss.form == "berhu"
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_unknown_keys_fail_loudly():
    with pytest.raises(ValueError, match="unknown train option"):
        load_config(None, ["train.stepz=3"])
    with pytest.raises(ValueError, match="section.key=value"):
        load_config(None, ["steps=3"])


def test_bad_values_name_the_key_and_where_it_came_from(tmp_path):
    assert load_config(None, ["train.lr=1e-3"]).train.lr == 0.001  # YAML 1.1 reads 1e-3 as text
    with pytest.raises(ValueError, match=r"^train\.steps='abc': expected an integer \(from the command line\)$"):
        load_config(None, ["train.steps=abc"])
    with pytest.raises(ValueError, match=r"^train\.steps=2\.5: expected an integer"):
        load_config(None, ["train.steps=2.5"])
    with pytest.raises(ValueError, match=r"^loss\.affinity_grid=3: expected 2 values"):
        load_config(None, ["loss.affinity_grid=3"])
    path = tmp_path / "cfg.yaml"
    path.write_text("data:\n  hflip: maybe\n")
    with pytest.raises(ValueError, match=rf"^data\.hflip='maybe': expected true or false \(from {path}\)$"):
        load_config(path)
    path.write_text("- not\n- sections\n")
    with pytest.raises(ValueError, match=rf"^config {path}: expected sections"):
        load_config(path)


@pytest.mark.parametrize("value", ["nan", "inf", "-1e-3", "0"])
def test_an_unusable_learning_rate_is_refused_naming_the_key(value):
    """Found by trying it: `train.lr=nan` ended in PyTorch's `Invalid learning rate: nan` after the data was read."""
    with pytest.raises(ValueError, match=r"^train\.lr=.*: the learning rate must be a finite number > 0 \(from the "
                                         r"command line\)$"):
        load_config(None, [f"train.lr={value}"])


def test_the_depth_train_cli_refuses_it_in_one_line_before_reading_data(tmp_path):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "depth_node_training.cli", "fit", "--data", str(tmp_path / "none"),
                          "--out", str(tmp_path / "run"), "train.lr=nan"], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and not (tmp_path / "run").exists()
    assert run.stderr.strip().splitlines() == ["depth-train fit: error: train.lr='nan': the learning rate must be a "
                                               "finite number > 0 (from the command line)"]


@pytest.mark.parametrize("override", ["train.steps=0", "train.batch_size=0", "train.grad_clip=-1",
                                      "train.decoder_bn_stats=lr"])
def test_other_unusable_values_are_refused_naming_the_key(override):
    with pytest.raises(ValueError, match=rf"^{override.split('=')[0].replace('.', '[.]')}="):
        load_config(None, [override])


def test_retired_option_is_explained_and_old_checkpoint_configs_still_load():
    from depth_node_training.config import config_from_dict, config_to_dict, without_retired

    with pytest.raises(ValueError, match=r"loss\.w_recon was retired: the teacher is pre-trained"):
        load_config(None, ["loss.w_recon=1.0"])
    saved = config_to_dict(load_config(None))
    saved["loss"]["w_recon"] = 1.0  # what checkpoints of the jointly trained teacher carry
    assert config_from_dict(without_retired(saved)) == load_config(None)


def test_options_of_a_disabled_distillation_term_do_not_count_as_a_change():
    from depth_node_training.learning.checkpoint import config_changes

    saved = config_to_dict(load_config(None, ["loss.w_affinity=0", "loss.teacher=completion"]))
    assert config_changes(saved, load_config(None, ["loss.w_affinity=0", "loss.teacher=super_resolution"])) == []
    assert config_changes(saved, load_config(None, ["loss.w_affinity=1", "loss.teacher=super_resolution"])) == [
        "loss.w_affinity: 0.0 -> 1.0", "loss.teacher: 'completion' -> 'super_resolution'"]
