"""`yoloworld label --ray`: the detection of the labelling loop on Ray Data workers, the rest unchanged.

The driver keeps what makes a labelling resumable and reproducible (the ledger, names, splits, the dataset files:
`label_images`); the workers (one model each, loaded once through `ModelSpec.load`) read and detect the images and
send back their arrays as JSON. Batches come back in the order of the files (`preserve_order`), so names and the dataset
are written in the same order as by the single-process command, and each image is recorded once it is back: a
stopped run continues from the ledger as `label` always does.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from yoloworld.cluster import ModelSpec
from yoloworld.results import Results


class _Worker:
    """One Ray Data worker: its model, and detection of a batch of paths (`autolabel.labeler.detect_batch`)."""

    def __init__(self, spec: ModelSpec, conf: float, iou: float, max_det: int):
        self.model, self.settings = spec.load(), (conf, iou, max_det)

    def __call__(self, batch: dict) -> dict:
        from yoloworld.autolabel.labeler import detect_batch

        detected = detect_batch(self.model, [Path(p) for p in batch["path"]], *self.settings)
        return {"path": batch["path"], "result": np.array([_as_row(result) for _, result in detected])}


def _as_row(result) -> str:
    """JSON of the arrays (float32 -> JSON -> float32 is exact) or {"unreadable": why}."""
    if isinstance(result, str):
        return json.dumps({"unreadable": result})
    return json.dumps({"xyxy": result.xyxy.tolist(), "scores": result.scores.tolist(),
                       "class_ids": result.class_ids.tolist(), "shape": list(result.orig_shape)})


def detect_on_ray(spec: ModelSpec, names: list[str], workers: int):
    """A `detect` for `label_images` that runs on `workers` Ray Data workers (Ray started by the caller)."""
    import ray

    def detect(paths: list[Path], batch: int, conf: float, iou: float, max_det: int):
        if not paths:
            return
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # its INFO lines on every run
        ray.data.DataContext.get_current().execution_options.preserve_order = True  # the same names and dataset
        dataset = ray.data.from_items([{"path": str(p)} for p in paths]).map_batches(
            _Worker, fn_constructor_args=(spec, conf, iou, max_det), batch_size=batch,
            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1, batch_format="numpy")
        for rows in dataset.iter_batches(batch_size=batch, batch_format="numpy"):
            yield [(Path(path), _as_result(row, names)) for path, row in zip(rows["path"], rows["result"])]

    return detect


def _as_result(text: str, names: list[str]) -> Results | str:
    row = json.loads(text)
    if "unreadable" in row:
        return row["unreadable"]
    height, width = (int(v) for v in row["shape"])
    return Results(np.asarray(row["xyxy"], np.float32).reshape(-1, 4), np.asarray(row["scores"], np.float32),
                   np.asarray(row["class_ids"], np.int64), names, (height, width))
