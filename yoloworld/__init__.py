"""YOLO-World open-vocabulary detection in plain PyTorch. Public API: `load` (any weights format), `YOLOWorld`,
`Results`, `VisualPrompt`."""

__version__ = "0.1.0"
__all__ = ["load", "YOLOWorld", "Results", "VisualPrompt", "YOLOWorldError"]


def __getattr__(name):  # imported on first use, so `import yoloworld` alone loads neither torch nor the models
    if name == "load":
        from yoloworld.api import load

        return load
    if name == "YOLOWorld":
        from yoloworld.api import YOLOWorld

        return YOLOWorld
    if name == "Results":
        from yoloworld.results import Results

        return Results
    if name == "VisualPrompt":
        from yoloworld.prompts import VisualPrompt

        return VisualPrompt
    if name == "YOLOWorldError":
        from yoloworld.errors import YOLOWorldError

        return YOLOWorldError
    raise AttributeError(name)
