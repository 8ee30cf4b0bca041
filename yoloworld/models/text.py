"""CLIP text encoder (Hugging Face `CLIPTextModelWithProjection`), an offline tokenizer and an embedding cache.

Checkpoint keys: `backbone.text_model.model.*`. The configs of the two CLIP text towers used by official
YOLO-World models are built in, so an official `.pth` (which carries the text weights) runs with no hub access.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from yoloworld.config import DEFAULT_TEXT_MODEL
from yoloworld.errors import CheckpointError
from yoloworld.files import atomic_save, atomic_write_text

VOCAB_SIZE = 49408
TEXT_CONFIG_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers",
                    "num_attention_heads", "max_position_embeddings", "hidden_act", "layer_norm_eps",
                    "bos_token_id", "eos_token_id", "pad_token_id")
MAX_TOKENS = 77
TOKEN_INPUTS = ("input_ids", "attention_mask")

# Text towers of openai/clip-vit-base-patch32 and openai/clip-vit-large-patch14-336, keyed by hidden size.
BUILTIN_TEXT_CONFIGS = {
    512: dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8, projection_dim=512),
    768: dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, projection_dim=768),
}


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "yoloworld"
    return Path(os.environ.get("YOLOWORLD_CACHE") or default)


def clip_text_config(base_hidden_size: int = 512, **overrides):
    """The CLIP text config of the built-in tower with `base_hidden_size` (512: B/32, 768: L/14), any field
    overridden (e.g. a narrower `hidden_size` for a small test tower)."""
    from transformers import CLIPTextConfig

    if base_hidden_size not in BUILTIN_TEXT_CONFIGS:
        raise CheckpointError(f"no built-in CLIP text config for hidden size {base_hidden_size}: pass --text-model DIR "
                              "(model.text_model=DIR for yoloworld train)")
    values = dict(vocab_size=VOCAB_SIZE, max_position_embeddings=MAX_TOKENS, hidden_act="quick_gelu",
                  bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
    return CLIPTextConfig(**{**values, **BUILTIN_TEXT_CONFIGS[base_hidden_size], **overrides})


def text_config_meta(encoder: "TextEncoder | None") -> dict | None:
    """The text tower's shape, stored in checkpoint metadata so any tower (not only CLIP B/L) can be rebuilt."""
    if encoder is None:
        return None
    values = encoder.model.config.to_dict()
    return {key: values[key] for key in TEXT_CONFIG_KEYS if key in values}


def config_from_meta(stored: dict, source: str):
    """A CLIPTextConfig from `text_config_meta` output; a malformed entry is a CheckpointError naming `source`."""
    from transformers import CLIPTextConfig

    if not isinstance(stored, dict) or not all(isinstance(stored.get(k), int) for k in ("hidden_size", "vocab_size")):
        raise CheckpointError(f"{source}: malformed text_config in the checkpoint metadata")
    return CLIPTextConfig(**{k: v for k, v in stored.items() if k in TEXT_CONFIG_KEYS})


