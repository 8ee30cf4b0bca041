"""Live sources for `predict`: a camera index or an RTSP / RTMP / HTTP(S) URL, read through OpenCV (FFmpeg).

A network stream that drops is reopened a bounded number of times in a row (a camera restarting, a Wi-Fi hiccup);
once that many attempts have failed, the stream counts as ended, so every loop over one stops by itself.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote_plus

import cv2
import numpy as np

from yoloworld.errors import InputError

logger = logging.getLogger(__name__)
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
MAX_CAMERA = 99  # OpenCV reads an index of 100 or more as "camera + backend id" (CAP_V4L2 = 200, ...)
HIDDEN = "***"
# query or fragment keys whose values are hidden (compared lower-case); any key containing one of the
# SECRET_PARTS is hidden too (X-Amz-Signature, X-Amz-Credential, sessionid, authorization, ...)
SECRET_KEYS = {"user", "username", "usr", "login", "uid", "pass", "passwd", "password", "pwd", "token",
               "access_token", "key", "apikey", "api_key", "auth", "secret", "signature", "sig", "code"}
SECRET_PARTS = ("pass", "pwd", "token", "secret", "key", "auth", "sig", "cred", "session")


def is_camera(source: str) -> bool:
    """A camera index: ASCII digits only ("0", "2")."""
    return re.fullmatch(r"[0-9]+", str(source)) is not None


def is_stream(source: str) -> bool:
    """A camera index ("0") or a URL; anything else is a file or folder."""
    return is_camera(source) or str(source).lower().startswith(STREAM_SCHEMES)


def redact(source: str) -> str:
    """The source as shown in records, log lines and file names, never the address itself:
    rtsp://user:p@ss@cam/live?token=abc -> rtsp://***@cam/live?token=***.

    Everything before the last '@' ahead of the query is hidden (FFmpeg splits user info from the host at the last
    '@'; a '/' in a password cannot move the host into view either), and so are the values of credential-like
    query and fragment keys."""
    text = str(source)
    scheme, separator, rest = text.partition("://")
    if not separator:
        return text
    address, query_mark, query = _split_first(rest, "?#")
    if "@" in address:
        address = HIDDEN + address[address.rindex("@"):]
    return f"{scheme}://{address}{query_mark}{_hide_secret_values(query)}"


def _split_first(text: str, marks: str) -> tuple[str, str, str]:
    """text -> (before, mark, after) at the first of `marks`."""
    found = [i for i in (text.find(mark) for mark in marks) if i >= 0]
    if not found:
        return text, "", ""
    cut = min(found)
    return text[:cut], text[cut], text[cut + 1:]


def _hide_secret_values(query: str) -> str:
    """`a=1&password=x#token=y` -> `a=1&password=***#token=***` (separators '&', ';' and '#' kept)."""
    parts = re.split(r"([&;#])", query)
    for i in range(0, len(parts), 2):
        key, equals, _ = parts[i].partition("=")
        if equals and _is_secret_key(key):
            parts[i] = f"{key}={HIDDEN}"
    return "".join(parts)


def _is_secret_key(key: str) -> bool:
    name = unquote_plus(key).strip().lower()
    return name in SECRET_KEYS or any(part in name for part in SECRET_PARTS)


def stream_name(display: str) -> str:
    """A file name stem for a source's annotated video, made from its display name (`redact`): camera0, or the
    host and path of a URL (its query left out)."""
    if is_camera(display):
        return f"camera{display}"
    address = _split_first(re.sub(r"^[a-z0-9+.-]+://", "", display, flags=re.IGNORECASE), "?#")[0]
    address = address.rsplit("@", 1)[-1]
    return re.sub(r"[^A-Za-z0-9]+", "_", address).strip("_")[:60] or "stream"


def quiet_video_logs() -> None:
    """Our one-line messages only: OpenCV's log lines ("[ WARN:0@1.4] ... can't open camera by index") and
    FFmpeg's ("[tcp @ 0x...] Connection refused", which can also echo an address) are turned off for this process,
    unless the user set their levels (OPENCV_LOG_LEVEL, OPENCV_FFMPEG_LOGLEVEL). The CLI calls this; `--debug`
    keeps them."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; OpenCV reads it at each open
    if "OPENCV_LOG_LEVEL" not in os.environ:
        api = getattr(getattr(cv2, "utils", None), "logging", None)  # OpenCV 5; OpenCV 4 also has cv2.setLogLevel
        set_level = getattr(api, "setLogLevel", None) or getattr(cv2, "setLogLevel", None)
        if set_level is not None:
            set_level(0)  # LOG_LEVEL_SILENT


