"""``genie agent recipe``: the Figure-15 experiment, end to end, resumable.

Stages (each writes its output atomically and is skipped when that output exists)::

  expert     OUT/expert/expert.{safetensors,json}          PPO on training levels 0..9,999
  baselines  OUT/eval/{expert,random,random15,hold}.json   held-out levels, every seed
  record     OUT/expert_data/                              expert episodes on training levels (store)
  label      OUT/labels/                                   the frozen LAM's latent action per transition
  bc_lam     OUT/policy_lam/                               BC on latent labels
  bc_oracle  OUT/policy_oracle/                            BC on the true (effective) actions, same network
  curve      OUT/eval/lam_N*.json, oracle.json             the LAM policy through maps from N labels;
             OUT/eval/lam_argmax_N*.json, oracle_eps0.json  ablations: the other map mode, oracle without
                                                           random actions
  summary    OUT/curve.json, OUT/curve.png

The agent acts once per recorded frame and its action is held for the model's frame skip in
recording and evaluation alike (the LAM was trained at that frame skip).  For each eval seed s the
map is filled from its own N labelled transitions (seed s's draw from the expert store), so the
intervals cover the choice of the labelled set too.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from genieworld.config import FIELD_BOUNDS, Bound
from genieworld.errors import UserError
from genieworld.utils import read_json


@dataclass
class AgentRecipeConfig:
    model: str = "models/coinrun-cpu"
    expert_steps: int = 1_500_000
    expert_envs: int = 64
    train_levels: int = 10000
    record_levels: int = 5000
    bc_steps: int = 6000
    bc_batch: int = 32
    seq_len: int = 4
    eval_levels: int = 100
    eval_seeds: int = 5
    label_counts: list = field(default_factory=lambda: [10, 50, 200, 1000])
    oracle_epsilon: float = 0.1
    map_mode: str = "sample"
    seed: int = 0


FIELD_BOUNDS[AgentRecipeConfig] = {
    "expert_steps": Bound(1, 10**10), "expert_envs": Bound(1, 4096), "train_levels": Bound(1, 99999),
    "record_levels": Bound(1, 99999), "bc_steps": Bound(1, 10**8), "bc_batch": Bound(1, 65536),
    "seq_len": Bound(1, 64), "eval_levels": Bound(1, 100000), "eval_seeds": Bound(1, 1000),
    "oracle_epsilon": Bound(0.0, 1.0), "map_mode": Bound(choices=("sample", "argmax")),
    "seed": Bound(0, 2**31 - 1)}


def model_settings(model) -> dict:
    """frame_skip, mode and backgrounds the model's data was recorded with (its genie.json provenance)."""
    from genieworld.data.coinrun import valid_frame_skip
    from genieworld.genie import resolve_model_dir

    meta = read_json(resolve_model_dir(model) / "genie.json", UserError)
    prov = meta.get("provenance", {}) if isinstance(meta, dict) else {}
    cr = prov.get("coinrun", {}) if isinstance(prov.get("coinrun"), dict) else {}
    fs = valid_frame_skip(prov.get("frame_skip", 1))
    if fs is None:
        raise UserError(f"{model}: genie.json provenance has no valid frame_skip")
    mode = cr.get("distribution_mode", "hard")
    if mode not in ("easy", "hard"):  # the modes procgen's CoinRun has (the recorders only ever write these)
        raise UserError(f"{model}: provenance.coinrun.distribution_mode {str(mode)[:40]!r} is not easy or hard")
    return {"frame_skip": fs, "mode": mode, "backgrounds": bool(cr.get("backgrounds", True))}


def load_bc_episodes(store_path, labels=None, val_fraction: float = 0.05):
    """(train, val) :class:`BCData` from a store: targets are the LAM labels (per-episode list) or, without
    them, the true effective actions."""
    from genieworld.agent.policy import BCData
    from genieworld.data.coinrun import effective_action
    from genieworld.data.store import EpisodeStore

    store = EpisodeStore(store_path)
    eps = []
    for e in range(store.num_episodes):
        f = store.read_frames(e)
        if labels is not None:
            a = labels[e]
        else:
            acts = store.read_actions(e)
            if acts is None:
                raise UserError(f"{store_path}: episode {e} has no true actions (needed for the oracle)")
            a = effective_action(acts)
        if len(a) != len(f) - 1:
            raise UserError(f"{store_path}: episode {e}: {len(a)} labels for {len(f)} frames")
        eps.append((f, a))
    n_val = max(1, int(round(len(eps) * val_fraction))) if len(eps) > 1 else 0
    train = BCData.from_episodes(eps[:len(eps) - n_val])
    val = BCData.from_episodes(eps[len(eps) - n_val:]) if n_val else None
    return train, val


