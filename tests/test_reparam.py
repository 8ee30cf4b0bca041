"""Reparameterization: fixtures/official/rep/ (v2_n_rep_conv.pth and v2_n_rep_conv_outputs.npz)."""

import numpy as np
import pytest
import torch
from helpers import close

from yoloworld.cli import main
from yoloworld.errors import CheckpointError
from yoloworld.models.boxes import dfl_integral
from yoloworld.models.checkpoint import load_detector, read_checkpoint
from yoloworld.models.reparam import fold_texts, reparameterize


def same(ours: list[torch.Tensor], ref: list[torch.Tensor], tol: float = 5e-6) -> None:
    """Two of our models that should compute the same function: float rounding only, relative to scale."""
    for a, b in zip(ours, ref):
        assert float((a - b).abs().max()) <= tol * max(1.0, float(b.abs().max())), float((a - b).abs().max())


@pytest.fixture(scope="module")
def official(fixtures):
    """Our detector loaded from the official v2_n.pth, the fixture texts and the network input."""
    model, _ = load_detector(fixtures / "v2_n.pth", text_model=fixtures / "tiny-clip")
    inputs = np.load(fixtures / "inputs.npz")
    image = torch.from_numpy(inputs["image_input"]).contiguous(memory_format=torch.channels_last)
    embeds = torch.from_numpy(np.load(fixtures / "rep" / "text_embeds.npy"))
    with torch.no_grad():
        outputs = model(image, embeds[None])
    return model, image, embeds, outputs


def test_conv_fold_equals_official_rep_file_key_for_key(fixtures, official):
    _, _, embeds, _ = official
    ours = fold_texts(read_checkpoint(fixtures / "v2_n.pth")["state_dict"], embeds, "conv")
    theirs = read_checkpoint(fixtures / "rep" / "v2_n_rep_conv.pth")["state_dict"]
    assert set(ours) == set(theirs)
    assert not any("text_model" in k or k.endswith((".logit_scale", "guide_fc.weight")) for k in ours)
    for key, value in theirs.items():
        assert ours[key].dtype == value.dtype and ours[key].shape == value.shape, key
        # float rounding only: the folded guides are sums of 512 products of magnitude ~20
        torch.testing.assert_close(ours[key], value, rtol=1e-6, atol=1e-6, msg=key)


def run_reparam(fixtures, out, neck: str):
    code = main(["reparam", "--weights", str(fixtures / "v2_n.pth"), "--embeddings",
                 str(fixtures / "rep" / "text_embeds.npy"), "--neck", neck, "--out", str(out)])
    assert code == 0
    return load_detector(out)


@pytest.fixture(scope="module")
def rep_conv(fixtures, official, tmp_path_factory):
    """The CLI's conv-mode checkpoint (written into folders that do not exist yet) and its outputs."""
    rep, checkpoint = run_reparam(fixtures, tmp_path_factory.mktemp("rep") / "nested" / "folder" / "rep.pth", "conv")
    with torch.no_grad():
        outputs = rep(official[1])
    return rep, checkpoint, outputs


def test_reparam_cli_checkpoint_matches_official_rep_outputs(fixtures, official, rep_conv):
    _, _, _, (cls_orig, reg_orig) = official
    rep, checkpoint, (cls_rep, reg_rep) = rep_conv
    assert rep.text_model is None and rep.config.neck_block == "rep"
    assert not any("text_model" in k for k in checkpoint["state_dict"])
    reference = np.load(fixtures / "rep" / "v2_n_rep_conv_outputs.npz")
    for i in range(3):
        close(cls_rep[i], reference[f"cls_logits_{i}"])
        close(dfl_integral(reg_rep[i]), reference[f"bbox_preds_{i}"])
    # same implementation, same machine: rep equals the text-conditioned model up to float rounding
    same(cls_rep + reg_rep, cls_orig + reg_orig)


def test_official_rep_file_loads_into_our_rep_model(fixtures, official):
    rep, _ = load_detector(fixtures / "rep" / "v2_n_rep_conv.pth")
    reference = np.load(fixtures / "rep" / "v2_n_rep_conv_outputs.npz")
    with torch.no_grad():
        cls_logits, reg_logits = rep(official[1])
    for i in range(3):
        close(cls_logits[i], reference[f"cls_logits_{i}"])
        close(dfl_integral(reg_logits[i]), reference[f"bbox_preds_{i}"])


def test_linear_neck_splits_guides_per_head_and_equals_conv_mode(fixtures, official, rep_conv, tmp_path):
    model, image, embeds, _ = official
    linear, checkpoint = run_reparam(fixtures, tmp_path / "rep_linear.pth", "linear")
    assert linear.config.neck_block == "rep_linear"
    assert not any(".guide_convs." in k or ".guide_fc." in k for k in checkpoint["state_dict"])
    block = model.neck.bottom_up_layers[1].attn_block  # 4 heads: an interleaved layout would show here
    guides = block.guide_fc(embeds).detach()  # (N, 128)
    weight = checkpoint["state_dict"]["neck.bottom_up_layers.1.attn_block.guide_weight"]  # (N, hc, heads)
    hc, heads = weight.shape[1:]
    assert heads == 4
    for m in range(heads):
        torch.testing.assert_close(weight[:, :, m], guides[:, m * hc:(m + 1) * hc], rtol=1e-6, atol=1e-5)
    # the official linear file is a plain view G.view(N, hc, heads): a different (wrong) assignment
    assert not torch.allclose(guides.reshape(len(guides), hc, heads), weight)
    with torch.no_grad():
        cls_linear, reg_linear = linear(image)
    cls_conv, reg_conv = rep_conv[2]
    same(cls_linear + reg_linear, cls_conv + reg_conv)


def test_prompt_model_folds_its_own_prompts_with_adapter(fixtures, official):
    from yoloworld.models.prompt import build_prompt_detector

    _, _, embeds, _ = official
    image = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    prompt, _ = build_prompt_detector(fixtures / "v2_n.pth", embeddings=embeds, adapter=True)
    torch.nn.init.normal_(prompt.adapter[2].weight, std=0.05, generator=torch.Generator().manual_seed(1))
    rep = reparameterize(prompt, neck="conv")
    with torch.no_grad():
        (cls_prompt, _), (cls_rep, _) = prompt(image), rep(image)
    assert not torch.allclose(prompt.prompt_embeddings(), embeds)
    same(cls_rep, cls_prompt)


def test_v1_and_already_reparameterized_models_are_refused(fixtures, tmp_path, capsys):
    embeds = fixtures / "rep" / "text_embeds.npy"
    for weights in ("v1_n.pth", "rep/v2_n_rep_conv.pth"):
        code = main(["reparam", "--weights", str(fixtures / weights), "--embeddings", str(embeds),
                     "--out", str(tmp_path / "x.pth")])
        assert code == 2
        message = capsys.readouterr().err.strip()
        assert message.startswith("error: ") and weights.split("/")[-1] in message and "\n" not in message
    with pytest.raises(CheckpointError, match="v1 model"):
        fold_texts(read_checkpoint(fixtures / "v1_n.pth")["state_dict"], torch.zeros(2, 512))
    assert not (tmp_path / "x.pth").exists()
