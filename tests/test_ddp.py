"""DDP through torchrun: 2 CPU processes (gloo) stay in sync and match one process on the same global batch."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
import torch
from test_train_support import (
    REPO,
    cli_env,
    finetune_config,
    make_base_checkpoint,
    make_embeddings,
    make_synth,
    run_cli,
    state_weights,
    tiny_config,
    write_yaml,
)

SGD = dict(optim={"optimizer": "sgd", "lr": 0.05, "momentum": 0.9}, ema={"enabled": False},
           schedule={"epochs": 1, "warmup_min_iters": 1, "warmup_epochs": 0.0})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(config_path, processes: int = 2) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "yoloworld", "train",
               str(config_path)]
    return subprocess.run(command, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)


def train_in_sync(config: dict, out, tmp_path) -> tuple[dict, subprocess.CompletedProcess]:
    """Train `config` (its out= is `out`) with 2 processes; the run must succeed with identical weights in both.
    Returns its summary and the finished process."""
    result = torchrun(write_yaml(tmp_path / f"{out.name}.yaml", config))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["max_param_difference_between_processes"] == 0.0
    return summary, result


def with_batch(data: dict, batch: int) -> dict:
    data["optim"]["batch_size"] = batch
    data["data"]["val"] = []
    return data


@pytest.fixture()
def coco(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOWORLD_CACHE", str(tmp_path / "cache"))
    return make_synth(tmp_path / "synth", images=16)


def test_two_processes_train_the_whole_model_in_sync(coco, tmp_path):
    summary, result = train_in_sync(with_batch(tiny_config(coco, tmp_path / "ddp", **SGD), 2), tmp_path / "ddp",
                                    tmp_path)
    assert summary["iterations"] == 3  # 12 images / (2 x 2)
    assert "batch 2 x 2 process(es)" in result.stderr
    assert result.stderr.count("effective weight decay") == 1  # one process speaks for the run
    lines = [json.loads(line) for line in (tmp_path / "ddp" / "scalars.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3] and all(line["loss"] > 0 for line in lines)


def test_two_processes_match_one_process_on_the_same_global_batch(coco, tmp_path):
    """Prompt tuning keeps every BatchNorm frozen, so the only difference left is the official per-process loss
    normalisation (each process divides by its own target sum, clamped at 1): the update directions agree,
    their sizes within a factor of two."""
    weights = make_base_checkpoint(tmp_path / "base.pt")
    embeddings = make_embeddings(tmp_path / "emb.npy", 9)
    # plain SGD (update = -lr x gradient); a random model's prompt gradients are ~1e-7, hence the large lr
    settings = {**SGD, "optim": {"optimizer": "sgd", "lr": 1.0e4, "momentum": 0.0, "nesterov": False}}
    ddp_data = with_batch(finetune_config(coco, tmp_path / "ddp", "prompt", weights, embeddings, **settings), 2)
    single_data = with_batch(finetune_config(coco, tmp_path / "single", "prompt", weights, embeddings, **settings), 4)
    train_in_sync(ddp_data, tmp_path / "ddp", tmp_path)
    single = run_cli("train", str(write_yaml(tmp_path / "single.yaml", single_data)))
    assert single.returncode == 0, single.stderr[-3000:]

    initial = torch.nn.functional.normalize(torch.from_numpy(__import__("numpy").load(embeddings)), dim=-1)
    ddp_delta = state_weights(tmp_path / "ddp")["embeddings"] - initial
    single_delta = state_weights(tmp_path / "single")["embeddings"] - initial
    assert single_delta.norm() > 1e-4
    cosine = torch.nn.functional.cosine_similarity(ddp_delta.flatten(), single_delta.flatten(), dim=0)
    ratio = ddp_delta.norm() / single_delta.norm()
    assert cosine > 0.999, float(cosine)
    assert 0.45 < ratio < 1.1, float(ratio)


class CollectiveReached(Exception):
    """Raised by the spies once a collective has checked its tensor's device."""


def test_collectives_put_their_tensors_on_the_training_device(monkeypatch):
    """NCCL (multi-GPU) refuses tensors that are not on the process's GPU. CI has none, so the training device here
    is torch's `meta` device: every tensor a collective receives must live there, not on the CPU."""
    from torch import distributed as dist

    from yoloworld.engine import distributed as dist_utils

    device = torch.device("meta")
    seen = []

    def spy(last: bool):
        def collective(tensor, *args, **kwargs):
            seen.append(tensor.device)
            assert tensor.device == device, f"collective got a tensor on {tensor.device}, training runs on {device}"
            if last:
                raise CollectiveReached

        return collective

    info = dist_utils.DistInfo(rank=0, local_rank=0, world_size=2, device=device)
    monkeypatch.setattr(dist, "broadcast", spy(last=True))
    with pytest.raises(CollectiveReached):
        dist_utils.broadcast_flag(True, info)
    monkeypatch.setattr(dist, "broadcast", spy(last=False))
    monkeypatch.setattr(dist, "all_reduce", spy(last=True))
    model = torch.nn.Linear(3, 2).to(device)
    with pytest.raises(CollectiveReached):
        dist_utils.max_param_difference(model, info)
    assert len(seen) == 1 + 2 + 1  # the flag, both parameters, the reduction


def test_a_plain_run_trains_on_the_resolved_device():
    from yoloworld.engine.distributed import init_distributed

    assert init_distributed("cpu").device == torch.device("cpu")
    assert init_distributed("auto").device.type == ("cuda" if torch.cuda.is_available() else "cpu")
