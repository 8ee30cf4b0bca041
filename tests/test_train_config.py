"""Training config: recipes, `base:` inheritance, overrides, typed validation with one-line errors."""

from __future__ import annotations

import pytest
from test_train_support import run_cli, write_yaml

from yoloworld.engine.train_config import (
    RECIPES_DIR,
    TrainConfig,
    build_train_config,
    config_to_dict,
    merge_overrides,
)
from yoloworld.errors import ConfigError


def test_every_builtin_recipe_loads_and_validates():
    names = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    assert {"pretrain_v2", "finetune_coco", "finetune_efficient", "finetune_sgd", "prompt_tuning",
            "rep_finetune", "synth_demo"} <= set(names)
    for name in names:
        config = build_train_config(name)
        assert isinstance(config, TrainConfig)


def test_recipes_carry_the_official_hyper_parameters():
    pretrain = build_train_config("pretrain_v2")
    assert (pretrain.optim.optimizer, pretrain.optim.lr, pretrain.optim.weight_decay) == ("adamw", 2e-3, 0.025)
    assert (pretrain.schedule.epochs, pretrain.data.augment.close_mosaic_epochs) == (100, 2)
    coco = build_train_config("finetune_coco")
    assert (coco.optim.lr, coco.optim.weight_decay, coco.schedule.epochs) == (2e-4, 0.05, 80)
    assert coco.data.augment.close_mosaic_epochs == 10 and coco.data.augment.mixup_prob == 0.15
    sgd = build_train_config("finetune_sgd")
    assert (sgd.optim.optimizer, sgd.optim.lr, sgd.optim.momentum, sgd.optim.nesterov) == ("sgd", 1e-3, 0.937, True)
    assert (sgd.optim.weight_decay, sgd.schedule.epochs) == (5e-4, 40)
    assert build_train_config("finetune_efficient").model.mode == "efficient"
    assert build_train_config("prompt_tuning").model.mode == "prompt"
    assert build_train_config("rep_finetune").model.mode == "rep"
    assert build_train_config("finetune_efficient").model_config().neck_block == "efficient"


def test_overrides_are_typed_and_reach_list_items():
    config = build_train_config("finetune_coco", ["optim.lr=1e-3", "data.train.0.ann=x.json", "schedule.epochs=3",
                                                  "data.augment.image_size=320"])
    assert config.optim.lr == 1e-3 and config.schedule.epochs == 3
    assert config.data.train[0].ann == "x.json" and config.data.augment.image_size == 320
    assert config.data.train[0].images == "data/coco128/train/images"  # the other keys of the item survive
    with pytest.raises(ConfigError, match="expected an integer"):
        build_train_config("finetune_coco", ["schedule.epochs=many"])
    with pytest.raises(ConfigError, match="out of range"):
        merge_overrides({"data": {"train": []}}, ["data.train.3.ann=x"])


def test_unknown_key_is_an_error_listing_the_valid_ones():
    with pytest.raises(ConfigError) as error:
        build_train_config("finetune_coco", ["optim.learning_rate=0.1"])
    message = str(error.value)
    assert "learning_rate" in message and "lr" in message and "weight_decay" in message and "\n" not in message
    with pytest.raises(ConfigError, match="valid keys: .*deepen"):
        build_train_config("finetune_coco", ["model.arch.depth=2"])
    with pytest.raises(ConfigError, match="model.mode"):
        build_train_config("finetune_coco", ["model.mode=magic"])


def test_base_inheritance_and_missing_recipe(tmp_path):
    child = write_yaml(tmp_path / "child.yaml", {"base": "finetune_coco", "optim": {"lr": 5e-5}})
    config = build_train_config(child)
    assert config.optim.lr == 5e-5 and config.optim.weight_decay == 0.05
    with pytest.raises(ConfigError, match="no such config file"):
        build_train_config(tmp_path / "missing.yaml")
    loop = write_yaml(tmp_path / "loop.yaml", {"base": "loop.yaml"})
    with pytest.raises(ConfigError, match="loops"):
        build_train_config(loop)


def test_show_prints_the_resolved_config_and_bad_keys_exit_2():
    shown = run_cli("train", "finetune_sgd", "optim.lr=0.01", "--show")
    assert shown.returncode == 0, shown.stderr
    assert "lr: 0.01" in shown.stdout and "optimizer: sgd" in shown.stdout
    bad = run_cli("train", "finetune_sgd", "optim.lrr=0.01")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: recipe ") and "finetune_sgd.yaml: unknown key" in bad.stderr
    assert "lrr" in bad.stderr
    assert "valid keys: optimizer, lr" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_config_round_trips_through_yaml(tmp_path):
    config = build_train_config("pretrain_v2", ["model.size=l"])
    again = build_train_config(write_yaml(tmp_path / "dump.yaml", config_to_dict(config)))
    assert config_to_dict(again) == config_to_dict(config)
