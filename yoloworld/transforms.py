"""Image <-> network input: the one letterbox (keep-ratio resize + centred padding, exactly as the official test
pipeline; padded to a square, or in rect mode to the smallest multiple of 32 that holds the image) and its inverse
for boxes (un-letterbox + clip to the image) and masks (pad cut + resize).

Used by PyTorch and ONNX Runtime prediction, validation, the no-mosaic training stage and export, so every path
feeds the network the same pixels and maps boxes back the same way (as torchvision's `transform.py` keeps
resize and `resize_boxes` side by side).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

PAD_VALUE = 114
STRIDE = 32  # the largest feature stride: network inputs are multiples of it


@dataclass
class LetterboxInfo:
    """How an original image maps onto the network input: input = original * scale + (left, top)."""

    orig_hw: tuple[int, int]
    scale_xy: tuple[float, float]  # (w_scale, h_scale), like the official `scale_factor`
    pad_tblr: tuple[int, int, int, int]  # (top, bottom, left, right), like the official `pad_param`


def _resized_side(side: int, ratio: float) -> int:
    """A side after scaling, at least 1 px: a thin strip (3 x 4000, 20000 x 20) keeps a 1-pixel short side instead
    of rounding to 0, which cv2.resize refuses. Its (w, h) scales then differ slightly; boxes map back with both."""
    return max(1, int(side * ratio + 0.5))


def _rescale(image: np.ndarray, ratio: float) -> np.ndarray:
    h, w = image.shape[:2]
    new_w, new_h = _resized_side(w, ratio), _resized_side(h, ratio)
    if (new_w, new_h) == (w, h):
        return image
    # area interpolation when shrinking, bilinear when enlarging (official YOLOv5KeepRatioResize)
    interp = cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, (new_w, new_h), interpolation=interp)


def letterbox(image: np.ndarray, size: int = 640, allow_scale_up: bool = False, pad_value: int = PAD_VALUE):
    """Resize `image` (H, W, C uint8) keeping its aspect ratio and pad it to `size` x `size`.

    Returns the padded image and a `LetterboxInfo`. Two official steps: a keep-ratio resize that
    fits the long side to `size`, then a letter-resize that only shrinks (unless allowed to
    enlarge) and pads evenly, the odd pixel going to the bottom/right.
    """
    resized, scale_xy = fit(image, size, allow_scale_up)
    return pad_to(resized, (size, size), image.shape[:2], scale_xy, pad_value)


def fit(image: np.ndarray, size: int, allow_scale_up: bool = False) -> tuple[np.ndarray, tuple[float, float]]:
    """The letterbox's two resize steps: the image with its long side at `size`, and its (w, h) scales."""
    h0, w0 = image.shape[:2]
    if h0 == 0 or w0 == 0:
        raise ValueError("empty image")
    ratio = min(size / max(h0, w0), size / min(h0, w0))
    resized = _rescale(image, ratio)
    h1, w1 = resized.shape[:2]
    scale_x, scale_y = w1 / w0, h1 / h0

    ratio2 = min(size / h1, size / w1)
    if not allow_scale_up:
        ratio2 = min(ratio2, 1.0)
    h2, w2 = max(1, int(round(h1 * ratio2))), max(1, int(round(w1 * ratio2)))
    if (h2, w2) != (h1, w1):
        resized = cv2.resize(resized, (w2, h2), interpolation=cv2.INTER_LINEAR)
        scale_x, scale_y = scale_x * w2 / w1, scale_y * h2 / h1
    return resized, (scale_x, scale_y)


def pad_to(resized: np.ndarray, canvas_hw: tuple[int, int], orig_hw: tuple[int, int], scale_xy: tuple[float, float],
           pad_value: int = PAD_VALUE) -> tuple[np.ndarray, LetterboxInfo]:
    """Centre a resized image on a `canvas_hw` canvas of `pad_value` (the odd pixel to the bottom/right)."""
    h2, w2 = resized.shape[:2]
    pad_h, pad_w = canvas_hw[0] - h2, canvas_hw[1] - w2
    top, left = int(round(pad_h // 2 - 0.1)), int(round(pad_w // 2 - 0.1))
    bottom, right = pad_h - top, pad_w - left
    if pad_h or pad_w:
        resized = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                     value=(pad_value,) * (resized.shape[2] if resized.ndim == 3 else 1))
    return resized, LetterboxInfo(tuple(orig_hw), scale_xy, (top, bottom, left, right))


def rect_canvas(shapes_hw, stride: int = STRIDE) -> tuple[int, int]:
    """The smallest canvas, in multiples of `stride`, that holds every resized image (Ultralytics' `rect`)."""
    return (max(-(-h // stride) * stride for h, _ in shapes_hw), max(-(-w // stride) * stride for _, w in shapes_hw))


def letterbox_batch(images_bgr: list[np.ndarray], size: int = 640, rect: bool = False
                    ) -> tuple[np.ndarray, list[LetterboxInfo]]:
    """BGR images -> the network input (B, 3, H, W) float32 RGB in [0, 1], and each image's mapping.

    Square: H = W = `size` (the official test pipeline). `rect`: the long side still goes to `size`, but the
    canvas shrinks to the smallest multiple of 32 that holds the batch, so a 16:9 image at 640 runs at 640x384
    instead of 640x640 (40% fewer pixels) with the same resize."""
    fitted = [fit(image, size) for image in images_bgr]
    canvas = rect_canvas([r.shape[:2] for r, _ in fitted]) if rect else (size, size)
    boxed = [pad_to(r, canvas, image.shape[:2], scale) for (r, scale), image in zip(fitted, images_bgr)]
    batch = np.stack([b[:, :, ::-1].transpose(2, 0, 1) for b, _ in boxed]).astype(np.float32) / 255
    return batch, [info for _, info in boxed]


def boxes_to_original(boxes: torch.Tensor, info: LetterboxInfo, clip: bool = True) -> torch.Tensor:
    """(K, 4) xyxy boxes in network-input pixels -> original-image pixels, clipped to the image unless told not to."""
    top, _, left, _ = info.pad_tblr
    sx, sy = info.scale_xy
    out = (boxes - boxes.new_tensor([left, top, left, top])) / boxes.new_tensor([sx, sy, sx, sy])
    return clip_boxes(out, info.orig_hw) if clip else out


def clip_boxes(boxes: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
    """xyxy boxes clipped to an image of (height, width)."""
    h, w = orig_hw
    boxes = boxes.clone()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    return boxes


def masks_to_original(masks: torch.Tensor, info: LetterboxInfo, official: bool = False) -> torch.Tensor:
    """(K, S, S) float masks on the network input -> (K, H0, W0) on the original image: the padding cut off,
    then bilinear resizing (the official fast_test path). `official`: the bottom/right cut uses the top/left
    pads, as the official code does (a bug that keeps a pad row or column when the pads differ)."""
    top, bottom, left, right = info.pad_tblr
    if official:
        bottom, right = top, left
    height, width = masks.shape[-2:]
    content = masks[:, top:height - bottom, left:width - right]
    return torch.nn.functional.interpolate(content[None], size=info.orig_hw, mode="bilinear", align_corners=False)[0]
