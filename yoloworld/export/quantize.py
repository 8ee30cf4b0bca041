"""INT8 post-training quantization of an exported detector with NNCF, calibrated on the user's images.

OpenVINO was chosen over ONNX Runtime QDQ because it is the faster INT8 runtime on the CPUs measured here
(benchmarks/deploy_latency.py). Only the network is quantized: box decoding (softmax + DFL integral), sigmoid
scores and the in-graph top-k / NMS stay fp32, since they sit after the last convolution and carry the boxes'
sub-pixel precision. Calibration images go through the prediction letterbox, so activation ranges are those the
deployed model sees.
"""

from __future__ import annotations

import logging
from pathlib import Path

from yoloworld.errors import InputError

logger = logging.getLogger(__name__)

DEFAULT_CALIB_IMAGES = 300  # NNCF's default subset size; fewer are fine for small or uniform data
# every node outside the traced detector module: decoding, scores, top-k and NMS (see the module docstring)
OUTSIDE_DETECTOR = r"^(?!/detector/).*$"


def import_nncf():
    try:
        import nncf
    except ImportError:
        raise InputError("INT8 quantization needs NNCF: pip install 'yoloworld[openvino]' (openvino, nncf)") from None
    return nncf


def calibration_images(folder: str | Path, count: int = DEFAULT_CALIB_IMAGES) -> list[Path]:
    """Up to `count` images from `folder` (sorted, evenly spread over the folder when it holds more)."""
    from yoloworld.images import list_images

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--calib {folder}: no such folder (give a folder of calibration images)")
    found = list_images(folder)
    if not found:
        raise InputError(f"--calib {folder}: holds no images (.jpg, .png, ...); give a folder of typical inputs")
    step = max(len(found) / count, 1.0)
    return [found[int(i * step)] for i in range(min(count, len(found)))]


def quantize_int8(model, images: list[Path], imgsz: int):
    """An INT8 copy of an OpenVINO `model` (baked vocabulary), activation ranges from `images` letterboxed to
    `imgsz`."""
    nncf = import_nncf()
    from yoloworld.images import read_image
    from yoloworld.transforms import letterbox_batch

    def network_input(path: Path) -> dict:
        return {"images": letterbox_batch([read_image(path)], imgsz)[0]}

    logger.info("calibrating INT8 on %d images at %d px", len(images), imgsz)
    logging.getLogger("nncf").setLevel(logging.WARNING)  # its INFO lines list every op left fp32
    # NNCF probes its torch backend, which imports torch's C++-extension helper and its "no CUDA" warning
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    # MIXED: symmetric weights, asymmetric activations (SiLU outputs are not centred on zero)
    return nncf.quantize(model, nncf.Dataset(images, network_input), subset_size=len(images),
                         preset=nncf.QuantizationPreset.MIXED,
                         ignored_scope=nncf.IgnoredScope(patterns=[OUTSIDE_DETECTOR], validate=False))


__all__ = ["DEFAULT_CALIB_IMAGES", "calibration_images", "quantize_int8", "import_nncf"]
