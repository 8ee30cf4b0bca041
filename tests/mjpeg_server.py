"""A local MJPEG-over-HTTP camera for the stream tests: 127.0.0.1 only, a fixed number of frames per connection,
every loop bounded, so a test that forgets to stop it still ends."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

BOUNDARY = b"frame"


def shape_frames(count: int, seed: int = 0) -> list[bytes]:
    """JPEGs of synthetic shapes the demo model detects."""
    from yoloworld.data.synth import SynthConfig, draw_image

    rng, config = np.random.default_rng(seed), SynthConfig(min_side=256, max_side=256, max_objects=3)
    return [cv2.imencode(".jpg", draw_image(rng, config)[0])[1].tobytes() for _ in range(count)]


class MjpegServer:
    """Connection k gets `plan[k]` frames, then the connection ends: cleanly, or cut in the middle of a frame when
    `drops[k]` (a camera losing power). Requests past the plan get 404, as from a camera that is gone."""

    def __init__(self, frames: list[bytes], plan: list[int], drops: list[bool] | None = None, interval: float = 0.02):
        self.frames, self.plan, self.interval = frames, plan, interval
        self.drops = drops or [False] * len(plan)
        self.requests = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}/stream.mjpg"

    def _handler(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                connection = owner.requests
                owner.requests += 1
                if connection >= len(owner.plan):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
                self.end_headers()
                try:
                    owner.serve(self.wfile, connection)
                except (BrokenPipeError, ConnectionResetError):  # the client went away: fine
                    pass
                self.close_connection = True

            def log_message(self, *args):
                pass

        return Handler

    def serve(self, out, connection: int) -> None:
        for i in range(self.plan[connection]):
            jpeg = self.frames[i % len(self.frames)]
            out.write(b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
            out.write(jpeg + b"\r\n")
            out.flush()
            time.sleep(self.interval)
        if self.drops[connection]:
            jpeg = self.frames[0]
            out.write(b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
            out.write(jpeg[: len(jpeg) // 2])  # half a frame, then the connection is gone
            out.flush()

    def __enter__(self) -> "MjpegServer":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
