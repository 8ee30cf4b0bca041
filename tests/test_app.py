"""`yoloworld app` end to end in a real headless browser, and the app's actions without one."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import REPO, cli_env

from yoloworld.data.synth import SynthConfig, draw_image
from yoloworld.errors import InputError

pytest.importorskip("gradio", reason="the web app needs Gradio: pip install 'yoloworld[app]'")

DEMO = REPO / "yoloworld" / "assets" / "demo.pt"
NAMES = SynthConfig().class_names


def shapes_image(path: Path, seed: int = 5) -> list[str]:
    """A synthetic picture of shapes; returns the names of the shapes drawn."""
    image, objects = draw_image(np.random.default_rng(seed), SynthConfig(min_side=320, max_side=320, max_objects=4))
    cv2.imwrite(str(path), image)
    return sorted({NAMES[o.label] for o in objects})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_app(folder: Path, *flags, env: dict | None = None):
    """`yoloworld app FLAGS` in its own process, as a user starts it, until the block ends; yields its URL."""
    port = free_port()
    log = open(folder / "app.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "yoloworld", "app", "--port", str(port), "--imgsz", "256",
                                *map(str, flags)], env={**cli_env(), **(env or {})}, cwd=folder, stdout=log,
                               stderr=subprocess.STDOUT)
    url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except urllib.error.HTTPError:  # served (a login page may answer 401)
            break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail(f"the app did not start: {(folder / 'app.log').read_text()[-2000:]}")
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def app_url(tmp_path):
    with running_app(tmp_path, "--weights-dir", tmp_path) as url:
        yield url


def wait_for(predicate, timeout: float = 90, what: str = "the page"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_page_detects_typed_classes_in_an_uploaded_image_and_exports_onnx(app_url, tmp_path):
    from browser import ensure_chromium, headless_chrome
    from selenium.webdriver.common.by import By

    drawn = shapes_image(tmp_path / "shapes.png")
    absent = next(name for name in NAMES if name not in drawn)
    driver = headless_chrome(*ensure_chromium())
    try:
        driver.get(app_url)
        classes = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#classes textarea, #classes input"))[0]
        classes.send_keys(", ".join(drawn + [absent]))
        driver.find_element(By.CSS_SELECTOR, "#input-image input[type=file]").send_keys(str(tmp_path / "shapes.png"))
        wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#input-image img"), what="the upload preview")
        driver.find_element(By.ID, "detect").click()
        summary = driver.find_element(By.CSS_SELECTOR, "#summary textarea, #summary input")
        text = wait_for(lambda: summary.get_attribute("value"), what="the detections summary")
        wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#output-image img"), what="the annotated image")
        link = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#downloads a"), what="the JSON download")[0]
        records = json.loads(urllib.request.urlopen(link.get_attribute("href"), timeout=30).read())
        screenshot = tmp_path / "app.png"
        driver.save_screenshot(str(screenshot))
        if os.environ.get("YOLOWORLD_SCREENSHOT"):  # to refresh the README's picture (format from the suffix)
            cv2.imwrite(os.environ["YOLOWORLD_SCREENSHOT"], cv2.imread(str(screenshot)), [cv2.IMWRITE_JPEG_QUALITY, 88])

        found = {d["class_name"] for d in records[0]["detections"] if d["score"] >= 0.5}
        assert found == set(drawn), (found, drawn, text)  # every drawn shape, nothing of the absent class
        assert text.startswith(f"{len(records[0]['detections'])} detection")
        assert all(name in text for name in drawn)

        driver.find_element(By.ID, "export").click()
        wait_for(lambda: "exported" in summary.get_attribute("value") or driver.find_elements(By.CSS_SELECTOR, ".toast-body"),
                 timeout=180, what="the ONNX export")
        assert "exported" in summary.get_attribute("value"), driver.find_element(By.CSS_SELECTOR, ".toast-body").text
        links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#downloads a")]
        onnx = next(href for href in links if href.split("?")[0].endswith("classes.onnx"))
        assert len(urllib.request.urlopen(onnx, timeout=30).read()) > 100_000
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def session():
    from yoloworld.app.session import AppSession

    app = AppSession([str(DEMO)], imgsz=256, max_video_frames=4)
    yield app
    app.close()


def test_a_video_is_annotated_frame_by_frame_up_to_the_frame_limit(session, tmp_path):
    from yoloworld.images import video_writer

    rng, writer = np.random.default_rng(0), None
    for _ in range(6):
        frame, _ = draw_image(rng, SynthConfig(min_side=256, max_side=256))
        writer = writer or video_writer(tmp_path / "clip.mp4", 5, frame.shape)
        writer.write(frame)
    writer.release()
    found = session.detect_video(str(tmp_path / "clip.mp4"), str(DEMO), "", 100, 0.3, 0.5)
    assert [r["frame"] for r in found.records] == [0, 1, 2, 3]
    assert found.summary.startswith("4 frames") and found.summary.endswith("(the first 4 frames)")
    assert found.video.suffix == ".webm" and found.video.stat().st_size > 0  # VP8: plays in the browser
    assert json.loads(found.json_file.read_text()) == found.records


def test_the_video_tab_tracks_still_objects_under_one_id_each(session, tmp_path):
    from yoloworld.images import video_writer

    frame, _ = draw_image(np.random.default_rng(3), SynthConfig(min_side=256, max_side=256, max_objects=3))
    writer = video_writer(tmp_path / "still.mp4", 5, frame.shape)
    for _ in range(4):
        writer.write(frame)
    writer.release()
    found = session.detect_video(str(tmp_path / "still.mp4"), str(DEMO), "", 100, 0.3, 0.5, track=True)
    last = found.records[-1]["detections"]
    assert last and all(isinstance(d["track_id"], int) for d in last), last  # confirmed by the last frame
    ids = {(d["class_name"], d["track_id"]) for r in found.records for d in r["detections"] if "track_id" in d}
    assert len(ids) == len(last), ids  # the same objects keep their ids from frame to frame
    assert "tracked: " in found.summary and found.summary.endswith(
        ", ".join(f"{sum(1 for name, _ in ids if name == n)} {n}" for n in sorted({n for n, _ in ids}))), found.summary


def test_app_errors_are_the_one_line_messages(session):
    with pytest.raises(InputError, match="upload an image first"):
        session.detect_image(None, str(DEMO), "", 100, 0.05, 0.5)
    with pytest.raises(InputError, match="cannot embed 'zebra'"):
        session.detect_image(np.zeros((64, 64, 3), np.uint8), str(DEMO), "zebra", 100, 0.05, 0.5)


def test_the_weights_picker_lists_local_checkpoints(tmp_path):
    from yoloworld.app.session import find_weights

    for name in ("a.pt", "runs/exp/best.pth", "runs/exp/last_state.pt", "m/model.onnx", "m/model.text.onnx",
                 "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = [Path(p).relative_to(tmp_path).as_posix() for p in find_weights([tmp_path])]
    assert found == ["a.pt", "m/model.onnx", "runs/exp/best.pth"]


def call(url: str, action: str, *data) -> tuple[str, object]:
    """One event through Gradio's HTTP API, as any client (not only the page) can send it: (event, data)."""
    request = urllib.request.Request(f"{url}gradio_api/call/{action}", json.dumps({"data": list(data)}).encode(),
                                     {"Content-Type": "application/json"})
    event_id = json.loads(urllib.request.urlopen(request, timeout=30).read())["event_id"]
    stream = urllib.request.urlopen(f"{url}gradio_api/call/{action}/{event_id}", timeout=300).read().decode()
    event, payload = re.findall(r"event: (\w+)\ndata: (.*)", stream)[-1]
    return event, json.loads(payload)


