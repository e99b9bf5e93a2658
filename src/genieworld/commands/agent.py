"""``genie agent expert|record|label|train|map|eval|recipe``: agents from latent actions (paper §3.3)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from genieworld.errors import UserError

AGENT_HELP = """\
Agents from latent actions (Genie paper §3.3, Figure 15): imitate unseen videos through the
frozen LAM, then map the latent actions to real controls with a few labelled transitions.

  1. genie agent expert    train an expert CoinRun policy (PPO, stable-baselines3)
  2. genie agent record    record its episodes on training levels into an episode store
  3. genie agent label     the LAM's latent action for every recorded transition
  4. genie agent train     behavioural cloning: on latent labels, or (--true-actions) the oracle
  5. genie agent map       the latent -> real dictionary D from N labelled transitions
  6. genie agent eval      roll a policy in real CoinRun on held-out levels: fraction solved, 95% CI
     genie agent recipe    all of it, resumable, and the Figure-15 curve

Frame skip, mode (hard) and backgrounds follow the world model's data (MODEL/genie.json): the agent
acts once per recorded frame and its action is held for frame_skip game steps, in recording and
evaluation alike. Actions are CoinRun's 6 effective ones (Left, Left+Jump, Stay, Jump, Right,
Right+Jump). Every command runs on --threads compute threads (default 1).

example:
  genie agent recipe --out runs/agent-coinrun --model models/coinrun-cpu
