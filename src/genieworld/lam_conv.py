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
* **A decoder that cannot simply copy.**  The forward model sees only (x_{t-1}, x_t), or with
  ``conv.fdm_frames = 1`` only x_t, and predicts the change x_{t+1} - x_t; the latent action
  enters by FiLM at every level of its U-Net, not once at the input.  With two frames the motion
  it can extrapolate (inertia) costs the latent nothing -- but when actions are held for several
  steps, that motion gives the action away too, and the latent learns to carry something else.
* **A loss about what moved** (``conv.centre_weight``, ``conv.change_weight``, both 0 by
  default): optional weights toward the frame centre and toward changed pixels.
* **Research options, off by default** (each measured on CoinRun and none better than the
  default there; docs/experiments.md, "The separate LAM stage", 9): ``conv.camera_shift`` hands
  the decoder the camera's measured motion (:func:`measure_shift`), ``conv.fdm_hide_centre``
  hides the agent's square from it, ``conv.fdm_next_outside`` shows it x_{t+1} outside that square,
  ``conv.persist_weight`` also scores x_{t+2} with the same action, as if the key were held,
  ``conv.camera_shift = "inertia"`` moves x_t by a gain on the previous shift plus an action term,
  ``conv.shift_rank_weight`` ranks the prediction against 1-2 px moves of the true x_{t+1},
  ``conv.best_code_weight`` trains the encoder to pick the code whose drawing explains x_{t+1} best,
  ``conv.slow_weight`` pulls the latents of consecutive transitions together, as a held key would,
  ``conv.nce_weight`` adds an InfoNCE loss on a learned embedding of x_{t+1} (``conv.nce_crop``: of
  the central square only; ``conv.nce_latent = "continuous"``: read from the latent before the
  codebook, so the action can live in the latent without taking over the codes).

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


def shift_images(x_bchw: torch.Tensor, shift_b2: torch.Tensor) -> torch.Tensor:
    """Translate each image by (dx, dy) in units of the half-width (grid_sample's [-1, 1] coordinates;
    + moves the content left/up), bilinear, edges repeated."""
    b = x_bchw.shape[0]
    theta = torch.zeros(b, 2, 3, dtype=x_bchw.dtype, device=x_bchw.device)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    theta[:, :, 2] = shift_b2.to(x_bchw.dtype)
    grid = F.affine_grid(theta, list(x_bchw.shape), align_corners=False)
    return F.grid_sample(x_bchw, grid, mode="bilinear", padding_mode="border", align_corners=False)


@torch.no_grad()
def measure_shift(a_bchw: torch.Tensor, b_bchw: torch.Tensor, max_dx: int, max_dy: int) -> torch.Tensor:
    """The view's motion d (B, 2) = [dx, dy] in pixels (+x right, +y down) from image a to image b:
    ``b(p) ~ a(p + d)``.  Whole-pixel search over [-max_dx, max_dx] x [-max_dy, max_dy] by the sum of
    squared differences of the grey images on the central region (one grouped convolution), then a
    parabola through the best shift and its neighbours along each axis (sub-pixel, at most +-0.5)."""
    b, _, h, w = a_bchw.shape
    ga, gb = a_bchw.float().mean(1), b_bchw.float().mean(1)  # (B, H, W)
    target = gb[:, max_dy:h - max_dy, max_dx:w - max_dx]  # (B, h', w')
    cross = F.conv2d(ga[None], target[:, None], groups=b)[0]  # (B, 2dy+1, 2dx+1): sum a(p + d) * b(p)
    a2 = F.conv2d((ga * ga)[:, None], torch.ones_like(target[:1, None]))[:, 0]
    ssd = a2 - 2 * cross + target.pow(2).sum((1, 2))[:, None, None]
    ny, nx = ssd.shape[1:]
    best = ssd.flatten(1).argmin(1)
    iy, ix = best // nx, best % nx
    rows = torch.arange(b, device=ssd.device)

    def refine(e_minus, e0, e_plus, ok):
        den = e_minus - 2 * e0 + e_plus
        off = torch.where(ok & (den > 0), 0.5 * (e_minus - e_plus) / den.clamp_min(1e-12), torch.zeros_like(den))
        return off.clamp(-0.5, 0.5)

    e0 = ssd[rows, iy, ix]
    okx, oky = (ix > 0) & (ix < nx - 1), (iy > 0) & (iy < ny - 1)
    fx = refine(ssd[rows, iy, (ix - 1).clamp_min(0)], e0, ssd[rows, iy, (ix + 1).clamp_max(nx - 1)], okx)
    fy = refine(ssd[rows, (iy - 1).clamp_min(0), ix], e0, ssd[rows, (iy + 1).clamp_max(ny - 1), ix], oky)
    return torch.stack([ix - max_dx + fx, iy - max_dy + fy], dim=1)


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


