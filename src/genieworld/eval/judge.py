"""An action judge: a supervised inverse-dynamics model (IDM) that reads which effective action a
transition shows, trained on *real* frames with their recorded actions and never on generated ones.

It is the reader of generated frames that is not the model's own LAM (MineWorld and Matrix-Game
score action following this way): :mod:`genieworld.eval.play_quality` holds each button and asks
the judge what the frames show.

    x_{t-1}, x_t, x_{t+1}  (3, H, W, 3) uint8  ->  logits over the game's effective actions
                                                    (CoinRun: 2 * direction{L, none, R} + jump)

The judge reads a_t, the action taken at frame t that produced x_{t+1}; x_{t-1} gives it the motion
already under way (a fall, a jump's rise).  One judge is trained per training store (about a minute
on 2 cores) and saved in a ``judge`` folder (config.json, model.safetensors, judge.json with the
store's digest and the judge's accuracy on held-out real transitions); :func:`load_or_train_judge`
reuses it while the store's digest matches and trains it again when the store changes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from genieworld.errors import UserError

DIRECTIONS = ("left", "none", "right")


@dataclass
class JudgeConfig:
    image_size: int = 64
    num_classes: int = 6  # CoinRun's effective actions (genieworld.data.coinrun.EFFECTIVE_NAMES)
    channels: int = 32
    steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    max_episodes: int = 600  # training episodes read from the store (an evenly spread subset)


class ConvJudge(nn.Module):
    """Four strided convolutions over the three frames stacked on channels, then a linear head."""

    def __init__(self, cfg: JudgeConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        layers, cin = [], 9
        for cout in (c, 2 * c, 2 * c, 4 * c):
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.GroupNorm(8, cout), nn.SiLU()]
            cin = cout
        self.net = nn.Sequential(*layers)
        side = cfg.image_size // 16
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(cin * side * side, 256), nn.SiLU(), nn.Linear(256, cfg.num_classes))

    def forward(self, x_b3hwc: torch.Tensor) -> torch.Tensor:
        """Logits (B, classes) of uint8 frame triples (B, 3, H, W, C)."""
        x = rearrange(x_b3hwc.float() / 127.5 - 1.0, "b t h w c -> b (t c) h w")
        return self.head(self.net(x))

    @torch.no_grad()
    def read(self, triples_b3hwc: np.ndarray, batch: int = 256) -> np.ndarray:
        """Effective action ids (B,) the judge reads in uint8 triples."""
        self.eval()
        out = [self(torch.from_numpy(np.ascontiguousarray(triples_b3hwc[i:i + batch]))).argmax(-1)
               for i in range(0, len(triples_b3hwc), batch)]
        return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def direction(eff: np.ndarray) -> np.ndarray:
    return np.asarray(eff) // 2


def jump(eff: np.ndarray) -> np.ndarray:
    return np.asarray(eff) % 2


def triples_of(video_bthwc: np.ndarray, start: int = 1) -> np.ndarray:
    """(B * (T - 1 - start), 3, H, W, C): every triple (x_{t-1}, x_t, x_{t+1}) with t >= start."""
    t = video_bthwc.shape[1]
    out = [video_bthwc[:, k - 1:k + 2] for k in range(max(1, start), t - 1)]
    return np.concatenate(out) if out else np.zeros((0, 3, *video_bthwc.shape[2:]), np.uint8)


def _store_triples(store, episodes) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from genieworld.data.coinrun import effective_action

    frames, labels = [], []
    for e in episodes:
        f = store.read_frames(int(e))
        a = store.read_actions(int(e), 0, len(f) - 1)
        if a is None or len(f) < 3:
            continue
        frames.append(f)
        labels.append(effective_action(np.asarray(a)))
    return frames, labels


def _sample(frames, labels, rng, n):
    ep = rng.integers(0, len(frames), n)
    x, y = [], []
    for e in ep.tolist():
        t = int(rng.integers(1, len(frames[e]) - 1))
        x.append(frames[e][t - 1:t + 2])
        y.append(labels[e][t])
    return np.stack(x), np.asarray(y, dtype=np.int64)


def real_triples(store, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random real triples of ``store`` and their effective actions (a_t of the middle frame)."""
    rng = np.random.default_rng(seed)
    frames, labels = _store_triples(store, range(store.num_episodes))
    if not frames:
        raise ValueError(f"{store.path}: no episode with recorded actions and 3 frames or more")
    return _sample(frames, labels, rng, n)


