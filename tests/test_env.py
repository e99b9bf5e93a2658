"""GenieEnv: a Genie world as a gymnasium environment."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from PIL import Image

from fixtures_models import one_torch_thread, synthetic_store_dir, tiny_model_dir, untrained_model_dir  # noqa: F401

from genieworld import GenieEnv

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see fixtures_models.torch_threads
from genieworld.env import DEFAULT_PROMPT_VALUE


@pytest.fixture(scope="module")
def genie(untrained_model_dir):
    from genieworld.genie import Genie

    return Genie.from_pretrained(untrained_model_dir)


def test_check_env(tiny_model_dir):
    """gymnasium's own checker, on the trained tiny model, made through the registry (so it has a spec)."""
    env = gym.make("genieworld/Genie-v0", model=str(tiny_model_dir), max_episode_steps=8, render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checker's warnings are failures here
        check_env(env.unwrapped)
    env.close()


def test_spaces_reset_step_truncation(genie):
    env = GenieEnv(genie, max_episode_steps=3)
    s = genie.image_size
    assert env.observation_space == gym.spaces.Box(0, 255, (s, s, 3), np.uint8)
    assert env.action_space == gym.spaces.Discrete(genie.num_actions)
    obs, info = env.reset(seed=1)
    assert obs.dtype == np.uint8 and obs.shape == (s, s, 3)
    assert (obs == DEFAULT_PROMPT_VALUE).all(), "no prompt: the documented neutral grey frame"
    assert info["step"] == 0 and info["action_names"] == genie.action_names
    for k in range(1, 4):
        obs, reward, terminated, truncated, info = env.step(k % genie.num_actions)
        assert obs.shape == (s, s, 3) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
        assert reward == 0.0 and terminated is False and truncated is (k == 3) and info["step"] == k
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset()
    env.step(np.int64(1))
    env.step(np.array(2))
    for bad in (-1, genie.num_actions, 1.5, True, "1", np.array([0, 1])):
        with pytest.raises(ValueError):
            env.step(bad)


def test_prompts_and_seeding(genie, synthetic_store_dir, tmp_path):
    from genieworld.data.store import EpisodeStore
    from genieworld.data.video import prepare_frame

    env = GenieEnv(genie, max_episode_steps=8)
    frames = EpisodeStore(synthetic_store_dir).read_frames(0, 0, 3)
    obs, _ = env.reset(seed=3, options={"prompt": frames[0]})
    assert np.array_equal(obs, frames[0])
    a = [env.step(i % genie.num_actions)[0] for i in range(3)]
    env.reset(seed=3)  # the prompt given to reset stays the default
    b = [env.step(i % genie.num_actions)[0] for i in range(3)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b)), "same seed, prompt and actions: same frames"
    env.reset(seed=3)
    c = [env.step((i + 1) % genie.num_actions)[0] for i in range(3)]
    assert any(not np.array_equal(x, y) for x, y in zip(a, c)), "other actions should change the frames"
    # a file, bytes, a PIL image and several frames are all accepted, resized like ingestion
    big = np.zeros((100, 160, 3), dtype=np.uint8)
    big[:, 80:] = 255
    path = tmp_path / "shot.png"
    Image.fromarray(big).save(path)
    want = prepare_frame(big, genie.image_size)
    for prompt in (path, str(path), path.read_bytes(), Image.fromarray(big), big):
        obs, _ = env.reset(options={"prompt": prompt})
        assert np.array_equal(obs, want)
    obs, _ = env.reset(options={"prompt": frames})  # (T, H, W, 3): context, the last frame is shown
    assert np.array_equal(obs, frames[-1])
    with pytest.raises(ValueError):
        env.reset(options={"prompt": b"not an image"})
    env2 = GenieEnv(genie, prompt=frames[1])
    assert np.array_equal(env2.reset()[0], frames[1])


