"""Shared pytest set-up: make tests/ importable (fixture modules) and keep runs deterministic."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("GENIEWORLD_NO_PROGRESS", "1")

# One intra-op thread: the models under test are tiny, where OpenMP's fork/join costs more than it
# saves, and with any other load on a 2-core machine two spinning threads per process slowed the
# suite several-fold. Subprocess tests (SIGKILL/resume, torchrun) set OMP_NUM_THREADS themselves.
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_torch():
    import torch

    torch.manual_seed(0)
    yield
