"""Procgen CoinRun with a random policy (Genie paper, Appendix F).

Recipe: CoinRun ``hard`` mode, one environment per level seed (``num_levels=1,
start_level=level``), uniformly random actions over the 15 Procgen actions, 64x64 frames,
``steps_per_level`` recorded transitions per level (paper: levels 0..9,999 x
1,000 steps = 10M transitions).

``frame_skip`` (default 1, the paper's setting) holds each random action for k
environment steps and records only the last frame, so one recorded transition is k
game steps of one action.  Not in the paper; the ``cpu`` recipe uses k = 4 because
at k = 1 CoinRun's inertia hides the action: from the same state, the frames that
different actions lead to differ by 42 dB PSNR on average (mean squared spread
0.0004, against 0.008 for the frame-to-frame change), far below what a small
tokenizer resolves; at k = 4 the spread is 31.5 dB (0.0023 against 0.023).
(``bench/bench_action_effect.py``, retired: runs at commit f029ad5.)

Episode boundaries: gym3 resets automatically; when ``first`` is set after an
action, that action ended the episode and its outcome frame is never observed, so
the episode is closed *without* that action and the new observation starts the
next episode (a transition across a reset is not a transition).  The K steps of a
level can therefore span several episodes of that level; one-frame episodes are
dropped.  Episode metadata: ``level``, ``episode_in_level``, ``terminated`` (ended
by the game rather than by the step budget).  The manifest's ``extra`` records the
mode, seed, steps per level and the requested level ranges; :func:`levels_of`
returns the level seeds actually present, so evaluation code can check that
train and test levels do not overlap.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import numpy as np

from genieworld.data.store import EpisodeStore, EpisodeWriter, StoreError
from genieworld.data.streamer import EpisodeStreamer

__all__ = ["generate_coinrun", "levels_of", "level_overlap", "frame_skip_of", "valid_frame_skip", "effective_action",
           "random_actions", "COINRUN_ACTIONS", "COINRUN_FPS", "EFFECTIVE_ACTIONS", "EFFECTIVE_NAMES", "POLICIES"]

COINRUN_ACTIONS = 15
COINRUN_FPS = 15.0  # nominal: one frame per environment step
# CoinRun's 15 Procgen actions act as 6: {left, none, right} x {no jump, jump}.  One raw id for each,
# in effective-class order (see :func:`effective_action`).
EFFECTIVE_ACTIONS = (0, 2, 4, 5, 6, 8)
EFFECTIVE_NAMES = ("Left", "Left+Jump", "Stay", "Jump", "Right", "Right+Jump")
POLICIES = ("uniform", "hold")


def effective_action(a):
    """Procgen CoinRun action id(s) 0..14 -> effective class 0..5 = 2 * direction + jump.

    Ids 9..14 do nothing in CoinRun (they act as 4, no move); for the rest the direction is
    ``a // 3`` (0 left, 1 none, 2 right) and the agent jumps when ``a % 3 == 2``.  Negative ids
    (no action recorded) map to -1.
    """
    a = np.asarray(a, dtype=np.int64)
    m = np.where(a < 9, a, 4)
    out = (m // 3) * 2 + (m % 3 == 2)
    return np.where(a < 0, -1, out)


def random_actions(rng: np.random.Generator, steps: int, policy: str = "uniform", hold: float = 1.0,
                   representatives=EFFECTIVE_ACTIONS) -> np.ndarray:
    """``steps`` raw action ids of a random policy.

    ``uniform`` (the paper): each step an independent uniform draw over the 15 Procgen actions.
    ``hold``: a uniform draw over the 6 *effective* actions (one raw id each, see
    ``EFFECTIVE_ACTIONS``; another game's ``representatives``), held for a geometric number of steps
    with mean ``hold`` -- how a person plays (press a key, keep it down) instead of a new key every step.
    """
    if policy == "uniform":
        return rng.integers(0, COINRUN_ACTIONS, size=steps)
    if policy != "hold":
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    if not hold >= 1.0:
        raise ValueError(f"hold must be >= 1 (mean steps an action is held), got {hold}")
    ids = np.asarray(representatives, dtype=np.int64)
    out = np.empty(steps, dtype=np.int64)
    i = 0
    while i < steps:
        n = int(rng.geometric(1.0 / hold))
        out[i:i + n] = ids[rng.integers(0, len(ids))]
        i += n
    return out


def check_recording(mode: str, levels: int, start_level: int, steps_per_level: int, frame_skip: int,
                    policy: str, hold: float) -> None:
    """ValueError in one line for recording settings no Procgen recorder accepts."""
    if mode not in ("hard", "easy"):
        raise ValueError(f"mode must be 'hard' or 'easy', got {mode!r}")
    if levels < 1 or start_level < 0 or steps_per_level < 1 or frame_skip < 1:
        raise ValueError("need levels >= 1, start_level >= 0, steps_per_level >= 1, frame_skip >= 1")
    random_actions(np.random.default_rng(0), 1, policy, hold)  # validates policy and hold


def procgen_env_class():
    """procgen's ``ProcgenGym3Env``, imported without the deprecation notice gym 0.26 prints."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        from procgen import ProcgenGym3Env
    return ProcgenGym3Env


def _rand_seed(seed: int, level: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(level), 0xC0]).generate_state(1)[0] % (2**31 - 1))


