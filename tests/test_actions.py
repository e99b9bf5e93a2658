"""Naming latent actions after ground-truth actions (``genie actions name``) and key bindings."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from fixtures_models import one_torch_thread, synthetic_store_dir, tiny_model_dir, untrained_model_dir  # noqa: F401

from genieworld.actions import (PROCGEN_ACTION_NAMES, cooccurrence_counts, default_key_map, load_action_names,
                                name_from_counts, true_action_names)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see fixtures_models.torch_threads


def test_procgen_names_match_procgen():
    from procgen.env import ProcgenGym3Env

    combos = ProcgenGym3Env.get_combos(None)
    assert PROCGEN_ACTION_NAMES == ["-".join(c) if c else "NOOP" for c in combos]


def _store(source="", extra=None, num_actions=None, has_actions=True):
    return SimpleNamespace(source=source, extra=extra or {}, num_actions=num_actions, has_actions=has_actions)


def test_true_action_names_by_source(synthetic_store_dir):
    from genieworld.data.store import EpisodeStore

    assert true_action_names(EpisodeStore(synthetic_store_dir)) == ["LEFT", "RIGHT", "UP", "DOWN"]
    assert true_action_names(_store("coinrun", num_actions=15)) == PROCGEN_ACTION_NAMES
    atari = _store("atari:ALE/Pong-v5", {"atari": {"action_meanings": ["NOOP", "FIRE", "RIGHT"]}}, 3)
    assert true_action_names(atari) == ["NOOP", "FIRE", "RIGHT"]
    assert true_action_names(_store("video", num_actions=3)) == ["0", "1", "2"]
    assert true_action_names(_store("video", num_actions=None, has_actions=False)) is None


def test_name_from_counts_unique_names_and_confidence():
    counts = np.array([[90, 10, 0],    # latent 0 -> true 0, 0.9
                       [0, 5, 0],      # latent 1 -> true 1, 1.0
                       [70, 30, 0],    # latent 2 -> true 0 too, 0.7: becomes "A#2"
                       [0, 0, 0]])     # latent 3 never seen: stays "3"
    names, mapping = name_from_counts(counts, ["A", "B", "C"])
    assert names == ["A", "B", "A#2", "3"]
    assert [m["confidence"] for m in mapping] == [0.9, 1.0, 0.7, 0.0]
    assert [m["true_action"] for m in mapping] == [0, 1, 0, None]
    assert [m["count"] for m in mapping] == [90, 5, 70, 0]
    # a numbered latent's name is never reused by a suffix
    names, _ = name_from_counts(np.array([[0, 0], [3, 0], [1, 0]]), ["0", "B"])
    assert len(set(names)) == 3


def test_default_key_map():
    km = default_key_map(PROCGEN_ACTION_NAMES)
    assert km["ArrowLeft"] == 1 and km["ArrowRight"] == 7 and km[" "] == 4 and km["a"] == 10 and km["0"] == 0
    assert sorted(km.values()) == list(range(15)) and len(km) == 15
    assert default_key_map(["0", "1", "2"]) == {"0": 0, "1": 1, "2": 2}
    many = default_key_map([str(i) for i in range(30)])
    assert len(set(many.values())) == 30


def test_load_action_names_rejects_bad_files(tmp_path):
    assert load_action_names(tmp_path, 3) == ["0", "1", "2"]
    for bad in ('{"names": ["a", "b"]}', '{"names": ["a", "a", "b"]}', '{"names": ["<script>", "b", "c"]}',
                "not json", '["a", "b", "c"]'):
        (tmp_path / "actions.json").write_text(bad)
        assert load_action_names(tmp_path, 3) == ["0", "1", "2"], bad
    (tmp_path / "actions.json").write_text('{"names": ["LEFT", "RIGHT#2", "NOOP"]}')
    assert load_action_names(tmp_path, 3) == ["LEFT", "RIGHT#2", "NOOP"]


def _oracle(store, num_actions: int):
    """A stand-in LAM that "infers" the true action of every transition: ``store.read_frames`` is patched to
    queue each window's recorded actions, which ``infer_actions`` then returns. ``oracle.seen``: the shapes
    of the windows it was given."""

    class Oracle:
        seen: list = []

        def infer_actions(self, frames):
            self.seen.append(frames.shape)
            return np.asarray(queue.pop(0))

    Oracle.num_actions = num_actions
    queue, orig = [], store.read_frames

    def read_frames(ep, a, b):
        queue.append(store.read_actions(ep, a, b - 1)[None])
        return orig(ep, a, b)

    store.read_frames = read_frames
    return Oracle()


def test_cooccurrence_counts_every_transition_once(synthetic_store_dir):
    from genieworld.data.store import EpisodeStore

    store = EpisodeStore(synthetic_store_dir)
    oracle = _oracle(store, 4)  # the table must be diagonal
    counts = cooccurrence_counts(oracle, store, [0, 1], num_true=4, window=8, batch_size=1)
    total = sum(store.episode_length(i) - 1 for i in (0, 1))
    assert counts.sum() == total and np.count_nonzero(counts - np.diag(np.diag(counts))) == 0
    assert all(s[1] <= 8 for s in oracle.seen)


def test_genie_actions_name_cli(tiny_model_dir, synthetic_store_dir, tmp_path, capsys):
    from genieworld.cli import main
    from genieworld.genie import Genie

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    assert main(["actions", "name", str(model), "--data", str(synthetic_store_dir), "--episodes", "4"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    data = json.loads((model / "actions.json").read_text())
    g = Genie.from_pretrained(model)
    assert out["names"] == data["names"] == g.action_names and len(data["names"]) == g.num_actions
    assert len(set(data["names"])) == len(data["names"])
    assert [m["latent"] for m in data["mapping"]] == list(range(g.num_actions))
    src = data["source"]
    assert src["episodes"] == 4 and src["true_action_names"] == ["LEFT", "RIGHT", "UP", "DOWN"]
    assert src["window"] == min(16, g.lam.cfg.max_frames)
    counts = np.array(data["counts"])
    assert counts.shape == (g.num_actions, 4) and counts.sum() == src["transitions"] == 4 * 31
    for m in data["mapping"]:
        assert 0.0 <= m["confidence"] <= 1.0
        if m["true_action"] is None:
            assert m["count"] == 0 and m["name"] == str(m["latent"])
        else:
            assert m["count"] == counts[m["latent"], m["true_action"]] > 0
            assert m["name"].split("#")[0] == src["true_action_names"][m["true_action"]]
            assert m["confidence"] == pytest.approx(m["count"] / counts[m["latent"]].sum(), abs=1e-4)
    assert not list(model.glob(".actions.json*"))  # no temp files left behind
    # a training RUN folder (holding RUN/model) names the same file, as Genie.from_pretrained reads it
    (model / "actions.json").unlink()
    assert main(["actions", "name", str(tmp_path), "--data", str(synthetic_store_dir), "--episodes", "1"]) == 0
    assert (model / "actions.json").is_file() and not (tmp_path / "actions.json").exists()


def test_genie_actions_name_without_labels(untrained_model_dir, synthetic_store_dir, tmp_path, capsys):
    """Frames without recorded actions (your own videos): the latents are named by how they move the view;
    with --no-motion there is nothing to name them by, and nothing is written."""
    from genieworld.cli import main
    from genieworld.data.store import EpisodeStore, EpisodeWriter

    src = EpisodeStore(synthetic_store_dir)
    unlabelled = tmp_path / "unlabelled"
    with EpisodeWriter(unlabelled, resolution=src.resolution, source="video") as w:
        for i in range(2):
            w.add_episode(src.read_frames(i))
    model = tmp_path / "model"
    shutil.copytree(untrained_model_dir, model)
    assert main(["actions", "name", str(model), "--data", str(unlabelled), "--no-motion"]) == 2
    err = capsys.readouterr().err
    assert "no episodes with ground-truth actions" in err and "--no-motion" in err
    assert not (model / "actions.json").exists()
    assert main(["actions", "name", str(model), "--data", str(unlabelled)]) == 0
    out = capsys.readouterr()
    assert "named by how each moves the view" in out.err and "real action" not in out.err
    data = json.loads((model / "actions.json").read_text())
    assert data["source"]["named_from"] == "motion" and len(data["names"]) == len(set(data["names"]))
    assert all(m["true_action"] in (None, -1) for m in data["mapping"])
    assert main(["actions", "name", str(model), "--data", str(tmp_path / "nope")]) == 2
    assert main(["actions", "name", str(tmp_path / "nomodel"), "--data", str(synthetic_store_dir)]) == 2
    assert main(["actions", "name", str(model), "--data", str(synthetic_store_dir), "--episodes", "0"]) == 2


def test_names_from_motion_alone():
    from genieworld.actions import default_key_map, name_from_motion

    def mv(left=0.0, right=0.0, up=0.0, down=0.0, dx=0.0, n=10):
        return {"transitions": n, "left": left, "right": right, "up": up, "down": down, "dx": dx, "dy": 0.0}

    motion = [mv(left=0.9, dx=-3), mv(right=0.8, dx=3), mv(right=0.6, up=0.7, dx=2), mv(up=0.9), mv(down=0.8, dx=2),
              mv(left=0.2, up=0.1), mv(right=0.7, dx=3), mv(n=0)]
    names, records = name_from_motion(motion)
    assert names == ["Left", "Right", "Right+Up", "Up", "Fall Right", "Stay", "Right#2", "7"]
    assert [r["confidence"] for r in records[:7]] == [0.9, 0.8, 0.6, 0.9, 0.8, 0.8, 0.7]
    assert records[4]["effect"] == "fall" and records[0]["true_action"] == -1 and records[7]["true_action"] is None
    keys = default_key_map(names)
    assert keys["ArrowLeft"] == 0 and keys["ArrowRight"] == 1 and keys["ArrowUp"] == 3


def test_a_procgen_store_is_named_in_its_own_effective_actions(tmp_path):
    """Any Procgen game's latents are named after its measured classes (here BigFish's: Left+Down, ..., Stay),
    not the 15 raw buttons."""
    from genieworld.actions import name_latent_actions
    from genieworld.data.procgen import effective_actions_of, generate_procgen
    from genieworld.data.store import EpisodeStore

    generate_procgen(tmp_path / "bf", "bigfish", levels=1, steps_per_level=30, frame_skip=2, progress=False)
    store = EpisodeStore(tmp_path / "bf")
    classes = effective_actions_of(store)

    class Raw:  # a "LAM" whose latent is the raw button pressed (15 latents)
        num_actions = 15
        image_size = 64
        queue: list = []

        def infer_actions(self, frames):
            return np.asarray(self.queue.pop(0))

    orig = store.read_frames

    def read_frames(ep, a, b):
        Raw.queue.append(store.read_actions(ep, a, b - 1)[None])
        return orig(ep, a, b)

    store.read_frames = read_frames
    import genieworld.data.store as st

    opened = st.EpisodeStore
    try:
        st.EpisodeStore = lambda *_a, **_k: store
        out = name_latent_actions(tmp_path / "bf", tmp_path / "bf", genie=Raw(), window=4, batch_size=1, motion=False)
    finally:
        st.EpisodeStore = opened
    assert out["source"]["true_action_names"] == classes["names"]
    used = sorted({int(a) for i in range(store.num_episodes) for a in store.read_actions(i)})
    for raw in used:  # each raw button's latent is named after its class
        base = classes["names"][classes["map"][raw]]
        assert out["names"][raw].split("#")[0] == base


def test_coinrun_effective_names_get_arrows_space_and_wasd():
    from genieworld.data.coinrun import EFFECTIVE_NAMES

    km = default_key_map(list(EFFECTIVE_NAMES))
    n = {name: i for i, name in enumerate(EFFECTIVE_NAMES)}
    assert km["ArrowLeft"] == km["a"] == n["Left"] and km["ArrowRight"] == km["d"] == n["Right"]
    assert km["ArrowUp"] == km[" "] == km["w"] == n["Jump"] and km["ArrowDown"] == km["s"] == n["Stay"]
    assert km["q"] == n["Left+Jump"] and km["e"] == n["Right+Jump"]
    assert set(km.values()) == set(range(6))


# the shipped model's naming counts (models/coinrun-cpu/actions.json): no latent is named plain Jump
_SHIPPED_NAMES = ["Right+Jump#3", "Right+Jump#2", "Left", "Left+Jump#2", "Right", "Stay", "Left+Jump", "Right+Jump"]
_SHIPPED_COUNTS = [[1002, 1071, 1685, 3510, 3437, 6375], [430, 1240, 359, 4591, 629, 7048],
                   [9844, 1379, 241, 560, 16, 15], [2507, 6138, 1449, 3906, 134, 124],
                   [56, 47, 295, 275, 5946, 2225], [5153, 427, 14524, 1039, 9048, 177],
                   [541, 9390, 475, 6132, 89, 261], [52, 54, 128, 373, 160, 3546]]


def test_jump_action_picks_the_most_jumping_least_sideways_latent():
    from genieworld.actions import jump_action
    from genieworld.data.coinrun import EFFECTIVE_NAMES

    # latent 1: 90 % jumps, 42 % net right; latent 6 jumps 93 % but 57 % net left; latent 7 84 % net right
    assert jump_action(_SHIPPED_COUNTS, list(EFFECTIVE_NAMES)) == 1
    # a latent that is mostly plain Jump wins over everything
    counts = [row[:] for row in _SHIPPED_COUNTS]
    counts[5] = [10, 10, 10, 900, 10, 10]
    assert jump_action(counts, list(EFFECTIVE_NAMES)) == 5
    # Procgen's raw buttons: UP, LEFT-UP and RIGHT-UP jump
    raw = [[0, 0, 0, 0, 0, 900, 0, 0, 0, 0, 0, 0, 0, 0, 0], [900] + [0] * 14]
    assert jump_action(raw, PROCGEN_ACTION_NAMES) == 0
    # nothing jumps half the time, names without jumps, malformed tables: no jump action
    assert jump_action([[5, 5, 5, 1, 5, 1]], list(EFFECTIVE_NAMES)) is None
    assert jump_action([[1, 2], [3, 4]], ["LEFT", "RIGHT"]) is None
    assert jump_action([[1, 2, 3]], list(EFFECTIVE_NAMES)) is None  # wrong width
    assert jump_action([[1, 2], [3]], ["Jump", "Left"]) is None  # ragged
    assert jump_action([[-1, 5]], ["Jump", "Left"]) is None
    assert jump_action("nope", ["Jump"]) is None


def test_key_map_binds_up_space_and_w_to_the_jump_action_when_none_is_named_jump(tmp_path):
    from genieworld.actions import load_jump_action
    from genieworld.data.coinrun import EFFECTIVE_NAMES

    model = tmp_path / "model"
    model.mkdir()
    assert load_jump_action(model, 8) is None  # no actions.json
    (model / "actions.json").write_text(json.dumps({
        "names": _SHIPPED_NAMES, "counts": _SHIPPED_COUNTS,
        "source": {"true_action_names": list(EFFECTIVE_NAMES)}}))
    jump = load_jump_action(model, 8)
    assert jump == 1
    assert load_jump_action(model, 6) is None  # counts for another number of actions
    km = default_key_map(_SHIPPED_NAMES, jump=jump)
    assert km["ArrowUp"] == km[" "] == km["w"] == 1
    assert km["ArrowLeft"] == 2 and km["ArrowRight"] == 4 and km["ArrowDown"] == 5
    assert km["q"] == 6 and km["e"] == 7
    assert "1" not in km  # the jump action's first key is the up arrow, not a digit
    assert set(km.values()) == set(range(8))
    # without the hint the up arrow stays free, as before
    assert "ArrowUp" not in default_key_map(_SHIPPED_NAMES)
    # a plain Jump name keeps the arrow whatever the hint says
    named = list(EFFECTIVE_NAMES)
    assert default_key_map(named, jump=0)["ArrowUp"] == named.index("Jump")
    # an out-of-range hint is ignored
    assert default_key_map(_SHIPPED_NAMES, jump=99) == default_key_map(_SHIPPED_NAMES)
    (model / "actions.json").write_text("{not json")
    assert load_jump_action(model, 8) is None


def _scrolling_store(path, steps=12, episodes=2):
    """Episodes cut from one textured picture whose view moves down 3 px a step on action 1 and stays on
    action 0 (alternating runs of 3), as CoinRun's camera does when the agent falls."""
    from genieworld.data.store import EpisodeWriter

    rng = np.random.default_rng(0)
    world = (rng.random((40, 40, 3)) > 0.5).astype(np.uint8) * 200  # blocky texture, upscaled
    world = np.kron(world, np.ones((4, 4, 1), dtype=np.uint8))  # 160 x 160
    with EpisodeWriter(path, resolution=(64, 64), source="test", num_actions=2) as w:
        for ep in range(episodes):
            y, frames, actions = 8 * ep, [], []
            for t in range(steps):
                frames.append(world[y:y + 64, 20:84])
                a = (t // 3) % 2
                actions.append(a)
                y += 3 * a
            w.add_episode(np.stack(frames), np.asarray(actions[:-1]))
    return path


def test_latent_statistics_measure_how_each_latent_moves_the_view(tmp_path):
    from genieworld.actions import latent_statistics
    from genieworld.data.store import EpisodeStore

    store = EpisodeStore(_scrolling_store(tmp_path / "s"))
    oracle = _oracle(store, 3)  # latent 2 never occurs
    counts, motion, latents = latent_statistics(oracle, store, [0, 1], num_true=2, window=5, batch_size=1)
    assert counts.tolist() == [[12, 0], [0, 10], [0, 0]]
    for ep in (0, 1):  # every transition's latent, in order across the overlapping windows
        assert latents[ep].tolist() == store.read_actions(ep).tolist()
    assert [m["transitions"] for m in motion] == [12, 10, 0]
    assert motion[1]["dy"] == 3.0 and motion[1]["dx"] == 0.0 and motion[1]["down"] == 1.0 and motion[1]["up"] == 0.0
    assert motion[0]["dy"] == 0.0 and motion[0]["down"] == 0.0
    assert motion[2]["down"] == 0.0  # no transitions: zeros, not NaN
    # motion_max measures every k-th batch only; the counts still cover every transition
    counts2, sparse, _ = latent_statistics(oracle, store, [0, 1], num_true=2, window=5, batch_size=1,
                                           motion_max=8)
    assert (counts2 == counts).all() and 0 < sum(m["transitions"] for m in sparse) < 22
    assert latent_statistics(oracle, store, [0, 1], num_true=2, window=5, batch_size=1, motion=False).motion is None


def test_latents_that_move_the_view_down_are_named_fall():
    from genieworld.actions import falls

    def mv(down, up=0.0, dx=0.0):
        return {"down": down, "up": up, "dx": dx}

    counts = np.array([[1, 9, 0], [0, 8, 2], [0, 7, 3], [5, 0, 5], [0, 0, 0]])
    motion = [mv(0.9, dx=2.5), mv(0.8), mv(0.6, dx=-0.2), mv(0.3), mv(0.0)]
    names, records = name_from_counts(counts, ["Left", "Right+Jump", "Stay"], motion)
    # the view moves down in most of latent 0-2's transitions: named for that, whatever they coincide with
    assert names == ["Fall Right", "Fall", "Fall#2", "Left", "4"]
    assert [r.get("effect") for r in records] == ["fall", "fall", "fall", None, None]
    assert records[0]["true_action"] == 1 and records[0]["confidence"] == 0.9  # the real action is kept
    # without motion: the real actions' names, as before
    assert name_from_counts(counts, ["Left", "Right+Jump", "Stay"])[0] == ["Right+Jump", "Right+Jump#2",
                                                                           "Right+Jump#3", "Left", "4"]
    # a real down move is not renamed; a view that goes up as often as down does not fall
    assert not falls(mv(0.9), "DOWN") and not falls(mv(0.5, up=0.5)) and falls(mv(0.5, up=0.1))
    assert not falls(None) and not falls({"down": "x", "up": 0})  # malformed records: no fall
    with pytest.raises(ValueError, match="motion has 2 latents"):
        name_from_counts(counts, ["Left", "Right+Jump", "Stay"], motion[:2])


def test_names_from_judge_take_what_the_judge_reads_and_keep_falls():
    from genieworld.actions import names_from_judge

    counts = np.array([[1, 9, 0], [0, 8, 2], [0, 7, 3], [5, 0, 5], [0, 0, 0]])
    motion = [{"down": d, "up": 0.0, "dx": 0.0} for d in (0.9, 0.8, 0.0, 0.0, 0.0)]
    _, mapping = name_from_counts(counts, ["Left", "Right+Jump", "Stay"], motion)  # Fall, Fall#2, R+J, Left, 4

    def read(latent, name, left=0.0, none=0.0, right=0.0):
        return {"latent": latent, "judge_name": name, "judge_direction": {"left": left, "none": none, "right": right}}

    readings = [read(0, "Left", left=0.7, none=0.3), read(1, "Stay", none=0.6, right=0.4),
                read(2, "Jump", none=0.9, right=0.1), read(3, "Jump", none=0.5, left=0.5), read(4, "Right", right=1)]
    names, records = names_from_judge(mapping, readings)
    # falls keep Fall and take the judge's direction; others its name; the more confident keeps a shared
    # name; a latent that never occurred keeps its number; the earlier names are kept
    assert names == ["Fall Left", "Fall", "Jump", "Jump#2", "4"], names
    assert [r.get("counts_name") for r in records] == ["Fall", "Fall#2", "Right+Jump", "Left", None]
    assert [r["name"] for r in mapping] == ["Fall", "Fall#2", "Right+Jump", "Left", "4"]  # not modified
    assert names_from_judge(mapping, readings[:2])[0] == ["Fall Left", "Fall", "Right+Jump", "Left", "4"]


def test_fall_gets_the_down_arrow_and_jump_skips_falling_latents(tmp_path):
    from genieworld.actions import jump_action, load_jump_action
    from genieworld.data.coinrun import EFFECTIVE_NAMES

    names = ["Fall Right", "Right+Jump#2", "Left", "Fall", "Right", "Stay", "Left+Jump", "Right+Jump"]
    km = default_key_map(names, jump=1)
    assert km["ArrowDown"] == 3 and km["s"] == 5 and km["ArrowUp"] == km[" "] == 1
    assert set(km.values()) == set(range(8))
    # no plain Fall: the first Fall ... gets the arrow; without any, Stay keeps it
    only = ["Left", "Stay", "Fall Left", "Fall Right"]
    assert default_key_map(only)["ArrowDown"] == 2 and default_key_map(only)["s"] == 1
    assert default_key_map(["Left", "Stay"])["ArrowDown"] == 1
    # latent 1 jumps most in the counts; when its view falls, the next best jump is chosen instead
    motion = [{"down": 0.0, "up": 0.9}] * 8
    assert jump_action(_SHIPPED_COUNTS, list(EFFECTIVE_NAMES), motion) == 1
    motion = [dict(m) for m in motion]
    motion[1] = {"down": 0.8, "up": 0.1}
    assert jump_action(_SHIPPED_COUNTS, list(EFFECTIVE_NAMES), motion) not in (None, 1)
    model = tmp_path / "m"
    model.mkdir()
    (model / "actions.json").write_text(json.dumps({
        "names": names, "counts": _SHIPPED_COUNTS, "motion": motion,
        "source": {"true_action_names": list(EFFECTIVE_NAMES)}}))
    assert load_jump_action(model, 8) not in (None, 1)


def test_action_grid_labels_hold_whole_names():
    from genieworld.eval.report import LABEL_W, action_grid_image

    grid = np.zeros((1, 2, 3, 8, 8, 3), dtype=np.uint8)
    short = action_grid_image(grid, ["Left", "Stay"], prompt_frames=1)
    long = action_grid_image(grid, ["Left", "Right+Jump#2 and a long name"], prompt_frames=1)
    assert short.width == LABEL_W + 3 * (8 + 2)  # short names keep the usual margin
    assert long.width > short.width and long.height == short.height


def test_steered_gif_plan_takes_names_ids_and_the_play_page_arrows():
    from fixtures_models import load_script

    gif = load_script("scripts/steered_gif.py")
    names = ["Fall Right", "Right+Jump#2", "Left", "Fall", "Right", "Stay"]
    keys = default_key_map(names, jump=1)
    assert gif.parse_plan("Stay:2,Up:1,Down:2,4", names, keys) == [5, 5, 1, 3, 3, 4]
    assert gif.parse_plan("fall right:1,left", names, keys) == [0, 2]
    with pytest.raises(SystemExit, match="unknown action 'Jump'"):
        gif.parse_plan("Jump:2", names, keys)


def test_jump_arc_path_summary():
    from fixtures_models import load_script

    arc = load_script("bench/bench_jump_arc.py")
    s = arc.path_summary(np.array([[-10, -5, 0, 14], [-10, -5, 0, 0]]))
    assert s["mean_dy_per_step"] == [-10.0, -5.0, 0.0, 7.0] and s["mean_net_dy"] == -8.0 and s["came_back"] == 0.5


def test_name_latent_actions_writes_motion_fall_names_and_sequence_counts(tmp_path):
    from genieworld.actions import load_gravity, name_latent_actions
    from genieworld.eval.motion import frame_shifts

    data = _scrolling_store(tmp_path / "s", steps=14, episodes=3)

    class Reader:  # a "LAM" that reads the view's motion: 1 when it moved down
        num_actions = 2
        image_size = 64

        def infer_actions(self, frames):
            b, t = frames.shape[:2]
            a, c = frames[:, :-1].reshape(-1, 64, 64, 3), frames[:, 1:].reshape(-1, 64, 64, 3)
            return (frame_shifts(a, c)[0][:, 1] > 0).astype(np.int64).reshape(b, t - 1)

    model = tmp_path / "model"
    model.mkdir()
    out = name_latent_actions(model, data, genie=Reader(), window=6)
    assert out["names"] == ["0", "Fall"] and out["mapping"][1]["effect"] == "fall"
    assert out["motion"][1]["down"] == 1.0 and out["motion"][0]["down"] == 0.0
    seq = np.array(out["sequence_counts"])
    assert seq.shape == (2, 2, 2, 2) and seq.sum() == 3 * (13 - 2)  # every transition after two others
    assert load_gravity(model, 2).falling == [1] and load_gravity(model, 3) is None
    out = name_latent_actions(model, data, genie=Reader(), window=6, motion=False)
    assert out["names"] == ["0", "1"] and "motion" not in out and "sequence_counts" not in out
    assert load_gravity(model, 2) is None
