"""`yoloworld label --ray`: two Ray Data workers label a folder, the run is stopped midway, the same command resumes
it, and the dataset equals the single-process `label` output.

One local Ray instance for the module (`ray start --head --block`, 127.0.0.1, free ports, 2 CPUs): both `label
--ray` runs join it with `--address`, as they would join a cluster, so Ray starts once. Ray's token
authentication is off for this private loopback instance (`ray_env`): the runs would otherwise need its token."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import cli_env, run_cli, stop_process

pytest.importorskip("ray.data")

CLASSES = "red circle,green square,blue triangle|blue square"
IMAGES = 32


def ray_env() -> dict:
    return dict(cli_env(), RAY_AUTH_MODE="disabled")


def free_ports(count: int) -> list[int]:
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory):
    """host:port of a local Ray head that lives as long as this module (stopped by ending its --block process,
    which ends the processes it started and no other Ray on this machine)."""
    gcs, client, agent, agent_grpc, metrics, runtime_env = free_ports(6)
    ray = shutil.which("ray", path=str(Path(sys.executable).parent))
    temp = tmp_path_factory.mktemp("ray")
    command = [ray, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
               "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats",
               "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
               "--dashboard-agent-grpc-port", str(agent_grpc), "--metrics-export-port", str(metrics),
               "--runtime-env-agent-port", str(runtime_env), "--temp-dir", str(temp)]
    log = temp / "head.log"
    with open(log, "w") as out:
        head = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=ray_env())
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield f"127.0.0.1:{gcs}"
    finally:
        stop_process(head, signal.SIGTERM)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("label_ray_data")
    made = run_cli("data", "synth", "--out", out, "--images", IMAGES, "--seed", "5", "--min-side", "160",
                   "--max-side", "256", "--val-fraction", "0")
    assert made.returncode == 0, made.stderr
    return out / "coco" / "images"


def label_command(folder: Path, out: Path, *extra) -> list[str]:
    return [sys.executable, "-m", "yoloworld", "label", str(folder), "--weights", "demo", "--classes", CLASSES,
            "--out", str(out), "--batch", "2", "--val-fraction", "0.25", *map(str, extra)]


def ledger(out: Path) -> dict[str, dict]:
    lines = (out / "labelled.jsonl").read_text().splitlines() if (out / "labelled.jsonl").exists() else []
    return {entry["source"]: entry for entry in map(json.loads, lines)}


def stop_midway(command: list[str], out: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run `command`, Ctrl-C it once its first images are recorded, return how it ended."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ray_env())
    deadline = time.monotonic() + timeout
    while not ledger(out) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def assert_same_entries(ours: dict, reference: dict) -> None:
    """Same images, names, splits and sizes; boxes of the same classes within the rounding of a batched run."""
    assert ours.keys() == reference.keys()
    for source, entry in reference.items():
        other = ours[source]
        assert {k: other[k] for k in ("name", "split", "width", "height")} == \
            {k: entry[k] for k in ("name", "split", "width", "height")}
        mine, theirs = sorted(other["boxes"], key=lambda b: (b[4], b[0], b[1])), \
            sorted(entry["boxes"], key=lambda b: (b[4], b[0], b[1]))
        assert len(mine) == len(theirs), (source, mine, theirs)
        for a, b in zip(mine, theirs):
            assert a[4] == b[4] and max(abs(x - y) for x, y in zip(a[:4], b[:4])) <= 0.02 and abs(a[5] - b[5]) <= 2e-4


def dataset_images(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in (out / "images").rglob("*") if p.is_file()}


def test_ray_labelling_stopped_midway_resumes_to_the_single_process_dataset(ray_address, folder, tmp_path):
    reference = run_cli(*label_command(folder, tmp_path / "single")[3:])
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "ray"
    command = label_command(folder, out, "--ray", "--workers", 2, "--address", ray_address)
    stopped = stop_midway(command, out)
    assert stopped.returncode == 130, stopped.stderr
    done_before = len(ledger(out))
    assert 0 < done_before < IMAGES, f"stopped after {done_before} of {IMAGES} images: not midway"
    assert "run the same command again to continue" in stopped.stderr
    resumed = subprocess.run(command, capture_output=True, text=True, env=ray_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{done_before} done by an earlier run" in resumed.stdout
    single = tmp_path / "single"
    assert_same_entries(ledger(out), ledger(single))
    assert dataset_images(out) == dataset_images(single)
    for name in ("annotations.json", "annotations_val.json"):
        ours, theirs = json.loads((out / name).read_text()), json.loads((single / name).read_text())
        assert ours["images"] == theirs["images"] and ours["categories"] == theirs["categories"]
        assert len(ours["annotations"]) == len(theirs["annotations"])
