"""Tracking: `yoloworld track` and `model.track()` keep one id per object, across vocabulary changes too; live
sources keep up with a slow model (newest frame, stale ones dropped and counted). Demo model, generated frames."""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import REPO, run_cli
from mjpeg_server import MjpegServer, shape_frames

import yoloworld
from yoloworld.data.synth import COLOURS, shape_polygon
from yoloworld.errors import InputError
from yoloworld.results import Results
from yoloworld.streams import LatestFrames, Stream, StreamOptions
from yoloworld.tracking import ClassTracks

DEMO = REPO / "yoloworld" / "assets" / "demo.pt"
# (class, start centre, pixels per frame): two classes that never meet, so each keeps one id throughout
MOVERS = [("red circle", (50, 60), (6, 2)), ("blue square", (200, 140), (-6, -1))]


def moving_frames(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    background = np.clip(rng.integers(-20, 21, (192, 256, 3)) + 130, 0, 255).astype(np.uint8)
    frames = []
    for t in range(count):
        image = background.copy()
        for name, (x, y), (dx, dy) in MOVERS:
            colour, shape = name.split()
            polygon = shape_polygon(shape, x + dx * t, y + dy * t, 20)
            cv2.fillPoly(image, [np.round(polygon).astype(np.int32)], COLOURS[colour], lineType=cv2.LINE_AA)
        frames.append(image)
    return frames


@pytest.fixture(scope="module")
def model():
    return yoloworld.load(DEMO, imgsz=256)


@pytest.fixture(scope="module")
def frames():
    return moving_frames(6)


def ids_by_class(results) -> dict[str, set[int]]:
    ids = defaultdict(set)
    for result in results:
        for name, track_id in zip(result.class_names, result.track_ids):
            ids[name].add(int(track_id))
    return ids


def test_track_cli_writes_track_ids_counts_and_a_video_with_ids(frames, tmp_path):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (256, 192))
    for frame in frames:
        writer.write(frame)
    writer.release()
    out = run_cli("track", video, "--weights", DEMO, "--imgsz", "256", "--classes", "red circle,blue square",
                  "--json", tmp_path / "tracks.json", "--save-dir", tmp_path / "vis",
                  "--line", "65,0,65,192", "--zone", "150,100,215,100,215,170,150,170")
    assert out.returncode == 0, out.stderr
    records = json.loads((tmp_path / "tracks.json").read_text())
    assert [r["frame"] for r in records] == list(range(6))
    assert all(r["file"] == str(video) and (r["width"], r["height"]) == (256, 192) for r in records)
    tracked = [d for r in records for d in r["detections"]]
    assert all(isinstance(d["track_id"], int) for d in tracked)
    assert all(len(r["detections"]) == 2 for r in records[2:])  # ids from the second or third frame on
    ids = {name: {d["track_id"] for d in tracked if d["class_name"] == name} for name in ("red circle", "blue square")}
    assert all(len(found) == 1 for found in ids.values()) and ids["red circle"] != ids["blue square"], ids
    # the red circle (x 50 -> 80) crosses the line once; the blue square (x 200 -> 170) stays in the zone
    counts = records[-1]["counts"]
    assert sum(counts["line_in"].values()) + sum(counts["line_out"].values()) == 1 and counts["zone"] == {"blue square": 1}
    assert re.search(r"clip.mp4: line: (1 red circle crossed in, 0 out|0 red circle crossed in, 1 out)", out.stdout)
    assert "clip.mp4: zone: 1 blue square entered, at most 1 at once" in out.stdout
    capture = cv2.VideoCapture(str(tmp_path / "vis" / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    capture.release()


@pytest.mark.parametrize("tracker", ["sort", "ocsort"])
def test_each_tracker_keeps_one_id_per_object(model, frames, tracker):
    model.set_classes(["red circle", "blue square"])
    results = list(model.track(frames, persist=False, tracker=tracker))
    ids = ids_by_class(results)
    assert len(ids["red circle"]) == 1 and len(ids["blue square"]) == 1 and ids["red circle"] != ids["blue square"]
    assert len(results[-1]) == 2


def test_a_frame_by_frame_loop_with_persist_goes_on_with_the_same_tracks(model, frames):
    model.set_classes(["red circle", "blue square"])
    whole = list(model.track(frames[:4], persist=False))
    one_by_one = [next(model.track(frame, persist=index > 0)) for index, frame in enumerate(frames[:4])]
    assert [r.track_ids.tolist() for r in one_by_one] == [r.track_ids.tolist() for r in whole]
    assert len(one_by_one[-1]) == 2


def test_changing_the_vocabulary_keeps_the_ids_of_the_classes_that_stay(model, frames):
    model.set_classes(["red circle", "blue square"])
    before = list(model.track(frames[:3], persist=False))[-1]
    # reordered, a new class first, and blue square now in a synonym group under another name: same lanes (the demo
    # model knows only its shape names, so the group pairs two of them)
    model.set_classes(["green triangle", ["blue triangle", "blue square"], "red circle"])
    after = next(model.track(frames[3], persist=True))
    assert dict(zip(after.class_names, after.track_ids)) == {
        "blue triangle": dict(zip(before.class_names, before.track_ids))["blue square"],
        "red circle": dict(zip(before.class_names, before.track_ids))["red circle"]}
    model.set_classes([["blue triangle", "blue square"]])  # red circle leaves: its track ends ...
    next(model.track(frames[4], persist=True))
    model.set_classes([["blue triangle", "blue square"], "red circle"])  # ... and comes back as a new object
    back = list(model.track([frames[5], frames[4]], persist=True))
    red = {int(i) for r in back for n, i in zip(r.class_names, r.track_ids) if n == "red circle"}
    assert red and max(before.track_ids) < min(red)


def fake_result(scores: list[float], names=("a", "b")) -> Results:
    boxes = np.array([[10, 10, 40, 40], [100, 100, 140, 140]], dtype=np.float32)[: len(scores)]
    return Results(boxes, np.array(scores, np.float32), np.arange(len(scores)), list(names), (200, 200))


def test_a_class_threshold_decides_which_class_starts_tracks():
    tracks = ClassTracks("bytetrack", class_conf={"a": 0.9}, track_conf=0.3)
    results = [tracks.update(fake_result([0.5, 0.5])) for _ in range(4)]
    assert results[-1].class_names == ["b"]  # a at 0.5 is below its own 0.9; b passes the shared 0.3


def test_an_unknown_tracker_is_a_one_line_error(model, tmp_path):
    with pytest.raises(InputError, match="tracker 'deepsort'"):
        model.track([], tracker="deepsort")
    with pytest.raises(InputError, match=r"class_conf\['red circle'\] 2: must be a score"):
        model.track([], class_conf={"red circle": 2})
    out = run_cli("track", tmp_path, "--weights", DEMO, "--tracker", "deepsort")
    assert out.returncode == 2 and "invalid choice: 'deepsort'" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("track", tmp_path, "--weights", DEMO, "--zone", "1,2,3,4,5")
    assert out.returncode == 2 and "--zone: '1,2,3,4,5': expected x,y pairs" in out.stderr
    out = run_cli("track", tmp_path, "--weights", DEMO, "--class-track-conf", "red circle=2")
    assert out.returncode == 2 and "--class-track-conf: 2 is not between 0 and 1" in out.stderr


def test_a_slow_reader_of_a_live_stream_gets_the_newest_frame_and_drops_are_counted():
    with MjpegServer(shape_frames(2), plan=[60], interval=0.02) as camera:
        latest = LatestFrames(Stream(camera.url, StreamOptions(reconnects=0)), "camera")
        taken, ages = [], []
        for index, _ in latest:
            ages.append(latest.age())
            taken.append(index)
            time.sleep(0.15)  # a model 7x slower than the camera
    assert taken[-1] >= 55 and len(taken) < 30  # it ended with the stream, not 60 x 0.15 s later
    assert latest.dropped == taken[-1] + 1 - len(taken)  # every frame is either handed out or counted as dropped
    # each frame handed out arrived during the reader's last step (frame by frame, ages would reach seconds)
    assert max(ages) < 0.15, ages


class SlowModel:
    """The demo model with 0.25 s added to every forward pass: far slower than the 50 fps camera."""

    def __init__(self, model):
        self.model = model

    def __call__(self, batch, embeds):
        time.sleep(0.25)
        return self.model(batch, embeds)


class TimedCamera(MjpegServer):
    """Notes when each frame went out."""

    def serve(self, out, connection: int) -> None:
        self.sent = []
        for i in range(self.plan[connection]):
            jpeg = self.frames[i % len(self.frames)]
            out.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg) + jpeg + b"\r\n")
            out.flush()
            self.sent.append(time.monotonic())
            time.sleep(self.interval)


