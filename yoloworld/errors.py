"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""


class YOLOWorldError(Exception):
    """Base class: the message names the file (if any), the problem and the fix."""


class CheckpointError(YOLOWorldError):
    """A weights file that is missing, unreadable or not a YOLO-World checkpoint."""


class InputError(YOLOWorldError):
    """A bad image, video, folder, class list or class-text file."""


class DatasetError(YOLOWorldError):
    """An annotation file or dataset folder that cannot be used."""


class ConfigError(YOLOWorldError):
    """An unknown or badly typed configuration key."""


class TrainingDiverged(YOLOWorldError):
    """Too many consecutive steps with a NaN/inf loss or gradient."""


class RunComplete(YOLOWorldError):
    """`--resume` of a run that has trained all its epochs: nothing to do (`train` says so and returns)."""
