"""The ST-transformer shared by the tokenizer, the latent action model and the dynamics model.

One block (paper section 2, "ST-transformer") is::

    x = x + SpatialAttention(norm(x))    # the S tokens of each frame attend to each other
    x = x + TemporalAttention(norm(x))   # each spatial position attends causally over frames
    x = x + FFW(norm(x))                 # a single feed-forward layer after both

Spatial attention never mixes frames and temporal attention never mixes positions,
so no attention ever spans all T*S tokens at once and activation memory grows
linearly in T (see ``bench/bench_memory.py``).

Positional information:
  * spatial axis: a learned embedding per token position, added at the input;
  * temporal axis: rotary position embedding (RoPE) inside every temporal
    attention layer. RoPE depends only on relative frame offsets, which is what
    makes a sliding-window key/value cache exactly equal to a full pass with a
    banded causal mask (see :class:`TemporalKVCache`).

Incremental decoding: :meth:`STTransformer.step` consumes ONE new frame and a
:class:`TemporalKVCache`; the cache is a fixed-size ring buffer of ``window``
frames per layer, so the cost of a new frame does not depend on how long the
rollout already is, and nothing is reallocated per frame.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from genieworld.config import STConfig


# ----------------------------------------------------------------------------- RoPE
def rope_angles(positions: torch.Tensor, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables of shape (L, head_dim // 2) for integer ``positions`` (L,). Computed in float64."""
    half = head_dim // 2
    inv_freq = base ** (-torch.arange(half, dtype=torch.float64, device=positions.device) / half)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    return angles.cos(), angles.sin()