def weights_choices(url: str) -> tuple[list[str], bool]:
    config = json.loads(urllib.request.urlopen(f"{url}config", timeout=30).read())
    picker = next(c["props"] for c in config["components"] if c["props"].get("elem_id") == "weights")
    return [value for _, value in picker["choices"]], picker["allow_custom_value"]


def weights_folder(root: Path) -> Path:
    """A folder with one model, a run's resume state, a text-encoder export and a note."""
    for name in ("runs/exp/best.pth", "runs/exp/last_state.pt", "m/best.text.onnx", "notes.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(DEMO.read_bytes() if name.endswith("best.pth") else b"x")
    return root


NO_EXTRAS = ("", True, None, "", "")  # the later inputs left as the page starts: negatives, calibrated, image prompt


def test_a_browser_can_use_only_the_weights_the_server_was_started_with(tmp_path):
    from yoloworld.app.session import NOT_OFFERED

    folder = weights_folder(tmp_path / "models")
    private = tmp_path / "private" / "secret.pth"  # a loadable checkpoint elsewhere on the server
    private.parent.mkdir()
    private.write_bytes(DEMO.read_bytes())
    (tmp_path / "big.png").write_bytes(b"\x89PNG" + bytes(2_200_000))
    with running_app(tmp_path, "--weights-dir", folder, "--host", "0.0.0.0", "--max-upload-mb", 2) as url:
        choices, custom = weights_choices(url)
        assert choices == [str(DEMO), str(folder / "runs/exp/best.pth")] and not custom
        no_image = call(url, "detect_image", None, str(DEMO), "", 100, 0.1, 0.5, *NO_EXTRAS)
        assert no_image == ("error", ANY_ERROR("upload an image"))
        answers = [call(url, action, *values) for action, values in (
            ("export_onnx", (str(private), "")), ("export_onnx", (str(tmp_path / "missing.pth"), "")),
            ("export_onnx", ("yolo_world_v2_s", "")), ("detect_image", (None, str(private), "", 100, 0.1, 0.5, *NO_EXTRAS)))]
        # one answer whether a path exists or not (no map of the server's files), and no release download
        assert answers == [("error", ANY_ERROR(NOT_OFFERED))] * 4 and len({a[1]["error"] for a in answers}) == 1
        upload = urllib.request.Request(f"{url}gradio_api/upload", multipart("big.png", (tmp_path / "big.png")),
                                        {"Content-Type": "multipart/form-data; boundary=BOUNDARY"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(upload, timeout=60)
        assert refused.value.code == 413
    log = (tmp_path / "app.log").read_text()
    assert "Traceback" not in log and "share=True" not in log  # mistakes and refusals are shown to the client only
    lines = log.splitlines()
    assert len(lines) == 3, log  # our lines only
    assert lines[0].startswith("warning: serving on 0.0.0.0 without a login") and "--auth" in lines[0]
    assert lines[1].startswith("yoloworld app: http://")
    assert lines[-1] == "yoloworld app: stopped"  # SIGTERM ends it like Ctrl-C: its files removed


class ANY_ERROR(str):
    """Equal to a Gradio error payload whose message contains this text."""

    def __eq__(self, other):
        return isinstance(other, dict) and str(self) in (other.get("error") or "")

    __hash__ = str.__hash__


def multipart(name: str, path: Path) -> bytes:
    return (b"--BOUNDARY\r\nContent-Disposition: form-data; name=\"files\"; filename=\"" + name.encode()
            + b"\"\r\nContent-Type: application/octet-stream\r\n\r\n" + path.read_bytes() + b"\r\n--BOUNDARY--\r\n")


def test_a_login_is_asked_when_auth_is_set(tmp_path):
    with running_app(tmp_path, env={"YOLOWORLD_APP_AUTH": "ann:pw-7Q"}) as url:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}config", timeout=30)
        assert refused.value.code == 401
        login = urllib.request.urlopen(urllib.request.Request(
            f"{url}login", b"username=ann&password=pw-7Q", {"Content-Type": "application/x-www-form-urlencoded"}))
        assert login.status == 200 and "access-token" in (login.headers.get("set-cookie") or "")
    log = (tmp_path / "app.log").read_text()
    assert "warning" not in log and "pw-7Q" not in log


@pytest.mark.parametrize("flags, message", [
    (["--port", "70000"], "argument --port: 70000 is not a port number (0 to 65535)"),
    (["--weights-dir", "missing"], "--weights-dir missing: no such folder"),
    (["--weights-dir", "file.txt"], "--weights-dir file.txt: is a file, expected a folder of weights"),
    (["--auth", "ann"], "--auth: expected USER:PASSWORD"),
    (["--weights", "missing.pth"], "missing.pth"),
])
def test_bad_app_flags_are_one_line_before_the_server_starts(flags, message, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    done = subprocess.run([sys.executable, "-m", "yoloworld", "app", *flags], capture_output=True, text=True,
                          env=cli_env(), cwd=tmp_path, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and message in lines[0], done.stderr
    assert "http://" not in done.stdout


def test_a_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "yoloworld", "app", "--port", str(port), "--weights", DEMO],
                              capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == (
        f"error: --host 127.0.0.1 --port {port}: cannot serve there (the port is in use, or the address is not this "
        "machine's); choose another --port (0: any free port)"), done.stderr
    assert "Traceback" not in done.stderr


def test_app_help_names_only_the_apps_flags():
    done = subprocess.run([sys.executable, "-m", "yoloworld", "app", "--help"], capture_output=True, text=True,
                          env=cli_env(), timeout=120)
    assert "--visual-prompt" not in done.stdout  # image prompts come from the page; --vision-model encodes them
    assert "--vision-model" in done.stdout
    assert "--allow-any-weights" in done.stdout and "--auth" in done.stdout


def test_the_session_loads_only_offered_weights_and_keeps_two_models(tmp_path):
    from yoloworld.app.session import NOT_OFFERED, AppSession

    copies = []
    for name in ("a", "b", "c", "other"):
        copies.append(str(tmp_path / f"{name}.pth"))
        (tmp_path / f"{name}.pth").write_bytes(DEMO.read_bytes())
    session = AppSession(copies[:3], imgsz=256)
    try:
        image = np.zeros((64, 64, 3), np.uint8)
        for weights in (copies[3], str(tmp_path / "missing.pth"), "yolo_world_v2_s"):
            with pytest.raises(InputError) as refused:
                session.detect_image(image, weights, "", 100, 0.05, 0.5)
            assert str(refused.value) == NOT_OFFERED
            with pytest.raises(InputError, match=NOT_OFFERED):
                session.export_onnx(weights, "")
        for weights in copies[:3]:
            session.detect_image(image, weights, "", 100, 0.05, 0.5)
        assert session.loaded == copies[1:3]  # the least recently used model was let go
        session.model(copies[1])
        assert session.loaded == [copies[2], copies[1]]
    finally:
        session.close()
    anything = AppSession(copies[:1], imgsz=256, allow_any=True)
    try:
        assert anything.detect_image(image, copies[3], "", 100, 0.05, 0.5).records
    finally:
        anything.close()


def test_concurrent_actions_get_folders_of_their_own(session):
    barrier, folders = threading.Barrier(8), []

    def make():
        barrier.wait()
        folders.extend(session._run_folder() for _ in range(50))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: a shared counter would collide
    try:
        threads = [threading.Thread(target=make) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert len(set(folders)) == 400 and all(f.is_dir() for f in folders)
