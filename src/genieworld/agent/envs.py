"""Procgen CoinRun for agents, at the world model's frame skip.

One agent decision is held for ``frame_skip`` game steps and the agent sees the last frame, exactly
how :func:`genieworld.data.coinrun.generate_coinrun` records (so the LAM, trained on such frames,
labels the expert's transitions in its own regime).  Agents act in CoinRun's 6 *effective* actions
(:data:`~genieworld.data.coinrun.EFFECTIVE_ACTIONS`, raw ids 0, 2, 4, 5, 6, 8).

Two shapes:

- :class:`CoinRunVecEnv`: a stable-baselines3 ``VecEnv`` over one ``ProcgenGym3Env`` with many
  parallel games on a range of levels (the expert's PPO training).
- :func:`rollout_levels`: one game per (level, seed), all stepped together, each scored on its
  *first* episode (solved = the coin was collected within ``max_steps`` game steps); the driver of
  recording and evaluation.  A game that ends in the middle of a held action is over at that step.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np

from genieworld.data.coinrun import EFFECTIVE_ACTIONS

RAW = np.asarray(EFFECTIVE_ACTIONS, dtype=np.int32)
NUM_EFFECTIVE = len(EFFECTIVE_ACTIONS)


def procgen_cls():
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")  # gym 0.26 (a procgen dependency) prints a deprecation notice
        from procgen import ProcgenGym3Env
    return ProcgenGym3Env


def make_gym3(num: int, start_level: int, num_levels: int, mode: str = "hard", backgrounds: bool = False,
              rand_seed: int = 0):
    return procgen_cls()(num=int(num), env_name="coinrun", num_levels=int(num_levels), start_level=int(start_level),
                         distribution_mode=mode, use_backgrounds=bool(backgrounds), rand_seed=int(rand_seed))


def _vec_env_base():
    from stable_baselines3.common.vec_env import VecEnv

    return VecEnv


def make_vec_env(num_envs: int = 64, start_level: int = 0, num_levels: int = 10000, mode: str = "hard",
                 frame_skip: int = 4, backgrounds: bool = False, seed: int = 0, reward_scale: float = 0.1):
    """An SB3 VecEnv (observations (N, 64, 64, 3) uint8, Discrete(6) actions) over CoinRun."""
    import gymnasium as gym

    VecEnv = _vec_env_base()

    class CoinRunVecEnv(VecEnv):
        def __init__(self):
            obs_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
            super().__init__(num_envs, obs_space, gym.spaces.Discrete(NUM_EFFECTIVE))
            self.env = make_gym3(num_envs, start_level, num_levels, mode, backgrounds, seed)
            self._actions = None
            self._ep_ret = np.zeros(num_envs)
            self._ep_len = np.zeros(num_envs, dtype=np.int64)

        def reset(self):
            _, obs, _ = self.env.observe()
            return obs["rgb"].copy()

        def step_async(self, actions):
            self._actions = RAW[np.asarray(actions, dtype=np.int64)]

        def step_wait(self):
            rew = np.zeros(self.num_envs, dtype=np.float32)
            done = np.zeros(self.num_envs, dtype=bool)
            for _ in range(frame_skip):
                # an env already done this decision keeps stepping its next episode; its first frames are
                # part of the next observation, a negligible blur for PPO (evaluation is exact).
                self.env.act(self._actions)
                r, obs, first = self.env.observe()
                rew += np.where(done, 0.0, r).astype(np.float32)
                done |= first
            o = obs["rgb"].copy()
            self._ep_ret += rew
            self._ep_len += 1
            infos = [{} for _ in range(self.num_envs)]
            for i in np.flatnonzero(done):
                infos[i] = {"episode": {"r": float(self._ep_ret[i]), "l": int(self._ep_len[i])},
                            "terminal_observation": o[i]}
                self._ep_ret[i] = 0.0
                self._ep_len[i] = 0
            return o, rew * reward_scale, done, infos

        def close(self):
            self.env = None

        def get_attr(self, attr_name, indices=None):
            return [getattr(self, attr_name, None)] * len(self._idx(indices))

        def set_attr(self, attr_name, value, indices=None):
            setattr(self, attr_name, value)

        def env_method(self, method_name, *args, indices=None, **kw):
            return [None] * len(self._idx(indices))

        def env_is_wrapped(self, wrapper_class, indices=None):
            return [False] * len(self._idx(indices))

        def seed(self, seed=None):
            return [None] * self.num_envs

        def get_images(self):
            _, obs, _ = self.env.observe()
            return list(obs["rgb"])

        def _idx(self, indices):
            if indices is None:
                return range(self.num_envs)
            return [indices] if isinstance(indices, int) else indices

    return CoinRunVecEnv()


def level_seed(seed: int, level: int) -> int:
    """Procgen's rand_seed for game (seed, level): a fixed function, so a rollout is reproducible."""
    return int(np.random.SeedSequence([int(seed), int(level), 0xA6]).generate_state(1)[0] % (2**31 - 1))


