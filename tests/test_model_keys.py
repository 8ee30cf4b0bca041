"""Every official size builds with exactly the official state_dict keys and shapes (fixtures/official/keys/)."""

import json

import pytest

from yoloworld.config import ModelConfig
from yoloworld.models.checkpoint import infer_config
from yoloworld.models.detector import build_detector

CASES = {
    "s_v2": ModelConfig.preset("s"), "m_v2": ModelConfig.preset("m"), "l_v2": ModelConfig.preset("l"),
    "x_v2": ModelConfig.preset("x"), "xl_v2": ModelConfig.preset("xl"),
    "s_v1": ModelConfig.preset("s", "v1"), "m_v1": ModelConfig.preset("m", "v1"), "l_v1": ModelConfig.preset("l", "v1"),
    "s_rep_v2_finetune_coco": ModelConfig.preset("s", contrastive="rep", neck_block="rep", num_guides=80, text_hidden=None),
    "l_prompt_tuning_v2": ModelConfig.preset("l", num_prompts=80, text_hidden=None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_state_dict_equals_official_keys(fixtures, name):
    expected = [(k, list(shape)) for k, shape in json.loads((fixtures / "keys" / f"{name}.json").read_text())]
    state = build_detector(CASES[name]).state_dict()
    assert [(k, list(v.shape)) for k, v in state.items()] == expected


@pytest.mark.parametrize("name", list(CASES))
def test_config_is_recovered_from_shapes(name):
    config = CASES[name]
    state = build_detector(config).state_dict()
    assert infer_config(state) == config


def test_parameter_counts_match_spec():
    # SPEC section 1: parameters without CLIP (S 12.76 M; L v2 46.83 M, v1 47.55 M)
    def count(config):
        model = build_detector(config, with_text=False)
        return sum(p.numel() for p in model.parameters()) / 1e6

    assert round(count(ModelConfig.preset("s")), 2) == 12.76
    assert round(count(ModelConfig.preset("l")), 2) == 46.83
    assert round(count(ModelConfig.preset("l", "v1")), 2) == 47.55


@pytest.mark.parametrize("neck_block", ["rep_linear", "efficient"])
def test_our_own_variants_are_recovered_from_shapes(neck_block):
    rep = neck_block == "rep_linear"
    config = ModelConfig.preset("s", neck_block=neck_block, contrastive="rep" if rep else "bn",
                                num_guides=7 if rep else 0, text_hidden=None)
    assert infer_config(build_detector(config).state_dict()) == config