"""

EXPERT_HELP = """\
Train the expert: stable-baselines3 PPO (Nature-CNN actor-critic) on CoinRun training levels
0..--train-levels-1, acting at the model's frame skip. Saved as OUT/expert.safetensors + expert.json
(never SB3's pickled zip); snapshots every 100k steps, and a rerun resumes from the latest one.

example:
  genie agent expert --out runs/agent/expert --steps 1500000        # ~35 min on one core
"""

RECORD_HELP = """\
Record the expert's first episode on each of --levels training levels (from --start-level) into an
episode store (frames + the true actions, which only the oracle and the map's labelled set use).
Resumable.

example:
  genie agent record --expert runs/agent/expert --out runs/agent/expert_data --levels 1000
"""

LABEL_HELP = """\
Label every transition of a store with the frozen LAM's latent action (OUT/labels.safetensors +
labels.json). The store's true actions are not read.

example:
  genie agent label --model models/coinrun-cpu --data runs/agent/expert_data --out runs/agent/labels
"""

TRAIN_HELP = """\
Behavioural cloning of a policy over the last --seq-len frames plus the previous actions (additive
embedding), by cross-entropy: on the LAM's latent labels (--labels DIR), or on the store's true
effective actions (--true-actions: the oracle, same network). Logs to OUT/tb.

examples:
  genie agent train --data runs/agent/expert_data --labels runs/agent/labels --out runs/agent/policy_lam
  genie agent train --data runs/agent/expert_data --true-actions --out runs/agent/policy_oracle
"""

MAP_HELP = """\
Fill the latent -> real action dictionary D from N labelled transitions (x_t, u_t, x_{t+1}) of a
store: the first N of a seeded shuffle, their latent from --labels and their true action u_t. At
test time u ~ D[a] (--mode sample, the default, as the paper) or the most frequent u (argmax).
Latents never seen fall back to the labelled set's overall action frequencies.

example:
  genie agent map --data runs/agent/expert_data --labels runs/agent/labels -n 200 --out runs/agent/map200.json
"""

EVAL_HELP = """\
Roll a policy in real Procgen CoinRun on held-out levels (default 100000..100099, hard), one game per
level and seed, and report the fraction of games whose coin was collected within --max-steps game
steps, with a 95% Wilson interval. Deterministic for a seed. The policy is one of:
  --policy DIR --map MAP.json   a LAM policy; its latent actions go through D
  --policy DIR                  an oracle (trained on true actions); --epsilon adds random actions
  --expert DIR                  the PPO expert
  --random / --random15 / --hold   uniform over the 6 effective actions / over the 15 buttons /
                                   always Right+Jump (observation-blind)

examples:
  genie agent eval --policy runs/agent/policy_lam --map runs/agent/map200.json --seeds 5
  genie agent eval --policy runs/agent/policy_oracle --epsilon 0.1
  genie agent eval --random
"""

RECIPE_HELP = """\
The Figure-15 experiment, end to end and resumable (run it again after an interruption): expert
(PPO), baselines on held-out levels, expert recordings, LAM labels, BC on latent labels and the
oracle BC on true actions, then the LAM policy through maps from each of --label-counts labelled
transitions (one labelled set per eval seed). Writes OUT/curve.json and OUT/curve.png.
About 1.5 h on one core with the defaults.

example:
  genie agent recipe --out runs/agent-coinrun --model models/coinrun-cpu
"""


def _common(p, model: bool = True) -> None:
    p.add_argument("--threads", type=int, default=1, help="torch compute threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    if model:
        p.add_argument("--model", default="models/coinrun-cpu",
                       help="world model whose frame skip / mode / backgrounds to follow (default models/coinrun-cpu)")


def register(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("agent", help="agents from latent actions (BC through the LAM, paper §3.3)",
                       description=AGENT_HELP, formatter_class=fmt)
    asub = p.add_subparsers(dest="agent_command", metavar="SUBCOMMAND")

    e = asub.add_parser("expert", help="train the PPO expert", description=EXPERT_HELP, formatter_class=fmt)
    e.add_argument("--out", required=True)
    e.add_argument("--steps", type=int, default=1_500_000, help="agent decisions (default 1.5M)")
    e.add_argument("--envs", type=int, default=64, help="parallel games (default 64)")
    e.add_argument("--train-levels", type=int, default=10000, help="levels 0..N-1 (default 10000)")
    e.add_argument("--seed", type=int, default=0)
    _common(e)
    e.set_defaults(func=run_expert)

    r = asub.add_parser("record", help="record expert episodes into a store", description=RECORD_HELP, formatter_class=fmt)
    r.add_argument("--expert", required=True, metavar="DIR")
    r.add_argument("--out", required=True, metavar="STORE")
    r.add_argument("--levels", type=int, default=1000)
    r.add_argument("--start-level", type=int, default=0)
    r.add_argument("--seed", type=int, default=0)
    _common(r)
    r.set_defaults(func=run_record)

    lb = asub.add_parser("label", help="latent actions of a store from the LAM", description=LABEL_HELP, formatter_class=fmt)
    lb.add_argument("--data", required=True, metavar="STORE")
    lb.add_argument("--out", required=True, metavar="DIR")
    _common(lb)
    lb.set_defaults(func=run_label)

    t = asub.add_parser("train", help="behavioural cloning (latent labels or true actions)", description=TRAIN_HELP,
                        formatter_class=fmt)
    t.add_argument("--data", required=True, metavar="STORE")
    g = t.add_mutually_exclusive_group(required=True)
    g.add_argument("--labels", metavar="DIR", help="latent labels from `genie agent label`")
    g.add_argument("--true-actions", action="store_true", help="the oracle: the store's true effective actions")
    t.add_argument("--out", required=True, metavar="DIR")
    t.add_argument("--steps", type=int, default=4000)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--seq-len", type=int, default=4)
    t.add_argument("--seed", type=int, default=0)
    _common(t, model=False)
    t.set_defaults(func=run_train)

    m = asub.add_parser("map", help="latent -> real dictionary from N labels", description=MAP_HELP, formatter_class=fmt)
    m.add_argument("--data", required=True, metavar="STORE")
    m.add_argument("--labels", required=True, metavar="DIR")
    m.add_argument("-n", "--num-labels", type=int, required=True, help="labelled transitions to use")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--mode", choices=("sample", "argmax"), default="sample")
    m.add_argument("--out", required=True, metavar="MAP.json")
    m.set_defaults(func=run_map)

    v = asub.add_parser("eval", help="fraction of held-out levels solved", description=EVAL_HELP, formatter_class=fmt)
    g = v.add_mutually_exclusive_group(required=True)
    g.add_argument("--policy", metavar="DIR")
    g.add_argument("--expert", metavar="DIR")
    g.add_argument("--random", action="store_true")
    g.add_argument("--random15", action="store_true")
    g.add_argument("--hold", action="store_true")
    v.add_argument("--map", metavar="MAP.json", help="for a LAM policy")
    v.add_argument("--epsilon", type=float, default=0.0, help="chance of a random action (oracle; default 0)")
    v.add_argument("--levels", type=int, default=100)
    v.add_argument("--start-level", type=int, default=100000)
    v.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    v.add_argument("--max-steps", type=int, default=1000, help="game steps per level (default 1000)")
    v.add_argument("--out", metavar="JSON", help="also write the result here")
    _common(v)
    v.set_defaults(func=run_eval)

    rc = asub.add_parser("recipe", help="the whole Figure-15 experiment, resumable", description=RECIPE_HELP,
                         formatter_class=fmt)
    rc.add_argument("--out", required=True)
    rc.add_argument("--expert-steps", type=int, default=1_500_000)
    rc.add_argument("--record-levels", type=int, default=5000)
    rc.add_argument("--bc-steps", type=int, default=6000)
    rc.add_argument("--eval-seeds", type=int, default=5)
    rc.add_argument("--eval-levels", type=int, default=100)
    rc.add_argument("--label-counts", default="10,50,200,1000", help="comma-separated (default 10,50,200,1000)")
    rc.add_argument("--map-mode", choices=("sample", "argmax"), default="sample")
    _common(rc)
    rc.set_defaults(func=run_recipe)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _setup(args) -> None:
    import torch

    if args.threads < 1:
        raise UserError("--threads must be >= 1")
    torch.set_num_threads(args.threads)


def _positive(**kw) -> None:
    for name, v in kw.items():
        if v < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {v}")


def _env_kw(model) -> dict:
    from genieworld.agent.recipe import model_settings

    return model_settings(model)


def run_expert(args) -> int:
    from genieworld.agent.expert import train_expert

    _setup(args)
    _positive(steps=args.steps, envs=args.envs, train_levels=args.train_levels)
    cfg = train_expert(args.out, total_steps=args.steps, num_envs=args.envs, train_levels=args.train_levels,
                       seed=args.seed, progress=not args.no_progress, **_env_kw(args.model))
    print(json.dumps({"expert": args.out, "steps": cfg["total_steps"]}))
    return 0


def run_record(args) -> int:
    from genieworld.agent.expert import ExpertActor, load_expert
    from genieworld.agent.record import record_expert

    _setup(args)
    _positive(levels=args.levels)
    if args.start_level < 0:
        raise UserError("--start-level must be >= 0")
    policy, _ = load_expert(args.expert)
    print(json.dumps(record_expert(ExpertActor(policy), args.out, levels=args.levels, start_level=args.start_level,
                                   seed=args.seed, progress=not args.no_progress, **_env_kw(args.model))))
    return 0


def run_label(args) -> int:
    from genieworld.agent.label import label_store

    _setup(args)
    info = label_store(args.model, args.data, args.out, progress=not args.no_progress)
    print(json.dumps({k: info[k] for k in ("transitions", "episodes", "num_latent", "latent_counts")}))
    return 0


def run_train(args) -> int:
    from genieworld.agent.label import load_labels
    from genieworld.agent.recipe import AgentRecipeConfig, train_policy_stage
    from genieworld.data.coinrun import EFFECTIVE_ACTIONS

    _setup(args)
    _positive(steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len)
    cfg = AgentRecipeConfig(bc_steps=args.steps, bc_batch=args.batch_size, seq_len=args.seq_len, seed=args.seed)
    if args.labels:
        labels, info = load_labels(args.labels, args.data)
        res = train_policy_stage(args.data, args.out, labels, info["num_latent"], cfg, "latent actions of the LAM",
                                 not args.no_progress)
    else:
        res = train_policy_stage(args.data, args.out, None, len(EFFECTIVE_ACTIONS), cfg, "true effective actions",
                                 not args.no_progress)
    print(json.dumps({"policy": args.out, **res["metrics"], "train_seconds": res["train_seconds"]}))
    return 0


def run_map(args) -> int:
    from genieworld.agent.label import load_labels
    from genieworld.agent.mapping import build_map, save_map
    from genieworld.agent.recipe import transitions
    from genieworld.data.coinrun import EFFECTIVE_ACTIONS, EFFECTIVE_NAMES

    labels, info = load_labels(args.labels, args.data)
    lat, real = transitions(args.data, labels)
    m = build_map(lat, real, info["num_latent"], len(EFFECTIVE_ACTIONS), args.num_labels, seed=args.seed, mode=args.mode)
    save_map(m, args.out, seed=args.seed, store=Path(args.data).name, real_actions=list(EFFECTIVE_NAMES))
    for a in range(m.num_latent):
        row = ", ".join(f"{EFFECTIVE_NAMES[u]} {m.probs[a, u]:.2f}" for u in range(m.counts.shape[1]) if m.probs[a, u] > 0)
        print(f"  latent {a}: {int(m.counts[a].sum())} labels -> {row}", file=sys.stderr)
    print(json.dumps({"map": args.out, "labelled_transitions": int(m.counts.sum()), "argmax": m.best.tolist()}))
    return 0


def run_eval(args) -> int:
    from genieworld.agent.envs import HoldActor, RandomActor
    from genieworld.agent.evaluate import evaluate_actor
    from genieworld.data.coinrun import EFFECTIVE_ACTIONS

    _setup(args)
    _positive(levels=args.levels, seeds=args.seeds, max_steps=args.max_steps)
    if not 0.0 <= args.epsilon <= 1.0:
        raise UserError("--epsilon must be in [0, 1]")
    if args.map and not args.policy:
        raise UserError("--map goes with --policy (a LAM policy)")
    if args.policy:
        from genieworld.agent.mapping import load_map
        from genieworld.agent.policy import PolicyActor, load_policy

        policy, meta = load_policy(args.policy)
        to_env = None
        if args.map:
            to_env = load_map(args.map)
            if to_env.num_latent != policy.cfg.num_actions:
                raise UserError(f"{args.map}: maps {to_env.num_latent} latent actions, the policy has {policy.cfg.num_actions}")
        elif policy.cfg.num_actions != len(EFFECTIVE_ACTIONS):
            raise UserError(f"{args.policy}: a policy over {policy.cfg.num_actions} latent actions needs --map")
        actor, name = PolicyActor(policy, to_env, args.epsilon), f"policy {args.policy}"
    elif args.expert:
        from genieworld.agent.expert import ExpertActor, load_expert

        actor, name = ExpertActor(load_expert(args.expert)[0]), f"expert {args.expert}"
    elif args.random:
        actor, name = RandomActor(), "random (6 effective actions)"
    elif args.random15:
        actor, name = RandomActor(raw15=True), "random (15 buttons)"
    else:
        actor, name = HoldActor(EFFECTIVE_ACTIONS.index(8)), "hold Right+Jump"
    res = evaluate_actor(actor, levels=args.levels, start_level=args.start_level, seeds=list(range(args.seeds)),
                         max_steps=args.max_steps, progress=not args.no_progress, **_env_kw(args.model))
    res = {"policy": name, **{k: v for k, v in res.items() if k != "solved_by_level"}}
    if args.out:
        from genieworld.data.store import atomic_write_json

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(args.out).parent, Path(args.out).name, res)
    print(json.dumps(res))
    return 0


def run_recipe(args) -> int:
    from genieworld.agent.recipe import AgentRecipeConfig
    from genieworld.agent.recipe import run_recipe as run
    from genieworld.config import validate_config

    _setup(args)
    try:
        counts = sorted({int(x) for x in args.label_counts.split(",") if x.strip()})
    except ValueError:
        raise UserError(f"--label-counts must be comma-separated integers, got {args.label_counts!r}") from None
    if not counts or counts[0] < 1:
        raise UserError("--label-counts needs positive integers")
    cfg = AgentRecipeConfig(model=args.model, expert_steps=args.expert_steps, record_levels=args.record_levels,
                            bc_steps=args.bc_steps, eval_seeds=args.eval_seeds, eval_levels=args.eval_levels,
                            label_counts=counts, map_mode=args.map_mode)
    validate_config(cfg, "agent recipe")
    summary = run(args.out, cfg, progress=not args.no_progress, threads=args.threads)
    print(json.dumps({"curve": str(Path(args.out) / "curve.json"), "oracle": summary["oracle_bc"]["solved"],
                      "lam": {n: v["solved"] for n, v in summary["lam"].items()}}))
    return 0