@dataclass(frozen=True)
class StreamOptions:
    reconnects: int = 5  # attempts in a row after a drop before the stream counts as ended
    retry_delay: float = 1.0  # seconds between attempts
    timeout: float = 10.0  # seconds to open a network stream or wait for its next frame
    max_frames: int | None = None  # stop after this many frames (None: until the stream ends or Ctrl-C)


class Stream:
    """Frames of one live source as (index, BGR frame); opening it fails with one InputError.

    `name` (the redacted address) is what records, log lines and file names show; the address itself is kept
    private and goes only to OpenCV."""

    def __init__(self, source: str, options: StreamOptions = StreamOptions()):
        self._address, self.options = str(source), options
        self.name = redact(self._address)
        self.reconnections = 0
        if is_camera(self._address) and int(self._address) > MAX_CAMERA:
            raise InputError(f"{self.name}: not a camera number OpenCV can open (0 to {MAX_CAMERA})")
        self._capture = self._open()
        if self._capture is None:
            what = "camera" if is_camera(self._address) else "stream"
            raise InputError(f"{self.name}: cannot open this {what} (is it connected, is the address and "
                             "port right, does it serve video?)")
        self.fps = self._capture.get(cv2.CAP_PROP_FPS) or 25.0  # MJPEG over HTTP reports none

    def _open(self) -> cv2.VideoCapture | None:
        try:
            if is_camera(self._address):
                capture = cv2.VideoCapture(int(self._address))
            else:
                ms = int(self.options.timeout * 1000)
                capture = cv2.VideoCapture(self._address, cv2.CAP_FFMPEG,
                                           [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        except cv2.error:  # its message may quote the address: the caller's one line says what failed
            return None
        if capture.isOpened():
            return capture
        capture.release()
        return None

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        index, failures, limit = 0, 0, self.options.max_frames
        try:
            while limit is None or index < limit:
                ok, frame = self._capture.read() if self._capture is not None else (False, None)
                if ok:
                    failures = 0
                    yield index, frame
                    index += 1
                    continue
                if failures >= self.options.reconnects:
                    logger.warning("%s: ended after %d frame(s) (%d reconnection attempt(s) failed)",
                                   self.name, index, failures)
                    return
                failures += 1
                self._reconnect(index, failures)
        finally:
            self.close()

    def _reconnect(self, frames: int, attempt: int) -> None:
        logger.warning("%s: no frame after %d frame(s); reconnecting (attempt %d of %d)", self.name, frames,
                       attempt, self.options.reconnects)
        self.close()
        time.sleep(self.options.retry_delay)
        self._capture = self._open()
        self.reconnections += self._capture is not None

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class LatestFrames:
    """A live source read on its own thread, handing out only the newest frame: a consumer slower than the camera
    gets the frame that arrived last (its index tells how many came between) and the stale ones are dropped and
    counted, so the delay between a frame arriving and its result stays under one frame's processing time instead
    of growing without bound. Files never go through this: they are read frame by frame.

    Iterating gives (index, frame) like `Stream`; `dropped` counts the frames skipped; `age()` is how long ago the
    frame last handed out arrived."""

    def __init__(self, frames, name: str = "stream"):
        self.name, self.dropped = name, 0
        self._frames, self._newest, self._taken_at = frames, None, 0.0
        self._ready, self._stop, self._done = threading.Condition(), threading.Event(), False
        self._thread = threading.Thread(target=self._read, name=f"reader {name}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        frames = iter(self._frames)
        try:
            for index, frame in frames:
                with self._ready:
                    if self._newest is not None:  # the consumer never took it: stale now
                        self.dropped += 1
                    self._newest = (index, frame, time.monotonic())
                    self._ready.notify()
                if self._stop.is_set():
                    return
        finally:
            getattr(frames, "close", lambda: None)()  # a Stream releases its capture on this thread, its reader
            with self._ready:
                self._done = True
                self._ready.notify()

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        try:
            while True:
                with self._ready:
                    self._ready.wait_for(lambda: self._newest is not None or self._done)
                    if self._newest is None:
                        return
                    index, frame, self._taken_at = self._newest
                    self._newest = None
                yield index, frame
        finally:
            self.close()

    def age(self) -> float:
        """Seconds since the frame last handed out arrived from the source."""
        return time.monotonic() - self._taken_at

    def close(self, wait: float = 15.0) -> None:
        """Stop reading: the reader ends after the frame it is waiting for (at most the source's read timeout)."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(wait)