def generate_coinrun(out, levels: int = 100, start_level: int = 0, steps_per_level: int = 1000,
                     mode: str = "hard", seed: int = 0, progress: bool = True,
                     shard_bytes: int | None = None, frame_skip: int = 1, policy: str = "uniform",
                     hold: float = 1.0, backgrounds: bool = True) -> dict:
    """Record CoinRun levels ``start_level .. start_level+levels-1`` into the store ``out``.

    Resumable: levels already recorded in the manifest are skipped.  Returns a summary.
    """
    check_recording(mode, levels, start_level, steps_per_level, frame_skip, policy, hold)
    ProcgenGym3Env = procgen_env_class()
    out = Path(out)
    if policy == "uniform":
        desc = "uniform random, no action repeats" if frame_skip == 1 else f"uniform random, each action held {frame_skip} steps"
    else:
        desc = (f"uniform over the 6 effective actions, each held a geometric number of recorded steps "
                f"(mean {hold:g}) of {frame_skip} game steps")
    settings = {"env": "procgen:coinrun", "distribution_mode": mode, "policy": desc, "policy_name": policy,
                "hold": float(hold), "steps_per_level": int(steps_per_level), "seed": int(seed),
                "frame_skip": int(frame_skip), "backgrounds": bool(backgrounds)}
    kw = {} if shard_bytes is None else {"shard_bytes": shard_bytes}
    new_range = [int(start_level), int(start_level + levels)]
    counts = {"levels_done": 0, "levels_skipped": 0, "episodes": 0, "frames": 0}
    with EpisodeWriter(out, resolution=(64, 64), fps=COINRUN_FPS / frame_skip, source="coinrun",
                       num_actions=COINRUN_ACTIONS, **kw) as w:
        if w.manifest.get("source", "coinrun") != "coinrun":  # e.g. a `genie data procgen` store
            raise StoreError(f"{out}: store holds {w.manifest.get('source')!r} recordings, not CoinRun; "
                             "use another folder")
        old = w.manifest.get("extra", {}).get("coinrun")
        if old:
            # stores written before these settings existed used frame skip 1 and the uniform policy
            old = {"frame_skip": 1, "policy_name": "uniform", "hold": 1.0, "backgrounds": True, **old}
            for k in ("distribution_mode", "steps_per_level", "seed", "frame_skip", "policy_name", "hold", "backgrounds"):
                if old.get(k) != settings[k]:
                    raise StoreError(f"{out}: store was generated with {k}={old.get(k)!r}, not {settings[k]!r}; "
                                     "use another folder (or the same settings to resume/extend)")
            ranges = [list(r) for r in old.get("level_ranges", [])]
        else:
            ranges = []
        if new_range not in ranges:
            ranges.append(new_range)
        w.set_extra(coinrun={**settings, "level_ranges": ranges})
        done = w.done_keys
        todo = [lv for lv in range(start_level, start_level + levels) if f"level:{lv}" not in done]
        counts["levels_skipped"] = levels - len(todo)
        record_levels(w, todo, levels, f"coinrun {mode}", counts, progress,
                      lambda level: _record_level(w, ProcgenGym3Env, level, steps_per_level, mode, seed, frame_skip,
                                                  policy, hold, backgrounds))
    store = EpisodeStore(out)
    return {"out": str(out), **counts, "store_episodes": store.num_episodes, "store_frames": store.num_frames,
            "bytes_on_disk": store.bytes_on_disk, "level_ranges": ranges}


