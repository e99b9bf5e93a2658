"""Play quality: does the world stay a world when a player drives it, and do its buttons do what
their names say?  Every figure is measured on real held-out clips, beside the real-vs-real floor.

1. **Drivers** (16-frame rollouts from the first frame of N real clips, play's MaskGIT steps):
   ``own`` (the LAM's reading of the real clip), ``random`` (a uniformly random latent each step),
   ``held`` (one latent for the whole clip) and ``player`` (a random latent held 2-5 steps, then
   another).  Each set is scored by FVD against an independent set of N real clips; the floor is
   FVD(real, real) at the same N.  ``excess`` = FVD - floor.
2. **Drift**: 64-frame player rollouts; FVD of frames 2-17 and of frames 49-64 against real clips
   (GameNGen's quality over time) and their ratio, plus FVD of every 16-frame block.
3. **Action following** (with a judge, :mod:`genieworld.eval.judge`): from P prompts, each latent
   is held K steps; the judge reads every generated transition (from the second on, so that all
   three frames of a triple are generated).  Per button: the share read with the direction and the
   jump its name says, the judge's own majority reading (``judge_name``), and beside them the
   judge's accuracy on real held-out transitions and its reading of the same actions in the game.
4. ``psnr_own_by_t``: PSNR of the ``own`` rollouts to the real continuation, per step.

With ``gravity`` (play's :class:`~genieworld.controls.Gravity`, on in ``genie play`` by default) the
player's presses, in the ``player`` driver and the drift rollouts, are played as ``genie play`` plays
them (:class:`Presses`): a press after a jump, or while the player comes down, may play a fall
(``gravity: true`` in the result). Without it every press plays its latent as pressed, which no player
of ``genie play`` sees where the model has gravity.

Results are a JSON-able dict (:func:`play_quality`); ``genie eval --play N`` writes it into the
report as ``play_quality.json`` and ``bench/bench_play_quality.py`` compares models side by side on
the same clips.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace

import numpy as np
import torch

DRIVERS = ("own", "random", "held", "player")


def real_clips(store, n: int, length: int = 16, seed: int = 0, sets: int = 2) -> np.ndarray:
    """(sets, n, length, H, W, 3) uint8: ``sets * n`` disjoint real windows of ``store``, spread over its
    episodes (several windows per episode when it has fewer than ``sets * n`` long enough)."""
    rng = np.random.default_rng(seed)
    windows = []
    for e in range(store.num_episodes):
        count = int(store.episode_lengths[e]) // length
        windows += [(e, k * length) for k in range(count)]
    need = sets * n
    if len(windows) < need:
        raise ValueError(f"{store.path}: {len(windows)} disjoint {length}-frame windows, {need} needed "
                         f"({sets} sets of {n}); record more held-out levels or ask for fewer clips")
    pick = rng.permutation(len(windows))[:need]
    out = np.stack([store.read_frames(windows[i][0], windows[i][1], windows[i][1] + length) for i in pick.tolist()])
    return out.reshape(sets, n, *out.shape[1:])


def player_actions(rng, n: int, steps: int, num_actions: int, hold=(2, 5)) -> np.ndarray:
    """(n, steps): a random latent held for 2-5 steps, then another, as a player presses keys."""
    out = np.zeros((n, steps), dtype=np.int64)
    for i in range(n):
        k = 0
        while k < steps:
            d = int(rng.integers(hold[0], hold[1] + 1))
            out[i, k:k + d] = rng.integers(0, num_actions)
            k += d
    return out


def driver_actions(genie, clips_nthwc: np.ndarray, seed: int = 0, batch: int = 32,
                   drivers: tuple[str, ...] = DRIVERS) -> dict[str, np.ndarray]:
    """Latent actions (N, T-1) of each driver of :data:`DRIVERS` for rollouts of the clips' length.
    ``own`` (the LAM's reading of the clips) only when ``drivers`` has it; the others draw the same
    actions either way."""
    rng = np.random.default_rng(seed)
    n, t = clips_nthwc.shape[:2]
    a = genie.num_actions
    out = {}
    if "own" in drivers:
        own = []
        with torch.no_grad():
            for s in range(0, n, batch):
                own.append(genie.lam.encode_actions(torch.from_numpy(clips_nthwc[s:s + batch]))[0].cpu().numpy())
        out["own"] = np.concatenate(own).astype(np.int64)
    out["random"] = rng.integers(0, a, size=(n, t - 1))
    out["held"] = np.repeat((np.arange(n) % a)[:, None], t - 1, axis=1)
    out["player"] = player_actions(rng, n, t - 1, a)
    return out


def play_sampling(genie):
    smp = genie.sampling
    return replace(smp, maskgit_steps=smp.play_maskgit_steps or smp.maskgit_steps,
                   temperature=smp.temperature if smp.play_temperature is None else smp.play_temperature)


class Presses:
    """What a batch of rollouts plays for its presses, step by step: as pressed, or through play's
    :class:`~genieworld.controls.Gravity` given the latents played before and whether the player is still
    coming down in the world's frames (:class:`~genieworld.controls.Descent`), as ``genie play`` plays."""

    def __init__(self, gravity, first_bhwc: np.ndarray):
        from genieworld.controls import Played

        self.prev = np.asarray(first_bhwc)
        self.rows = None if gravity is None else [Played(gravity) for _ in range(len(first_bhwc))]

    def played(self, presses_b: np.ndarray) -> np.ndarray:
        if self.rows is None:
            return np.asarray(presses_b, dtype=np.int64)
        return np.array([row.press(int(p)) for row, p in zip(self.rows, presses_b)], dtype=np.int64)

    def seen(self, frames_bhwc: np.ndarray) -> None:
        """The frames the step just made."""
        if self.rows is not None:
            from genieworld.controls import view_dy

            for row, dy in zip(self.rows, view_dy(self.prev, frames_bhwc).tolist()):
                row.seen(dy)
            self.prev = frames_bhwc


@torch.no_grad()
def rollout(genie, first_bhwc: np.ndarray, actions_bk: np.ndarray, seed: int = 0, batch: int = 32,
            gravity=None) -> np.ndarray:
    """(B, K+1, H, W, 3) uint8 rollouts from one prompt frame each, the latents ``actions_bk`` pressed in
    turn, at play's MaskGIT steps; with ``gravity`` played as ``genie play`` plays them (:class:`Presses`)."""
    from genieworld.sampling import World

    smp = play_sampling(genie)
    out = []
    for s in range(0, len(first_bhwc), batch):
        w = World(genie, torch.from_numpy(first_bhwc[s:s + batch])[:, None], seed=seed + s, sampling=smp)
        presses = Presses(gravity, first_bhwc[s:s + batch])
        for k in range(actions_bk.shape[1]):
            presses.seen(w.step_batch(torch.from_numpy(presses.played(actions_bk[s:s + batch, k]))))
        out.append(w.video())
    return np.concatenate(out)


def intended(name: str) -> tuple[int, int]:
    """(direction 0 left / 1 none / 2 right, jump 0/1) a button's name says: 'Right+Jump#2' -> (2, 1),
    'Fall Left' -> (0, 0), 'Stay' -> (1, 0)."""
    base = re.sub(r"#\d+$", "", name)
    d = 0 if "Left" in base else 2 if "Right" in base else 1
    return d, int("Jump" in base)


def judge_name(direction_share, jump_share: float) -> str:
    """The effective action the judge reads most: 'Left', 'Right+Jump', 'Stay', 'Jump', ..."""
    d = int(np.argmax(direction_share))
    j = jump_share > 0.5
    base = ("Left", None, "Right")[d]
    if base is None:
        return "Jump" if j else "Stay"
    return base + ("+Jump" if j else "")


def action_following(genie, judge, prompts_bhwc: np.ndarray, names, hold_steps: int = 8, seed: int = 0) -> dict:
    """Per latent: what the judge reads when it is held ``hold_steps`` from each prompt (module docstring)."""
    from genieworld.eval.judge import DIRECTIONS, direction, jump, triples_of

    per = {}
    p = len(prompts_bhwc)
    for lat in range(genie.num_actions):
        acts = np.full((p, hold_steps), lat, dtype=np.int64)
        video = rollout(genie, prompts_bhwc, acts, seed=seed + 1000 * lat)
        read = judge.read(triples_of(video, start=2))
        dshare = np.bincount(direction(read), minlength=3) / max(1, len(read))
        jshare = float(jump(read).mean()) if len(read) else float("nan")
        want_d, want_j = intended(names[lat])
        per[names[lat]] = {
            "latent": lat, "intended": {"direction": DIRECTIONS[want_d], "jump": bool(want_j)},
            "judge_direction": {d: round(float(x), 3) for d, x in zip(DIRECTIONS, dshare)},
            "judge_jump": round(jshare, 3),
            "following_direction": round(float(dshare[want_d]), 3),
            "following_jump": round(jshare if want_j else 1.0 - jshare, 3),
            "judge_name": judge_name(dshare, jshare),
        }
        per[names[lat]]["agrees"] = _agrees(names[lat], per[names[lat]]["judge_name"])
    return per


def _agrees(name: str, read: str) -> bool:
    return intended(name) == intended(read)


def summarise_following(per: dict, real: dict | None) -> dict:
    """Left and Right following against the game's own rate, jump buttons' jump share, names agreed.

    ``left_following``: the mean over every button that names a direction and no jump (Left, Fall Left...);
    ``left_button_vs_game``: the button named Left alone (the issue's "Left read as left"), each against the
    rate at which the judge reads the game's own held Left as left."""
    out = {}
    for side, key in (("left", "Left"), ("right", "Right")):
        rates = [v["following_direction"] for n, v in per.items() if v["intended"]["direction"] == side
                 and not v["intended"]["jump"]]
        game = (real or {}).get("real_following_direction", {}).get(key)
        if rates:
            out[f"{side}_following"] = round(float(np.mean(rates)), 3)
            if game is not None:
                out[f"{side}_following_vs_game"] = round(out[f"{side}_following"] / max(game, 1e-9), 3)
        if key in per and game is not None:  # the button named just Left (Right) alone
            out[f"{side}_button_vs_game"] = round(per[key]["following_direction"] / max(game, 1e-9), 3)
    jumps = [v["judge_jump"] for v in per.values() if v["intended"]["jump"]]
    if jumps:
        out["jump_buttons_read_as_jump_min"] = round(float(np.min(jumps)), 3)
    out["names_agreeing"] = int(sum(v["agrees"] for v in per.values()))
    out["buttons"] = len(per)
    return out


def _psnr_by_t(real_nthwc, gen_nthwc) -> list[float]:
    """Mean over clips of each step's PSNR (eval.metrics.psnr, capped at 100 dB)."""
    from genieworld.eval.metrics import psnr

    db = psnr(torch.from_numpy(real_nthwc).double(), torch.from_numpy(gen_nthwc).double(), data_range=255.0)
    return [round(float(x), 2) for x in db.mean(0)]


def play_quality(genie, store, n: int = 128, length: int = 16, long_length: int = 64, seed: int = 0,
                 judge=None, judge_info: dict | None = None, hold_prompts: int = 24, hold_steps: int = 8,
                 real_features=None, progress: bool = True, batch: int = 32, drivers=DRIVERS, gravity=None) -> dict:
    """Every measurement of the module docstring as one dict.  ``real_features``: (prompt set, reference
    set) I3D features from an earlier call on the same clips (the bench shares them across models).
    ``drivers``: the FVD drivers to measure (a subset of :data:`DRIVERS`; fewer is quicker).
    ``gravity``: play the player's presses through it, as ``genie play`` does (module docstring)."""
    unknown = sorted(set(drivers) - set(DRIVERS))
    if unknown:
        raise ValueError(f"unknown driver(s) {unknown}; known: {list(DRIVERS)}")
    from genieworld.eval.fvd import frechet_distance, i3d_features

    def say(msg):
        if progress:
            print(f"[play] {msg}", flush=True)

    clips = real_clips(store, n, length, seed)
    prompts, ref = clips[0], clips[1]
    t0 = time.time()
    if real_features is None:
        real_features = (i3d_features(prompts), i3d_features(ref))
    f_prompts, f_ref = real_features
    res = {"n": n, "length": length, "long_length": long_length, "seed": seed, "gravity": gravity is not None,
           "play_maskgit_steps": play_sampling(genie).maskgit_steps,
           "fvd_floor": round(frechet_distance(f_prompts, f_ref), 1)}
    say(f"floor FVD {res['fvd_floor']} ({time.time() - t0:.0f}s)")
    acts = driver_actions(genie, prompts, seed, drivers=tuple(drivers))
    for name in (d for d in DRIVERS if d in drivers):
        t1 = time.time()
        video = rollout(genie, prompts[:, 0], acts[name], seed=seed, batch=batch,
                        gravity=gravity if name == "player" else None)
        res[f"fvd_{name}"] = round(frechet_distance(i3d_features(video), f_ref), 1)
        res[f"excess_{name}"] = round(res[f"fvd_{name}"] - res["fvd_floor"], 1)
        if name == "own":
            res["psnr_own_by_t"] = _psnr_by_t(prompts[:, 1:], video[:, 1:])
        if name == "random":
            res["psnr_random_by_t"] = _psnr_by_t(prompts[:, 1:], video[:, 1:])
        say(f"{name}: FVD {res[f'fvd_{name}']} ({time.time() - t1:.0f}s)")
    if long_length:
        t1 = time.time()
        rng = np.random.default_rng(seed + 7)
        pl = player_actions(rng, n, long_length - 1, genie.num_actions)
        blocks = []
        from genieworld.sampling import World

        smp = play_sampling(genie)
        ends = sorted({*range(length + 1, long_length, length), long_length})  # 17, 33, 49, 64: frames 2-17 ... 49-64
        feats = {e: [] for e in ends}
        for s in range(0, n, batch):
            w = World(genie, torch.from_numpy(prompts[s:s + batch, :1]), seed=seed + 1 + s, sampling=smp,
                      max_history=length)
            presses = Presses(gravity, prompts[s:s + batch, 0])
            with torch.no_grad():
                for k in range(long_length - 1):
                    presses.seen(w.step_batch(torch.from_numpy(presses.played(pl[s:s + batch, k]))))
                    if w.num_frames in feats:
                        feats[w.num_frames].append(i3d_features(w.video()[:, -length:]))
        for e in ends:
            blocks.append(round(frechet_distance(np.concatenate(feats[e]), f_ref), 1))
        res["fvd_player_long_block_ends"] = ends
        res["fvd_player_long_blocks"] = blocks  # the 16 frames ending at each of ``ends`` (1-based)
        res["fvd_player_long_first"] = blocks[0]
        res["fvd_player_long_last"] = blocks[-1]
        res["drift_ratio"] = round(blocks[-1] / max(blocks[0], 1e-9), 3)
        say(f"drift: FVD by block {blocks} ({time.time() - t1:.0f}s)")
    if judge is not None:
        t1 = time.time()
        names = list(genie.action_names)  # "0", "1", ... when the model has no actions.json
        prng = np.random.default_rng(seed + 11)
        pick = prng.permutation(n)[:hold_prompts]
        per = action_following(genie, judge, prompts[pick, length // 2], names, hold_steps, seed)
        res["following"] = per
        res["judge"] = judge_info or {}
        res["following_summary"] = summarise_following(per, (judge_info or {}).get("heldout"))
        say(f"following: {res['following_summary']} ({time.time() - t1:.0f}s)")
    res["seconds"] = round(time.time() - t0, 1)
    return res
