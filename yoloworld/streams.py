"""Live sources for `predict`: a camera index or an RTSP / RTMP / HTTP(S) URL, read through OpenCV (FFmpeg).

A network stream that drops is reopened a bounded number of times in a row (a camera restarting, a Wi-Fi hiccup);
once that many attempts have failed, the stream counts as ended, so every loop over one stops by itself.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from yoloworld.errors import InputError

logger = logging.getLogger(__name__)
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


def is_stream(source: str) -> bool:
    """A camera index ("0") or a URL; anything else is a file or folder."""
    return str(source).isdigit() or str(source).lower().startswith(STREAM_SCHEMES)


def redact(source: str) -> str:
    """The source as printed: rtsp://user:secret@cam/ -> rtsp://***@cam/ (logs get shared, passwords should not)."""
    return re.sub(r"//[^/@]+@", "//***@", str(source))


def stream_name(source: str) -> str:
    """A file name for the annotated video: camera0, or host and path of a URL."""
    if str(source).isdigit():
        return f"camera{source}"
    address = re.sub(r"^[a-z]+://([^/@]+@)?", "", str(source), flags=re.IGNORECASE)
    return re.sub(r"[^A-Za-z0-9]+", "_", address).strip("_")[:60] or "stream"


@dataclass(frozen=True)
class StreamOptions:
    reconnects: int = 5  # attempts in a row after a drop before the stream counts as ended
    retry_delay: float = 1.0  # seconds between attempts
    timeout: float = 10.0  # seconds to open a network stream or wait for its next frame
    max_frames: int | None = None  # stop after this many frames (None: until the stream ends or Ctrl-C)


class Stream:
    """Frames of one live source as (index, BGR frame); opening it fails with one InputError."""

    def __init__(self, source: str, options: StreamOptions = StreamOptions()):
        self.source, self.options = str(source), options
        self.reconnections = 0
        self._capture = self._open()
        if self._capture is None:
            what = "camera" if self.source.isdigit() else "stream"
            raise InputError(f"{redact(self.source)}: cannot open this {what} (is it connected, is the address and "
                             "port right, does it serve video?)")
        self.fps = self._capture.get(cv2.CAP_PROP_FPS) or 25.0  # MJPEG over HTTP reports none

    def _open(self) -> cv2.VideoCapture | None:
        if self.source.isdigit():
            capture = cv2.VideoCapture(int(self.source))
        else:
            ms = int(self.options.timeout * 1000)
            capture = cv2.VideoCapture(self.source, cv2.CAP_FFMPEG,
                                       [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
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
                                   redact(self.source), index, failures)
                    return
                failures += 1
                self._reconnect(index, failures)
        finally:
            self.close()

    def _reconnect(self, frames: int, attempt: int) -> None:
        logger.warning("%s: no frame after %d frame(s); reconnecting (attempt %d of %d)", redact(self.source), frames,
                       attempt, self.options.reconnects)
        self.close()
        time.sleep(self.options.retry_delay)
        self._capture = self._open()
        self.reconnections += self._capture is not None

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
