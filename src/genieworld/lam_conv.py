"""Convolutional latent action model (``LAMConfig.arch == "conv"``; not in the paper).

The paper's LAM is an ST-transformer VQ-VAE over 16x16 patches.  On CoinRun at CPU scale it
never found the actions (NMI 0.007 against the true actions after 600 steps): what an action
changes in one transition -- the sprite turning round, a few pixels of scroll, the start of a
jump -- is smaller than one patch, and a decoder that sees the whole past can predict the next
frame well enough without it.  This model keeps the paper's idea (an inverse-dynamics encoder
whose discrete code must explain x_t -> x_{t+1} to a forward-dynamics decoder) and changes the
parts that failed:

* **Short windows.**  The action of x_t -> x_{t+1} is read from (x_{t-1}, x_t, x_{t+1}) only,
  so thousands of transitions fit in a CPU batch (the transformer LAM saw 2 clips per step).
  The first transition of a clip uses x_t in place of the missing x_{t-1}.
* **Pixels at full resolution.**  Both halves are small conv nets: nothing is averaged into a
  patch before the model sees it.
* **A decoder that cannot simply copy.**  The forward model sees only (x_{t-1}, x_t) and predicts
  the change x_{t+1} - x_t; the latent action enters by FiLM at every level of its U-Net, not once
  at the input.  The motion it can extrapolate (inertia) costs the latent nothing -- but when
  actions are held for several steps, that motion gives the action away too, and the latent
  learns to carry something else.
* **An InfoNCE loss on a learned embedding** (``conv.nce_weight``, off by default; on in the ``cpu``
  preset): from (x_{t-1}, x_t) and the action a head predicts an embedding of x_{t+1} that must pick
  it out of the batch (``conv.nce_crop``: of the central square only; ``conv.nce_latent =
  "continuous"``: read from the latent before the codebook, so the action can live in the latent
  without taking over the codes).

The other designs measured on CoinRun (docs/experiments.md, "The separate LAM stage", 2-3 and 9-11)
were none better than the plain model and were taken out; docs/experiments.md, "Options removed",
names them and the commit that still runs them.

Shapes (B batch, T frames, K = T - 1 transitions, C channels, H = W = image_size)::

    frames (B, T, H, W, C) uint8 or [0, 1]
    idm input per transition k:  [x_{k-1}, x_k, x_{k+1}, x_{k+1} - x_k]     (B*K, 4C, H, W)
    idm: stride-2 convs down to 4x4 -> MLP -> latent z                      (B, K, code_dim)
    VQ (L2-normalised codebook, dead-code restarts)  -> indices (B, K), vectors (B, K, code_dim)
    fdm: U-Net on [x_{k-1}, x_k], FiLM(a_k) at every level -> x_k + delta   (B, K, H, W, C)

Alignment is :class:`genieworld.lam.LatentActionModel`'s: index k is the action of
x_{k+1} -> x_{k+2} (1-based frames), and it depends only on frames up to x_{k+2}.  Play needs
only :meth:`action_vectors` (the codebook), exactly as with the transformer LAM.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from genieworld.config import LAMConfig
from genieworld.lam_codebook import ActionCodebook
from genieworld.nn.quantizer import VectorQuantizer
from genieworld.tokenizer import check_video_shape, to_float_video


def _widths(cfg: LAMConfig) -> list[int]:
    """Channel width per stride-2 level: down from image_size to 4x4, doubling up to 4x the base."""
    size = cfg.image_size
    if size < 16 or size & (size - 1):
        raise ValueError(f"the conv LAM needs a power-of-two image_size >= 16, got {size}")
    levels = int(math.log2(size // 4))
    c = cfg.conv.channels
    if c < 1 or cfg.conv.fdm_channels < 1 or cfg.conv.hidden < 1:
        raise ValueError(f"conv LAM channels, fdm_channels and hidden must be >= 1, got {c}, "
                         f"{cfg.conv.fdm_channels}, {cfg.conv.hidden}")
    return [c * min(2**i, 4) for i in range(levels)]


def _down_convs(cfg: LAMConfig, images: int) -> list[nn.Module]:
    """``images`` stacked images (B, images*C, H, W) -> (B, _widths(cfg)[-1], 4, 4): stride-2 conv, GroupNorm
    and GELU per level of :func:`_widths`."""
    layers, cin = [], images * cfg.channels
    for w in _widths(cfg):
        layers += [nn.Conv2d(cin, w, 3, 2, 1), nn.GroupNorm(min(8, w), w), nn.GELU()]
        cin = w
    return layers


class InverseDynamics(nn.Module):
    """(x_{t-1}, x_t, x_{t+1}) -> continuous latent action (code_dim)."""

    def __init__(self, cfg: LAMConfig):
        super().__init__()
        self.convs = nn.Sequential(*_down_convs(cfg, 4))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(_widths(cfg)[-1] * 16, cfg.conv.hidden), nn.GELU(),
                                  nn.Linear(cfg.conv.hidden, cfg.vq.code_dim))

    def forward(self, prev_bchw, cur_bchw, nxt_bchw) -> torch.Tensor:
        x = torch.cat([prev_bchw, cur_bchw, nxt_bchw, nxt_bchw - cur_bchw], dim=1)
        return self.head(self.convs(x))


def _centre_crop(x_bchw: torch.Tensor, side: int) -> torch.Tensor:
    """The central ``side`` x ``side`` square of each image (B, C, side, side)."""
    h, w = x_bchw.shape[-2:]
    top, left = (h - side) // 2, (w - side) // 2
    return x_bchw[..., top:top + side, left:left + side]


def _embedder(cfg: LAMConfig, frames: int, out: int) -> nn.Sequential:
    """``frames`` stacked images (B, frames*C, H, W) -> (B, out): the encoder's stride-2 convs, then a linear."""
    return nn.Sequential(*_down_convs(cfg, frames), nn.Flatten(), nn.Linear(_widths(cfg)[-1] * 16, out))


