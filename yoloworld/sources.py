"""Any source as one sequence of frames, for `track`: a video, a folder or list of images (the frames, in order),
a camera or stream URL (newest frame first, see `yoloworld.streams.LatestFrames`), or a single image or array."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from yoloworld.errors import InputError
from yoloworld.images import expand_sources, is_video, read_image, video_frames
from yoloworld.streams import LatestFrames, Stream, StreamOptions, is_stream


def source_frames(source, options: StreamOptions = StreamOptions(), keep_up: bool = True
                  ) -> Iterable[tuple[int, np.ndarray]]:
    """(index, BGR frame) of `source`. `keep_up`: a live source is a `LatestFrames` (its newest frame, stale ones
    dropped and counted in its `dropped`); False: every frame, however far behind."""
    if isinstance(source, (list, tuple)):
        return _each_image(source)
    if not isinstance(source, (str, Path)):  # one in-memory image (a frame of the caller's own loop)
        return _each_image([source])
    if isinstance(source, str) and is_stream(source):
        stream = Stream(source, options)
        return LatestFrames(stream, stream.name) if keep_up else stream
    path = Path(source)
    if path.is_file() and is_video(path):
        return video_frames(path)
    paths = expand_sources([str(path)])
    videos = [p for p in paths if is_video(p)]
    if videos:
        raise InputError(f"{path}: a folder to track holds frames (images), not videos ({videos[0].name}): track each "
                         "video on its own")
    return _each_image(paths)


def _each_image(images) -> Iterator[tuple[int, np.ndarray]]:
    for index, image in enumerate(images):
        yield index, read_image(image) if isinstance(image, (str, Path)) else image


__all__ = ["source_frames"]
