"""Instance masks of a segmentation model: prototypes x coefficients -> boolean masks in original-image pixels.

The official YOLOv5InsHead post-processing (mmyolo `yolov5_ins_head.py:642-719`, fixture README 13.5), per image:

    sigmoid(coeffs @ prototypes) -> bilinear to the network input -> crop to the (unclipped) input-pixel boxes
    -> cut the letterbox padding -> bilinear to the original size -> > 0.5

Shared by every runtime (`yoloworld.predictor`) and, for `crop_mask`, by the mask loss. COCO run-length
encoding for JSON output is here too.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from yoloworld.transforms import LetterboxInfo, masks_to_original

MASK_THRESHOLD = 0.5  # official test_cfg mask_thr_binary; strict >
CHUNK = 16  # masks assembled at a time: 300 float masks at 640 x 640 alone would take 0.5 GB


def crop_mask(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(N, H, W) masks with every pixel outside its (N, 4) xyxy box set to 0. Pixel (column x, row y) is kept
    when x1 <= x < x2 and y1 <= y < y2: integer pixel indices, not pixel centres, as the official crop_mask."""
    height, width = masks.shape[-2:]
    x1, y1, x2, y2 = boxes[:, :, None, None].unbind(1)
    cols = torch.arange(width, device=masks.device, dtype=boxes.dtype)[None, None, :]
    rows = torch.arange(height, device=masks.device, dtype=boxes.dtype)[None, :, None]
    return masks * ((cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2))


def mask_probabilities(coeffs: torch.Tensor, protos: torch.Tensor, input_boxes: torch.Tensor,
                       input_hw: tuple[int, int]) -> torch.Tensor:
    """(K, M) coefficients, (M, h, w) prototypes and (K, 4) input-pixel boxes -> (K, H, W) probabilities at the
    network-input size, zero outside the boxes. The sigmoid comes before the upsampling, as official."""
    probs = (coeffs.float() @ protos.float().flatten(1)).sigmoid().reshape(-1, *protos.shape[1:])
    probs = F.interpolate(probs[None], size=input_hw, mode="bilinear", align_corners=False)[0]
    return crop_mask(probs, input_boxes.float())


def assemble_masks(coeffs: torch.Tensor, protos: torch.Tensor, input_boxes: torch.Tensor, info: LetterboxInfo,
                   input_hw: tuple[int, int], official: bool = False) -> torch.Tensor:
    """One image's kept detections -> (K, H0, W0) bool masks at the original size.

    `official`: cut the letterbox padding as the official code does, with the top/left pads also used for the
    bottom/right edges (its bug; it leaves a pad row or column in when the pads differ): for parity tests.
    """
    h0, w0 = info.orig_hw
    masks = torch.zeros((len(coeffs), h0, w0), dtype=torch.bool, device=coeffs.device)
    for start in range(0, len(coeffs), CHUNK):  # every step is per mask: chunks give the same masks
        part = slice(start, start + CHUNK)
        probs = mask_probabilities(coeffs[part], protos, input_boxes[part], input_hw)
        masks[part] = masks_to_original(probs, info, official) > MASK_THRESHOLD
    return masks


def attach_masks(detections: list, boxes: torch.Tensor, coeffs: torch.Tensor, protos: torch.Tensor,
                 infos: list[LetterboxInfo], official: bool = False) -> list:
    """Set `masks` on each image's `Detections` from the batch outputs: boxes (B, P, 4) in input pixels,
    coefficients (B, P, M), prototypes (B, M, h, w). Each detection takes its prior's coefficients and its
    unclipped input-pixel box."""
    input_hw = (protos.shape[-2] * 4, protos.shape[-1] * 4)  # prototypes are at stride 4 of the network input
    for i, (det, info) in enumerate(zip(detections, infos)):
        det.masks = assemble_masks(coeffs[i][det.priors], protos[i], boxes[i][det.priors], info, input_hw, official)
    return detections


def encode_rle(mask: np.ndarray) -> dict:
    """(H, W) bool mask -> COCO run-length encoding {'size': [H, W], 'counts': str} (column-major runs,
    starting with a run of zeros), the compressed string form pycocotools and faster-coco-eval read."""
    from faster_coco_eval.core import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


__all__ = ["MASK_THRESHOLD", "crop_mask", "mask_probabilities", "assemble_masks", "attach_masks", "encode_rle"]