def record_levels(w: EpisodeWriter, todo, total: int, desc: str, counts: dict, progress: bool, record_one) -> None:
    """Record each level of ``todo`` with ``record_one(level) -> (episodes, frames)``, mark it done in the
    manifest (so a rerun resumes after it) and add to ``counts``; a progress bar over ``total`` levels."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=total - len(todo), desc=desc, unit="level")
    try:
        for level in todo:
            n_eps, n_frames = record_one(level)
            w.mark_done(f"level:{level}")
            counts["levels_done"] += 1
            counts["episodes"] += n_eps
            counts["frames"] += n_frames
            if bar is not None:
                bar.update(1)
                bar.set_postfix(frames=w.num_frames, refresh=False)
    finally:
        if bar is not None:
            bar.close()


def _record_level(w: EpisodeWriter, env_cls, level: int, steps: int, mode: str, seed: int, frame_skip: int = 1,
                  policy: str = "uniform", hold: float = 1.0, backgrounds: bool = True) -> tuple[int, int]:
    rng = np.random.default_rng([int(seed), int(level)])
    actions = random_actions(rng, steps, policy, hold)
    return record_actions(w, env_cls, "coinrun", level, actions, mode, seed, frame_skip, backgrounds)


def record_actions(w: EpisodeWriter, env_cls, game: str, level: int, actions, mode: str, seed: int,
                   frame_skip: int = 1, backgrounds: bool = True) -> tuple[int, int]:
    """Play the raw Procgen ``actions`` on level ``level`` of ``game``, each held ``frame_skip`` game steps,
    into ``w`` (episodes split at resets, as the module docstring says); returns (episodes, frames)."""
    env = env_cls(num=1, env_name=game, num_levels=1, start_level=int(level), distribution_mode=mode,
                  rand_seed=_rand_seed(seed, level), use_backgrounds=bool(backgrounds))
    key = f"level:{level}"
    ep_i = 0
    n_eps = n_frames = 0

    def new_stream():
        return EpisodeStreamer(w, {"level": int(level), "episode_in_level": ep_i, "mode": mode}, key)

    _, obs, _ = env.observe()
    stream = new_stream()
    stream.push(obs["rgb"][0].copy(), None)
    for a in actions:
        for _ in range(frame_skip):
            env.act(np.array([a], dtype=np.int32))
            _, obs, first = env.observe()
            if first[0]:
                break
        frame = obs["rgb"][0].copy()
        if first[0]:  # `a` ended the episode; its outcome frame is not observable
            n = stream.finish(terminated=True)
            if n:
                n_eps, n_frames, ep_i = n_eps + 1, n_frames + n, ep_i + 1
            stream = new_stream()
            stream.push(frame, None)
        else:
            stream.push(frame, int(a))
    n = stream.finish(terminated=False)
    if n:
        n_eps, n_frames = n_eps + 1, n_frames + n
    del env
    return n_eps, n_frames


def levels_of(store: EpisodeStore | str | os.PathLike) -> set[int]:
    """Level seeds present in a store (from episode metadata); empty for stores without levels."""
    if not isinstance(store, EpisodeStore):
        store = EpisodeStore(store)
    out = set()
    for i in range(store.num_episodes):
        lv = store._metas[i].get("level")
        if lv is not None:
            out.add(int(lv))
    return out


def valid_frame_skip(value) -> int | None:
    """``value`` if it is a usable frame skip (an int >= 1, not a bool), else None: the one check
    for frame skips read from files (store manifests, a model's genie.json provenance)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def frame_skip_of(store: EpisodeStore | str | os.PathLike) -> int | None:
    """The frame skip a CoinRun store was recorded with (1 for stores from before the setting
    existed); None for stores that are not CoinRun recordings or hold no valid value."""
    if not isinstance(store, EpisodeStore):
        store = EpisodeStore(store)
    settings = store.extra.get("coinrun")
    if not isinstance(settings, dict):
        return None
    return valid_frame_skip(settings.get("frame_skip", 1))


def level_overlap(train, test) -> set[int]:
    """Level seeds present in both stores (should be empty for a clean held-out evaluation)."""
    return levels_of(train) & levels_of(test)
