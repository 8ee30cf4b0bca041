"""`yoloworld embed`: class texts -> L2-normalised embeddings; parity with fixtures/official/inputs.npz text_embeds."""

import json
import re
from importlib.metadata import entry_points

import numpy as np
import pytest
import torch
from helpers import assert_same_detections

from yoloworld.cli import main
from yoloworld.models.prompt import read_embeddings


def embed(fixtures, tmp_path, classes, *flags):
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps(classes))
    out = tmp_path / "deep" / "emb.npy"
    code = main(["embed", "--classes-file", str(texts), "--text-model", str(fixtures / "tiny-clip"),
                 "--out", str(out), *flags])
    return code, out


def test_first_synonym_with_padding_reproduces_official_text_embeddings(fixtures, tmp_path):
    official = np.load(fixtures / "inputs.npz")["text_embeds"]  # texts: person, a red car, dog, traffic light, ' '
    classes = [["person", "human"], ["a red car"], ["dog", "puppy"], ["traffic light"]]
    code, out = embed(fixtures, tmp_path, classes, "--synonyms", "first", "--padding")
    assert code == 0
    array = np.load(out)
    assert array.shape == (5, 512) and array.dtype == np.float32
    np.testing.assert_allclose(array, official, atol=1e-6)
    note = json.loads(out.with_suffix(".json").read_text())
    assert note["synonyms"] == "first" and note["padded"] is True and note["classes"] == classes
    assert note["shape"] == [5, 512]


def test_mean_of_synonyms_is_renormalised(fixtures, tmp_path):
    official = torch.from_numpy(np.load(fixtures / "inputs.npz")["text_embeds"])
    code, out = embed(fixtures, tmp_path, [["person", "dog"], ["traffic light"]])
    assert code == 0
    embeds, note = read_embeddings(out, dims=512)
    expected = torch.nn.functional.normalize(official[0] + official[2], dim=0)
    torch.testing.assert_close(embeds[0], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(embeds[1], official[3], atol=1e-6, rtol=0)
    torch.testing.assert_close(embeds.norm(dim=-1), torch.ones(2))
    assert note["synonyms"] == "mean" and note["padded"] is False


def test_bad_class_file_is_one_line_error(fixtures, tmp_path, capsys):
    code, out = embed(fixtures, tmp_path, {"person": 1})
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "texts.json" in err and "\n" not in err


def test_embed_then_reparam_predicts_like_the_text_conditioned_model(fixtures, tmp_path):
    """The deployment path: embeddings with the padding row -> reparameterized checkpoint -> same detections,
    class names kept and the padding prompt never reported."""
    from yoloworld.api import YOLOWorld

    classes = [["person"], ["a red car"], ["dog"]]
    code, emb = embed(fixtures, tmp_path, classes, "--padding")
    rep_path = tmp_path / "rep" / "v2_n_rep.pth"
    assert code == 0 and main(["reparam", "--weights", str(fixtures / "v2_n.pth"), "--embeddings", str(emb),
                               "--out", str(rep_path)]) == 0
    image = np.load(fixtures / "inputs.npz")["image_raw"][:, :, ::-1].copy()
    rep = YOLOWorld.from_pretrained(rep_path)
    assert rep.model.text_model is None and rep.class_names == ["person", "a red car", "dog"]
    text = YOLOWorld.from_pretrained(fixtures / "v2_n.pth", text_model=fixtures / "tiny-clip").set_classes(classes)
    ours, reference = rep.predict(image, conf=0.9)[0], text.predict(image, conf=0.9)[0]
    assert len(reference) > 0 and set(ours.class_ids.tolist()) <= {0, 1, 2}
    assert_same_detections(ours, reference, box_tol=5e-3, score_tol=1e-4, conf=0.9)


def test_offline_download_hints_name_a_command_the_installed_huggingface_hub_ships():
    """huggingface_hub replaced `huggingface-cli` with `hf`: the hint must name a command that exists."""
    from yoloworld.errors import YOLOWorldError
    from yoloworld.models.text import TextEncoder, resolve_text_model

    shipped = {ep.name for ep in entry_points(group="console_scripts") if ep.value.startswith("huggingface_hub")}
    for load in (resolve_text_model, TextEncoder.from_pretrained):  # HF_HUB_OFFLINE=1 (conftest): nothing fetched
        with pytest.raises(YOLOWorldError) as error:
            load("nobody/no-such-clip")
        hint = re.search(r"`(\S+) download nobody/no-such-clip`", str(error.value))
        assert hint and hint[1] in shipped, (str(error.value), shipped)
