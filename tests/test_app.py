"""`yoloworld app` end to end in a real headless browser, and the app's actions without one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
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


@pytest.fixture
def app_url(tmp_path):
    """`yoloworld app` in its own process, as a user starts it; stopped after the test."""
    port = free_port()
    log = open(tmp_path / "app.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "yoloworld", "app", "--port", str(port), "--imgsz", "256",
                                "--weights-dir", str(tmp_path)], env=cli_env(), cwd=tmp_path, stdout=log,
                               stderr=subprocess.STDOUT)
    url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail(f"the app did not start: {(tmp_path / 'app.log').read_text()[-2000:]}")
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()


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


def test_app_errors_are_the_one_line_messages(session):
    with pytest.raises(InputError, match="upload an image first"):
        session.detect_image(None, str(DEMO), "", 100, 0.05, 0.5)
    with pytest.raises(InputError, match="cannot embed 'zebra'"):
        session.detect_image(np.zeros((64, 64, 3), np.uint8), str(DEMO), "zebra", 100, 0.05, 0.5)


def test_the_weights_picker_lists_local_checkpoints(tmp_path):
    from yoloworld.app.session import find_weights

    for name in ("a.pt", "runs/exp/best.pth", "m/model.onnx", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = [Path(p).relative_to(tmp_path).as_posix() for p in find_weights([tmp_path])]
    assert found == ["a.pt", "m/model.onnx", "runs/exp/best.pth"]
