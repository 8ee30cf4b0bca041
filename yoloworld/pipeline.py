"""Reading and letterboxing overlap the network: batches of images are prepared in a worker thread, at most a few
ahead of the network (a bounded queue), and come back in their order.

Image decoding (OpenCV), resizing and the network (PyTorch, ONNX Runtime, OpenVINO) release the GIL, so one
worker thread hides the reading of the next batch behind the forward pass of this one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from yoloworld.errors import InputError
from yoloworld.images import as_bgr
from yoloworld.transforms import LetterboxInfo, letterbox_batch

AHEAD = 2  # batches prepared ahead of the network: enough to hide reading, little memory


@dataclass
class PreparedBatch:
    sources: list  # the images as given (paths, arrays, PIL images) that were read
    images: list[np.ndarray]  # the same, BGR
    inputs: np.ndarray | None  # (B, 3, H, W) network input; None when no image was readable
    infos: list[LetterboxInfo]
    skipped: list[InputError] = field(default_factory=list)  # unreadable images, when skipping was asked for
    rect: bool = False  # letterboxed to the batch's own canvas (predict's rect) rather than a square


def prepare_batch(sources: list, imgsz: int, rect: bool, skip_unreadable: bool = False) -> PreparedBatch:
    """Read (`as_bgr`) and letterbox one batch. `skip_unreadable`: an unreadable image is left out and its error
    kept in `skipped`, instead of raised."""
    kept, images, skipped = [], [], []
    for source in sources:
        try:
            images.append(as_bgr(source))
            kept.append(source)
        except InputError as error:
            if not skip_unreadable:
                raise
            skipped.append(error)
    if not images:
        return PreparedBatch([], [], None, [], skipped)
    inputs, infos = letterbox_batch(images, imgsz, rect)
    return PreparedBatch(kept, images, inputs, infos, skipped, rect)


def prefetched(items: Iterable, prepare: Callable, ahead: int = AHEAD) -> Iterator:
    """`prepare(item)` for each item, in order. From two items on, a worker thread prepares up to `ahead` items
    while the caller works on the current one; an error of `prepare` is raised at its item's place."""
    items = iter(items)
    first = list(zip(range(2), items))
    if len(first) < 2:  # one item: nothing to overlap with, no thread
        yield from (prepare(item) for _, item in first)
        return
    pool = ThreadPoolExecutor(1, thread_name_prefix="yoloworld-prepare")
    try:
        pending = deque(pool.submit(prepare, item) for _, item in first)
        while pending:
            done = pending.popleft().result()
            item = next(items, _END) if len(pending) < ahead else _END
            if item is not _END:
                pending.append(pool.submit(prepare, item))
            yield done
    finally:  # the caller stopped early (an error, Ctrl-C): drop what is queued, finish what runs
        pool.shutdown(wait=True, cancel_futures=True)


_END = object()
