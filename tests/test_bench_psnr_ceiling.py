"""bench/bench_psnr_ceiling.py: the oracle finds the camera's shift, fills what enters the view, and is only as good
as the prompt."""

from __future__ import annotations

import pytest
import torch
from fixtures_models import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench/bench_psnr_ceiling.py")


def test_oracle_shift_recovers_a_scrolled_view_and_fills_what_enters(bench):
    g = torch.Generator().manual_seed(0)
    world = torch.rand(40, 48, 3, generator=g)  # a level larger than the view
    prompt = world[4:20, 8:24]  # 16 x 16 view
    real = torch.stack([world[4:20, 11:27], world[2:18, 8:24], world[4:20, 8:24]])  # right by 3, up by 2, still
    shifted, given = bench.oracle_shift(prompt, real, max_shift=4)
    # the view right by 3: every column the prompt showed is in place, the 3 new ones hold the prompt's mean
    torch.testing.assert_close(shifted[0, :, :13], real[0, :, :13])
    torch.testing.assert_close(shifted[0, :, 13:], prompt.mean(dim=(0, 1)).expand(16, 3, 3))
    torch.testing.assert_close(shifted[1, 2:], real[1, 2:])  # up by 2: the rows that enter are at the top
    torch.testing.assert_close(shifted[2], real[2])
    torch.testing.assert_close(given, real)  # the entering pixels given: the whole frame, exactly
    # a frame the prompt cannot explain (new noise) gets no better than its best shift: not the frame itself
    other = torch.rand(1, 16, 16, 3, generator=g)
    assert not torch.allclose(bench.oracle_shift(prompt, other, 4)[0], other)