class ForwardDynamics(nn.Module):
    """U-Net: (x_{t-1}, x_t) and action vector a -> x_t + predicted change; FiLM(a) at every level.

    It works on 2x2 space-to-depth images (pixel unshuffle in, pixel shuffle out), so every
    pixel reaches the loss at a quarter of the cost of a full-resolution first level; levels go
    from H/2 down to 8x8, doubling the width (capped at 4x).
    """

    def __init__(self, cfg: LAMConfig):
        super().__init__()
        size, ch, c0 = cfg.image_size, cfg.channels, cfg.conv.fdm_channels
        levels = int(math.log2(size // 16)) + 1  # H/2 ... 8
        widths = [c0 * min(2**i, 4) for i in range(levels)]
        self.stem = nn.Conv2d(2 * ch * 4, widths[0], 3, 1, 1)
        self.down = nn.ModuleList([nn.Conv2d(widths[i], widths[i + 1], 3, 2, 1) for i in range(levels - 1)])
        self.film = nn.ModuleList([nn.Linear(cfg.vq.code_dim, 2 * w) for w in widths])
        # up[j] takes level i+1 (after merging its skip) to level i's resolution and width
        self.up = nn.ModuleList([nn.Conv2d(widths[i + 1] * (1 if i == levels - 2 else 2), widths[i], 3, 1, 1)
                                 for i in range(levels - 2, -1, -1)])
        self.out = nn.Conv2d(widths[0] * (2 if levels > 1 else 1), ch * 4, 3, 1, 1)
        nn.init.zeros_(self.out.weight)  # "nothing moves" at initialisation
        nn.init.zeros_(self.out.bias)
        for f in self.film:  # FiLM starts as the identity
            nn.init.zeros_(f.weight)
            nn.init.zeros_(f.bias)

    @staticmethod
    def _film(h, p):
        scale, shift = rearrange(p, "b (two c) -> two b c 1 1", two=2)
        return F.gelu(h * (1 + scale) + shift)

    def forward(self, prev_bchw, cur_bchw, a_bd) -> torch.Tensor:
        x = F.pixel_unshuffle(torch.cat([prev_bchw, cur_bchw], dim=1), 2)
        h = self._film(self.stem(x), self.film[0](a_bd))
        skips = [h]
        for conv, film in zip(self.down, self.film[1:]):
            h = self._film(conv(h), film(a_bd))
            skips.append(h)
        h = skips.pop()
        for i, up in enumerate(self.up):
            h = F.gelu(up(F.interpolate(h if i == 0 else torch.cat([h, skips.pop()], dim=1), scale_factor=2.0)))
        if self.up:
            h = torch.cat([h, skips.pop()], dim=1)
        return cur_bchw + F.pixel_shuffle(self.out(h), 2)


class ConvLatentActionModel(ActionCodebook, nn.Module):
    """Same interface as :class:`genieworld.lam.LatentActionModel` (forward, encode_actions, action_vectors)."""

    def __init__(self, cfg: LAMConfig):
        super().__init__()
        if cfg.vq.num_codes < 1:
            raise ValueError("LAM needs at least one action code")
        if not cfg.conv.nce_weight >= 0:
            raise ValueError(f"LAM conv.nce_weight must be >= 0, got {cfg.conv.nce_weight}")
        self.cfg = cfg
        self.idm = InverseDynamics(cfg)
        self.vq = VectorQuantizer(cfg.vq)
        _widths(cfg)  # validates image_size and channels
        self.fdm = ForwardDynamics(cfg)
        self._init_merge()
        crop = cfg.conv.nce_crop
        if crop and not (16 <= crop < cfg.image_size and crop & (crop - 1) == 0):
            raise ValueError(f"LAM conv.nce_crop must be 0 or a power of two >= 16 below image_size "
                             f"{cfg.image_size}, got {crop}")
        if cfg.conv.nce_weight > 0:  # InfoNCE in a learned embedding (see _nce_loss)
            ecfg = dataclasses.replace(cfg, image_size=crop) if crop else cfg  # what the embedders see
            self.nce_target = _embedder(ecfg, 1, 128)  # x_{t+1} (and x_t, as a negative)
            self.nce_context = _embedder(ecfg, 2, 128)  # (x_{t-1}, x_t)
            self.nce_head = nn.Sequential(nn.Linear(128 + cfg.vq.code_dim, 256), nn.GELU(), nn.Linear(256, 128))

    # ------------------------------------------------------------------ windows
    def _windows(self, frames: torch.Tensor):
        """(prev, cur, nxt) images (B*K, C, H, W) in [-1, 1] for the K = T-1 transitions of ``frames``."""
        check_video_shape(frames, self.cfg.image_size, self.cfg.channels, who="the LAM expects frames")
        if frames.shape[1] < 2:
            raise ValueError(f"LAM needs at least 2 frames to infer an action, got {frames.shape[1]}")
        x = rearrange(to_float_video(frames) * 2.0 - 1.0, "b t h w c -> b t c h w")
        prev = torch.cat([x[:, :1], x[:, :-2]], dim=1)  # x_{k-1}, with x_0 standing in before the clip
        flat = lambda v: rearrange(v, "b k c h w -> (b k) c h w")  # noqa: E731
        return flat(prev), flat(x[:, :-1]), flat(x[:, 1:])

    def encode_latents(self, frames: torch.Tensor) -> torch.Tensor:
        """Continuous (pre-VQ) latent actions (B, T-1, code_dim); index k is the transition x_{k+1} -> x_{k+2}."""
        prev, cur, nxt = self._windows(frames)
        return rearrange(self.idm(prev, cur, nxt), "(b k) d -> b k d", b=frames.shape[0])

    # ------------------------------------------------------------------ training
    def _nce_loss(self, prev, cur, nxt, a_bd) -> torch.Tensor:
        """InfoNCE: the predicted embedding of each transition must be nearest (cosine / 0.1) its own x_{t+1}'s
        among the batch's next frames and current frames (x_t: the "nothing happened" future); with
        ``conv.nce_crop`` every image is first cut to its central square.  ``a_bd``: the quantised action,
        or the continuous latent with ``conv.nce_latent = "continuous"``."""
        if self.cfg.conv.nce_crop:
            prev, cur, nxt = (_centre_crop(v, self.cfg.conv.nce_crop) for v in (prev, cur, nxt))
        pred = F.normalize(self.nce_head(torch.cat([self.nce_context(torch.cat([prev, cur], 1)), a_bd], -1)), dim=-1)
        cands = F.normalize(self.nce_target(torch.cat([nxt, cur], 0)), dim=-1)  # (2N, 128): next frames, then x_t
        logits = pred.float() @ cands.float().t() / 0.1  # (N, 2N)
        return F.cross_entropy(logits, torch.arange(len(pred), device=pred.device))

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Returns (predictions of x_2..x_T (B, T-1, H, W, C) in [0, 1] scale, info) as the transformer LAM."""
        prev, cur, nxt = self._windows(frames)
        z = self.idm(prev, cur, nxt)  # (B*K, code_dim)
        zq, idx, vq_info = self.vq(z)
        pred = self.fdm(prev, cur, zq)
        # the model works in [-1, 1]; the loss is reported in [0, 1] units like the transformer LAM's
        mse = ((pred.float() - nxt) ** 2).mean() / 4.0
        b = frames.shape[0]
        info = self.training_info(mse, vq_info, rearrange(idx, "(b k) -> b k", b=b),
                                  rearrange(zq, "(b k) d -> b k d", b=b))
        c = self.cfg.conv
        if c.nce_weight > 0:
            nce = self._nce_loss(prev, cur, nxt, z if c.nce_latent == "continuous" else zq)
            info["loss"] = info["loss"] + c.nce_weight * nce
            info["nce"] = nce.detach()
        pred_out = rearrange((pred.detach() + 1) / 2, "(b k) c h w -> b k h w c", b=b)
        return pred_out, info