def test_tracking_a_live_stream_with_a_slow_model_keeps_the_delay_bounded(model):
    model.set_classes(["red circle", "red square", "green square", "blue triangle", "green circle"])
    model.predict(np.zeros((256, 256, 3), np.uint8))  # warm: the first call of a process is slower
    model.forward, fast = SlowModel(model.forward), model.forward
    try:
        with TimedCamera(shape_frames(4), plan=[200], interval=0.02) as camera:  # 4 s of frames
            results, done_at = [], []
            for result in model.track(camera.url, persist=False, stream_options=StreamOptions(reconnects=0)):
                results.append(result)
                done_at.append(time.monotonic())
    finally:
        model.forward = fast
    frames = [r.extra["frame"] for r in results]
    assert frames == sorted(frames) and frames[-1] >= 180  # the last result is of a frame near the stream's end
    assert results[-1].extra["dropped"] == frames[-1] + 1 - len(frames) > 0
    # after the camera's last frame, the result of its newest frame came within two frames' processing time
    # (frame by frame, the 100 frames would take 100 x that); timed against the model's own pace, not the clock
    # from a frame leaving the camera to its result: within two frames' processing time, however long the stream
    # runs (frame by frame, the lag would grow by that time for every frame); timed against the model's own pace
    lags = [done - camera.sent[frame] for done, frame in zip(done_at, frames)]
    per_frame = max(np.diff(done_at))
    assert max(lags) <= 2 * per_frame + 0.3, (lags, per_frame)