def apply_rope(x_bhld: torch.Tensor, cos_ld: torch.Tensor, sin_ld: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of the last dim by the given angles.

    Computed as ``x * [cos, cos] + [x2, x1] * [-sin, sin]`` (one rotate-half copy and two
    full-width multiplies instead of four half-width ones on strided slices and a concat);
    bit-identical to ``[x1*cos - x2*sin, x1*sin + x2*cos]``: a - b == a + (-b) exactly.
    """
    half = x_bhld.shape[-1] // 2
    if x_bhld.shape[-1] > 2 * half:  # odd head_dim: rotate the pairs, leave the last channel alone
        rot = apply_rope(x_bhld[..., : 2 * half], cos_ld, sin_ld)
        return torch.cat([rot, x_bhld[..., 2 * half :]], dim=-1)
    cos = torch.cat([cos_ld, cos_ld], dim=-1).to(x_bhld.dtype)
    sin = torch.cat([-sin_ld, sin_ld], dim=-1).to(x_bhld.dtype)
    return x_bhld * cos + torch.cat([x_bhld[..., half:], x_bhld[..., :half]], dim=-1) * sin


def banded_causal_mask(t_len: int, window: int | None, device=None) -> torch.Tensor:
    """Bool (T, T) mask, True where query i may attend key j: j <= i and i - j < window."""
    i = torch.arange(t_len, device=device)[:, None]
    j = torch.arange(t_len, device=device)[None, :]
    mask = j <= i
    if window is not None:
        mask = mask & (i - j < window)
    return mask


# ----------------------------------------------------------------------------- attention
class Attention(nn.Module):
    """Multi-head self-attention over the second-to-last axis of (B, L, D) inputs."""

    def __init__(self, d_model: int, num_heads: int, head_dim: int, qk_norm: bool = False, dropout: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        inner = num_heads * head_dim
        self.qkv = nn.Linear(d_model, 3 * inner, bias=False)
        self.out = nn.Linear(inner, d_model, bias=False)
        self.q_norm = nn.RMSNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.dropout = dropout
        # Decomposed attention (matmul, softmax, matmul) instead of the fused kernel: set by the compiled
        # play step, where inductor fuses it; at one frame's sizes on a CPU the fused kernel costs more
        # than the rest of the step in bf16 (bench/bench_play_speed.py; docs/experiments.md, "Play speed").
        self.math_attention = False

    def project(self, x_bld: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # split + view (no copy; its backward is one concat), not an unpacked rearrange (whose
        # backward zero-fills a full-size buffer for each of q, k and v)
        b, l, _ = x_bld.shape
        shape = (b, l, self.num_heads, self.head_dim)
        q, k, v = (t.view(shape).transpose(1, 2) for t in self.qkv(x_bld).split(self.num_heads * self.head_dim, -1))
        return self.q_norm(q), self.k_norm(k), v

    def attend(self, q, k, v, attn_mask=None, is_causal=False) -> torch.Tensor:
        if self.math_attention and not self.training:
            scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)  # (B, H, Lq, Lk)
            if is_causal:
                attn_mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
            if attn_mask is not None:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            o = scores.float().softmax(-1).to(v.dtype) @ v
        else:
            o = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, is_causal=is_causal, dropout_p=self.dropout if self.training else 0.0
            )
        return self.out(rearrange(o, "b h l d -> b l (h d)"))


class SpatialAttention(Attention):
    """Bidirectional attention among the S tokens of one frame."""

    def forward(self, x_btsd: torch.Tensor) -> torch.Tensor:
        b = x_btsd.shape[0]
        x = rearrange(x_btsd, "b t s d -> (b t) s d")
        q, k, v = self.project(x)
        y = self.attend(q, k, v)
        return rearrange(y, "(b t) s d -> b t s d", b=b)


class TemporalAttention(Attention):
    """Causal attention across frames at each spatial position, with RoPE over frame index."""

    def forward(self, x_btsd: torch.Tensor, window: int | None = None) -> torch.Tensor:
        b, t, s, _ = x_btsd.shape
        x = rearrange(x_btsd, "b t s d -> (b s) t d")
        q, k, v = self.project(x)
        cos, sin = rope_angles(torch.arange(t, device=x.device), self.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if window is None or window >= t:
            y = self.attend(q, k, v, is_causal=True)
        else:
            y = self.attend(q, k, v, attn_mask=banded_causal_mask(t, window, x.device))
        return rearrange(y, "(b s) t d -> b t s d", b=b)

    def step(self, x_b1sd: torch.Tensor, cache: "TemporalKVCache", layer: int) -> torch.Tensor:
        """One new frame at absolute index ``cache.length``; writes its keys/values into the cache."""
        b, one, s, _ = x_b1sd.shape
        assert one == 1, "step() takes exactly one new frame"
        x = rearrange(x_b1sd, "b t s d -> (b s) t d")
        q, k, v = self.project(x)
        q, k = apply_rope(q, cache.rope_cos, cache.rope_sin), apply_rope(k, cache.rope_cos, cache.rope_sin)
        ck, cv = cache.k[layer], cache.v[layer]
        ck.index_copy_(2, cache.slot, k.to(ck.dtype))  # slot ``length % window``, a tensor: no int to guard on
        cv.index_copy_(2, cache.slot, v.to(cv.dtype))
        y = self.attend(q, ck, cv, attn_mask=cache.valid)
        return rearrange(y, "(b s) t d -> b t s d", b=b)

    def write_kv(self, x_b1sd: torch.Tensor, cache: "TemporalKVCache", layer: int) -> None:
        """Only the cache write of :meth:`step`: the frame's keys/values into its slot, no query, no output."""
        _, k, v = self.project(rearrange(x_b1sd, "b t s d -> (b s) t d"))  # as step() projects them
        k = apply_rope(k, cache.rope_cos, cache.rope_sin)
        cache.k[layer].index_copy_(2, cache.slot, k.to(cache.k[layer].dtype))
        cache.v[layer].index_copy_(2, cache.slot, v.to(cache.v[layer].dtype))


class TemporalKVCache:
    """Fixed-size ring buffer of temporal keys/values, one (B*S, H, window, Dh) pair per layer.

    ``length`` counts the frames committed so far. :meth:`STTransformer.step` writes
    the new frame's keys/values into slot ``length % window`` (overwriting the frame
    that just left the window) and :meth:`advance` commits it. Calling ``step``
    several times before ``advance`` (MaskGIT refinement of the same frame) just
    rewrites that slot. Because RoPE scores depend only on relative offsets, the
    outputs equal a full pass with :func:`banded_causal_mask` of the same window.

    ``extra`` holds whatever else the model must carry from one committed frame to the next
    (the dynamics' ``prev_frame_warp`` keeps the last frame's tokens there); cleared by :meth:`reset`.

    What a step needs about the frame's position is made once per frame, as tensors, when the
    frame index changes (:meth:`advance`, :meth:`reset`): ``slot`` (1,) long, ``valid`` (1, window)
    bool (:meth:`valid_mask`) and the RoPE tables ``rope_cos``/``rope_sin`` (1, head_dim // 2).
    A step reads no Python number from the cache, so one compiled step serves every frame.
    """

    def __init__(self, num_layers: int, rows: int, num_heads: int, head_dim: int, window: int, device, dtype):
        shape = (rows, num_heads, window, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.window = window
        self.head_dim = head_dim
        self._slots = torch.arange(window, device=device)
        self.reset()

    def _set_position(self) -> None:
        t = self.length  # the frame a step makes
        dev = self._slots.device
        self.slot = torch.tensor([t % self.window], device=dev)
        self.valid = (self._slots < min(t + 1, self.window))[None, :]
        self.rope_cos, self.rope_sin = rope_angles(torch.tensor([t], device=dev), self.head_dim)

    def valid_mask(self) -> torch.Tensor:
        """Bool (1, window): slots holding frames max(0, t-window+1)..t, where t = length (the frame being stepped)."""
        return self.valid

    def advance(self) -> None:
        self.length += 1
        self._set_position()

    def reset(self) -> None:
        self.length = 0
        self.extra: dict[str, torch.Tensor] = {}
        self._set_position()

    def clone(self) -> "TemporalKVCache":
        other = object.__new__(TemporalKVCache)
        other.k = [x.clone() for x in self.k]
        other.v = [x.clone() for x in self.v]
        other.window, other.head_dim, other.length, other._slots = self.window, self.head_dim, self.length, self._slots
        other.extra = {k: v.clone() for k, v in self.extra.items()}
        other._set_position()
        return other


# ----------------------------------------------------------------------------- block and stack
class FeedForward(nn.Module):
    def __init__(self, d_model: int, mult: float, dropout: float = 0.0):
        super().__init__()
        hidden = int(d_model * mult)
        self.net = nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_model))

    def forward(self, x):
        return self.net(x)


