"""Shared data fixtures: real CoinRun frames (procgen-mirror, a few levels, seconds to generate)."""

from pathlib import Path

import numpy as np
import pytest


def coinrun_clips_array(n_envs: int = 4, steps: int = 64, seq: int = 16, seed: int = 0) -> np.ndarray:
    """uint8 clips (n_envs*steps/seq, seq, 64, 64, 3) of random-policy CoinRun (hard), levels 0..99."""
    from procgen import ProcgenGym3Env

    env = ProcgenGym3Env(num=n_envs, env_name="coinrun", distribution_mode="hard", start_level=0,
                         num_levels=100, rand_seed=seed)
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(steps):
        _, obs, _ = env.observe()
        frames.append(obs["rgb"].copy())
        env.act(rng.integers(0, 15, size=n_envs))
    arr = np.stack(frames, 1)  # (n_envs, steps, 64, 64, 3)
    return np.ascontiguousarray(arr.reshape(n_envs * steps // seq, seq, 64, 64, 3))


@pytest.fixture(scope="session")
def coinrun_clips() -> np.ndarray:
    return coinrun_clips_array()


@pytest.fixture(scope="session")
def coinrun_npy(tmp_path_factory, coinrun_clips) -> Path:
    path = tmp_path_factory.mktemp("coinrun") / "clips.npy"
    np.save(path, coinrun_clips)
    return path
