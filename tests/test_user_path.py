"""What a new user sees first: annotated images whose labels stay readable."""

import numpy as np

from yoloworld.results import Results, palette


def plotted(boxes, scores, classes, names):
    image = np.full((240, 320, 3), 200, np.uint8)
    result = Results(np.array(boxes, np.float32), np.array(scores, np.float32), np.array(classes, np.int64), names,
                     (240, 320))
    return result.plot(image)


def test_a_label_at_the_image_edge_is_moved_inside_whole():
    canvas = plotted([[250, 0, 320, 60]], [0.91], [0], ["traffic light"])
    colour = np.array(palette(0))
    label_rows = canvas[:14]
    columns = np.flatnonzero((label_rows == colour).all(-1).any(0))
    assert columns.min() < 250 and columns.max() == 319  # shifted left of the box (x1=250) to end at the edge


def test_the_most_confident_label_is_drawn_last():
    # NMS order (descending score): the low-score label used to be drawn over the high-score one
    canvas = plotted([[20, 100, 140, 200], [20, 100, 140, 200]], [0.95, 0.30], [1, 2], ["car", "person over there", "dog"])
    assert not (canvas[80:100] == np.array(palette(2))).all(-1).any()
    assert (canvas[80:100] == np.array(palette(1))).all(-1).any()