def resolve_text_model(name: str | os.PathLike, what: str = "text model", flag: str = "--text-model") -> Path:
    """A local Hugging Face folder, or a hub id (e.g. openai/clip-vit-base-patch32) from the hub cache or, online,
    downloaded once (config, tokenizer, weights). `what` / `flag` name the model in errors (the CLIP vision tower
    of image prompts is resolved the same way)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists() or str(name).count("/") != 1:
        raise CheckpointError(f"{name}: not a Hugging Face model folder or hub id (e.g. {DEFAULT_TEXT_MODEL})")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name), allow_patterns=["*.json", "*.txt", "*.safetensors"],
                                      local_files_only=os.environ.get("HF_HUB_OFFLINE") == "1", etag_timeout=5))
    except Exception as exc:  # offline or unknown id: say how to get the files
        raise CheckpointError(f"{name}: cannot load the {what} ({type(exc).__name__}); download it once with "
                              f"`hf download {name}` or pass {flag} /path/to/folder") from None


def check_weight_files(folder: Path) -> None:
    """Every *.safetensors file of a model folder opens (its header and data fit the file): a truncated or damaged
    download is one line naming the file, not an error deep inside transformers."""
    from safetensors import safe_open

    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except Exception as exc:  # safetensors raises its own error types (SafetensorError, OSError, ...)
            reason = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
            raise CheckpointError(f"{file}: truncated or damaged safetensors file ({reason})") from None


def _byte_alphabet() -> list[str]:
    """CLIP's byte-level alphabet in vocabulary order: printable bytes as themselves, then the other
    bytes mapped to code points from 256 up."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def _write_clip_bpe_files(target: Path) -> tuple[Path, Path]:
    """Derive HF `vocab.json` / `merges.txt` from the CLIP BPE list shipped in the open-clip-torch wheel."""
    import open_clip

    bpe_gz = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe_gz, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1:VOCAB_SIZE - 256 * 2 - 2 + 1]]
    alphabet = _byte_alphabet()
    tokens = alphabet + [t + "</w>" for t in alphabet] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    target.mkdir(parents=True, exist_ok=True)
    vocab_path, merges_path = target / "vocab.json", target / "merges.txt"
    atomic_write_text(vocab_path, json.dumps({tok: i for i, tok in enumerate(tokens)}, ensure_ascii=False))
    atomic_write_text(merges_path, "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return vocab_path, merges_path


def load_tokenizer(text_model_dir: str | os.PathLike | None = None):
    """CLIP BPE tokenizer, offline: from `text_model_dir` if it has vocab/merges, else from the open-clip vocabulary."""
    from transformers import CLIPTokenizer

    folder = Path(text_model_dir) if text_model_dir else None
    if folder and (folder / "vocab.json").exists() and (folder / "merges.txt").exists():
        vocab, merges = folder / "vocab.json", folder / "merges.txt"
    else:
        target = cache_dir() / "clip_tokenizer"
        vocab, merges = target / "vocab.json", target / "merges.txt"
        if not (vocab.exists() and merges.exists()):
            vocab, merges = _write_clip_bpe_files(target)
    # transformers 5: vocab and merges must be positional (keyword names silently give an empty tokenizer)
    tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=MAX_TOKENS)
    if len(tokenizer) != VOCAB_SIZE:
        raise CheckpointError(f"CLIP tokenizer from {vocab.parent} has {len(tokenizer)} tokens, expected {VOCAB_SIZE}")
    return tokenizer