class STBlock(nn.Module):
    def __init__(self, cfg: STConfig):
        super().__init__()
        d = cfg.d_model
        self.norm_s = nn.LayerNorm(d)
        self.spatial = SpatialAttention(d, cfg.num_heads, cfg.head_dim, cfg.qk_norm, cfg.dropout)
        self.norm_t = nn.LayerNorm(d)
        self.temporal = TemporalAttention(d, cfg.num_heads, cfg.head_dim, cfg.qk_norm, cfg.dropout)
        self.norm_f = nn.LayerNorm(d)
        self.ffw = FeedForward(d, cfg.ffn_mult, cfg.dropout)

    def forward(self, x_btsd: torch.Tensor, window: int | None = None) -> torch.Tensor:
        x = x_btsd + self.spatial(self.norm_s(x_btsd))
        x = x + self.temporal(self.norm_t(x), window=window)
        return x + self.ffw(self.norm_f(x))

    def step(self, x_b1sd: torch.Tensor, cache: TemporalKVCache, layer: int) -> torch.Tensor:
        x = x_b1sd + self.spatial(self.norm_s(x_b1sd))
        x = x + self.temporal.step(self.norm_t(x), cache, layer)
        return x + self.ffw(self.norm_f(x))


class STTransformer(nn.Module):
    """A stack of :class:`STBlock` over (B, T, S, D) inputs with a learned spatial position embedding.

    Args:
        cfg: layer count and widths.
        num_spatial: S, the number of tokens per frame (fixed; positions are learned).
        window: temporal context in frames. Full passes longer than this use a banded
            causal mask so that they agree with the ring-buffer cache.
    """

    def __init__(self, cfg: STConfig, num_spatial: int, window: int):
        super().__init__()
        self.cfg = cfg
        self.window = window
        self.num_spatial = num_spatial
        self.pos_s = nn.Parameter(torch.randn(num_spatial, cfg.d_model) * 0.02)
        self.blocks = nn.ModuleList(STBlock(cfg) for _ in range(cfg.num_layers))
        self.norm_out = nn.LayerNorm(cfg.d_model)
        self.activation_checkpointing = False

    def forward(self, x_btsd: torch.Tensor, window: int | None = None) -> torch.Tensor:
        """Full pass. ``window`` (default ``self.window``) overrides the temporal band, e.g. to match a
        cache made with a smaller window (a reference for :meth:`step` on such a cache)."""
        if x_btsd.shape[2] != self.num_spatial:
            raise ValueError(f"expected {self.num_spatial} tokens per frame, got {x_btsd.shape[2]}")
        window = self.window if window is None else window
        x = x_btsd + self.pos_s
        for blk in self.blocks:
            if self.activation_checkpointing and self.training:
                x = checkpoint(blk, x, window, use_reentrant=False)
            else:
                x = blk(x, window=window)
        return self.norm_out(x)

    def new_cache(self, batch: int, device=None, dtype=None) -> TemporalKVCache:
        p = self.pos_s
        return TemporalKVCache(
            self.cfg.num_layers,
            batch * self.num_spatial,
            self.cfg.num_heads,
            self.cfg.head_dim,
            self.window,
            device or p.device,
            dtype or p.dtype,
        )

    def step(self, x_b1sd: torch.Tensor, cache: TemporalKVCache, advance: bool = True) -> torch.Tensor:
        """Process one new frame against ``cache``. With ``advance`` the frame is committed to the cache."""
        out = self.step_layers(x_b1sd, cache)
        if advance:
            cache.advance()
        return out

    def step_layers(self, x_b1sd: torch.Tensor, cache: TemporalKVCache) -> torch.Tensor:
        """:meth:`step` without committing: writes the frame's keys/values into its slot and returns the
        output. Reads only tensors from ``cache``, so ``torch.compile`` traces it once for every frame."""
        x = x_b1sd + self.pos_s
        for i, blk in enumerate(self.blocks):
            x = blk.step(x, cache, i)
        return self.norm_out(x)

    def commit_layers(self, x_b1sd: torch.Tensor, cache: TemporalKVCache) -> None:
        """The cache writes of :meth:`step_layers` and nothing else: the last block stops once its temporal
        keys/values are written (its attention output, feed-forward and the final norm feed only the
        logits, which committing a frame does not need). Leaves the cache exactly as ``step_layers`` would."""
        x = x_b1sd + self.pos_s
        last = len(self.blocks) - 1
        for i, blk in enumerate(self.blocks):
            if i < last:
                x = blk.step(x, cache, i)
            else:
                x = x + blk.spatial(blk.norm_s(x))
                blk.temporal.write_kv(blk.norm_t(x), cache, i)