def _outside_centre(size: int, k: int) -> torch.Tensor | None:
    """(1, 1, size, size) mask that is 0 in the central k x k square and 1 elsewhere; None for k = 0."""
    if not k:
        return None
    lo = (size - k) // 2
    mask = torch.ones(1, 1, size, size)
    mask[..., lo:lo + k, lo:lo + k] = 0
    return mask


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
        if cfg.conv.fdm_frames not in (1, 2):
            raise ValueError(f"LAM conv.fdm_frames must be 1 or 2, got {cfg.conv.fdm_frames}")
        self.frames = cfg.conv.fdm_frames
        self.camera = cfg.conv.camera_shift
        self.camera_range = (float(max(cfg.conv.camera_dx, 1)), float(max(cfg.conv.camera_dy, 1)))
        # FiLM input: the action (+ the camera shift, except with "inertia", where the shift enters only
        # through the base image, so the action alone must explain how the motion changed)
        cond = cfg.vq.code_dim + (2 if self.camera in ("previous", "given") else 0)
        self.next_outside = cfg.conv.fdm_next_outside > 0
        n_images = self.frames + (self.camera != "off") + self.next_outside
        self.stem = nn.Conv2d(n_images * ch * 4, widths[0], 3, 1, 1)
        self.down = nn.ModuleList([nn.Conv2d(widths[i], widths[i + 1], 3, 2, 1) for i in range(levels - 1)])
        self.film = nn.ModuleList([nn.Linear(cond, 2 * w) for w in widths])
        # up[j] takes level i+1 (after merging its skip) to level i's resolution and width
        self.up = nn.ModuleList([nn.Conv2d(widths[i + 1] * (1 if i == levels - 2 else 2), widths[i], 3, 1, 1)
                                 for i in range(levels - 2, -1, -1)])
        self.out = nn.Conv2d(widths[0] * (2 if levels > 1 else 1), ch * 4, 3, 1, 1)
        nn.init.zeros_(self.out.weight)  # "nothing moves" at initialisation
        nn.init.zeros_(self.out.bias)
        self.max_shift = float(cfg.conv.max_shift)
        self.motion = None
        if cfg.conv.global_motion:
            # (dx, dy) from the bottom level's pooled features and the action
            self.motion = nn.Sequential(nn.Linear(widths[-1] + cfg.vq.code_dim, 128), nn.GELU(), nn.Linear(128, 2))
            nn.init.zeros_(self.motion[-1].weight)
            nn.init.zeros_(self.motion[-1].bias)
        # (1, 1, H, W) masks, 0 in a centre square, or None: what is hidden of x_{t-1} and x_t / seen of x_{t+1}
        self.register_buffer("hide", _outside_centre(size, cfg.conv.fdm_hide_centre), persistent=False)
        self.register_buffer("outside", _outside_centre(size, cfg.conv.fdm_next_outside), persistent=False)
        self.step_motion = self.inertia = None
        if self.camera in ("previous", "inertia"):
            # "previous": this step's shift = the previous step's + a correction from the action and that
            # velocity; "inertia": gain * the previous step's + a term from the action alone (linear
            # inertia, as in CoinRun: v <- 0.8 v + 0.1 a per game step), so the code must carry the change
            # of velocity the action causes -- the action itself -- rather than the new velocity
            self.step_motion = nn.Sequential(nn.Linear(cond, 128), nn.GELU(), nn.Linear(128, 2))
            nn.init.zeros_(self.step_motion[-1].weight)
            nn.init.zeros_(self.step_motion[-1].bias)
        if self.camera == "inertia":
            self.inertia = nn.Parameter(torch.full((2,), 0.5))  # per-axis gain on the previous shift
        for f in self.film:  # FiLM starts as the identity
            nn.init.zeros_(f.weight)
            nn.init.zeros_(f.bias)

    @staticmethod
    def _film(h, p):
        scale, shift = rearrange(p, "b (two c) -> two b c 1 1", two=2)
        return F.gelu(h * (1 + scale) + shift)

    def forward(self, prev_bchw, cur_bchw, a_bd, camera_b2: torch.Tensor | None = None,
                next_bchw: torch.Tensor | None = None) -> torch.Tensor:
        """``camera_b2``: with ``conv.camera_shift`` on, the measured shift in pixels (B, 2) -- of
        x_{t-1} -> x_t ("previous", "inertia") or of x_t -> x_{t+1} ("given"); zeros when omitted.
        ``next_bchw``: x_{t+1}, needed with ``conv.fdm_next_outside`` (only its outside is used)."""
        if self.outside is not None and next_bchw is None:
            raise ValueError("conv.fdm_next_outside: the forward model needs x_{t+1} (next_bchw)")
        if self.hide is not None:
            prev_bchw, cur_bchw = prev_bchw * self.hide, cur_bchw * self.hide
        images = [prev_bchw, cur_bchw] if self.frames == 2 else [cur_bchw]
        base, cond = cur_bchw, a_bd
        if self.camera != "off":
            if camera_b2 is None:
                camera_b2 = a_bd.new_zeros(a_bd.shape[0], 2)
            cam = camera_b2.to(a_bd.dtype) / a_bd.new_tensor(self.camera_range)  # about [-1, 1]
            step = camera_b2.to(a_bd.dtype)
            if self.inertia is not None:
                step = step * self.inertia + self.step_motion(a_bd) * a_bd.new_tensor(self.camera_range)
            else:
                cond = torch.cat([a_bd, cam], dim=-1)
                if self.step_motion is not None:
                    step = step + self.step_motion(cond) * a_bd.new_tensor(self.camera_range)
            base = shift_images(cur_bchw, step * 2.0 / cur_bchw.shape[-1])  # pixels -> grid units
            if self.hide is not None:
                base = base * self.hide
            images.append(base)
        if self.outside is not None:
            images.append(next_bchw * self.outside)
        x = F.pixel_unshuffle(torch.cat(images, dim=1), 2)
        h = self._film(self.stem(x), self.film[0](cond))
        skips = [h]
        for conv, film in zip(self.down, self.film[1:]):
            h = self._film(conv(h), film(cond))
            skips.append(h)
        h = skips.pop()
        if self.motion is not None:
            shift = self.max_shift * 2 * torch.tanh(self.motion(torch.cat([h.mean(dim=(2, 3)), a_bd], dim=-1)))
            base = shift_images(cur_bchw, shift)
        for i, up in enumerate(self.up):
            h = F.gelu(up(F.interpolate(h if i == 0 else torch.cat([h, skips.pop()], dim=1), scale_factor=2.0)))
        if self.up:
            h = torch.cat([h, skips.pop()], dim=1)
        return base + F.pixel_shuffle(self.out(h), 2)


