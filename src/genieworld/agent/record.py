"""Expert episodes into an episode store (the 'unseen videos' of §3.3).

One game per training level (``start_level .. start_level + levels - 1``), its first episode, played
by the expert at the model's frame skip, in batches of ``batch`` levels at once.  The store is a
CoinRun store like ``genie data coinrun`` writes (64x64 frames, raw Procgen action ids, the
``coinrun`` manifest settings with ``policy_name: expert``), so the LAM's preprocessing and every
store tool apply.  The true actions stay in the store: the LAM policy never reads them; only the
oracle and the labelled set of the map do.  Resumable: finished batches are skipped.
"""

from __future__ import annotations

from pathlib import Path

from genieworld.data.coinrun import COINRUN_ACTIONS, COINRUN_FPS
from genieworld.data.store import EpisodeStore, EpisodeWriter, StoreError


def record_expert(actor, out, levels: int = 1000, start_level: int = 0, seed: int = 0, max_steps: int = 1000,
                  frame_skip: int = 4, mode: str = "hard", backgrounds: bool = False, batch: int = 50,
                  progress: bool = True, policy_desc: str = "expert") -> dict:
    from genieworld.agent.envs import rollout_levels

    out = Path(out)
    settings = {"env": "procgen:coinrun", "distribution_mode": mode, "policy": policy_desc, "policy_name": "expert",
                "hold": 1.0, "steps_per_level": int(max_steps // frame_skip), "seed": int(seed),
                "frame_skip": int(frame_skip), "backgrounds": bool(backgrounds),
                "level_ranges": [[int(start_level), int(start_level + levels)]]}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=levels, desc="record expert", unit="level", mininterval=5)
    solved = n_eps = 0
    with EpisodeWriter(out, resolution=(64, 64), fps=COINRUN_FPS / frame_skip, source="coinrun",
                       num_actions=COINRUN_ACTIONS) as w:
        old = w.manifest.get("extra", {}).get("coinrun")
        if old and any(old.get(k) != settings[k] for k in settings):
            raise StoreError(f"{out}: store was recorded with other settings; use another folder")
        w.set_extra(coinrun=settings)
        done = w.done_keys
        for b0 in range(start_level, start_level + levels, batch):
            lv = list(range(b0, min(b0 + batch, start_level + levels)))
            key = f"levels:{lv[0]}-{lv[-1]}"
            if key in done:
                if bar is not None:
                    bar.update(len(lv))
                continue
            r = rollout_levels(actor, lv, seed=seed, max_steps=max_steps, frame_skip=frame_skip, mode=mode,
                               backgrounds=backgrounds, record=True)
            for i, level in enumerate(lv):
                if len(r["frames"][i]) < 2:
                    continue
                w.add_episode(r["frames"][i], r["actions"][i],
                              {"level": level, "episode_in_level": 0, "mode": mode, "terminated": bool(r["ended"][i]),
                               "solved": bool(r["solved"][i])}, key=key)
                n_eps += 1
                solved += int(r["solved"][i])
            w.mark_done(key)
            if bar is not None:
                bar.update(len(lv))
                bar.set_postfix(frames=w.num_frames, refresh=False)
    if bar is not None:
        bar.close()
    store = EpisodeStore(out)
    solved_all = sum(bool(store.episode_meta(i).get("solved")) for i in range(store.num_episodes))
    return {"out": str(out), "episodes": store.num_episodes, "frames": store.num_frames,
            "solved_fraction": round(solved_all / max(1, store.num_episodes), 4)}
