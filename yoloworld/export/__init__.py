"""Deployment: ONNX export (baked or dynamic vocabulary, optional in-graph NMS, dynamic height and width), OpenVINO
export (the ONNX graphs converted, optionally INT8), and their runners.

`yoloworld.export.onnx_export` writes the graphs; `yoloworld.export.openvino_export` converts and quantizes them;
`OnnxYOLOWorld` (ONNX Runtime) and `OpenVinoYOLOWorld` (OpenVINO) run them with the same letterbox, padding prompt
and post-processing as `YOLOWorld.predict`; `yoloworld.export.runners.open_exported(path)` picks the runtime.
"""
