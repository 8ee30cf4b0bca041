"""Live sources in `yoloworld predict`, against a local MJPEG camera on 127.0.0.1 (tests/mjpeg_server.py)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from helpers import REPO, cli_env, run_cli
from mjpeg_server import MjpegServer, shape_frames

from yoloworld.cli import main
from yoloworld.streams import is_stream, redact, stream_name

SECRETS = ("alice-F", "s3cr", "t-pw-A", "bob-B", "pw-C", "tok-D", "sig-E")

DEMO = REPO / "yoloworld" / "assets" / "demo.pt"


@pytest.fixture(scope="module")
def frames():
    return shape_frames(4)


def predict_args(source: str, *extra) -> list[str]:
    # --every-frame: these tests count and number every frame (the default drops stale ones: tests/test_track.py)
    return ["predict", source, "--weights", str(DEMO), "--imgsz", "256", "--reconnect-delay", "0.05", "--every-frame",
            *map(str, extra)]


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def video_frame_count(path: Path) -> int:
    capture, count = cv2.VideoCapture(str(path)), 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def test_a_stream_gives_one_json_line_per_frame_as_it_arrives(frames, tmp_path, capsys):
    with MjpegServer(frames, plan=[5]) as camera:
        code = main(predict_args(camera.url, "--stream-json", "-", "--reconnect", 0, "--save-dir", tmp_path))
    out, err = capsys.readouterr()
    records = json_lines(out)
    assert code == 0 and out.count("\n") == 5  # standard output holds the JSON lines and nothing else
    assert [r["frame"] for r in records] == list(range(5)) and all(r["file"] == camera.url for r in records)
    assert all(r["detections"] for r in records)  # the demo model finds the drawn shapes in every frame
    assert "5 image(s)/frame(s)" in err  # the summary went to standard error
    assert video_frame_count(tmp_path / f"{stream_name(camera.url)}.mp4") == 5


def test_a_dropped_connection_is_reopened_and_the_frames_go_on(frames, tmp_path, caplog):
    # the camera dies mid-frame after 3 frames, comes back for 4, then is gone (404) until the attempts run out
    with MjpegServer(frames, plan=[3, 4], drops=[True, False]) as camera:
        code = main(predict_args(camera.url, "--stream-json", tmp_path / "live.jsonl", "--reconnect", 2, "--no-save"))
    records = json_lines((tmp_path / "live.jsonl").read_text())
    assert code == 0 and camera.requests == 4  # 2 served + 2 failed attempts: the loop ended by itself
    # FFmpeg may decode the half frame too (grey lower half): 7 or 8 frames, numbered without a gap
    assert len(records) in (7, 8) and [r["frame"] for r in records] == list(range(len(records)))
    assert f"ended after {len(records)} frame(s)" in caplog.text
    assert "reconnecting (attempt 1 of 2)" in caplog.text


def test_ctrl_c_stops_a_live_stream_and_leaves_complete_files(frames, tmp_path):
    lines = tmp_path / "live.jsonl"
    with MjpegServer(frames, plan=[400], interval=0.05) as camera:  # 20 s at most: it ends even if we do not
        process = subprocess.Popen([sys.executable, "-m", "yoloworld", *predict_args(camera.url), "--stream-json",
                                    lines, "--save-dir", tmp_path / "out"], env=cli_env(), cwd=REPO,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not lines.exists() or lines.read_text().count("\n") < 3):
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "stopped by Ctrl-C" in out
    records = json_lines(lines.read_text())
    assert len(records) >= 3 and lines.read_text().endswith("\n")  # no half-written line
    video = next((tmp_path / "out").glob("*.mp4"))
    assert video_frame_count(video) >= 3  # the file was finished: a killed writer leaves an unplayable mp4


def test_an_unreachable_stream_or_camera_is_a_one_line_error(capsys):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(predict_args(f"http://user:secret@127.0.0.1:{port}/cam", "--stream-timeout", 2)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "cannot open this stream" in err and "secret" not in err and "***@127.0.0.1" in err
    assert main(predict_args("57")) == 2
    assert "57: cannot open this camera" in capsys.readouterr().err


def closed_port() -> int:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def secret_url(scheme: str, port: int) -> str:
    """A camera address with every kind of credential: a password holding '@', and query keys."""
    return (f"{scheme}://alice-F:s3cr@t-pw-A@127.0.0.1:{port}/stream.mjpg"
            "?user=bob-B&PassWord=pw-C&access_token=tok-D&X-Amz-Signature=sig-E&fps=5")


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        leaked = [secret for secret in SECRETS if secret in text]
        assert not leaked, (leaked, text[-500:])


def test_credentials_in_a_stream_address_reach_no_record_file_name_or_line(frames, tmp_path):
    with MjpegServer(frames, plan=[3]) as camera:
        url = secret_url("http", camera.server.server_port)
        done = run_cli(*predict_args(url), "--stream-json", "-", "--json", tmp_path / "all.json", "--reconnect", 0,
                       "--save-dir", tmp_path / "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    shown = f"http://***@127.0.0.1:{camera.server.server_port}/stream.mjpg?user=***&PassWord=***&access_token=***" \
            "&X-Amz-Signature=***&fps=5"
    assert [r["file"] for r in json_lines(done.stdout)] == [shown] * 3
    assert [r["file"] for r in json.loads((tmp_path / "all.json").read_text())] == [shown] * 3
    assert [p.name for p in (tmp_path / "out").glob("*.mp4")] == ["127_0_0_1_%d_stream_mjpg.mp4" % camera.server.server_port]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert_no_secret(done.stdout, done.stderr, *(str(p) for p in files),
                     *(p.read_bytes().decode("latin-1") for p in files))


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_an_unreachable_stream_with_credentials_is_one_line_without_them(scheme, tmp_path):
    done = run_cli(*predict_args(secret_url(scheme, closed_port())), "--stream-timeout", 2, "--save-dir",
                   tmp_path / "out", cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr  # no OpenCV / FFmpeg lines before ours
    assert lines[0].startswith(f"error: {scheme}://***@127.0.0.1:") and "cannot open this stream" in lines[0]
    assert_no_secret(done.stdout, done.stderr, *(str(p) for p in tmp_path.rglob("*")))


def test_a_camera_that_is_missing_or_out_of_opencvs_range_is_one_line():
    for index, message in (("57", "57: cannot open this camera"),
                           ("99999999999", "99999999999: not a camera number OpenCV can open (0 to 99)")):
        done = run_cli(*predict_args(index))
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), done.stderr


@pytest.mark.parametrize("address, shown", [
    ("rtsp://admin:pw@10.0.0.5:554/s", "rtsp://***@10.0.0.5:554/s"),
    ("rtsp://admin:p@ss@cam/live", "rtsp://***@cam/live"),  # FFmpeg's host starts after the last '@'
    ("rtsp://admin:pa/ss@cam/live", "rtsp://***@cam/live"),  # an unescaped '/' does not show the password either
    ("rtsp://cam/live?user=bob&pwd=x;Token=y#api_key=z", "rtsp://cam/live?user=***&pwd=***;Token=***#api_key=***"),
    ("https://cam/a?pass%77ord=x&channel=2&email=a@b", "https://cam/a?pass%77ord=***&channel=2&email=a@b"),
    ("https://cam/a?X-Amz-Credential=k&sessionid=s", "https://cam/a?X-Amz-Credential=***&sessionid=***"),
    ("http://cam:8080/video", "http://cam:8080/video"), ("0", "0"),
])
def test_addresses_are_shown_without_credentials(address, shown):
    assert redact(address) == shown


def test_stream_sources_are_told_apart_from_files():
    assert is_stream("0") and is_stream("rtsp://cam/live") and is_stream("HTTP://host/x.mjpg")
    assert not is_stream("photos/") and not is_stream("clip.mp4") and not is_stream("0.jpg") and not is_stream("²")
    assert redact("rtsp://admin:pw@10.0.0.5:554/s") == "rtsp://***@10.0.0.5:554/s"
    assert stream_name("rtsp://admin:pw@cam.local:554/live") == "cam_local_554_live" and stream_name("2") == "camera2"
