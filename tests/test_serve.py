"""`yoloworld serve` in a fresh process, as a user starts it: one local Ray instance for the whole module (Ray takes
~20 s to start on two cores), on 127.0.0.1 and a free port, stopped with Ctrl-C at the end.

The server runs with small limits (batches of 4, 4 ongoing + 8 queued requests, 1 MB uploads) so that dynamic
batching, backpressure and the upload limit are all reached by a few requests, and asks for an API key."""

from __future__ import annotations

import re
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import REPO, assert_same_detections, cli_env, run_cli, stop_process

pytest.importorskip("ray.serve")
requests = pytest.importorskip("requests")

from yoloworld.results import Results  # noqa: E402

SHAPES = "red circle,green square,blue triangle|blue square"
KEY = "test-key-0123"  # given through YOLOWORLD_API_KEY, as the README advises (not on the command line)
AUTH = {"X-API-Key": KEY}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("serve_data")
    check = run_cli("data", "synth", "--out", folder, "--images", "6", "--seed", "3", "--min-side", "128",
                    "--max-side", "224", "--val-fraction", "0")
    assert check.returncode == 0, check.stderr
    return sorted((folder / "coco" / "images").glob("*.jpg"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The base URL of `yoloworld serve --weights demo`, started as a user types it; stopped by SIGINT after."""
    port, log = free_port(), tmp_path_factory.mktemp("serve_log") / "serve.log"
    command = [sys.executable, "-m", "yoloworld", "serve", "--weights", "demo", "--port", str(port), "--num-cpus", "2",
               "--max-batch-size", "4", "--batch-wait-ms", "50", "--max-ongoing-requests", "4",
               "--max-queued-requests", "8", "--max-upload-mb", "1"]
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=dict(cli_env(), YOLOWORLD_API_KEY=KEY),
                                   cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, log, url)
        yield url
    finally:
        stop_process(process, signal.SIGINT)
    assert process.returncode == 0, log.read_text()[-2000:]
    assert "yoloworld serve: stopped" in log.read_text()


def wait_until_ready(process, log: Path, url: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"serve exited early:\n{log.read_text()[-3000:]}"
        if "yoloworld serve: http" in log.read_text():
            return
        time.sleep(0.5)
    raise AssertionError(f"serve did not start in {timeout} s:\n{log.read_text()[-3000:]}")


def detect(url: str, image: Path | bytes, timeout: float = 120, **fields) -> requests.Response:
    data = image.read_bytes() if isinstance(image, Path) else image
    return requests.post(f"{url}/v1/detect", files={"image": ("upload.jpg", data)}, data=fields, timeout=timeout,
                         headers=AUTH)


def as_results(record: dict, names: list[str]) -> Results:
    detections = record["detections"]
    assert all(names[d["class_id"]] == d["class_name"] for d in detections)
    return Results(np.array([d["xyxy"] for d in detections], np.float32).reshape(-1, 4),
                   np.array([d["score"] for d in detections], np.float32),
                   np.array([d["class_id"] for d in detections], np.int64), names,
                   (record["height"], record["width"]))


def test_health_answers_once_the_model_is_loaded(server):
    answer = requests.get(f"{server}/health", timeout=30)
    assert answer.status_code == 200
    assert "red circle" in answer.json()["classes"]
    assert requests.get(f"{server}/docs", timeout=30).status_code == 200


def test_concurrent_answers_equal_predict_and_are_batched(server, images):
    """Eight requests at once, two vocabularies and two thresholds mixed: each answer is `predict`'s record
    (without `file`) for its image, as sets; some were answered from batches of several images."""
    from yoloworld import load

    model = load("demo")
    jobs = [(image, {"conf": "0.25"} if i % 2 else {"classes": SHAPES, "conf": "0.3", "max_det": "5"})
            for i, image in enumerate(images[:4] * 2)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(lambda job: detect(server, job[0], **job[1]), jobs))
    assert [a.status_code for a in answers] == [200] * len(jobs), [a.text for a in answers]
    default_names, compared = model.class_names, 0
    for (image, fields), answer in zip(jobs, answers):
        record = answer.json()
        classes = fields.get("classes")
        reference = model.predict(str(image), float(fields["conf"]), max_det=int(fields.get("max_det", 300)),
                                  per_image_classes=[classes] if classes else None)[0]
        assert set(record) == set(reference.to_dict()) - {"file"}
        compared += len(reference) > 0
        names = reference.names if classes else default_names
        assert_same_detections(as_results(record, names), reference, box_tol=0.02, score_tol=2e-4,
                               conf=float(fields["conf"]), max_det=int(fields.get("max_det", 300)))
    assert compared >= len(jobs) // 2, "too few images with detections: the comparison would prove little"
    assert max(int(a.headers["X-Batch-Size"]) for a in answers) > 1


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels and holds none: a decompression bomb's header."""
    body = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(body)) + b"IHDR" + body + struct.pack(">I", zlib.crc32(b"IHDR" + body))
    return b"\x89PNG\r\n\x1a\n" + chunk


BAD_FORMS = {  # name: (files, form fields, the field the error must name)
    "no image field": ({"conf": (None, "0.3")}, {}, "image"),
    "not an image": ({"image": ("a.jpg", b"hello, not pixels")}, {}, "image"),
    "empty file": ({"image": ("a.jpg", b"")}, {}, "image"),
    "a huge canvas": ({"image": ("a.png", png_header(20000, 20000))}, {}, "image"),
    "over the upload limit": ({"image": ("a.jpg", b"\xff" * (1_100_000))}, {}, "image"),
    "two files": ({"image": ("a.jpg", b"x"), "conf": ("c.jpg", b"y")}, {}, "image"),
    "conf out of range": ("IMAGE", {"conf": "1.5"}, "conf"),
    "conf not a number": ("IMAGE", {"conf": "high"}, "conf"),
    "conf not finite": ("IMAGE", {"conf": "nan"}, "conf"),
    "iou zero": ("IMAGE", {"iou": "0"}, "iou"),
    "max_det zero": ("IMAGE", {"max_det": "0"}, "max_det"),
    "max_det a fraction": ("IMAGE", {"max_det": "2.5"}, "max_det"),
    "empty classes": ("IMAGE", {"classes": "  "}, "classes"),
    "classes of commas": ("IMAGE", {"classes": ",,|"}, "classes"),
    "classes with semicolons": ("IMAGE", {"classes": "a;b"}, "classes"),
    "classes as bad JSON": ("IMAGE", {"classes": "[\"a\", "}, "classes"),
    "classes too long": ("IMAGE", {"classes": "x," * 6000}, "classes"),
    "an unknown field": ("IMAGE", {"url": "http://example.com/a.jpg"}, "url"),
}


@pytest.mark.parametrize("name", BAD_FORMS)
def test_each_client_mistake_answers_4xx_json_naming_the_field(server, images, name):
    files, fields, field = BAD_FORMS[name]
    if files == "IMAGE":
        files = {"image": ("a.jpg", images[0].read_bytes())}
    answer = requests.post(f"{server}/v1/detect", files=files, data=fields, timeout=60, headers=AUTH)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    assert re.match(rf"^{field}\b", answer.json()["error"]), answer.json()


def test_a_missing_or_wrong_api_key_answers_401(server, images):
    for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
        answer = requests.post(f"{server}/v1/detect", files={"image": images[0].read_bytes()}, headers=headers,
                               timeout=30)
        assert answer.status_code == 401 and "API key" in answer.json()["error"], answer.text
    bearer = requests.post(f"{server}/v1/detect", files={"image": images[0].read_bytes()}, timeout=60,
                           headers={"Authorization": f"Bearer {KEY}"})
    assert bearer.status_code == 200, bearer.text


def test_other_requests_answer_4xx_json(server):
    assert requests.post(f"{server}/v1/detect", json={"image": "a.jpg"}, timeout=30, headers=AUTH).status_code == 415
    assert requests.get(f"{server}/v1/detect", timeout=30).json()["error"]
    missing = requests.get(f"{server}/v2/nothing", timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]


def test_overload_answers_200_or_503_and_the_server_recovers(server, images):
    """48 requests at once against 4 ongoing + 8 queued: every request is answered, each with 200 or a refusal
    (503/429) given at once; afterwards the server answers normally."""
    with ThreadPoolExecutor(48) as pool:
        answers = list(pool.map(lambda i: detect(server, images[i % len(images)], conf="0.25"), range(48)))
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 429, 503}, statuses
    assert 200 in statuses and ({429, 503} & set(statuses)), statuses
    assert requests.get(f"{server}/health", timeout=30).status_code == 200
    assert detect(server, images[0], conf="0.25").status_code == 200


