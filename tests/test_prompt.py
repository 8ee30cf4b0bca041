"""Prompt-embedding detector: parity with fixtures/official/prompt/v2_n_prompt_outputs.npz, official non-strict
loading, freezing."""

import copy

import numpy as np
import pytest
import torch
from helpers import close

from yoloworld.errors import CheckpointError, InputError
from yoloworld.models.boxes import dfl_integral
from yoloworld.models.checkpoint import load_detector, read_checkpoint, save_checkpoint
from yoloworld.models.prompt import (
    build_prompt_detector,
    freeze_for_prompt_tuning,
    read_embeddings,
)


@pytest.fixture(scope="module")
def prompt_model(fixtures):
    embeds, _ = read_embeddings(fixtures / "rep" / "text_embeds.npy", dims=512)
    return build_prompt_detector(fixtures / "v2_n.pth", embeddings=embeds)


def test_prompt_detector_matches_official_prompt_outputs(fixtures, prompt_model):
    model, _ = prompt_model
    reference = np.load(fixtures / "prompt" / "v2_n_prompt_outputs.npz")
    image = torch.from_numpy(np.load(fixtures / "inputs.npz")["image_input"]).contiguous(
        memory_format=torch.channels_last)
    assert model.text_model is None and model.adapter is None
    close(model.embeddings, reference["prompt_embeddings"], tol=1e-6)
    with torch.no_grad():
        cls_logits, reg_logits = model(image)
    for i in range(3):
        close(cls_logits[i], reference[f"cls_logits_{i}"])
        close(dfl_integral(reg_logits[i]), reference[f"bbox_preds_{i}"])


def test_loading_ignores_exactly_what_the_official_load_ignores(fixtures, prompt_model):
    _, report = prompt_model
    state = read_checkpoint(fixtures / "v2_n.pth")["state_dict"]
    text_keys = [k for k in state if k.startswith("backbone.text_model.")]
    assert len(text_keys) == 37  # fixture README §8: the 37 unexpected keys are all backbone.text_model.*
    assert sorted(report.ignored) == sorted(text_keys)
    assert report.kept == ["embeddings"]
    lines = report.lines()
    assert "ignored 37 keys" in lines[0] and "backbone.text_model.*" in lines[0] and "embeddings" in lines[1]


def test_adapter_is_kept_as_initialised_and_any_other_gap_is_an_error(fixtures, tmp_path):
    model, report = build_prompt_detector(fixtures / "v2_n.pth", num_prompts=3, adapter=True)
    assert model.embeddings.shape == (3, 512)
    torch.testing.assert_close(model.embeddings.norm(dim=-1), torch.ones(3))  # random, L2-normalised
    adapter = {"adapter.0.weight", "adapter.0.bias", "adapter.2.weight", "adapter.2.bias"}
    assert set(report.kept) == {"embeddings", *adapter}
    state = read_checkpoint(fixtures / "v2_n.pth")["state_dict"]
    del state["neck.top_down_layers.0.attn_block.bias"]
    broken = tmp_path / "broken.pth"
    torch.save({"state_dict": state}, broken)
    with pytest.raises(CheckpointError, match="broken.pth.*1 missing keys.*attn_block.bias"):
        build_prompt_detector(broken, num_prompts=3)
    with pytest.raises(InputError, match="holds no prompts"):
        build_prompt_detector(fixtures / "v2_n.pth")


def test_freezing_trains_only_the_prompts_and_keeps_batchnorm_statistics(fixtures):
    model, _ = build_prompt_detector(fixtures / "v2_n.pth", num_prompts=4, adapter=True)
    trainable = freeze_for_prompt_tuning(model)
    assert trainable == ["embeddings", "adapter.0.weight", "adapter.0.bias", "adapter.2.weight", "adapter.2.bias"]
    model.train()
    assert model.training and model.adapter.training
    assert not any(m.training for m in model.backbone.modules())
    assert not any(m.training for m in (*model.neck.modules(), *model.bbox_head.modules()))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    image = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    cls_logits, _ = model(image)
    sum(c.sigmoid().mean() for c in cls_logits).backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n not in trainable)
    assert model.embeddings.grad is not None and model.embeddings.grad.abs().sum() > 0
    optimizer.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert "embeddings" in changed and changed <= set(trainable)  # running statistics untouched


def test_prompt_checkpoint_round_trip_keeps_its_prompts(fixtures, prompt_model, tmp_path):
    model = copy.deepcopy(prompt_model[0])
    tuned = tmp_path / "tuned.pth"
    with torch.no_grad():
        model.embeddings.mul_(0.5)  # stands in for trained prompts
    save_checkpoint(tuned, model)
    reloaded, _ = load_detector(tuned)
    assert torch.equal(reloaded.embeddings, model.embeddings)
    # as officially, prompts stored in the file win over the given ones (and are reported as loaded)
    again, report = build_prompt_detector(tuned, embeddings=torch.randn(5, 512))
    assert torch.equal(again.embeddings, model.embeddings) and report.kept == [] and report.ignored == []
    with pytest.raises(CheckpointError, match="embeddings has shape"):
        build_prompt_detector(tuned, embeddings=torch.randn(7, 512))
