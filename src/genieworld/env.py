"""``GenieEnv``: a Genie world as a ``gymnasium.Env``, for agents.

    from genieworld import GenieEnv
    env = GenieEnv("runs/world/model", max_episode_steps=64)
    obs, info = env.reset(seed=0, options={"prompt": "shot.png"})
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

or through gymnasium's registry (the ``genieworld.env:`` prefix imports the module that
registers the id; after ``import genieworld.env`` plain ``"genieworld/Genie-v0"`` works)::

    env = gymnasium.make("genieworld.env:genieworld/Genie-v0", model="runs/world/model")

* Observations: the generated frames, ``Box(0, 255, (H, W, 3), uint8)`` at the
  model's resolution.  ``reset`` returns the prompt frame itself (resized like
  ingestion), each ``step`` the next generated frame.
* Actions: ``Discrete(genie.num_actions)``, the model's latent actions;
  ``info["action_names"]`` (from ``reset``) names them when ``MODEL/actions.json``
  exists.
* Reward is always ``0.0`` and ``terminated`` always ``False``: a world model
  predicts frames, not rewards.  ``truncated`` becomes ``True`` on the
  ``max_episode_steps``-th step (default 64); call ``reset`` then.
* Prompt: ``options={"prompt": ...}`` in ``reset`` (a path, bytes, PIL image,
  uint8 ``HxWx3`` array, or ``(T, H, W, 3)`` frames whose last frame is returned),
  else the ``prompt`` given to the constructor, else a neutral grey frame (128 in
  every channel).  A prompt given to ``reset`` stays the default for later resets.
* Seeding: ``reset(seed=s)`` seeds ``self.np_random``; each reset draws the world's
  sampling seed from it, so the same seed and actions give the same frames.
* Gravity (``gravity=True``, off by default): a pressed latent plays a fall where the
  recordings show one, or while the frames show the player coming down, as in ``genie play``
  (:mod:`genieworld.controls`; needs ``model`` as a model directory whose ``actions.json``
  holds ``sequence_counts``);
  ``info["played"]`` is the latent the world played, ``info["action"]`` the one given.
* Memory: each reset starts a new world; a world keeps its episode's history, so
  memory grows with ``max_episode_steps`` (about 16 KB per step at 64x64), not with
  the number of episodes.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["GenieEnv", "DEFAULT_PROMPT_VALUE"]

DEFAULT_PROMPT_VALUE = 128


class GenieEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, model, prompt=None, max_episode_steps: int = 64, device: str = "cpu",
                 render_mode: str | None = None, gravity: bool = False):
        self.gravity = None
        if isinstance(model, (str, os.PathLike)):
            from genieworld.genie import Genie, resolve_model_dir

            model_dir = model
            model = Genie.from_pretrained(model, device=device)
            if gravity:
                from genieworld.actions import load_gravity

                self.gravity = load_gravity(resolve_model_dir(model_dir), int(model.num_actions))
        if gravity and self.gravity is None:
            raise ValueError("gravity=True needs a model directory whose actions.json holds sequence_counts "
                             "and a Fall action (run `genie actions name MODEL --data STORE`)")
        for attr in ("num_actions", "image_size", "world", "prepare_prompt", "play_overrides"):
            if not hasattr(model, attr):
                raise TypeError(f"model must be a Genie or a model directory path, got {type(model).__name__}")
        if int(max_episode_steps) < 1:
            raise ValueError("max_episode_steps must be >= 1")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None")
        self.genie = model
        self.render_mode = render_mode
        self.max_episode_steps = int(max_episode_steps)
        size = int(model.image_size)
        self.image_size = size
        self.observation_space = spaces.Box(0, 255, shape=(size, size, 3), dtype=np.uint8)
        self.action_space = spaces.Discrete(int(model.num_actions))
        names = getattr(model, "action_names", None)
        self.action_names = [str(n) for n in names] if names else [str(i) for i in range(int(model.num_actions))]
        self._prompt = None if prompt is None else self._prepare(prompt)
        self._world = None
        self._frame: np.ndarray | None = None
        self._steps = 0
        self._played = None  # the episode played through gravity (genieworld.controls.Played)

    # -- prompts
    def _prepare(self, prompt) -> np.ndarray:
        """uint8 prompt frames ``(T, H, W, 3)`` at the model's resolution (:meth:`Genie.prepare_prompt`)."""
        if isinstance(prompt, np.ndarray) and prompt.dtype != np.uint8:  # the env takes pixels, not [0, 1] floats
            raise ValueError(f"prompt arrays must be uint8, got {prompt.dtype}")
        return self.genie.prepare_prompt(prompt).cpu().numpy()

    def default_prompt(self) -> np.ndarray:
        return np.full((1, self.image_size, self.image_size, 3), DEFAULT_PROMPT_VALUE, dtype=np.uint8)

    # -- gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        if options.get("prompt") is not None:
            self._prompt = self._prepare(options["prompt"])
        prompt = self._prompt if self._prompt is not None else self.default_prompt()
        world_seed = int(self.np_random.integers(0, 2**31 - 1))
        world_prompt = prompt[0] if prompt.shape[0] == 1 else prompt
        self._world = self.genie.world(world_prompt, seed=world_seed, **self.genie.play_overrides())
        self._frame = prompt[-1].copy()
        self._steps = 0
        if self.gravity is not None:
            from genieworld.controls import Played

            self._played = Played(self.gravity)
        return self._frame.copy(), self._info(world_seed=world_seed)

    def step(self, action):
        if self._world is None:
            raise RuntimeError("call reset() before step()")
        if self._steps >= self.max_episode_steps:
            raise RuntimeError(f"episode truncated after {self.max_episode_steps} steps; call reset()")
        if isinstance(action, np.ndarray):
            if action.size != 1:
                raise ValueError(f"expected one discrete action, got shape {action.shape}")
            action = action.reshape(()).item()
        if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)):
            raise ValueError(f"action must be an integer in [0, {self.action_space.n}), got {action!r}")
        action = int(action)
        if not self.action_space.contains(action):
            raise ValueError(f"action {action} out of range [0, {self.action_space.n})")
        played = action if self._played is None else self._played.press(action)
        frame = np.asarray(self._world.step(played), dtype=np.uint8)
        if self._played is not None:
            from genieworld.controls import view_dy

            self._played.seen(view_dy(self._frame, frame))
        self._frame = frame
        self._steps += 1
        truncated = self._steps >= self.max_episode_steps
        return frame.copy(), 0.0, False, truncated, self._info(action=action, played=played)

    def render(self):
        if self.render_mode == "rgb_array":
            return None if self._frame is None else self._frame.copy()
        return None

    def close(self):
        self._world = None

    def _info(self, **extra) -> dict:
        info = {"step": self._steps, "action_names": self.action_names}
        info.update(extra)
        return info


def _register() -> None:
    env_id = "genieworld/Genie-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point="genieworld.env:GenieEnv")


_register()
