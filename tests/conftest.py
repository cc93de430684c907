"""Shared fixtures: where the local corpora are (tests never download)."""

import os
from pathlib import Path

import pytest
import torch

_DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_DATA = Path(os.environ.get("TRANSFORMER_MT_TEST_DATA", _DEFAULT_DATA))


@pytest.fixture(scope="session", autouse=True)
def _single_thread() -> None:
    """Tiny test models run faster on one intra-op thread than on a contended pool."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only corpora beside the project (`../shared/data`)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"local corpora not found at {SHARED_DATA}")
    return SHARED_DATA
