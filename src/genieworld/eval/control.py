"""A quick controllability check for training runs: Delta_t PSNR on a fixed handful of held-out clips.

``genie eval`` measures Delta_t PSNR on many clips at evaluation settings; this is the same
quantity on a few clips at *play* settings (``sampling.play_maskgit_steps``), cheap enough to
log to TensorBoard every few hundred steps, so a run shows early whether its actions matter::

    prompt   = the first frame of each clip
    x̂_t      rolled out with the clip's own actions (the LAM's reading of the real frames, or the
             recorded actions in ground-truth mode)
    x̂'_t     rolled out with uniformly random actions, same sampling seed
    ΔtPSNR   = mean over clips of PSNR(x_t, x̂_t) - PSNR(x_t, x̂'_t) at frame t (1-indexed, default 4)

It reads the parts it is given (tokenizer, dynamics, an action-vector function) and never
changes them or the global RNG, so a training run with the check is the same run as without it.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import torch

from genieworld.eval.metrics import psnr


class ControlCheck:
    """Fixed clips (B, t, H, W, 3) uint8 and their recorded actions (B, t-1) from a held-out store."""

    def __init__(self, store, clips: int = 8, t: int = 4, seed: int = 0, effective: bool = False):
        from genieworld.eval.evaluate import load_clips, select_clips

        if t < 2:
            raise ValueError(f"the controllability check needs t >= 2, got {t}")
        refs = select_clips(store.episode_lengths, clips, t, seed)
        if not refs:
            raise ValueError(f"{store.path}: no episode with {t} frames for the controllability check")
        frames, actions = load_clips(store, refs, t)
        self.frames = torch.from_numpy(frames)
        self.true_actions = None
        if actions is not None:
            a = np.asarray(actions, dtype=np.int64)
            if effective:
                from genieworld.data.coinrun import effective_action

                a = effective_action(a)
            self.true_actions = torch.from_numpy(a)
        self.t, self.seed = int(t), int(seed)

    @torch.no_grad()
    def run(self, tokenizer, dynamics, action_vectors, num_actions: int, sampling, actions: str = "lam",
            lam=None) -> dict:
        from genieworld.sampling import World

        device = dynamics.head.weight.device
        frames = self.frames.to(device)
        if actions == "true":
            if self.true_actions is None:
                return {}
            ids = self.true_actions.to(device)
        else:
            ids = lam.encode_actions(frames)[0]
        was_training = dynamics.training
        dynamics.eval()
        smp = replace(sampling, maskgit_steps=sampling.play_maskgit_steps or sampling.maskgit_steps)
        parts = SimpleNamespace(tokenizer=tokenizer, dynamics=dynamics, sampling=smp, device=device,
                                num_actions=num_actions, lam=SimpleNamespace(action_vectors=action_vectors))
        g = torch.Generator().manual_seed(self.seed)
        rand = torch.randint(0, num_actions, ids.shape, generator=g).to(device)
        out = {}
        try:
            for name, acts in (("own", ids), ("random", rand)):
                world = World(parts, frames[:, :1], seed=self.seed, sampling=smp)
                for k in range(self.t - 1):
                    frame = world.step_batch(acts[:, k])
                fake = torch.from_numpy(frame).float() / 255
                real = frames[:, self.t - 1].cpu().float() / 255
                out[name] = psnr(fake, real)
        finally:
            dynamics.train(was_training)
        return {"delta_t_psnr": float((out["own"] - out["random"]).mean()), "psnr_own_actions": float(out["own"].mean()),
                "psnr_random_actions": float(out["random"].mean())}
