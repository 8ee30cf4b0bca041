"""Cold vocabularies: the text cache encodes a long list in batches of similar token length, each padded only
to its own longest text, and every text gets the embedding it has when encoded alone (tiny-clip fixture)."""

import torch

from yoloworld.models.text import TextEmbeddingCache, TextEncoder

TEXTS = ["a person riding a red bicycle down a steep hill", "dog", "fire hydrant", "cat", "traffic light",
         "a small glass jar of strawberry jam on a wooden kitchen table", "car", "aerosol can", "person", "dog"]


def test_long_lists_are_encoded_by_length_and_equal_single_encodings(fixtures, tmp_path):
    encoder = TextEncoder.from_pretrained(fixtures / "tiny-clip")
    with torch.no_grad():
        alone = torch.cat([encoder([text]) for text in TEXTS])
    widths = []
    encoder.register_forward_hook(lambda _, args, __: widths.append(args[0]["input_ids"].shape[1]))
    embeds = TextEmbeddingCache(encoder, tmp_path, batch_size=3).encode(TEXTS)
    assert len(widths) == 3  # nine distinct texts, three batches
    assert widths == sorted(widths) and widths[0] < widths[-1]  # short texts are not padded to the longest
    torch.testing.assert_close(embeds, alone, rtol=1e-5, atol=1e-5)