def compile_frame_fn(fn):
    """``torch.compile`` a fixed-shape per-frame inference function (the dynamics' step and commit, the
    tokenizer's decode step). ``cpp_wrapper``: inductor calls its kernels from compiled C++ instead of Python,
    which saves about 0.5 ms of a 6-7 ms dynamics pass and 0.3 ms of a decode on a 2-core CPU (2.7 ms of a
    play frame), for about 30 s more of compiling on a cold inductor cache (docs/experiments.md, "Speed and
    memory benchmarks": "A lighter commit and the C++ wrapper")."""
    return torch.compile(fn, dynamic=False, options={"cpp_wrapper": True})


def set_math_attention(module: nn.Module, on: bool = True) -> None:
    """Every :class:`Attention` under ``module`` uses decomposed attention at inference (see ``math_attention``)."""
    for m in module.modules():
        if isinstance(m, Attention):
            m.math_attention = on


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """GPT-style init: normal(0, std) linears/embeddings, zero biases; scaled output projections."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, std)
    n_layers = sum(1 for m in module.modules() if isinstance(m, STBlock)) or 1
    for name, p in module.named_parameters():
        if name.endswith(".out.weight") or name.endswith(".net.3.weight"):
            nn.init.normal_(p, 0.0, std / math.sqrt(2 * n_layers))