def train_judge(store, cfg: JudgeConfig | None = None, progress: bool = False) -> ConvJudge:
    """Train the judge on real triples of ``store`` (which must hold recorded CoinRun actions)."""
    cfg = cfg or JudgeConfig(image_size=int(store.resolution[0]))
    if cfg.image_size % 16 or store.resolution != (cfg.image_size, cfg.image_size):
        raise ValueError(f"{store.path}: frames are {store.resolution}; the judge reads square frames of "
                         f"{cfg.image_size} px, a multiple of 16")
    from genieworld.data.loader import spread_episodes

    eps = spread_episodes(store.num_episodes, min(1.0, cfg.max_episodes / max(1, store.num_episodes)))
    frames, labels = _store_triples(store, range(store.num_episodes) if eps is None else eps)
    if not frames:
        raise ValueError(f"{store.path}: no episode with recorded actions; the judge needs them")
    gen = torch.Generator().manual_seed(cfg.seed)
    state = torch.random.get_rng_state()
    torch.manual_seed(cfg.seed)
    net = ConvJudge(cfg)
    torch.random.set_rng_state(state)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    rng = np.random.default_rng(cfg.seed)
    net.train()
    for step in range(cfg.steps):
        x, y = _sample(frames, labels, rng, cfg.batch_size)
        if torch.rand((), generator=gen) < 0.5:  # horizontal flips swap left and right
            x = x[:, :, :, ::-1].copy()
            y = np.where(y // 2 == 0, y + 4, np.where(y // 2 == 2, y - 4, y))
        loss = F.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress and (step + 1) % 250 == 0:
            print(f"[judge] step {step + 1}/{cfg.steps} loss {loss.item():.3f}", flush=True)
    net.eval()
    return net


def judge_accuracy(net: ConvJudge, store, n: int = 3000, seed: int = 1) -> dict:
    """Accuracy on ``n`` real triples of ``store`` (held-out levels): 6-way, direction, jump, and per true
    action the share read with its direction (the game's own following rate)."""
    from genieworld.data.coinrun import EFFECTIVE_NAMES

    x, y = real_triples(store, n, seed)
    p = net.read(x)
    out = {"n": int(n), "acc": float((p == y).mean()), "acc_direction": float((direction(p) == direction(y)).mean()),
           "acc_jump": float((jump(p) == jump(y)).mean()), "majority": float(np.bincount(y).max() / len(y)),
           "real_following_direction": {}, "real_following_jump": {}}
    for c, name in enumerate(EFFECTIVE_NAMES):
        sel = y == c
        if sel.any():
            out["real_following_direction"][name] = float((direction(p[sel]) == c // 2).mean())
            out["real_following_jump"][name] = float((jump(p[sel]) == c % 2).mean())
    return out


def save_judge(net: ConvJudge, path, info: dict) -> Path:
    from genieworld import owned
    from genieworld.utils import atomic_write_text
    from genieworld.weights import save_weights

    path = owned.claim(path, "judge", "the judge folder")
    save_weights(net, path / "model.safetensors")
    atomic_write_text(path / "config.json", json.dumps(asdict(net.cfg), indent=2) + "\n")
    atomic_write_text(path / "judge.json", json.dumps(info, indent=2) + "\n")
    return path


def load_judge(path) -> tuple[ConvJudge, dict]:
    from genieworld.config import from_dict
    from genieworld.utils import read_json
    from genieworld.weights import load_weights

    path = Path(path)
    cfg = from_dict(JudgeConfig, read_json(path / "config.json"), where=str(path / "config.json"))
    net = ConvJudge(cfg)
    load_weights(net, path / "model.safetensors")
    net.eval()
    return net, read_json(path / "judge.json")


def load_or_train_judge(path, train_store, test_store, cfg: JudgeConfig | None = None, progress: bool = True
                        ) -> tuple[ConvJudge, dict]:
    """The judge saved at ``path`` when it was trained on ``train_store`` as it is now; else train one
    (on ``train_store``), score it on ``test_store`` and save it there."""
    from genieworld.data.store import store_digest

    digest = store_digest(train_store)
    path = Path(path)
    if (path / "judge.json").is_file():
        try:
            net, info = load_judge(path)
            if info.get("store_digest") == digest:
                return net, info
            print(f"[judge] {path}: trained on another store; training again", flush=True)
        except (UserError, OSError, AttributeError) as e:  # a damaged judge is retrained, and says so
            print(f"[judge] {path}: unreadable ({type(e).__name__}: {str(e)[:200]}); training again", flush=True)
    t0 = time.time()
    if progress:
        steps = (cfg or JudgeConfig()).steps
        print(f"[judge] training the action judge on {Path(train_store.path).name} ({steps} steps, about 5 min on "
              f"one free core; cached in {path} for later runs)", flush=True)
    net = train_judge(train_store, cfg, progress=progress)
    info = {"store_digest": digest, "train_store": Path(train_store.path).name, "train_seconds": round(time.time() - t0, 1),
            "config": asdict(net.cfg), "heldout": judge_accuracy(net, test_store)}
    save_judge(net, path, info)
    return net, info
