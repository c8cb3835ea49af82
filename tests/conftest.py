"""Shared test set-up: quiet TensorFlow, fixed seeds, the optional ../shared data folder."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    """Model conversions go to a per-session temporary cache, never the user's."""
    if "PORTRAIT_CACHE_DIR" not in os.environ:
        monkeypatch.setenv("PORTRAIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the test with a reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the ../shared data beside the checkout), which is absent")
    return path


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running (soak) tests; still run by CI")
