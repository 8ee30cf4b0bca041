"""One guarded reader per text format (JSON, YAML, plain lines): any problem with a file is one error naming it.

Hostile or broken files must not surface as tracebacks: deep nesting (RecursionError), integers too long to
convert, text that is not UTF-8, a folder where a file is expected, and syntax errors (with line and column).
`NaN`/`Infinity` (which Python's json writes) parse as floats; the readers of boxes and ids reject them per field.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from yoloworld.errors import ConfigError, DatasetError


def _read_text(path: Path, what: str, error: type[Exception]) -> str:
    if not path.exists():
        raise error(f"{path}: {what} not found")
    if path.is_dir():
        raise error(f"{path}: is a folder, expected a {what}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{path}: not a UTF-8 text file; expected a {what}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or type(exc).__name__})") from None


def read_json(path: str | Path, what: str, error: type[Exception] = DatasetError) -> object:
    """Parse a JSON file; a syntax error names the line and column."""
    path = Path(path)
    text = _read_text(path, what, error)
    try:
        return json.loads(text)  # NaN / Infinity parse as floats: the field checks name them where they matter
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply to be a {what}") from None
    except ValueError as exc:  # an integer with more digits than Python converts
        raise error(f"{path}: not a valid {what} ({exc})") from None


def read_yaml(path: str | Path, what: str = "YAML file", error: type[Exception] = ConfigError,
              expected: str = "a mapping at the top level") -> dict:
    """A YAML mapping; a syntax error names the line and column."""
    path = Path(path)
    text = _read_text(path, what, error)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"{path}: malformed YAML{where}") from None
    except (RecursionError, ValueError) as exc:
        raise error(f"{path}: not a usable {what} ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected {expected}")
    return data


def read_lines(path: str | Path, what: str, error: type[Exception] = DatasetError) -> list[str]:
    """Non-empty, stripped lines of a UTF-8 text file."""
    path = Path(path)
    return [line.strip() for line in _read_text(path, what, error).splitlines() if line.strip()]


def finite_number(value, where: str, error: type[Exception] = DatasetError) -> float:
    """`value` as a finite float; `where` names the file and field in the error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"{where}: expected a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        raise error(f"{where}: {value} is too large") from None
    if not math.isfinite(number):
        raise error(f"{where}: {value} is not a finite number")
    return number


__all__ = ["read_json", "read_yaml", "read_lines", "finite_number"]