def transitions(store_path, labels) -> tuple[np.ndarray, np.ndarray]:
    """All (latent, real effective action) pairs of a store, episode by episode."""
    from genieworld.data.coinrun import effective_action
    from genieworld.data.store import EpisodeStore

    store = EpisodeStore(store_path)
    reals = [effective_action(store.read_actions(e)) for e in range(store.num_episodes)]
    return np.concatenate(labels), np.concatenate(reals)


def train_policy_stage(store, out, labels, num_actions: int, cfg: AgentRecipeConfig, target: str,
                       progress: bool = True) -> dict:
    from genieworld.agent.policy import AgentPolicyConfig, save_policy, train_bc
    from genieworld.data.store import EpisodeStore, store_digest

    t0 = time.time()
    train, val = load_bc_episodes(store, labels)
    pcfg = AgentPolicyConfig(num_actions=num_actions, seq_len=cfg.seq_len)
    policy, metrics = train_bc(train, pcfg, steps=cfg.bc_steps, batch_size=cfg.bc_batch, seed=cfg.seed, val=val,
                               log_dir=Path(out) / "tb", progress=progress)
    info = {"target": target, "store": Path(store).name, "store_sha256": store_digest(EpisodeStore(store)),
            "steps": cfg.bc_steps, "batch_size": cfg.bc_batch, "train_decisions": int(len(train.decisions)),
            "metrics": metrics, "train_seconds": round(time.time() - t0, 1)}
    save_policy(policy, out, info)
    return info


def _eval_to(path: Path, fn, **info) -> dict:
    from genieworld.data.store import atomic_write_json

    if path.is_file():
        return read_json(path)
    res = {**info, **fn()}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path.parent, path.name, res)
    print(f"[agent recipe] {path.stem}: solved {res['solved']:.3f} (95% CI {res['ci95'][0]:.3f}-{res['ci95'][1]:.3f}, "
          f"{res['games']} games, {res['seconds']:.0f} s)", flush=True)
    return res


def _run_cli(args: list[str]) -> None:
    import subprocess
    import sys

    print("[agent recipe] genie " + " ".join(args), flush=True)
    rc = subprocess.call([sys.executable, "-m", "genieworld.cli", *args])
    if rc != 0:
        raise UserError(f"stage failed: genie {' '.join(args)} (exit {rc}); fix the cause and run the recipe again")


