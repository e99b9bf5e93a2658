"""Agents from latent actions (genieworld.agent, paper §3.3): the map D, behavioural cloning through
latent labels on a synthetic task, deterministic evaluation in real CoinRun, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fixtures_models import one_torch_thread, untrained_model_dir  # noqa: F401

from genieworld.agent.mapping import LatentMap, build_map, count_table, labelled_subset
from genieworld.agent.policy import AgentPolicyConfig, BCData, PolicyActor, train_bc

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PERM = np.array([2, 0, 3, 1])  # latent = PERM[real]


def _noisy_latents(reals, rng, noise=0.2, num_latent=4):
    lat = PERM[reals].copy()
    flip = rng.random(len(reals)) < noise
    lat[flip] = rng.integers(0, num_latent, int(flip.sum()))
    return lat


# ------------------------------------------------------------------------------------------- the map
def test_map_picks_the_real_action_that_cooccurs_most_with_each_latent():
    rng = np.random.default_rng(0)
    reals = rng.integers(0, 4, 2000)
    lat = _noisy_latents(reals, rng)
    m = build_map(lat, reals, 4, 4, n=200, seed=0, mode="argmax")
    inv = np.argsort(PERM)  # real action of each latent
    assert m.best.tolist() == inv.tolist()
    idx = labelled_subset(len(lat), 200, 0)
    counts = count_table(lat[idx], reals[idx], 4, 4)
    assert (m.counts == counts).all() and m.counts.sum() == 200
    for a in range(4):  # the chosen action is the row's maximum of the co-occurrence table
        assert m.counts[a, m.best[a]] == m.counts[a].max()
    gen = torch.Generator().manual_seed(0)
    assert (m(np.arange(4), gen) == inv).all()  # argmax mode is deterministic


def test_map_samples_in_proportion_and_falls_back_for_unseen_latents():
    counts = np.array([[0, 30, 10], [0, 0, 0], [5, 0, 0]])  # latent 1 never labelled
    m = LatentMap(counts, mode="sample")
    gen = torch.Generator().manual_seed(0)
    draws = m(np.zeros(4000, dtype=np.int64), gen)
    assert set(np.unique(draws)) <= {1, 2}
    assert abs((draws == 1).mean() - 0.75) < 0.03  # u ~ D[a]: 30 of 40
    assert (m(np.full(50, 2), gen) == 0).all()
    # the unseen latent follows the labelled set's overall frequencies (5, 30, 10 of 45)
    assert np.allclose(m.probs[1], np.array([5, 30, 10]) / 45)
    back = LatentMap.from_json(json.loads(json.dumps(m.to_json(mode="sample"))))
    assert (back.counts == counts).all() and back.mode == "sample"


def test_labelled_subsets_are_nested_and_bounded():
    a, b = labelled_subset(100, 10, 3), labelled_subset(100, 50, 3)
    assert (b[:10] == a).all() and len(set(b.tolist())) == 50
    assert not np.array_equal(labelled_subset(100, 10, 4), a)
    from genieworld.errors import UserError

    with pytest.raises(UserError):
        labelled_subset(5, 6, 0)


# --------------------------------------------------------------- BC through latents on a synthetic task
SIZE, CELL, GRID = 40, 8, 5
MOVES = {0: (0, -1), 1: (0, 1), 2: (-1, 0), 3: (1, 0)}  # real actions: left, right, up, down


class SquareToGoal:
    """A white square must reach a red goal on a 5x5 grid within ``horizon`` moves (frames 40x40)."""

    def __init__(self, n, rng, horizon=10):
        self.pos = rng.integers(0, GRID, (n, 2))
        self.goal = rng.integers(0, GRID, (n, 2))
        same = (self.pos == self.goal).all(1)
        self.goal[same, 0] = (self.goal[same, 0] + 2) % GRID
        self.done = np.zeros(n, dtype=bool)
        self.t, self.horizon = 0, horizon

    def frames(self):
        f = np.zeros((len(self.pos), SIZE, SIZE, 3), dtype=np.uint8)
        for i, ((y, x), (gy, gx)) in enumerate(zip(self.pos, self.goal)):
            f[i, gy * CELL:(gy + 1) * CELL, gx * CELL:(gx + 1) * CELL, 0] = 255
            f[i, y * CELL + 2:(y + 1) * CELL - 2, x * CELL + 2:(x + 1) * CELL - 2] = 255
        return f

    def expert(self):
        d = self.goal - self.pos
        return np.where(d[:, 1] < 0, 0, np.where(d[:, 1] > 0, 1, np.where(d[:, 0] < 0, 2, 3)))

    def step(self, actions):
        for i, a in enumerate(actions):
            if not self.done[i]:
                dy, dx = MOVES[int(a)]
                self.pos[i] = np.clip(self.pos[i] + (dy, dx), 0, GRID - 1)
                self.done[i] = (self.pos[i] == self.goal[i]).all()
        self.t += 1
        return self.t >= self.horizon or self.done.all()


def _play(actor, n, seed):
    env = SquareToGoal(n, np.random.default_rng(seed))
    gen = torch.Generator().manual_seed(seed)
    actor.reset(n)
    while not env.step(actor.act(env.frames(), gen)):
        pass
    return env.done.mean()


class _Random:
    def reset(self, n):
        pass

    def act(self, frames, gen):
        return torch.randint(0, 4, (len(frames),), generator=gen).numpy()


def test_bc_on_latent_labels_with_a_small_map_beats_random():
    rng = np.random.default_rng(1)
    episodes, reals = [], []
    for _ in range(12):  # expert videos, 16 episodes each
        env = SquareToGoal(16, rng, horizon=8)
        fr, ac = [env.frames()], []
        while True:
            a = env.expert()
            ac.append(a)
            over = env.step(a)
            fr.append(env.frames())
            if over:
                break
        fr, ac = np.stack(fr, 1), np.stack(ac, 1)
        for i in range(16):
            episodes.append((fr[i], ac[i]))
            reals.append(ac[i])
    latent_eps = [(f, _noisy_latents(a, rng, noise=0.1)) for f, a in episodes]  # the "LAM" labels
    cfg = AgentPolicyConfig(num_actions=4, seq_len=4, image_size=SIZE, width=16, embed_dim=64, num_heads=2)
    policy, metrics = train_bc(BCData.from_episodes(latent_eps), cfg, steps=300, batch_size=32, lr=1e-3,
                               progress=False)
    lat = np.concatenate([a for _, a in latent_eps])
    m = build_map(lat, np.concatenate(reals), 4, 4, n=40, seed=0)
    assert m.best.tolist() == np.argsort(PERM).tolist()
    lam_score = np.mean([_play(PolicyActor(policy, to_env=m), 64, s) for s in (10, 11)])
    rand_score = np.mean([_play(_Random(), 64, s) for s in (10, 11)])
    assert metrics["train_accuracy"] > 0.6
    assert lam_score > rand_score + 0.3, (lam_score, rand_score)


def test_bc_windows_pad_episode_starts_and_use_previous_actions():
    f = np.arange(5 * 2 * 2 * 3, dtype=np.uint8).reshape(5, 2, 2, 3)
    data = BCData.from_episodes([(f[:3], np.array([1, 2])), (f[3:], np.array([0]))])
    frames, prev, target = data.batch(np.array([1, 3]), seq_len=3, num_actions=4)
    assert target.tolist() == [[-100, 1, 2], [-100, -100, 0]]
    assert prev.tolist() == [[4, 4, 1], [4, 4, 4]]  # "none" (4) before an episode's first frame
    assert (frames[0, 0] == 0).all() and (frames[0, 1] == torch.from_numpy(f[0])).all()


# ------------------------------------------------------------------------------ evaluation in CoinRun
def test_eval_in_coinrun_is_deterministic_for_a_seed():
    from genieworld.agent.envs import RandomActor, rollout_levels
    from genieworld.agent.evaluate import evaluate_actor, wilson

    kw = dict(max_steps=200, frame_skip=4)
    a = rollout_levels(RandomActor(), [100000, 100001, 100002], seed=3, **kw)
    b = rollout_levels(RandomActor(), [100000, 100001, 100002], seed=3, **kw)
    assert (a["solved"] == b["solved"]).all() and (a["game_steps"] == b["game_steps"]).all()
    assert (a["game_steps"] <= 200).all() and (a["game_steps"] >= 1).all()
    c = rollout_levels(RandomActor(), [100000, 100001, 100002], seed=4, **kw)
    assert not (c["game_steps"] == a["game_steps"]).all()  # another seed is another game
    cfg = AgentPolicyConfig(num_actions=6, embed_dim=32, num_heads=2, width=8)
    from genieworld.agent.policy import BCPolicy

    torch.manual_seed(0)
    actor = PolicyActor(BCPolicy(cfg).eval(), epsilon=0.1)
    r1 = evaluate_actor(actor, levels=2, seeds=[0, 1], max_steps=100)
    r2 = evaluate_actor(actor, levels=2, seeds=[0, 1], max_steps=100)
    assert r1["solved_by_level"] == r2["solved_by_level"] and r1["mean_game_steps"] == r2["mean_game_steps"]
    assert r1["games"] == 4 and r1["ci95"][0] <= r1["solved"] <= r1["ci95"][1]
    lo, hi = wilson(50, 100)
    assert lo < 0.5 < hi and abs((hi - lo) - 0.19) < 0.01


# -------------------------------------------------------------------------------------------- the CLI
def test_agent_cli_record_label_train_map_eval(tmp_path, untrained_model_dir, capsys):
    """The plumbing on a tiny real CoinRun store: the random-weight micro model stands in for the LAM."""
    from genieworld.agent.envs import RandomActor
    from genieworld.agent.record import record_expert
    from genieworld.cli import main
    from genieworld.data.store import EpisodeStore

    store = tmp_path / "expert_data"
    info = record_expert(RandomActor(), store, levels=3, max_steps=120, batch=2, progress=False)
    assert info["episodes"] >= 1 and EpisodeStore(store).has_actions
    model = str(untrained_model_dir)
    assert main(["agent", "label", "--model", model, "--data", str(store), "--out", str(tmp_path / "labels"),
                 "--no-progress"]) == 0
    lab = json.loads(capsys.readouterr().out)
    assert lab["transitions"] == info["frames"] - info["episodes"]
    for args in (["--labels", str(tmp_path / "labels"), "--out", str(tmp_path / "pl")],
                 ["--true-actions", "--out", str(tmp_path / "po")]):
        assert main(["agent", "train", "--data", str(store), *args, "--steps", "3", "--batch-size", "4",
                     "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["agent", "map", "--data", str(store), "--labels", str(tmp_path / "labels"), "-n", "10",
                 "--out", str(tmp_path / "map.json")]) == 0
    assert json.loads(capsys.readouterr().out)["labelled_transitions"] == 10
    common = ["--levels", "2", "--seeds", "1", "--max-steps", "40", "--no-progress", "--model", model]
    assert main(["agent", "eval", "--policy", str(tmp_path / "pl"), "--map", str(tmp_path / "map.json"), *common]) == 0
    assert json.loads(capsys.readouterr().out)["games"] == 2
    # errors are one line and exit 2
    assert main(["agent", "eval", "--policy", str(tmp_path / "pl"), *common]) == 2
    assert "needs --map" in capsys.readouterr().err
    assert main(["agent", "map", "--data", str(store), "--labels", str(tmp_path / "labels"), "-n", "100000",
                 "--out", str(tmp_path / "m2.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genie: error:") and err.count("\n") == 1


def test_agent_configs_are_bounded_and_a_bad_policy_file_is_refused(tmp_path, capsys):
    import typing

    from genieworld.agent.policy import BCPolicy, save_policy
    from genieworld.agent.recipe import AgentRecipeConfig
    from genieworld.cli import main
    from genieworld.config import FIELD_BOUNDS

    for cls in (AgentPolicyConfig, AgentRecipeConfig):
        for name, typ in typing.get_type_hints(cls).items():
            if typ in (int, float):
                assert name in FIELD_BOUNDS[cls], f"{cls.__name__}.{name} has no bound"
    cfg = AgentPolicyConfig(num_actions=6, embed_dim=32, num_heads=2, width=8)
    save_policy(BCPolicy(cfg), tmp_path / "p", {})
    meta = json.loads((tmp_path / "p" / "policy.json").read_text())
    meta["config"]["embed_dim"] = 10**9
    (tmp_path / "p" / "policy.json").write_text(json.dumps(meta))
    assert main(["agent", "eval", "--policy", str(tmp_path / "p"), "--levels", "1", "--seeds", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genie: error:") and "embed_dim" in err


def test_expert_actor_feeds_sb3_the_observations_it_was_trained_on(tmp_path):
    """SB3 scales image observations by 1/255 itself: the actor must pass raw 0..255 values (a first
    version scaled them twice, and the expert played like a random policy)."""
    from genieworld.agent.expert import ExpertActor, _save, build_policy, load_expert

    cfg = {"format": "genieworld-agent-expert", "hidden": 32}
    torch.manual_seed(0)
    policy = build_policy(cfg)
    _save(policy, tmp_path, cfg)
    loaded, _ = load_expert(tmp_path)
    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    obs, _ = loaded.obs_to_tensor(frames.transpose(0, 3, 1, 2))  # SB3's own path (uint8, channels first)
    want = loaded.get_distribution(obs).distribution.logits
    assert torch.allclose(ExpertActor(loaded).logits(frames), want, atol=1e-5)
