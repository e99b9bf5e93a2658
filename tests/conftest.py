"""Shared pytest set-up: make tests/ importable (fixture modules) and keep runs deterministic."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("GENIEWORLD_NO_PROGRESS", "1")


@pytest.fixture(autouse=True)
def _seed_torch():
    import torch

    torch.manual_seed(0)
    yield
