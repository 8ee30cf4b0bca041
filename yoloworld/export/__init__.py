"""Deployment: ONNX export (baked or dynamic vocabulary, optional in-graph NMS) and an ONNX Runtime runner.

`yoloworld.export.onnx_export` writes the graphs; `yoloworld.export.onnx_runtime.OnnxYOLOWorld` runs them with
the same letterbox, padding prompt and post-processing as `YOLOWorld.predict`.
"""
