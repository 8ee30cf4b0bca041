"""`yoloworld.pipeline`: batches are prepared in a worker thread ahead of the network, in order, a bounded number
ahead; unreadable images are skipped or raised at their place."""

import threading

import cv2
import numpy as np
import pytest

from yoloworld.errors import InputError
from yoloworld.pipeline import prefetched, prepare_batch


def test_items_come_back_in_order_while_the_next_is_prepared_alongside():
    next_started = threading.Event()
    threads = []

    def prepare(item):
        threads.append(threading.current_thread().name)
        if item == 1:
            next_started.set()
        return item * 10

    seen = []
    for value in prefetched(range(6), prepare):
        if value == 0:  # the consumer is still on item 0: item 1 is being prepared by the worker meanwhile
            assert next_started.wait(timeout=30)
        seen.append(value)
    assert seen == [0, 10, 20, 30, 40, 50]
    assert all(name.startswith("yoloworld-prepare") for name in threads)


def test_preparation_runs_at_most_two_items_ahead():
    prepared, lead = [], []
    consumed = 0
    for value in prefetched(range(8), lambda item: prepared.append(item) or item):
        lead.append(len(prepared) - consumed)
        consumed += 1
        threading.Event().wait(0.05)  # give the worker time to run as far ahead as it may
    assert max(lead) <= 3  # the current item and at most two queued behind it


def test_one_item_is_prepared_in_the_calling_thread():
    names = []
    assert list(prefetched([5], lambda item: names.append(threading.current_thread().name) or item)) == [5]
    assert names == [threading.current_thread().name]


def test_an_error_is_raised_at_its_item_after_the_earlier_items():
    def prepare(item):
        if item == 2:
            raise InputError("item 2: unreadable")
        return item

    seen = []
    with pytest.raises(InputError, match="item 2"):
        for value in prefetched(range(5), prepare):
            seen.append(value)
    assert seen == [0, 1]


def test_unreadable_images_are_skipped_or_raised(tmp_path):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.full((48, 80, 3), 127, np.uint8))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    batch = prepare_batch([good, broken, good], 64, rect=False, skip_unreadable=True)
    assert batch.sources == [good, good] and batch.inputs.shape == (2, 3, 64, 64)
    assert len(batch.skipped) == 1 and "broken.jpg" in str(batch.skipped[0])
    with pytest.raises(InputError, match="broken.jpg"):
        prepare_batch([good, broken], 64, rect=False)
    assert prepare_batch([broken], 64, rect=False, skip_unreadable=True).inputs is None