class TextEncoder(nn.Module):
    """Texts -> L2-normalised CLIP `text_embeds` (N, D). Keys `model.text_model.*`, `model.text_projection.*`."""

    def __init__(self, model, tokenizer=None):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self._fingerprint = None

    @classmethod
    def from_config(cls, config, tokenizer=None) -> "TextEncoder":
        from transformers import CLIPTextModelWithProjection

        return cls(CLIPTextModelWithProjection(config), tokenizer)

    @classmethod
    def from_pretrained(cls, name: str | os.PathLike) -> "TextEncoder":
        """A Hugging Face CLIP folder or hub id (config.json + weights); the vision half, if any, is ignored."""
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection

        folder = resolve_text_model(name)
        if not (folder / "config.json").exists():
            raise CheckpointError(f"{folder}: not a Hugging Face model folder (no config.json)")
        check_weight_files(folder)
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a weights progress bar on stderr would garble our one-line messages
            config = CLIPTextConfig.from_pretrained(folder)
            model = CLIPTextModelWithProjection.from_pretrained(folder, config=config)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(f"{folder}: not a loadable CLIP text model ({type(exc).__name__})") from None
        return cls(model, load_tokenizer(folder)).eval()

    @property
    def embed_dim(self) -> int:
        return self.model.config.projection_dim

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer()
        # pad to the longest text like the official model; truncate only what CLIP cannot read at all
        return self.tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True, max_length=MAX_TOKENS)

    def forward(self, texts: list[str] | dict[str, torch.Tensor]) -> torch.Tensor:
        """Texts, or their tokens (`tokenize`'s output, padded on the right) -> (N, D) L2-normalised embeddings."""
        tokens = texts if isinstance(texts, dict) else self.tokenize(texts)
        device = self.model.text_projection.weight.device
        embeds = self.model(input_ids=tokens["input_ids"].to(device),
                            attention_mask=tokens["attention_mask"].to(device)).text_embeds
        return F.normalize(embeds, dim=-1)

    def fingerprint(self) -> str:
        """Identifies these text weights (config + a sample of every tensor) for the embedding cache."""
        if self._fingerprint is None:
            digest = hashlib.sha256(self.model.config.to_json_string(use_diff=False).encode())
            for name, tensor in self.model.state_dict().items():
                flat = tensor.detach().reshape(-1)
                digest.update(name.encode())
                digest.update(str(tuple(tensor.shape)).encode())
                digest.update(flat[:: max(1, flat.numel() // 4096)].float().cpu().numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def forget_fingerprint(self) -> None:
        """Call after changing the weights in place."""
        self._fingerprint = None


class TextEmbeddingCache:
    """Text embeddings kept in memory and on disk, keyed by the text model fingerprint and the text."""

    def __init__(self, encoder: TextEncoder, directory: Path | None = None, batch_size: int = 256):
        self.encoder = encoder
        self.directory = directory if directory is not None else cache_dir() / "text_embeds"
        self.batch_size = batch_size
        self._memory: dict[str, dict[str, torch.Tensor]] = {}

    def _file(self, fingerprint: str) -> Path:
        return self.directory / f"{fingerprint}.pt"

    def _table(self, fingerprint: str) -> dict[str, torch.Tensor]:
        if fingerprint not in self._memory:
            table = {}
            path = self._file(fingerprint)
            if path.exists():
                try:
                    stored = torch.load(path, map_location="cpu", weights_only=True)
                    table = dict(zip(stored["texts"], stored["embeds"]))
                except Exception:  # a damaged cache is rebuilt, never fatal
                    table = {}
            self._memory[fingerprint] = table
        return self._memory[fingerprint]

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        """(N, D) embeddings for `texts`, computing only the ones not seen before with these weights."""
        fingerprint = self.encoder.fingerprint()
        table = self._table(fingerprint)
        missing = list(dict.fromkeys(t for t in texts if t not in table))
        if missing:
            table.update(zip(missing, self._encode_batched(missing)))
            self._save(fingerprint, table)
        if not texts:
            return torch.zeros(0, self.encoder.embed_dim)
        return torch.stack([table[t] for t in texts])

    def _encode_batched(self, texts: list[str]) -> torch.Tensor:
        """Texts tokenized once and encoded in batches of similar length (sorted by token count), each padded only
        to its own longest text: a long list (the 1203 LVIS names) pays for few padding tokens."""
        tokens = self.encoder.tokenize(texts)
        lengths = tokens["attention_mask"].sum(dim=1)
        order = lengths.argsort()
        embeds = torch.zeros(len(texts), self.encoder.embed_dim)
        for start in range(0, len(texts), self.batch_size):
            rows = order[start:start + self.batch_size]
            width = int(lengths[rows].max())
            batch = {name: values[rows, :width] for name, values in tokens.items() if name in TOKEN_INPUTS}
            embeds[rows] = self.encoder(batch).float().cpu()
        return embeds

    def _save(self, fingerprint: str, table: dict[str, torch.Tensor]) -> None:
        try:
            atomic_save({"texts": list(table), "embeds": torch.stack(list(table.values()))}, self._file(fingerprint))
        except OSError:
            pass  # a read-only cache folder only costs speed
