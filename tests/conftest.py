import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official"
FIXTURES = Path(os.environ.get("YOLOWORLD_FIXTURES", FIXTURES))


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The official parity fixtures; missing fixtures fail under CI=true, skip elsewhere."""
    if not (FIXTURES / "inputs.npz").exists():
        message = f"parity fixtures not found at {FIXTURES}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return FIXTURES
