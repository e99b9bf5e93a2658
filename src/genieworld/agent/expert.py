"""The expert: a PPO agent (stable-baselines3) trained on CoinRun's training levels.

The paper's expert is an R2D2 agent; here it is SB3's PPO with its Nature-CNN actor-critic on the
64x64 frames, acting once per recorded frame in the 6 effective actions (see
:mod:`genieworld.agent.envs`), trained on levels ``0 .. train_levels-1`` (hard mode, no backgrounds:
the shipped model's data settings).

Storage: SB3 saves zip files with pickles in them, so this module never uses them.  The expert is
``DIR/expert.safetensors`` (the policy's tensors) + ``DIR/expert.json`` (the settings that rebuild
the same network), read back with the project's checked safetensors loader.  While it trains a
snapshot of the same two files is written every ``snapshot_every`` steps; training resumes from the
latest snapshot's weights (the Adam moments restart) with the steps still to do.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from genieworld.data.store import atomic_write_json
from genieworld.errors import UserError
from genieworld.utils import read_json

FORMAT = "genieworld-agent-expert"


def _policy_kwargs(hidden: int) -> dict:
    from stable_baselines3.common.torch_layers import NatureCNN

    return {"features_extractor_class": NatureCNN, "features_extractor_kwargs": {"features_dim": int(hidden)}}


def _spaces():
    import gymnasium as gym

    from genieworld.agent.envs import NUM_EFFECTIVE

    return gym.spaces.Box(0, 255, (3, 64, 64), np.uint8), gym.spaces.Discrete(NUM_EFFECTIVE)


def _save(policy, out: Path, cfg: dict, name: str = "expert") -> None:
    from genieworld.weights import save_tensors

    # SB3 shares one feature extractor under three names; safetensors wants distinct storages
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in policy.state_dict().items()}
    save_tensors(tensors, out / f"{name}.safetensors")
    atomic_write_json(out, f"{name}.json", cfg)


def build_policy(cfg: dict):
    from stable_baselines3.common.policies import ActorCriticCnnPolicy

    obs, act = _spaces()
    return ActorCriticCnnPolicy(obs, act, lr_schedule=lambda _: 0.0, **_policy_kwargs(cfg.get("hidden", 512)))


def load_expert(path, name: str = "expert"):
    """The expert policy (an SB3 ``ActorCriticCnnPolicy``, eval mode) and its JSON config from DIR."""
    from genieworld.weights import load_weights

    path = Path(path)
    cfg_path = path / f"{name}.json"
    if not cfg_path.is_file():
        raise UserError(f"{path}: no {name}.json (train one with `genie agent expert`)")
    cfg = read_json(cfg_path)
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise UserError(f"{cfg_path}: not a genieworld expert ({FORMAT})")
    hidden = cfg.get("hidden", 512)
    if type(hidden) is not int or not 1 <= hidden <= 65536:
        raise UserError(f"{cfg_path}: hidden {str(hidden)[:40]!r} is not an integer in [1, 65536]")
    policy = build_policy(cfg)
    load_weights(policy, path / f"{name}.safetensors")
    policy.eval()
    return policy, cfg


class ExpertActor:
    """Frames (N, 64, 64, 3) uint8 -> effective actions, sampled from the expert's logits."""

    def __init__(self, policy):
        self.policy = policy

    def reset(self, n: int) -> None:
        pass

    @torch.no_grad()
    def logits(self, frames: np.ndarray) -> torch.Tensor:
        # raw 0..255 values: SB3's policy scales image observations by 1/255 itself (preprocess_obs)
        x = torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2))).float()
        return self.policy.get_distribution(x).distribution.logits

    def act(self, frames: np.ndarray, gen: torch.Generator) -> np.ndarray:
        p = torch.softmax(self.logits(frames), -1)
        return torch.multinomial(p, 1, generator=gen)[:, 0].numpy()


def train_expert(out, total_steps: int = 1_600_000, num_envs: int = 64, train_levels: int = 10000,
                 mode: str = "hard", frame_skip: int = 4, backgrounds: bool = False, seed: int = 0,
                 n_steps: int = 256, n_epochs: int = 3, minibatches: int = 8, learning_rate: float = 5e-4,
                 gamma: float = 0.99, gae_lambda: float = 0.95, ent_coef: float = 0.01, hidden: int = 512,
                 snapshot_every: int = 100_000, progress: bool = True) -> dict:
    """Train (or resume) the PPO expert into ``out``; returns its config.  Skips if already done."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    from genieworld.agent.envs import make_vec_env
    from genieworld.weights import load_weights

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "expert.json").is_file():
        return read_json(out / "expert.json")
    cfg = {"format": FORMAT, "algo": "ppo (stable-baselines3)", "policy": "ActorCriticCnnPolicy/NatureCNN",
           "hidden": int(hidden), "actions": "effective-6", "frame_skip": int(frame_skip), "mode": mode,
           "backgrounds": bool(backgrounds), "train_levels": [0, int(train_levels)], "num_envs": int(num_envs),
           "total_steps": int(total_steps), "n_steps": n_steps, "n_epochs": n_epochs, "minibatches": minibatches,
           "learning_rate": learning_rate, "gamma": gamma, "gae_lambda": gae_lambda, "ent_coef": ent_coef,
           "seed": int(seed)}
    done_steps = 0
    if (out / "snapshot.json").is_file():
        done_steps = int(read_json(out / "snapshot.json").get("steps_done", 0))
    env = make_vec_env(num_envs, 0, train_levels, mode, frame_skip, backgrounds, seed + done_steps)
    model = PPO("CnnPolicy", env, n_steps=n_steps, batch_size=n_steps * num_envs // minibatches, n_epochs=n_epochs,
                learning_rate=learning_rate, gamma=gamma, gae_lambda=gae_lambda, ent_coef=ent_coef, clip_range=0.2,
                vf_coef=0.5, max_grad_norm=0.5, policy_kwargs=_policy_kwargs(hidden), seed=seed, device="cpu",
                tensorboard_log=str(out / "tb"), verbose=0)
    if done_steps:
        load_weights(model.policy, out / "snapshot.safetensors")
    t0 = time.time()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=done_steps, desc="expert ppo", unit="step", mininterval=10)
    stats = {"episodes": 0, "solved": 0}

    class Cb(BaseCallback):
        def __init__(self):
            super().__init__()
            self.last_snap = done_steps
            self.window: list[float] = []

        def _on_step(self) -> bool:
            steps = done_steps + self.num_timesteps
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.window.append(float(info["episode"]["r"] > 0))
            self.window = self.window[-500:]
            if bar is not None:
                bar.n = min(steps, total_steps)
                if self.window:
                    bar.set_postfix(solved=f"{np.mean(self.window):.2f}", refresh=False)
                bar.refresh() if self.num_timesteps % (num_envs * 64) == 0 else None
            if self.window and self.num_timesteps % (num_envs * n_steps) == 0:
                self.logger.record("expert/train_solved_last500", float(np.mean(self.window)))
            if steps - self.last_snap >= snapshot_every:
                _save(self.model.policy, out, {**cfg, "steps_done": steps}, "snapshot")
                self.last_snap = steps
            return True

    try:
        model.learn(max(total_steps - done_steps, 1), callback=Cb(), reset_num_timesteps=True, tb_log_name="ppo")
    finally:
        if bar is not None:
            bar.close()
    cfg["train_seconds_this_run"] = round(time.time() - t0, 1)
    _save(model.policy, out, cfg)
    return cfg