def run_recipe(out, cfg: AgentRecipeConfig, progress: bool = True, threads: int = 1) -> dict:
    from genieworld.agent.envs import HoldActor, RandomActor
    from genieworld.agent.evaluate import evaluate_actor
    from genieworld.agent.expert import ExpertActor, load_expert
    from genieworld.agent.label import label_store, load_labels
    from genieworld.agent.mapping import build_map
    from genieworld.agent.policy import PolicyActor, load_policy
    from genieworld.agent.record import record_expert
    from genieworld.data.coinrun import EFFECTIVE_ACTIONS
    from genieworld.data.store import atomic_write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ms = model_settings(cfg.model)
    env_kw = {"frame_skip": ms["frame_skip"], "mode": ms["mode"], "backgrounds": ms["backgrounds"]}
    state_path = out / "recipe.json"
    state = read_json(state_path) if state_path.is_file() else {"config": asdict(cfg), "seconds": {}}
    if state.get("config") != asdict(cfg):
        raise UserError(f"{out} holds an agent recipe with other settings; use another --out")
    seeds = list(range(cfg.seed, cfg.seed + cfg.eval_seeds))
    ev = {"levels": cfg.eval_levels, "seeds": seeds, "progress": progress, **env_kw}

    def timed(name, fn):
        t0 = time.time()
        print(f"[agent recipe] {name} ...", flush=True)
        r = fn()
        state["seconds"][name] = round(state["seconds"].get(name, 0.0) + time.time() - t0, 1)
        atomic_write_json(out, "recipe.json", state)
        return r

    if not (out / "expert" / "expert.json").is_file():
        # in its own process: SB3 and its 64-game Procgen env stay out of this one (a run that trained PPO
        # in-process once hung in a later evaluation)
        timed("expert", lambda: _run_cli(["agent", "expert", "--out", str(out / "expert"), "--steps", str(cfg.expert_steps),
                                          "--envs", str(cfg.expert_envs), "--train-levels", str(cfg.train_levels),
                                          "--seed", str(cfg.seed), "--model", str(cfg.model), "--threads", str(threads),
                                          *([] if progress else ["--no-progress"])]))
    expert_policy, _ = load_expert(out / "expert")
    expert = ExpertActor(expert_policy)
    right_jump = EFFECTIVE_ACTIONS.index(8)
    timed("baselines", lambda: [
        _eval_to(out / "eval" / "expert.json", lambda: evaluate_actor(expert, desc="eval expert", **ev), policy="expert (PPO)"),
        _eval_to(out / "eval" / "random.json", lambda: evaluate_actor(RandomActor(), desc="eval random", **ev),
                 policy="uniform random over the 6 effective actions"),
        _eval_to(out / "eval" / "random15.json", lambda: evaluate_actor(RandomActor(raw15=True), desc="eval random15", **ev),
                 policy="uniform random over the 15 Procgen buttons"),
        _eval_to(out / "eval" / "hold.json", lambda: evaluate_actor(HoldActor(right_jump), desc="eval hold", **ev),
                 policy="always RIGHT+UP (observation-blind)")])
    data = out / "expert_data"
    if not state.get("record_done"):
        timed("record", lambda: record_expert(expert, data, levels=cfg.record_levels, start_level=0, seed=cfg.seed,
                                              progress=progress, **env_kw))
        state["record_done"] = True
        atomic_write_json(out, "recipe.json", state)
    if not (out / "labels" / "labels.json").is_file():
        timed("label", lambda: label_store(cfg.model, data, out / "labels", progress=progress))
    labels, linfo = load_labels(out / "labels", data)
    if not (out / "policy_lam" / "policy.json").is_file():
        timed("bc_lam", lambda: train_policy_stage(data, out / "policy_lam", labels, linfo["num_latent"], cfg,
                                                   "latent actions of the LAM", progress))
    if not (out / "policy_oracle" / "policy.json").is_file():
        timed("bc_oracle", lambda: train_policy_stage(data, out / "policy_oracle", None, len(EFFECTIVE_ACTIONS), cfg,
                                                      "true effective actions", progress))
    lam_pol, lam_meta = load_policy(out / "policy_lam")
    ora_pol, ora_meta = load_policy(out / "policy_oracle")
    lat, real = transitions(data, labels)

    def curve():
        res = {"oracle": _eval_to(out / "eval" / "oracle.json",
                                  lambda: evaluate_actor(PolicyActor(ora_pol, epsilon=cfg.oracle_epsilon), desc="eval oracle", **ev),
                                  policy=f"oracle BC, {cfg.oracle_epsilon:g} random actions")}
        for n in cfg.label_counts:
            def make(s, n=n):
                return PolicyActor(lam_pol, to_env=build_map(lat, real, linfo["num_latent"], len(EFFECTIVE_ACTIONS), n,
                                                             seed=s, mode=cfg.map_mode))
            res[n] = _eval_to(out / "eval" / f"lam_N{n}.json",
                              lambda: evaluate_actor(None, actor_for_seed=make, desc=f"eval lam N={n}", **ev),
                              policy=f"LAM policy, map from {n} labelled transitions ({cfg.map_mode})")
        # the ablations: the other map mode, and the oracle without random actions
        other = "argmax" if cfg.map_mode == "sample" else "sample"
        res["oracle_eps0"] = _eval_to(out / "eval" / "oracle_eps0.json",
                                      lambda: evaluate_actor(PolicyActor(ora_pol), desc="eval oracle eps 0", **ev),
                                      policy="oracle BC, no random actions")
        res["other"] = {}
        for n in cfg.label_counts:
            def make(s, n=n):
                return PolicyActor(lam_pol, to_env=build_map(lat, real, linfo["num_latent"], len(EFFECTIVE_ACTIONS), n,
                                                             seed=s, mode=other))
            res["other"][n] = _eval_to(out / "eval" / f"lam_{other}_N{n}.json",
                                       lambda: evaluate_actor(None, actor_for_seed=make, desc=f"eval lam {other} N={n}", **ev),
                                       policy=f"LAM policy, map from {n} labelled transitions ({other})")
        return res

    res = timed("curve", curve)
    base = {k: read_json(out / "eval" / f"{k}.json") for k in ("expert", "random", "random15", "hold")}
    full = build_map(lat, real, linfo["num_latent"], len(EFFECTIVE_ACTIONS), len(lat), seed=0)
    summary = {
        "settings": {**asdict(cfg), **env_kw},
        "expert": base["expert"], "random": base["random"], "random15": base["random15"], "hold_right_jump": base["hold"],
        "oracle_bc": res["oracle"], "lam": {str(n): res[n] for n in cfg.label_counts},
        "oracle_bc_no_epsilon": res["oracle_eps0"],
        "lam_other_map_mode": {"mode": "argmax" if cfg.map_mode == "sample" else "sample",
                               **{str(n): res["other"][n] for n in cfg.label_counts}},
        "bc_accuracy": {"lam": lam_meta["metrics"], "oracle": ora_meta["metrics"]},
        "latent_vs_real_counts_all_transitions": full.counts.tolist(),
        "expert_data": {"episodes": len(labels), "transitions": int(len(lat))},
        "seconds": state["seconds"],
    }
    best_oracle = max(res["oracle"]["solved"], res["oracle_eps0"]["solved"], 1e-9)
    for n in cfg.label_counts:
        for r in (summary["lam"][str(n)], summary["lam_other_map_mode"][str(n)]):
            r["ratio_to_oracle"] = round(r["solved"] / max(res["oracle"]["solved"], 1e-9), 4)
            r["ratio_to_best_oracle"] = round(r["solved"] / best_oracle, 4)
    summary["nmi_latent_real_expert_data"] = round(_nmi(full.counts), 4)
    # purity: the share of transitions whose real action is their latent's most frequent one (what an
    # argmax map built from every transition would get right)
    summary["purity_latent_real_expert_data"] = round(float(full.counts.max(1).sum() / max(1, full.counts.sum())), 4)
    summary["real_action_frequencies_expert_data"] = np.round(full.counts.sum(0) / max(1, full.counts.sum()), 4).tolist()
    summary = _without(summary, "solved_by_level")
    atomic_write_json(out, "curve.json", summary)
    plot_curve(summary, out / "curve.png")
    print(f"[agent recipe] done: {out / 'curve.json'}, {out / 'curve.png'}", flush=True)
    return summary


