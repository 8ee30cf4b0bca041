"""The one device resolver: `auto`, `cpu`, `cuda`, `cuda:N` (the API, every command and training use it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from yoloworld.errors import InputError

if TYPE_CHECKING:
    import torch

DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N"


def resolve_device(device: str | torch.device | None = "auto", local_rank: int | None = None) -> torch.device:
    """`local_rank`: a distributed process takes the GPU torchrun assigned to it."""
    import torch  # here, so that the CLI's argument parsing does not load torch

    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"device {device!r}: unknown; use {DEVICE_HELP}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device}: CUDA is not available on this machine; use --device cpu")
        index = local_rank if local_rank is not None else (device.index or 0)
        if index >= torch.cuda.device_count():
            raise InputError(f"device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    if device.type != "cpu":
        raise InputError(f"device {device}: not supported; use {DEVICE_HELP}")
    return device


__all__ = ["DEVICE_HELP", "resolve_device"]