class ConvLatentActionModel(ActionCodebook, nn.Module):
    """Same interface as :class:`genieworld.lam.LatentActionModel` (forward, encode_actions, action_vectors)."""

    def __init__(self, cfg: LAMConfig):
        super().__init__()
        if cfg.vq.num_codes < 1:
            raise ValueError("LAM needs at least one action code")
        for name in ("centre_weight", "change_weight", "shift_rank_weight", "best_code_weight", "slow_weight",
                     "nce_weight"):
            if not getattr(cfg.conv, name) >= 0:
                raise ValueError(f"LAM conv.{name} must be >= 0, got {getattr(cfg.conv, name)}")
        self.cfg = cfg
        self.idm = InverseDynamics(cfg)
        self.vq = VectorQuantizer(cfg.vq)
        _widths(cfg)  # validates image_size and channels
        self.fdm = ForwardDynamics(cfg)
        self._init_merge()
        s = cfg.image_size
        yy, xx = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32),
                                indexing="ij")
        c, sigma = (s - 1) / 2, s / 8
        bump = torch.exp(-((yy - c) ** 2 + (xx - c) ** 2) / (2 * sigma**2))
        w = 1 + cfg.conv.centre_weight * bump
        self.register_buffer("centre_map", (w / w.mean())[None, None], persistent=False)  # (1, 1, H, W)
        crop = cfg.conv.nce_crop
        if crop and not (16 <= crop < cfg.image_size and crop & (crop - 1) == 0):
            raise ValueError(f"LAM conv.nce_crop must be 0 or a power of two >= 16 below image_size "
                             f"{cfg.image_size}, got {crop}")
        if cfg.conv.nce_weight > 0:  # InfoNCE in a learned embedding (see _nce_loss)
            ecfg = dataclasses.replace(cfg, image_size=crop) if crop else cfg  # what the embedders see
            self.nce_target = _embedder(ecfg, 1, 128)  # x_{t+1} (and x_t, as a negative)
            self.nce_context = _embedder(ecfg, 2, 128)  # (x_{t-1}, x_t)
            self.nce_head = nn.Sequential(nn.Linear(128 + cfg.vq.code_dim, 256), nn.GELU(), nn.Linear(256, 128))
        self.log_rank_temp = None
        if cfg.conv.shift_rank_weight > 0:  # temperature of the shift ranking loss, on the per-pixel MSE scale
            self.log_rank_temp = nn.Parameter(torch.tensor(math.log(1e-2)))

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
    def camera_shift(self, prev, cur, nxt) -> torch.Tensor | None:
        """The measured camera shift the forward model is given (``conv.camera_shift``), or None."""
        c = self.cfg.conv
        if c.camera_shift == "off":
            return None
        a, b = (cur, nxt) if c.camera_shift == "given" else (prev, cur)
        return measure_shift(a, b, c.camera_dx, c.camera_dy)

    def _persistence_loss(self, cur, nxt, zq, b: int) -> torch.Tensor:
        """MSE of x_{k+2} predicted from (x_k, x_{k+1}) with the latent action of x_k -> x_{k+1}, for every
        transition k whose window holds x_{k+2}: "the key is still held".  Players hold keys for several
        frames, so an action explains the frame after next too, while what it does not cause (where the
        camera already was, what it moved) the decoder sees in (x_k, x_{k+1}) itself."""
        cur_k, nxt_k = (rearrange(v, "(b k) c h w -> b k c h w", b=b) for v in (cur, nxt))
        a_k = rearrange(zq, "(b k) d -> b k d", b=b)
        if cur_k.shape[1] < 2:
            raise ValueError("conv.persist_weight needs windows of at least 3 frames")
        flat = lambda v: rearrange(v[:, :-1], "b k ... -> (b k) ...")  # noqa: E731
        p0, p1, tgt, a = flat(cur_k), flat(nxt_k), rearrange(nxt_k[:, 1:], "b k ... -> (b k) ..."), flat(a_k)
        pred = self.fdm(p0, p1, a, self.camera_shift(p0, p1, tgt), tgt)
        return (self._loss_weights(p1, tgt) * (pred.float() - tgt) ** 2).mean() / 4.0

    def _loss_weights(self, cur, nxt) -> torch.Tensor:
        w = self.centre_map
        if self.cfg.conv.change_weight > 0:
            change = (nxt - cur).abs().mean(dim=1, keepdim=True)  # (B*K, 1, H, W)
            cw = 1 + self.cfg.conv.change_weight * change / change.mean().clamp_min(1e-6)
            w = w * cw / cw.mean()
        return w

    def _shift_rank_loss(self, pred, cur, nxt) -> torch.Tensor:
        """Cross-entropy of picking the true x_{t+1} among it, its 1-2 px moves and x_t, by -MSE to ``pred``."""
        px = 2.0 / nxt.shape[-1]  # one pixel in grid units
        moves = [(0, 0)] + [(s * k, 0) for k in (1, 2) for s in (1, -1)] + [(0, s * k) for k in (1, 2) for s in (1, -1)]
        cands = [nxt if (dx, dy) == (0, 0) else shift_images(nxt, nxt.new_tensor([dx * px, dy * px]).expand(len(nxt), 2))
                 for dx, dy in moves] + [cur]
        d = torch.stack([((pred.float() - c) ** 2).mean(dim=(1, 2, 3)) for c in cands], dim=1)  # (B, 10)
        logits = -d / self.log_rank_temp.exp()
        return F.cross_entropy(logits, torch.zeros(len(d), dtype=torch.long, device=d.device))

    @staticmethod
    def _slow_loss(z, b: int) -> torch.Tensor:
        """Mean squared distance between the L2-normalised latents of consecutive transitions of a window,
        leaving out the first when there are 3 or more (it sees x_t in place of the missing x_{t-1})."""
        z_bkd = F.normalize(rearrange(z.float(), "(b k) d -> b k d", b=b), dim=-1)
        if z_bkd.shape[1] < 2:
            raise ValueError("conv.slow_weight needs windows of at least 3 frames")
        if z_bkd.shape[1] >= 3:
            z_bkd = z_bkd[:, 1:]
        return (z_bkd[:, 1:] - z_bkd[:, :-1]).pow(2).sum(-1).mean()

    def _best_code_loss(self, prev, cur, nxt, z, cam) -> torch.Tensor:
        """``conv.best_code_weight``'s loss on a random ``best_code_samples`` of the B*K transitions: the
        forward model draws each with every code, without gradient (cost: that many times the codebook
        size decodes), and the encoder's latent is classified, by its cosine similarities to the codes, as
        the code whose drawing is nearest x_{t+1}: a cross-entropy, one unit per transition. (Training
        the forward model too, to make the picked code's drawing the nearest, let it blow every drawing
        up: its reconstruction MSE rose from 0.02 to 10^4 within 250 CoinRun steps.)"""
        n, cb = len(z), self.vq.normalized_codebook().detach()  # (K, D)
        k = len(cb)
        pick = torch.randperm(n, device=z.device)[: self.cfg.conv.best_code_samples]
        m = len(pick)
        rep = lambda v: None if v is None else v[pick].repeat_interleave(k, dim=0)  # noqa: E731  (m*K, ...)
        p, c, x = rep(prev), rep(cur), rep(nxt)
        with torch.no_grad():  # cam: the forward model's camera shift of every transition, or None
            pred = self.fdm(p, c, cb.repeat(m, 1), rep(cam), x)  # code j of sample i at row i*K + j
            w = self._loss_weights(c, x)
            err = rearrange((w * (pred.float() - x) ** 2).mean(dim=(1, 2, 3)), "(m k) -> m k", k=k)
        sim = F.normalize(z[pick].float(), dim=-1) @ cb.float().t()  # (m, K) cosine
        return F.cross_entropy(sim / 0.1, err.argmin(1))

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
        cam = self.camera_shift(prev, cur, nxt)
        pred = self.fdm(prev, cur, zq, cam, nxt)
        w = self._loss_weights(cur, nxt)
        # the model works in [-1, 1]; the loss is reported in [0, 1] units like the transformer LAM's
        mse = (w * (pred.float() - nxt) ** 2).mean() / 4.0
        b = frames.shape[0]
        info = self.training_info(mse, vq_info, rearrange(idx, "(b k) -> b k", b=b),
                                  rearrange(zq, "(b k) d -> b k d", b=b))
        c = self.cfg.conv
        extra = {  # the research options' losses (all off by default): name in info -> (weight, loss)
            "persist_mse": (c.persist_weight, lambda: self._persistence_loss(cur, nxt, zq, b)),
            "shift_rank": (c.shift_rank_weight, lambda: self._shift_rank_loss(pred, cur, nxt)),
            "nce": (c.nce_weight, lambda: self._nce_loss(prev, cur, nxt, z if c.nce_latent == "continuous" else zq)),
            "slow": (c.slow_weight, lambda: self._slow_loss(z, b)),
            "best_code": (c.best_code_weight, lambda: self._best_code_loss(prev, cur, nxt, z, cam)),
        }
        for name, (weight, loss_fn) in extra.items():
            if weight > 0:
                loss = loss_fn()
                info["loss"] = info["loss"] + weight * loss
                info[name] = loss.detach()
        pred_out = rearrange((pred.detach() + 1) / 2, "(b k) c h w -> b k h w c", b=b)
        return pred_out, info
