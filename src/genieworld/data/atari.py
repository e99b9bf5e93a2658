"""Atari (gymnasium + ale-py) with a random policy, recorded into an episode store.

``ALE/<Game>-v5`` with its default frameskip 4 (so 15 recorded frames per second of
game time), *no* sticky actions by default (``repeat_action_probability=0`` so the
recorded action is the one executed; pass ``sticky=0.25`` for the v5 default), the
game's minimal action set, uniformly random actions.  The 210x160 observations are
resized with :func:`genieworld.data.video.prepare_frame` (same crop/pad policy as
ingestion).  Episode ``i`` is reset with seed ``seed * 1_000_003 + i`` and runs until
the game ends or ``steps_per_episode`` steps; gymnasium returns the terminal frame,
so every action is recorded (``len(actions) == len(frames) - 1``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genieworld.data.store import EpisodeStore, EpisodeWriter, StoreError
from genieworld.data.streamer import EpisodeStreamer
from genieworld.data.video import prepare_frame

__all__ = ["generate_atari", "resolve_game"]


def _gym():
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    return gym


def resolve_game(game: str) -> str:
    """``Pong``/``pong``/``ALE/Pong-v5`` -> ``ALE/Pong-v5`` (case-insensitive; suggests close names)."""
    gym = _gym()
    ids = [k for k in gym.registry if k.startswith("ALE/") and k.endswith("-v5")]
    if game in gym.registry:
        return game
    want = game.lower().replace("_", "").replace("-", "").replace(" ", "")
    if want.startswith("ale/"):
        want = want[4:]
    if want.endswith("v5"):
        want = want[:-2]
    for k in ids:
        if k[4:-3].lower() == want:
            return k
    import difflib

    close = difflib.get_close_matches(game, [k[4:-3] for k in ids], n=5)
    hint = f" (did you mean: {', '.join(close)}?)" if close else ""
    raise StoreError(f"unknown Atari game {game!r}{hint}; examples: Pong, Breakout, MontezumaRevenge")


def generate_atari(game: str, out, episodes: int = 8, steps_per_episode: int = 1000, size: int = 64,
                   seed: int = 0, fit: str = "crop", sticky: float = 0.0, frameskip: int = 4,
                   progress: bool = True, shard_bytes: int | None = None) -> dict:
    """Record ``episodes`` random-policy episodes of ``game`` into the store ``out`` (resumable)."""
    if episodes < 1 or steps_per_episode < 1:
        raise ValueError("need episodes >= 1 and steps_per_episode >= 1")
    gym = _gym()
    env_id = resolve_game(game)
    env = gym.make(env_id, repeat_action_probability=float(sticky), frameskip=int(frameskip))
    n_actions = int(env.action_space.n)
    fps = 60.0 / frameskip
    settings = {"env": env_id, "policy": "uniform random", "sticky": float(sticky), "frameskip": int(frameskip),
                "fit": fit, "steps_per_episode": int(steps_per_episode), "seed": int(seed),
                "action_meanings": env.unwrapped.get_action_meanings()}
    kw = {} if shard_bytes is None else {"shard_bytes": shard_bytes}
    out = Path(out)
    counts = {"episodes_done": 0, "episodes_skipped": 0, "frames": 0}
    try:
        with EpisodeWriter(out, resolution=(size, size), fps=fps, source=f"atari:{env_id}", num_actions=n_actions,
                           **kw) as w:
            old = w.manifest.get("extra", {}).get("atari")
            if old:
                for k in ("env", "sticky", "frameskip", "fit", "steps_per_episode", "seed"):
                    if old.get(k) != settings[k]:
                        raise StoreError(f"{out}: store was generated with {k}={old.get(k)!r}, not "
                                         f"{settings[k]!r}; use another folder")
            w.set_extra(atari=settings)
            done = w.done_keys
            todo = [i for i in range(episodes) if f"episode:{i}" not in done]
            counts["episodes_skipped"] = episodes - len(todo)
            it = todo
            if progress:
                from tqdm import tqdm

                it = tqdm(todo, total=episodes, initial=episodes - len(todo), desc=env_id, unit="ep")
            for i in it:
                key = f"episode:{i}"
                rng = np.random.default_rng([int(seed), int(i)])
                obs, _ = env.reset(seed=int(seed) * 1_000_003 + i)
                stream = EpisodeStreamer(w, {"episode": i, "game": env_id}, key)
                stream.push(prepare_frame(obs, size, fit), None)
                terminated = False
                for _ in range(steps_per_episode):
                    a = int(rng.integers(n_actions))
                    obs, _, term, trunc, _ = env.step(a)
                    stream.push(prepare_frame(obs, size, fit), a)
                    if term or trunc:
                        terminated = True
                        break
                counts["frames"] += stream.finish(terminated=terminated)
                w.mark_done(key)
                counts["episodes_done"] += 1
    finally:
        env.close()
    store = EpisodeStore(out)
    return {"out": str(out), "env": env_id, "num_actions": n_actions, **counts,
            "store_episodes": store.num_episodes, "store_frames": store.num_frames,
            "bytes_on_disk": store.bytes_on_disk}