def rollout_levels(actor, levels, seed: int = 0, max_steps: int = 1000, frame_skip: int = 4, mode: str = "hard",
                   backgrounds: bool = False, record: bool = False, progress=None) -> dict:
    """Play the first episode of every level in ``levels`` at once, with ``actor``.

    ``actor.reset(n)`` then, every decision, ``actor.act(frames (n, 64, 64, 3) uint8, gen) -> (n,)``
    effective actions (games that are over get their last frame and their action is ignored).  All
    randomness comes from ``seed``: the games' rand_seeds and the torch generator the actor samples
    with, so the same actor, levels and seed give the same result.

    Returns ``solved`` (n,) bool (the coin was collected within ``max_steps`` game steps),
    ``game_steps`` (n,), ``ended`` (n,) bool (the game ended the episode, not the step limit), and with
    ``record`` the episodes: ``frames`` [(L, 64, 64, 3)] and ``actions`` [(L - 1,) raw Procgen ids]; the
    action that ended an episode is dropped (its outcome frame is never observed), as in
    :mod:`genieworld.data.coinrun`.
    """
    import torch

    levels = [int(lv) for lv in levels]
    n = len(levels)
    envs = [make_gym3(1, lv, 1, mode, backgrounds, level_seed(seed, lv)) for lv in levels]
    gen = torch.Generator().manual_seed(int(seed))
    actor.reset(n)
    frames = np.stack([e.observe()[1]["rgb"][0] for e in envs])
    alive = np.ones(n, dtype=bool)
    solved = np.zeros(n, dtype=bool)
    ended = np.zeros(n, dtype=bool)
    steps = np.zeros(n, dtype=np.int64)
    rec_f = [[f.copy()] for f in frames] if record else None
    rec_a: list[list[int]] = [[] for _ in range(n)]
    while alive.any():
        act = np.asarray(actor.act(frames, gen), dtype=np.int64)
        for i in np.flatnonzero(alive):
            raw = RAW[act[i]:act[i] + 1]
            over = False
            for _ in range(frame_skip):
                envs[i].act(raw)
                r, obs, first = envs[i].observe()
                steps[i] += 1
                if r[0] > 0:
                    solved[i] = True
                if first[0]:
                    over = ended[i] = True
                    break
                if steps[i] >= max_steps:
                    over = True
                    break
            if not first[0]:
                frames[i] = obs["rgb"][0]
                if record:
                    rec_f[i].append(frames[i].copy())
                    rec_a[i].append(int(raw[0]))
            if over:
                alive[i] = False
                if progress is not None:
                    progress(1)
    out = {"levels": levels, "solved": solved, "game_steps": steps, "ended": ended}
    if record:
        out["frames"] = [np.stack(f) for f in rec_f]
        out["actions"] = [np.asarray(a, dtype=np.int64) for a in rec_a]
    return out


class RandomActor:
    """Uniform random actions: over the 6 effective actions, or (``raw15``) over Procgen's 15 buttons
    mapped to their effect (9 of the 15 do not move: the issue's 'uniform random' baseline)."""

    def __init__(self, raw15: bool = False):
        self.raw15 = raw15

    def reset(self, n: int) -> None:
        self.n = n

    def act(self, frames, gen):
        import torch

        from genieworld.data.coinrun import effective_action

        if self.raw15:
            return effective_action(torch.randint(0, 15, (len(frames),), generator=gen).numpy())
        return torch.randint(0, NUM_EFFECTIVE, (len(frames),), generator=gen).numpy()


class HoldActor:
    """Always the same effective action (index into EFFECTIVE_ACTIONS): an observation-blind baseline."""

    def __init__(self, action: int):
        self.action = int(action)

    def reset(self, n: int) -> None:
        pass

    def act(self, frames, gen):
        return np.full(len(frames), self.action, dtype=np.int64)