def _without(obj, key: str):
    if isinstance(obj, dict):
        return {k: _without(v, key) for k, v in obj.items() if k != key}
    return obj


def _nmi(counts) -> float:
    c = np.asarray(counts, dtype=np.float64)
    n = c.sum()
    if n == 0:
        return 0.0
    p = c / n
    pa, pu = p.sum(1), p.sum(0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(pa, pu)[nz])).sum())
    ha = -float((pa[pa > 0] * np.log(pa[pa > 0])).sum())
    hu = -float((pu[pu > 0] * np.log(pu[pu > 0])).sum())
    return 0.0 if ha == 0 or hu == 0 else 2 * mi / (ha + hu)


def plot_curve(summary: dict, path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ns = sorted(int(n) for n in summary["lam"])
    fig = Figure(figsize=(6.4, 4.4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    y = [summary["lam"][str(n)]["solved"] for n in ns]
    lo = [summary["lam"][str(n)]["ci95"][0] for n in ns]
    hi = [summary["lam"][str(n)]["ci95"][1] for n in ns]
    ax.errorbar(ns, y, yerr=[np.subtract(y, lo), np.subtract(hi, y)], fmt="o-", color="C0", capsize=3,
                label=f"LAM policy + map D ({summary['settings']['map_mode']})")
    alt = summary.get("lam_other_map_mode")
    if alt:
        ya = [alt[str(n)]["solved"] for n in ns]
        la = [alt[str(n)]["ci95"][0] for n in ns]
        ha = [alt[str(n)]["ci95"][1] for n in ns]
        ax.errorbar([n * 1.06 for n in ns], ya, yerr=[np.subtract(ya, la), np.subtract(ha, ya)], fmt="s-", color="C4",
                    capsize=3, label=f"LAM policy + map D ({alt['mode']})")
    ax.fill_between(ns, lo, hi, color="C0", alpha=0.2)
    eps = summary["settings"]["oracle_epsilon"]
    for key, color, name in (("oracle_bc", "C2", f"oracle BC ({eps:g} random actions)"),
                             ("oracle_bc_no_epsilon", "C8", "oracle BC (no random actions)"),
                             ("expert", "C3", "expert (PPO)"),
                             ("hold_right_jump", "C1", "always Right+Jump (blind)"),
                             ("random", "C7", "random (6 actions)")):
        r = summary.get(key)
        if r is None:
            continue
        ax.axhline(r["solved"], color=color, ls="--", label=name)
        ax.axhspan(r["ci95"][0], r["ci95"][1], color=color, alpha=0.1)
    ax.set_xscale("log")
    ax.set_xticks(ns)
    ax.set_xticklabels([str(n) for n in ns])
    ax.minorticks_off()
    ax.set_xlabel("labelled transitions for the map")
    ax.set_ylabel("held-out levels solved")
    g = summary["lam"][str(ns[0])]
    ax.set_title(f"CoinRun levels {g['levels'][0]}-{g['levels'][1]}, {len(g['seeds'])} seeds", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(str(path))
