"""The behavioural-cloning policy pi(a | x): frames plus previous actions, sequence length 4.

As in the paper (§3.3): an encoder over frames, the previous action added as a learned embedding
(the additive form of a one-hot input), a sequence of 4 steps, actions sampled from the logits.
The same network is the *LAM policy* (its actions are the LAM's latent actions) and the *oracle*
(its actions are the true effective actions); only ``num_actions`` differs.

Shapes (B batch, T = seq_len steps)::

    frames (B, T, 64, 64, 3) uint8, prev (B, T) long in [0, num_actions]   (num_actions = "none")
    encoder: Nature-CNN convs (8/4, 4/2, 3/1) -> linear -> e_t (B, T, d)
    h_t = e_t + E[prev_t] + P[t];  one causal transformer layer;  logits (B, T, num_actions)

``prev_t`` is the action taken before frame t (``none`` at the start of an episode).  The first
steps of an episode are left-padded with zero frames and ``none``; position t sees frames <= t.
Weights: ``DIR/policy.safetensors`` + ``DIR/policy.json`` (config and what it was trained on).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from genieworld.config import FIELD_BOUNDS, Bound, from_dict
from genieworld.errors import UserError

FORMAT = "genieworld-agent-policy"


@dataclass
class AgentPolicyConfig:
    num_actions: int = 8
    seq_len: int = 4
    image_size: int = 64
    width: int = 32  # channels of the first conv (then 2x, 2x)
    embed_dim: int = 256
    num_heads: int = 4
    num_layers: int = 1


FIELD_BOUNDS[AgentPolicyConfig] = {
    "num_actions": Bound(1, 4096), "seq_len": Bound(1, 64), "image_size": Bound(36, 256), "width": Bound(1, 512),
    "embed_dim": Bound(8, 4096), "num_heads": Bound(1, 64), "num_layers": Bound(0, 16)}


class BCPolicy(nn.Module):
    def __init__(self, cfg: AgentPolicyConfig):
        super().__init__()
        if cfg.embed_dim % cfg.num_heads:
            raise UserError(f"embed_dim {cfg.embed_dim} must be a multiple of num_heads {cfg.num_heads}")
        self.cfg = cfg
        w = cfg.width
        self.conv = nn.Sequential(nn.Conv2d(3, w, 8, 4), nn.ReLU(), nn.Conv2d(w, 2 * w, 4, 2), nn.ReLU(),
                                  nn.Conv2d(2 * w, 2 * w, 3, 1), nn.ReLU(), nn.Flatten())
        with torch.no_grad():
            n = self.conv(torch.zeros(1, 3, cfg.image_size, cfg.image_size)).shape[1]
        self.proj = nn.Linear(n, cfg.embed_dim)
        self.prev_embed = nn.Embedding(cfg.num_actions + 1, cfg.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(cfg.seq_len, cfg.embed_dim))
        layer = nn.TransformerEncoderLayer(cfg.embed_dim, cfg.num_heads, 2 * cfg.embed_dim, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.layers = nn.ModuleList([layer] + [nn.TransformerEncoderLayer(
            cfg.embed_dim, cfg.num_heads, 2 * cfg.embed_dim, dropout=0.0, batch_first=True, norm_first=True)
            for _ in range(cfg.num_layers - 1)]) if cfg.num_layers else nn.ModuleList()
        self.norm = nn.LayerNorm(cfg.embed_dim)
        self.head = nn.Linear(cfg.embed_dim, cfg.num_actions)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (..., H, W, 3) -> embeddings (..., d)."""
        lead = frames.shape[:-3]
        x = frames.reshape(-1, *frames.shape[-3:]).permute(0, 3, 1, 2).float() / 255.0
        return torch.relu(self.proj(self.conv(x))).reshape(*lead, -1)

    def heads(self, emb: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, T, d) and previous actions (B, T) -> logits (B, T, num_actions)."""
        t = emb.shape[1]
        h = emb + self.prev_embed(prev) + self.pos_embed[:t]
        mask = torch.triu(torch.full((t, t), float("-inf"), device=h.device), 1)
        for layer in self.layers:
            h = layer(h, src_mask=mask)
        return self.head(self.norm(h))

    def forward(self, frames: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        return self.heads(self.encode(frames), prev)


def save_policy(policy: BCPolicy, out, info: dict) -> None:
    from genieworld.data.store import atomic_write_json
    from genieworld.weights import save_weights

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_weights(policy, out / "policy.safetensors")
    atomic_write_json(out, "policy.json", {"format": FORMAT, "config": asdict(policy.cfg), **info})


def load_policy(path) -> tuple[BCPolicy, dict]:
    from genieworld.utils import read_json
    from genieworld.weights import load_weights

    path = Path(path)
    meta_path = path / "policy.json"
    if not meta_path.is_file():
        raise UserError(f"{path}: no policy.json (train one with `genie agent train`)")
    meta = read_json(meta_path, UserError)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{meta_path}: not a genieworld agent policy ({FORMAT})")
    cfg = from_dict(AgentPolicyConfig, meta.get("config"), str(meta_path))
    policy = BCPolicy(cfg)
    load_weights(policy, path / "policy.safetensors")
    policy.eval()
    return policy, meta


class PolicyActor:
    """Runs a :class:`BCPolicy` in N games at once, keeping each game's last ``seq_len`` steps.

    ``act`` returns the *policy's* actions (latent ids for the LAM policy); ``to_env`` turns them into
    effective actions (identity for the oracle, the map D for the LAM policy, see
    :mod:`genieworld.agent.mapping`).  ``epsilon``: the chance of replacing an action by a uniform
    random one (the paper's oracle did better with 10%).
    """

    def __init__(self, policy: BCPolicy, to_env=None, epsilon: float = 0.0):
        self.policy, self.to_env, self.epsilon = policy, to_env, float(epsilon)

    def reset(self, n: int) -> None:
        c = self.policy.cfg
        self.emb = torch.zeros(n, c.seq_len, c.embed_dim)
        self.prev = torch.full((n, c.seq_len), c.num_actions, dtype=torch.long)
        self.valid = torch.zeros(n, c.seq_len, dtype=torch.bool)
        self.last = torch.full((n,), c.num_actions, dtype=torch.long)
        with torch.no_grad():
            self.pad = self.policy.encode(torch.zeros(1, c.image_size, c.image_size, 3, dtype=torch.uint8))[0]
        self.emb[:] = self.pad

    @torch.no_grad()
    def act(self, frames: np.ndarray, gen: torch.Generator) -> np.ndarray:
        """Frames (N, H, W, 3) uint8 of every game -> effective actions (N,)."""
        c = self.policy.cfg
        e = self.policy.encode(torch.from_numpy(np.ascontiguousarray(frames)))
        self.emb = torch.cat([self.emb[:, 1:], e[:, None]], 1)
        self.prev = torch.cat([self.prev[:, 1:], self.last[:, None]], 1)
        logits = self.policy.heads(self.emb, self.prev)[:, -1]
        a = torch.multinomial(torch.softmax(logits.float(), -1), 1, generator=gen)[:, 0]
        if self.epsilon > 0:
            rand = torch.randint(0, c.num_actions, a.shape, generator=gen)
            a = torch.where(torch.rand(a.shape, generator=gen) < self.epsilon, rand, a)
        self.last = a
        a = a.numpy()
        return a if self.to_env is None else self.to_env(a, gen)


# --------------------------------------------------------------------------------------------- training
def windows(starts: np.ndarray, t: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """For decision frames ``t`` (global frame index) in episodes starting at ``starts`` (global index of each
    one's first frame): global frame indices (N, seq_len) ending at t, and a validity mask (left padding)."""
    offs = np.arange(-seq_len + 1, 1)
    idx = t[:, None] + offs[None]
    valid = idx >= starts[:, None]
    return np.where(valid, idx, 0), valid


class BCData:
    """Every decision of a set of episodes in memory: frames (F, H, W, 3) uint8, per-frame targets (the action
    taken at that frame, -1 at an episode's last frame) and the episode start of each frame."""

    def __init__(self, frames: np.ndarray, targets: np.ndarray, episode_start: np.ndarray):
        self.frames = torch.from_numpy(frames)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.start = np.asarray(episode_start, dtype=np.int64)
        self.decisions = np.flatnonzero(self.targets >= 0)

    @classmethod
    def from_episodes(cls, episodes: list[tuple[np.ndarray, np.ndarray]]) -> "BCData":
        """``[(frames (L, H, W, 3), actions (L - 1,)), ...]``."""
        frames, targets, starts, pos = [], [], [], 0
        for f, a in episodes:
            frames.append(f)
            targets.append(np.concatenate([np.asarray(a, dtype=np.int64), [-1]]))
            starts.append(np.full(len(f), pos))
            pos += len(f)
        return cls(np.concatenate(frames), np.concatenate(targets), np.concatenate(starts))

    def batch(self, t: np.ndarray, seq_len: int, num_actions: int):
        idx, valid = windows(self.start[t], t, seq_len)
        frames = self.frames[torch.from_numpy(idx.reshape(-1))].reshape(*idx.shape, *self.frames.shape[1:])
        frames = frames * torch.from_numpy(valid)[..., None, None, None]
        prev_idx = idx - 1
        has_prev = valid & (prev_idx >= self.start[t][:, None])
        prev = np.where(has_prev, self.targets[np.maximum(prev_idx, 0)], num_actions)
        target = np.where(valid, self.targets[idx], -100)
        return frames, torch.from_numpy(prev), torch.from_numpy(target)


def train_bc(data: BCData, cfg: AgentPolicyConfig, steps: int = 3000, batch_size: int = 16, lr: float = 3e-4,
             seed: int = 0, val: BCData | None = None, log_dir=None, progress: bool = True,
             log_every: int = 100) -> tuple[BCPolicy, dict]:
    """Cross-entropy on every valid position of random windows; returns (policy, metrics)."""
    if len(data.decisions) == 0:
        raise UserError("no labelled transitions to train on")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    policy = BCPolicy(cfg)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100) * max(0.05, 1 - s / steps))
    writer = None
    if log_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(log_dir))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc="agent train", unit="step", mininterval=5)
    metrics = {}
    ema = None
    policy.train()
    for step in range(steps):
        t = rng.choice(data.decisions, size=batch_size)
        frames, prev, target = data.batch(t, cfg.seq_len, cfg.num_actions)
        logits = policy(frames, prev)
        loss = nn.functional.cross_entropy(logits.reshape(-1, cfg.num_actions), target.reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        sched.step()
        lv = float(loss.detach())
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.3f}", refresh=False)
        if writer is not None and (step + 1) % log_every == 0:
            writer.add_scalar("agent/train_loss", ema, step + 1)
    metrics["train_loss_ema"] = round(ema, 4)
    metrics["train_accuracy"] = round(accuracy(policy, data, cfg), 4)
    if val is not None and len(val.decisions):
        metrics["val_accuracy"] = round(accuracy(policy, val, cfg), 4)
        if writer is not None:
            writer.add_scalar("agent/val_accuracy", metrics["val_accuracy"], steps)
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.close()
    policy.eval()
    return policy, metrics


@torch.no_grad()
def accuracy(policy: BCPolicy, data: BCData, cfg: AgentPolicyConfig, limit: int = 4000) -> float:
    """Argmax accuracy at the last position of windows ending at (up to ``limit``, evenly spaced) decisions."""
    was = policy.training
    policy.eval()
    t = data.decisions[np.linspace(0, len(data.decisions) - 1, min(limit, len(data.decisions))).astype(int)]
    correct = 0
    for i in range(0, len(t), 256):
        frames, prev, target = data.batch(t[i:i + 256], cfg.seq_len, cfg.num_actions)
        pred = policy(frames, prev)[:, -1].argmax(-1)
        correct += int((pred == target[:, -1]).sum())
    policy.train(was)
    return correct / len(t)