def test_gym_make(untrained_model_dir):
    env = gym.make("genieworld/Genie-v0", model=str(untrained_model_dir), max_episode_steps=2)
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape
    assert env.step(0)[3] is False and env.step(0)[3] is True
    env.close()


def test_bad_arguments(genie):
    with pytest.raises(TypeError):
        GenieEnv(object())
    with pytest.raises(ValueError):
        GenieEnv(genie, max_episode_steps=0)
    with pytest.raises(ValueError):
        GenieEnv(genie, render_mode="human")
    with pytest.raises(ValueError):
        GenieEnv(genie, prompt=np.zeros((8, 8, 3), dtype=np.float32))
    from genieworld.genie import ModelDirError

    with pytest.raises(ModelDirError):
        GenieEnv("/nonexistent/model")


def test_render(genie):
    env = GenieEnv(genie, render_mode="rgb_array")
    assert env.render() is None
    obs, _ = env.reset(seed=0)
    assert np.array_equal(env.render(), obs)
    obs, *_ = env.step(0)
    assert np.array_equal(env.render(), obs)


def test_gravity_plays_the_fall_the_recordings_show(untrained_model_dir, tmp_path):
    import json
    import shutil

    from genieworld.genie import Genie

    model = tmp_path / "model"
    shutil.copytree(untrained_model_dir, model)
    with pytest.raises(ValueError, match="sequence_counts"):
        GenieEnv(str(model), gravity=True)  # no actions.json: gravity cannot be had
    with pytest.raises(ValueError, match="model directory"):
        GenieEnv(Genie.from_pretrained(model), gravity=True)
    counts = np.zeros((3, 4, 4, 4), dtype=int)  # latents Left 0, Stay 1, Jump 2 (rises), Fall 3; real: Left, Stay, Jump
    counts[:, 2, 2, 3] = 40  # after two jumps the recordings fall, whatever is held
    (model / "actions.json").write_text(json.dumps({
        "names": ["Left", "Stay", "Jump", "Fall"], "sequence_counts": counts.tolist(),
        "motion": [{"down": 0, "up": 0, "dx": -3, "dy": 0}, {"down": 0, "up": 0, "dx": 0, "dy": 0},
                   {"down": 0, "up": 0.9, "dx": 0, "dy": -8}, {"down": 0.9, "up": 0, "dx": 0, "dy": 8}],
        "mapping": [{"latent": 0, "true_action": 0}, {"latent": 1, "true_action": 1},
                    {"latent": 2, "true_action": 2}, {"latent": 3, "true_action": 1, "effect": "fall"}]}))
    for gravity, expect in ((True, [2, 2, 3, 0]), (False, [2, 2, 1, 0])):
        env = GenieEnv(str(model), gravity=gravity)
        env.reset(seed=0)
        played = [env.step(a)[4]["played"] for a in (2, 2, 1, 0)]
        assert played == expect, gravity
        env.reset(seed=0)  # a reset forgets the history
        assert env.step(1)[4]["played"] == 1
    # closed loop: while the player comes down above where it stood (here each Jump played moves the view up
    # 4 px, each Fall down 2), any key plays the fall; once less than AIR_DY above, keys play as pressed
    env = GenieEnv(str(model), gravity=True)
    size = env.image_size
    level = np.kron(np.random.default_rng(0).integers(0, 255, (size // 2 + 20, size // 2, 3)),
                    np.ones((2, 2, 1))).astype(np.uint8)

    class Jumping:
        y = 20

        def step(self, action):
            self.y += {2: -4, 3: 2}.get(int(action), 0)
            return level[self.y:self.y + size, :size].copy()

    env.genie.world = lambda *a, **k: Jumping()
    env.reset(seed=0, options={"prompt": level[20:20 + size, :size]})
    assert [env.step(a)[4]["played"] for a in (2, 2, 1, 0, 0, 0)] == [2, 2, 3, 3, 3, 0]