def test_readme_client_example_runs_against_the_server(server, images, tmp_path):
    """The README's curl line and Python client, run as written against this server (tests/test_readme.py skips
    them: it has no server)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Serving", 1)[1].split("\n## ", 1)[0]
    client = re.search(r"```python\n(.*?)```", section, re.S)[1]
    curl = next(line for line in re.search(r"```bash\n(.*?)```", section, re.S)[1].splitlines()
                if line.startswith("curl") and "/v1/detect" in line)
    cv2.imwrite(str(tmp_path / "street.jpg"), cv2.imread(str(images[0])))
    env, address = cli_env(), server.removeprefix("http://")
    # the demo model knows the shapes' names only (it has no text encoder for new words)
    # and this server asks for an API key (the README's first server does not)
    client = client.replace("person,car|automobile", SHAPES).replace("127.0.0.1:8000", address) \
        .replace("files={", f"headers={AUTH!r}, files={{")
    curl = curl.replace("person,bus", "red circle,green square").replace("127.0.0.1:8000", address) \
        .replace("curl ", f"curl -H 'X-API-Key: {KEY}' ")
    for command in ([sys.executable, "-c", client], ["bash", "-c", curl]):
        ran = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, ran.stderr
        assert "class_name" in ran.stdout, ran.stdout  # detections found, as JSON


def test_bad_weights_and_a_taken_port_are_one_line_before_ray_starts(tmp_path):
    missing = run_cli("serve", "--weights", tmp_path / "missing.pth", "--port", "0")
    assert missing.returncode == 2 and "missing.pth" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = run_cli("serve", "--weights", "demo", "--port", taken.getsockname()[1])
    assert busy.returncode == 2 and "--port" in busy.stderr.strip().splitlines()[-1], busy.stderr


def test_a_reachable_server_without_a_key_is_warned_about():
    from yoloworld.cli.serve import exposure_warning

    assert "without an API key" in exposure_warning("0.0.0.0", None)
    assert "without an API key" in exposure_warning("192.168.1.20", "")
    assert exposure_warning("0.0.0.0", "k") is None
    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("localhost", None) is None
    assert exposure_warning("::1", None) is None