def test_data_synth_video_writes_frames_and_mot_ground_truth(tmp_path):
    out = run_cli("data", "synth", "--video", "--out", tmp_path / "v", "--frames", "12", "--size", "128x96",
                  "--objects", "3")
    assert out.returncode == 0, out.stderr
    capture = cv2.VideoCapture(str(tmp_path / "v" / "video.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 12 and int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 128
    capture.release()
    rows = [line.split(",") for line in (tmp_path / "v" / "gt" / "gt.txt").read_text().splitlines()]
    assert rows and all(len(row) == 9 and 1 <= int(row[0]) <= 12 and row[6] == "1" for row in rows)
    assert {int(row[1]) for row in rows} == {1, 2, 3}  # MOTChallenge: frame, id, x, y, w, h, 1, class, visibility
    names = json.loads((tmp_path / "v" / "class_texts.json").read_text())
    assert all(1 <= int(row[7]) <= len(names) and 0 <= float(row[8]) <= 1 for row in rows)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "video.mp4").write_bytes(b"the user's own file")
    out = run_cli("data", "synth", "--video", "--out", tmp_path / "mine", "--frames", "3", "--size", "64x64")
    assert out.returncode == 2 and "video.mp4" in out.stderr  # a file it did not write is never replaced
    assert (tmp_path / "mine" / "video.mp4").read_bytes() == b"the user's own file"


def test_track_cli_follows_a_folder_of_frames_and_a_live_stream(frames, tmp_path, capsys):
    from yoloworld.cli import main

    for index, frame in enumerate(frames[:4]):
        cv2.imwrite(str(tmp_path / f"frame_{index:03d}.png"), frame)
    with MjpegServer(shape_frames(3), plan=[15], interval=0.02) as camera:
        code = main(["track", str(tmp_path), camera.url, "--weights", str(DEMO), "--imgsz", "256", "--classes",
                     "red circle,blue square,green square,red square,blue triangle,green circle", "--stream-json", "-",
                     "--reconnect", "0", "--no-save"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    files = [r for r in records if r["file"] != camera.url]
    live = [r for r in records if r["file"] == camera.url]
    assert code == 0 and [Path(r["file"]).name for r in files] == [f"frame_{i:03d}.png" for i in range(4)]
    assert ids_by_class_records(files[1:]) == {"red circle": 1, "blue square": 1}  # one id each over the frames
    # the live source keeps up: its newest frames, in order, with the stale ones counted
    assert live and all("dropped" in r for r in live) and live[-1]["frame"] >= 10
    assert [r["frame"] for r in live] == sorted(r["frame"] for r in live)
    assert all(isinstance(d["track_id"], int) for r in live for d in r["detections"])


def ids_by_class_records(records) -> dict[str, int]:
    ids = defaultdict(set)
    for record in records:
        for detection in record["detections"]:
            ids[detection["class_name"]].add(detection["track_id"])
    return {name: len(found) for name, found in ids.items()}
