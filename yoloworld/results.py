"""Per-image detection results: arrays in original pixels, JSON, drawing, supervision; masks for segmentation."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np


@dataclass
class Results:
    xyxy: np.ndarray  # (K, 4) float32, original-image pixels
    scores: np.ndarray  # (K,) float32
    class_ids: np.ndarray  # (K,) int64, index into `names`
    names: list[str]  # the vocabulary (first synonym of each class)
    orig_shape: tuple[int, int]  # (height, width)
    file: str | None = None
    extra: dict = field(default_factory=dict)
    masks: np.ndarray | None = None  # (K, H, W) bool at the original size; None for detection models
    track_ids: np.ndarray | None = None  # (K,) int64 track ids from `track()`; None for plain detection

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def class_names(self) -> list[str]:
        return [self.names[i] for i in self.class_ids]

    def take(self, index: np.ndarray, track_ids: np.ndarray | None = None) -> "Results":
        """The detections at `index`, in that order, with `track_ids` (one per index) if given."""
        index = np.asarray(index, dtype=np.int64)
        return replace(self, xyxy=self.xyxy[index], scores=self.scores[index], class_ids=self.class_ids[index],
                       masks=None if self.masks is None else self.masks[index], extra=dict(self.extra),
                       track_ids=None if track_ids is None else np.asarray(track_ids, dtype=np.int64))

    def to_dict(self) -> dict:
        h, w = self.orig_shape
        detections = [{"xyxy": [round(float(v), 2) for v in box], "score": round(float(s), 5),
                       "class_id": int(c), "class_name": self.names[c]}
                      for box, s, c in zip(self.xyxy, self.scores, self.class_ids)]
        if self.track_ids is not None:
            for detection, track_id in zip(detections, self.track_ids):
                detection["track_id"] = int(track_id)
        if self.masks is not None:  # COCO RLE, as a COCO results file carries masks
            from yoloworld.masks import encode_rle

            for detection, mask in zip(detections, self.masks):
                detection["segmentation"] = encode_rle(mask)
        return {"file": self.file, "width": w, "height": h, **self.extra, "detections": detections}

    def to_supervision(self):
        try:
            import supervision as sv
        except ModuleNotFoundError as exc:
            if exc.name != "supervision":
                raise
            from yoloworld.errors import InputError

            raise InputError("to_supervision() needs supervision: pip install 'yoloworld[supervision]' "
                             "(supervision)") from None

        return sv.Detections(xyxy=self.xyxy.astype(np.float32), confidence=self.scores.astype(np.float32),
                             class_id=self.class_ids.astype(int), mask=self.masks,
                             tracker_id=None if self.track_ids is None else self.track_ids.astype(int),
                             data={"class_name": np.array(self.class_names)})

    def plot(self, image_bgr: np.ndarray) -> np.ndarray:
        """A copy of the image with masks (half transparent), boxes, class names and scores drawn."""
        canvas = image_bgr.copy()
        height, width = canvas.shape[:2]
        thickness = max(1, round((height + width) / 600))
        order = np.argsort(self.scores, kind="stable")  # ascending: the most confident end on top
        if self.masks is not None:
            for i in order:
                self._blend_mask(canvas, i)
        for i in order:  # boxes first, so no box line crosses a label
            x1, y1, x2, y2 = (int(round(v)) for v in self.xyxy[i])
            cv2.rectangle(canvas, (x1, y1), (x2, y2), palette(int(self.class_ids[i])), thickness)
        for i in order:
            cid = int(self.class_ids[i])
            track = f"#{self.track_ids[i]} " if self.track_ids is not None else ""
            label = f"{track}{self.names[cid]} {self.scores[i]:.2f}"
            (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, 1)
            x1, y1 = (int(round(v)) for v in self.xyxy[i, :2])
            # above the box; moved down and left where the image ends, so the whole label stays visible
            top = max(min(y1 - th - base, height - th - base), 0)
            left = max(min(x1, width - tw), 0)
            cv2.rectangle(canvas, (left, top), (left + tw, top + th + base), palette(cid), -1)
            cv2.putText(canvas, label, (left, top + th), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, (255, 255, 255),
                        1, cv2.LINE_AA)
        return canvas

    def _blend_mask(self, canvas: np.ndarray, index: int, alpha: float = 0.5) -> None:
        """Tint the pixels of mask `index` with its class colour, in place."""
        mask = self.masks[index]
        if mask.any():
            colour = np.array(palette(int(self.class_ids[index])), dtype=np.float32)
            canvas[mask] = (canvas[mask] * (1 - alpha) + colour * alpha).astype(np.uint8)


def palette(index: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per class."""
    hue = (index * 47) % 180
    hsv = np.uint8([[[hue, 200, 220]]])
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])
