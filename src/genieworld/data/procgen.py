"""Any of the 16 Procgen games with a random policy, and each game's effective actions, measured.

``genie data procgen GAME`` records like ``genie data coinrun`` (:mod:`genieworld.data.coinrun`):
one environment per level seed (``num_levels=1, start_level=level``), 64x64 frames,
``steps_per_level`` recorded transitions per level, ``frame_skip`` game steps of one action per
recorded transition, episodes split at game resets (a transition across a reset is not a
transition; one-frame episodes are dropped), episode metadata ``level``, ``episode_in_level``,
``mode`` and ``terminated``.  Resumable: levels already in the manifest are skipped; a store
recorded with other settings (or another game) is refused.  The store's ``source`` is
``procgen:<game>``; the manifest's ``extra["procgen"]`` holds the settings, the level ranges and
the game's effective-action map.

Effective actions.  Procgen's 15 buttons share one meaning across games: ids 0..8 are
(left, none, right) x (down, none, up) -- LEFT+DOWN, LEFT, LEFT+UP, DOWN, NOOP, UP, RIGHT+DOWN,
RIGHT, RIGHT+UP -- then the extra keys D, A, W, S, Q, E (ids 9..14).  Which of them differ
depends on the game (FruitBot 4, Maze 5, BigFish 9, StarPilot 11; CoinRun 9, not the 6 of
:func:`genieworld.data.coinrun.effective_action`: standing on a crate, Down drops through it, so
Left+Down, Down and Right+Down differ from Left, Stay and Right).  :func:`measure_effective_actions` finds out
instead of guessing: from a few dozen states reached by random play on a few levels, it applies
each id for ``max(2, frame_skip)`` game steps (``env.callmethod("get_state"/"set_state")``) and
puts two ids in one class when their outcome frames are identical in *every* sampled state.
Results for the shipped settings are cached in ``procgen_actions.json`` next to this module
(regenerate with :func:`write_action_cache`); other settings are measured at record time (well
under a second per game).  :func:`effective_action_of` maps a store's raw ids to class ids.

The ``hold`` policy draws uniformly over the game's effective classes (one raw id each, the
smallest), each held for a geometric number of recorded steps with mean ``hold``.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from genieworld.data.coinrun import _rand_seed, check_recording, procgen_env_class, record_actions, record_levels
from genieworld.data.coinrun import random_actions as _random_actions
from genieworld.data.coinrun import effective_action as _coinrun_effective_action
from genieworld.data.store import MANIFEST, EpisodeStore, EpisodeWriter, StoreError

__all__ = ["PROCGEN_GAMES", "PROCGEN_ACTIONS", "PROCGEN_FPS", "BUTTON_NAMES", "POLICIES", "generate_procgen",
           "measure_effective_actions", "effective_actions", "effective_actions_of", "effective_action_of",
           "random_actions", "check_game", "write_action_cache", "CACHE_FILE"]

PROCGEN_GAMES = ("bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun", "dodgeball", "fruitbot",
                 "heist", "jumper", "leaper", "maze", "miner", "ninja", "plunder", "starpilot")
PROCGEN_ACTIONS = 15
PROCGEN_FPS = 15.0  # nominal: one frame per environment step
# raw id -> the buttons it presses (procgen's combos)
_DIRECTIONS = (("Left", "Down"), ("Left",), ("Left", "Up"), ("Down",), (), ("Up",), ("Right", "Down"), ("Right",),
               ("Right", "Up"))
_KEYS = ("D", "A", "W", "S", "Q", "E")
BUTTON_NAMES = tuple("+".join(d) or "Stay" for d in _DIRECTIONS) + _KEYS
POLICIES = ("uniform", "hold")
CACHE_FILE = Path(__file__).with_name("procgen_actions.json")
# settings of the measurement; a cached entry is used only when it was measured with these
MEASURE_STATES = 48
MEASURE_LEVELS = 4
MEASURE_SEED = 0
_CACHED_FRAME_SKIPS = (1, 2, 4)


def check_game(game: str) -> str:
    """``game`` (case-insensitive) if it is one of :data:`PROCGEN_GAMES`, else ValueError naming them all."""
    g = str(game).strip().lower()
    if g not in PROCGEN_GAMES:
        raise ValueError(f"unknown Procgen game {game!r}; the 16 games are: {', '.join(PROCGEN_GAMES)}")
    return g


# ----------------------------------------------------------------------------- effective actions


def _class_name(ids: list[int]) -> str:
    dirs = [i for i in ids if i < 9]
    if dirs:  # the plainest member names the class: Stay, then one direction, then a diagonal
        fewest = min(len(_DIRECTIONS[i]) for i in dirs)
        return "/".join(BUTTON_NAMES[i] for i in dirs if len(_DIRECTIONS[i]) == fewest)
    return "Fire(" + ",".join(_KEYS[i - 9] for i in ids) + ")"


def _partition_info(classes: list[list[int]]) -> dict:
    classes = sorted((sorted(int(i) for i in c) for c in classes), key=lambda c: c[0])
    amap = [0] * PROCGEN_ACTIONS
    for k, c in enumerate(classes):
        for i in c:
            amap[i] = k
    return {"classes": classes, "names": [_class_name(c) for c in classes], "map": amap,
            "representatives": [c[0] for c in classes]}


def measure_effective_actions(game: str, mode: str = "hard", frame_skip: int = 1, states: int = MEASURE_STATES,
                              seed: int = MEASURE_SEED, levels: int = MEASURE_LEVELS) -> dict:
    """Partition Procgen's 15 raw action ids into the classes that act alike in ``game``.

    ``states`` states are sampled by random play (actions held a few steps) on ``levels`` levels;
    from each, every raw id is applied for ``max(2, frame_skip)`` game steps and the outcome frame
    kept.  Two ids share a class when their outcome frames are identical in every sampled state.
    States where replaying an id does not give the same frame again (none seen so far) are left
    out.  Returns ``{"classes": [[ids], ...] (sorted, ordered by smallest id), "names": [...],
    "map": [class of id 0..14], "representatives": [smallest id of each class], "measured": {...}}``.
    """
    game = check_game(game)
    if mode not in ("hard", "easy"):
        raise ValueError(f"mode must be 'hard' or 'easy', got {mode!r}")
    if frame_skip < 1 or states < 1 or levels < 1:
        raise ValueError("need frame_skip >= 1, states >= 1, levels >= 1")
    env_cls = procgen_env_class()
    rng = np.random.default_rng([int(seed), 0x5EED])
    level_ids = sorted(int(x) for x in rng.choice(100_000, size=levels, replace=False))
    n_steps = max(2, int(frame_skip))
    per_level = -(-states // levels)
    sigs: list[list[bytes]] = []  # per kept state: the outcome digest of each id
    skipped = 0

    def act(env, a):
        env.act(np.array([a], dtype=np.int32))

    def outcome(env, state, a) -> bytes:
        env.callmethod("set_state", state)
        for _ in range(n_steps):
            act(env, a)
        _, obs, _ = env.observe()
        return hashlib.blake2b(np.ascontiguousarray(obs["rgb"][0]).tobytes(), digest_size=16).digest()

    for lv in level_ids:
        env = env_cls(num=1, env_name=game, num_levels=1, start_level=lv, distribution_mode=mode,
                      rand_seed=_rand_seed(seed, lv))
        for _ in range(min(per_level, states - len(sigs) - skipped)):
            walk = int(rng.integers(3, 25))  # random play, each id held a geometric number of steps (mean 4)
            while walk > 0:
                a, n = int(rng.integers(0, PROCGEN_ACTIONS)), min(walk, int(rng.geometric(0.25)))
                for _ in range(n):
                    act(env, a)
                walk -= n
            state = env.callmethod("get_state")
            first = [outcome(env, state, a) for a in range(PROCGEN_ACTIONS)]
            again = [outcome(env, state, a) for a in range(PROCGEN_ACTIONS)]
            env.callmethod("set_state", state)
            if first == again:
                sigs.append(first)
            else:
                skipped += 1
        del env
    if not sigs:
        raise RuntimeError(f"{game}: no sampled state replays deterministically; cannot measure its actions")
    groups: dict[tuple, list[int]] = {}
    for a in range(PROCGEN_ACTIONS):
        groups.setdefault(tuple(s[a] for s in sigs), []).append(a)
    info = _partition_info(list(groups.values()))
    info["measured"] = {"game": game, "mode": mode, "frame_skip": int(frame_skip), "steps_per_action": n_steps,
                        "states": int(states), "levels_sampled": int(levels), "seed": int(seed),
                        "states_kept": len(sigs), "levels": level_ids}
    return info


def _cache_key(game: str, mode: str, frame_skip: int) -> str:
    return f"{game}/{mode}/{int(frame_skip)}"


@lru_cache(maxsize=1)
def _read_cache() -> dict:
    try:
        data = json.loads(CACHE_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("entries", {}) if isinstance(data, dict) else {}


@lru_cache(maxsize=None)
def _effective_actions_cached(game: str, mode: str, frame_skip: int) -> str:
    entry = _read_cache().get(_cache_key(game, mode, frame_skip))
    want = {"game": game, "mode": mode, "frame_skip": frame_skip, "states": MEASURE_STATES, "seed": MEASURE_SEED,
            "levels_sampled": MEASURE_LEVELS}
    try:
        if all(entry["measured"].get(k) == v for k, v in want.items()):
            return json.dumps({**_partition_info(entry["classes"]), "measured": entry["measured"]})
    except (TypeError, KeyError, AttributeError, IndexError, ValueError):
        pass  # no usable cached entry: measure
    return json.dumps(measure_effective_actions(game, mode, frame_skip))


def effective_actions(game: str, mode: str = "hard", frame_skip: int = 1) -> dict:
    """The effective-action partition of ``game`` (see :func:`measure_effective_actions`): read from
    the shipped cache for the settings it holds, measured (once per process) otherwise."""
    game = check_game(game)
    if mode not in ("hard", "easy"):
        raise ValueError(f"mode must be 'hard' or 'easy', got {mode!r}")
    return json.loads(_effective_actions_cached(game, mode, int(frame_skip)))


def write_action_cache(path: str | os.PathLike = CACHE_FILE, frame_skips=_CACHED_FRAME_SKIPS,
                       modes=("hard", "easy")) -> dict:
    """Measure every game for ``modes`` x ``frame_skips`` and write the cache JSON (about a minute at one thread)."""
    entries = {}
    for game in PROCGEN_GAMES:
        for mode in modes:
            for k in frame_skips:
                e = measure_effective_actions(game, mode, k)
                entries[_cache_key(game, mode, k)] = {"classes": e["classes"], "names": e["names"],
                                                      "measured": e["measured"]}
    lines = ",\n".join(f" {json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in sorted(entries.items()))
    about = ("Procgen effective actions measured by genieworld.data.procgen.measure_effective_actions; keys are "
             "game/mode/frame_skip; regenerate: python -c 'from genieworld.data.procgen import write_action_cache; "
             "write_action_cache()'")
    Path(path).write_text("{\"about\": " + json.dumps(about) + ",\n\"entries\": {\n" + lines + "\n}}\n")
    _read_cache.cache_clear()
    _effective_actions_cached.cache_clear()
    return {"about": about, "entries": entries}


def effective_actions_of(store: EpisodeStore | str | os.PathLike) -> dict | None:
    """A store's effective-action partition (``classes``, ``names``, ``map``): the one measured and
    recorded in a Procgen store's manifest, CoinRun's 6 for a ``genie data coinrun`` store; None
    for stores of other sources or without a valid map."""
    if not isinstance(store, EpisodeStore):
        store = EpisodeStore(store)
    pg = store.extra.get("procgen")
    if isinstance(pg, dict):
        ea = pg.get("effective_actions")
        amap = ea.get("map") if isinstance(ea, dict) else None
        if (isinstance(amap, list) and len(amap) == PROCGEN_ACTIONS
                and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in amap)):
            return ea
        return None
    if store.source == "coinrun":
        from genieworld.data.coinrun import EFFECTIVE_NAMES

        amap = _coinrun_effective_action(np.arange(PROCGEN_ACTIONS)).tolist()
        classes = [[i for i in range(PROCGEN_ACTIONS) if amap[i] == k] for k in range(len(EFFECTIVE_NAMES))]
        return {"classes": classes, "names": list(EFFECTIVE_NAMES), "map": amap,
                "representatives": [c[0] for c in classes]}
    return None


def effective_action_of(store: EpisodeStore | str | os.PathLike) -> Callable[[np.ndarray], np.ndarray]:
    """A function mapping a store's raw action ids (0..14) to its effective class ids; negative ids
    (no action) map to -1.  ValueError for a store without an effective-action map."""
    ea = effective_actions_of(store)
    if ea is None:
        path = store.path if isinstance(store, EpisodeStore) else store
        raise ValueError(f"{path}: not a Procgen or CoinRun store with an effective-action map")
    table = np.asarray(ea["map"], dtype=np.int64)

    def to_class(a):
        a = np.asarray(a, dtype=np.int64)
        return np.where(a < 0, -1, table[np.clip(a, 0, PROCGEN_ACTIONS - 1)])

    return to_class


# ----------------------------------------------------------------------------- recording


def random_actions(rng: np.random.Generator, steps: int, policy: str = "uniform", hold: float = 1.0,
                   representatives=tuple(range(9))) -> np.ndarray:
    """``steps`` raw action ids: ``uniform`` over the 15 ids each step (the paper), or ``hold``: a
    uniform draw over ``representatives`` (one raw id per effective class) held for a geometric
    number of steps with mean ``hold`` (:func:`genieworld.data.coinrun.random_actions`)."""
    return _random_actions(rng, steps, policy, hold, representatives)


_COMPARED = ("game", "distribution_mode", "steps_per_level", "seed", "frame_skip", "policy_name", "hold",
             "backgrounds")


def _check_settings(out: Path, source: str, manifest: dict, settings: dict) -> list:
    """The level ranges of an existing store made with ``settings``; StoreError in one line otherwise."""
    have = manifest.get("source", "")
    old = (manifest.get("extra") or {}).get("procgen")
    if have != source or (manifest.get("shards") and not isinstance(old, dict)):
        raise StoreError(f"{out}: store holds {have or 'other'!r} recordings, not {source!r}; use another folder")
    if not isinstance(old, dict):
        return []
    for k in _COMPARED:
        if old.get(k) != settings[k]:
            raise StoreError(f"{out}: store was generated with {k}={old.get(k)!r}, not {settings[k]!r}; "
                             "use another folder (or the same settings to resume/extend)")
    return [list(r) for r in old.get("level_ranges", [])]


def generate_procgen(out, game: str, levels: int = 100, start_level: int = 0, steps_per_level: int = 1000,
                     mode: str = "hard", seed: int = 0, progress: bool = True, shard_bytes: int | None = None,
                     frame_skip: int = 1, policy: str = "uniform", hold: float = 1.0,
                     backgrounds: bool = True) -> dict:
    """Record Procgen ``game`` levels ``start_level .. start_level+levels-1`` into the store ``out``.

    Resumable: levels already recorded in the manifest are skipped.  Returns a summary.
    """
    game = check_game(game)
    check_recording(mode, levels, start_level, steps_per_level, frame_skip, policy, hold)
    out = Path(out)
    source = f"procgen:{game}"
    if policy == "uniform":
        desc = ("uniform random, no action repeats" if frame_skip == 1
                else f"uniform random, each action held {frame_skip} steps")
    else:
        desc = (f"uniform over the game's effective actions (the smallest raw id of each), each held a geometric "
                f"number of recorded steps (mean {hold:g}) of {frame_skip} game steps")
    settings = {"env": source, "game": game, "distribution_mode": mode, "policy": desc, "policy_name": policy,
                "hold": float(hold), "steps_per_level": int(steps_per_level), "seed": int(seed),
                "frame_skip": int(frame_skip), "backgrounds": bool(backgrounds)}
    if (out / MANIFEST).is_file():  # refuse other settings before the writer compares fps (the frame skip)
        _check_settings(out, source, EpisodeStore(out).manifest, settings)
    eff = effective_actions(game, mode, frame_skip)
    env_cls = procgen_env_class()
    kw = {} if shard_bytes is None else {"shard_bytes": shard_bytes}
    new_range = [int(start_level), int(start_level + levels)]
    counts = {"levels_done": 0, "levels_skipped": 0, "episodes": 0, "frames": 0}
    with EpisodeWriter(out, resolution=(64, 64), fps=PROCGEN_FPS / frame_skip, source=source,
                       num_actions=PROCGEN_ACTIONS, **kw) as w:
        ranges = _check_settings(out, source, w.manifest, settings)
        old_eff = (w.manifest.get("extra") or {}).get("procgen", {}).get("effective_actions")
        if isinstance(old_eff, dict) and old_eff.get("map"):
            eff = old_eff  # a store keeps the map it was recorded with
        if new_range not in ranges:
            ranges.append(new_range)
        w.set_extra(procgen={**settings, "level_ranges": ranges, "effective_actions": eff})
        done = w.done_keys
        todo = [lv for lv in range(start_level, start_level + levels) if f"level:{lv}" not in done]
        counts["levels_skipped"] = levels - len(todo)
        record_levels(w, todo, levels, f"{game} {mode}", counts, progress,
                      lambda level: _record_level(w, env_cls, game, level, steps_per_level, mode, seed, frame_skip,
                                                  policy, hold, backgrounds, eff["representatives"]))
    store = EpisodeStore(out)
    return {"out": str(out), "game": game, **counts, "store_episodes": store.num_episodes,
            "store_frames": store.num_frames, "bytes_on_disk": store.bytes_on_disk, "level_ranges": ranges,
            "effective_actions": len(eff["classes"])}


def _record_level(w: EpisodeWriter, env_cls, game: str, level: int, steps: int, mode: str, seed: int,
                  frame_skip: int, policy: str, hold: float, backgrounds: bool, representatives) -> tuple[int, int]:
    rng = np.random.default_rng([int(seed), int(level)])
    actions = random_actions(rng, steps, policy, hold, representatives)
    return record_actions(w, env_cls, game, level, actions, mode, seed, frame_skip, backgrounds)
