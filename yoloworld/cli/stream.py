"""The live side of `yoloworld predict`: stream flags, and each record written as soon as its frame is done."""

from __future__ import annotations

import json
import sys

from yoloworld.cli.common import non_negative_int, number_between, positive_int

seconds = number_between(0, 3600, "seconds")


def add_stream_flags(p) -> None:
    p.add_argument("--stream-json", metavar="FILE", help="one JSON line per image or frame, written as each is done "
                   "('-': standard output; the closing summary then goes to standard error)")
    p.add_argument("--max-frames", type=positive_int, help="stop each video or stream after this many frames")
    p.add_argument("--reconnect", type=non_negative_int, default=5,
                   help="reopen a dropped stream up to this many times in a row, then end it (default 5)")
    p.add_argument("--reconnect-delay", type=seconds, default=1.0, help="seconds between attempts (default 1)")
    p.add_argument("--stream-timeout", type=seconds, default=10.0,
                   help="seconds to wait for a network stream to open or send its next frame (default 10)")
    p.add_argument("--every-frame", action="store_true", help="process every frame of a live source in order, "
                   "however far behind (default: the newest frame, stale ones dropped and counted)")


def stream_options(args):
    from yoloworld.streams import StreamOptions

    return StreamOptions(args.reconnect, args.reconnect_delay, args.stream_timeout)


class RecordSink:
    """Takes each image's or frame's record as it is made: a flushed JSON line (a reader sees every frame at once),
    and a list only when the whole run goes to --json (a stream left running for hours must not fill memory)."""

    def __init__(self, json_lines: str | None, keep: bool):
        self.keep, self.records, self.count, self.detections = keep, [], 0, 0
        self.to_stdout = json_lines == "-"
        self._file = sys.stdout if self.to_stdout else open(json_lines, "w", encoding="utf-8") if json_lines else None

    def add(self, record: dict) -> None:
        self.count += 1
        self.detections += len(record["detections"])
        if self.keep:
            self.records.append(record)
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None and not self.to_stdout:
            self._file.close()
