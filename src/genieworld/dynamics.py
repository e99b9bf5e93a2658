"""Dynamics model (paper section 2.1): a MaskGIT ST-transformer over video tokens and latent actions.

Inputs and outputs (V = num_codes, N = tokens per frame)::

    tokens z_1..z_T (B, T, N) in [0, V]; the id V is the MASK token, never a real code
    actions a_1..a_{T-1} (B, T-1, action_dim): latent action vectors from the LAM codebook,
        stop-gradient (detached here), projected by a linear layer to d_model
    logits (B, T, N, V): a distribution over the V real codes only (never the mask id)

Action alignment lives in ONE place, :func:`align_actions_to_frames`: frame t gets the
action that *produced* it, a_{t-1} (transition x_{t-1} -> x_t), and frame 1 gets a learned
"no action" vector.  Injection (``DynamicsConfig.action_injection``):

* ``"add"`` (default, the paper's "additive embeddings"): the frame's action embedding is
  added to every token of the frame; S = N tokens per frame.
* ``"prepend"``: the action embedding is an extra token in front of each frame's tokens
  (S = N + 1, as in Jasmine); logits come only from the N token positions.

Training mask: :func:`sample_train_mask` (the one place where the mask schedule lives).
Loss: :func:`masked_cross_entropy` over masked positions only.
With ``DynamicsConfig.prev_frame_warp`` every frame's input also gets :class:`PrevFrameWarp`, a
shifted copy of the previous frame's (clean) tokens whose shift the frame's action chooses.

Temporal attention is causal, so the logits of frame t depend only on frames 1..t and
actions a_1..a_{t-1}.  Incremental decoding (:meth:`DynamicsModel.step_logits`) runs one
frame at a time on a ring-buffer KV cache and equals the full pass.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from genieworld.config import DynamicsConfig
from genieworld.nn.st_transformer import (STTransformer, TemporalKVCache, compile_frame_fn, init_weights,
                                          set_math_attention)

INJECTIONS = ("add", "prepend")
CONTEXT_NOISE_BUCKETS = 8  # learned embeddings of the context-noise level (``context_noise_max``)


def align_actions_to_frames(action_emb_b_t1_d: torch.Tensor, num_frames: int, no_action_d: torch.Tensor) -> torch.Tensor:
    """THE action/frame alignment of genieworld: per-frame action embeddings (B, T, d).

    ``action_emb_b_t1_d[:, k]`` embeds a_{k+1}, the latent action of the transition
    x_{k+1} -> x_{k+2} (1-based frames; this is how :class:`~genieworld.lam.LatentActionModel`
    numbers its outputs).  Frame t must be predicted from the action that produced it, so

        out[:, 0]   = no_action             (frame 1 has no producing action in the window)
        out[:, t]   = action_emb[:, t - 1]  (frame t+1 <- a_t, the transition x_t -> x_{t+1})

    The LAM decoder uses the same convention: a_t conditions its prediction of x_{t+1}.
    Exactly ``num_frames - 1`` actions are required.
    """
    b, n_act, d = action_emb_b_t1_d.shape
    if n_act != num_frames - 1:
        raise ValueError(f"{num_frames} frames need exactly {num_frames - 1} actions, got {n_act}")
    first = no_action_d.to(action_emb_b_t1_d.dtype).expand(b, 1, d)
    return torch.cat([first, action_emb_b_t1_d], dim=1)


def sample_train_mask(batch: int, frames: int, tokens: int, rate_min: float = 0.5, rate_max: float = 1.0,
                      generator: torch.Generator | None = None, device=None, clean_prefix: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """THE training mask schedule: (mask (B, T, N) bool, rate (B,)).

    Per sample a masking rate p ~ U(rate_min, rate_max) (paper: U(0.5, 1)); every token of
    frames 2..T is masked independently with probability p (Bernoulli); frame 1 is never
    masked (it is the context every prediction starts from).  Draws from ``generator``, or
    from the global torch RNG when None (which the trainer checkpoints: exact resume).

    ``clean_prefix`` (not in the paper): per sample the first c frames stay unmasked, c uniform
    in 1..T-1 (c = 1 is the paper's case).  Without it a model never sees a clean frame after
    the first, while play conditions every new frame on clean past frames: our first CoinRun
    model predicted frame 16 from 15 clean frames with 8% token accuracy (copying frame 15
    would give 52%) although it reached 45% on frame 2 from frame 1.
    """
    if not 0.0 <= rate_min <= rate_max <= 1.0:
        raise ValueError(f"need 0 <= rate_min <= rate_max <= 1, got {rate_min}, {rate_max}")
    rate = rate_min + (rate_max - rate_min) * torch.rand((batch,), generator=generator, device=device)
    u = torch.rand(batch, frames, tokens, generator=generator, device=device)
    mask = u < rate[:, None, None]
    mask[:, 0] = False
    if clean_prefix and frames > 1:
        c = torch.randint(1, frames, (batch,), generator=generator, device=device)  # clean frames 1..c
        mask &= (torch.arange(frames, device=mask.device)[None, :] >= c[:, None])[:, :, None]
    return mask, rate


def masked_cross_entropy(logits_btnv: torch.Tensor, targets_btn: torch.Tensor, mask_btn: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean cross-entropy, accuracy) over positions where ``mask`` is True; unmasked positions do not count.

    With no masked position at all the loss is a differentiable zero and the accuracy NaN.
    """
    sel_logits = logits_btnv[mask_btn]  # (M, V)
    sel_targets = targets_btn[mask_btn]
    if sel_targets.numel() == 0:
        return logits_btnv.sum() * 0.0, torch.tensor(float("nan"), device=logits_btnv.device)
    loss = F.cross_entropy(sel_logits.float(), sel_targets)
    acc = (sel_logits.argmax(-1) == sel_targets).float().mean()
    return loss, acc.detach()


class TiedHead(nn.Module):
    """Output layer sharing the token embedding (``DynamicsConfig.tie_embeddings``): logits over the
    V real codes = h @ E[:V]^T + bias; the mask row of E is never a target.

    The embedding is held outside the module tree, so the shared matrix is saved once (as
    ``token_embed.weight``) and this module's own state is just ``bias``.
    """

    def __init__(self, embed: nn.Embedding, num_codes: int):
        super().__init__()
        self._embed = (embed,)  # a tuple, not a submodule: no second copy in state_dict
        self.out_features = num_codes
        self.bias = nn.Parameter(torch.zeros(num_codes))

    @property
    def weight(self) -> torch.Tensor:
        return self._embed[0].weight[: self.out_features]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.weight.to(h.dtype), self.bias.to(h.dtype))


class PrevFrameWarp(nn.Module):
    """An action-chosen shift of the previous frame, added to the next frame's input (not in the paper).

    For frame t with action embedding a_t (B, T, d) and previous-frame token embeddings
    E(z_{t-1}) on the (h, w) grid::

        w_t = softmax(W a_t)                       # (K,) weights over K = (2r+1)^2 token offsets o
        warp_t[p] = P( sum_o w_t[o] * E(z_{t-1})[p + o] )   # zero outside the frame

    P is a linear map initialised to zero, so a new model starts as the paper's. When the camera
    scrolls by whole tokens the right offset makes warp_t the next frame itself; the transformer
    fixes sub-token shifts, edges and sprites. Frame 1 of a rollout has no previous frame: its
    "previous" tokens are all mask ids (see :meth:`DynamicsModel.prev_tokens`).
    """

    def __init__(self, d_model: int, tokens_per_frame: int, radius: int):
        super().__init__()
        side = math.isqrt(tokens_per_frame)
        if side * side != tokens_per_frame or radius < 1:
            raise ValueError(f"PrevFrameWarp needs a square token grid and radius >= 1, got {tokens_per_frame}, {radius}")
        self.side, self.radius = side, radius
        k2 = (2 * radius + 1) ** 2
        self.kernel = nn.Linear(d_model, k2)
        self.proj = nn.Linear(d_model, d_model)

    def reset_parameters(self) -> None:
        """Zero kernel logits (a uniform blur) and a zero output map: the warp starts switched off."""
        nn.init.zeros_(self.kernel.weight)
        nn.init.zeros_(self.kernel.bias)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def weights(self, act_btd: torch.Tensor) -> torch.Tensor:
        """(B, T, 2r+1, 2r+1): the offset weights each frame's action chooses (rows dy, columns dx)."""
        k = 2 * self.radius + 1
        return self.kernel(act_btd).softmax(-1).unflatten(-1, (k, k))

    def forward(self, prev_emb_btnd: torch.Tensor, act_btd: torch.Tensor) -> torch.Tensor:
        b, t, n, d = prev_emb_btnd.shape
        k = 2 * self.radius + 1
        x = rearrange(prev_emb_btnd, "b t (h w) d -> (b t d) h w", h=self.side)[None]  # (1, B*T*d, h, w)
        w_btkk = self.weights(act_btd.to(prev_emb_btnd.dtype))
        # one grouped conv: every (frame, channel) is its own group with that frame's k x k kernel
        kern = rearrange(w_btkk[:, :, None].expand(b, t, d, k, k), "b t d i j -> (b t d) 1 i j")
        out = F.conv2d(x, kern, padding=self.radius, groups=b * t * d)[0]  # cross-correlation: out[p] = sum_o w[o] x[p+o]
        return self.proj(rearrange(out, "(b t d) h w -> b t (h w) d", b=b, t=t))


class DynamicsModel(nn.Module):
    def __init__(self, cfg: DynamicsConfig):
        super().__init__()
        if cfg.action_injection not in INJECTIONS:
            raise ValueError(f"action_injection must be one of {INJECTIONS}, got {cfg.action_injection!r}")
        if cfg.num_codes < 1 or cfg.tokens_per_frame < 1:
            raise ValueError("num_codes and tokens_per_frame must be positive")
        if not (0.0 <= cfg.context_noise_max <= 1.0 and 0.0 <= cfg.context_noise_play <= 1.0):
            raise ValueError("context_noise_max and context_noise_play must be in [0, 1]")
        if not 0.0 <= cfg.action_dropout < 1.0:
            raise ValueError(f"action_dropout must be in [0, 1), got {cfg.action_dropout}")
        self.cfg = cfg
        d = cfg.transformer.d_model
        self.num_codes = cfg.num_codes
        self.mask_id = cfg.num_codes  # the mask token: one past the last real code, never predicted
        self.tokens_per_frame = cfg.tokens_per_frame
        self.prepend = cfg.action_injection == "prepend"
        self.token_embed = nn.Embedding(cfg.num_codes + 1, d)
        self.action_proj = nn.Linear(cfg.action_dim, d)
        self.no_action = nn.Parameter(torch.zeros(d))
        s = cfg.tokens_per_frame + (1 if self.prepend else 0)
        self.transformer = STTransformer(cfg.transformer, s, cfg.max_frames)
        self.head = TiedHead(self.token_embed, cfg.num_codes) if cfg.tie_embeddings else nn.Linear(d, cfg.num_codes)
        self.warp = PrevFrameWarp(d, cfg.tokens_per_frame, cfg.prev_frame_warp) if cfg.prev_frame_warp else None
        self.noise_embed = nn.Embedding(CONTEXT_NOISE_BUCKETS, d) if cfg.context_noise_max > 0 else None
        init_weights(self)
        with torch.no_grad():
            self.no_action.normal_(0.0, 0.02)
            if self.warp is not None:
                self.warp.reset_parameters()
        assert self.token_embed.num_embeddings == self.mask_id + 1 and self.head.out_features == self.mask_id

    # ------------------------------------------------------------------ actions
    def action_embedding(self, action_vec_bd: torch.Tensor | None, batch: int | None = None) -> torch.Tensor:
        """d_model embedding (B, d) of one action per sample; None = the learned "no action" (frame 1)."""
        if action_vec_bd is None:
            if batch is None:
                raise ValueError("batch is required for the no-action embedding")
            return self.no_action.expand(batch, -1)
        self._check_action_dim(action_vec_bd)
        return self.action_proj(action_vec_bd.detach().to(self.action_proj.weight.dtype))

    def frame_action_embeddings(self, actions_b_t1_a: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(B, T, d): stop-gradient projection of a_1..a_{T-1}, aligned by :func:`align_actions_to_frames`."""
        self._check_action_dim(actions_b_t1_a)
        emb = self.action_proj(actions_b_t1_a.detach().to(self.action_proj.weight.dtype))
        return align_actions_to_frames(emb, num_frames, self.no_action)

    def _check_action_dim(self, a: torch.Tensor) -> None:
        if a.shape[-1] != self.cfg.action_dim:
            raise ValueError(f"dynamics expects action vectors of size {self.cfg.action_dim}, got {tuple(a.shape)}")

    # ------------------------------------------------------------------ inputs
    def _check_tokens(self, tokens: torch.Tensor) -> None:
        if tokens.shape[-1] != self.tokens_per_frame:
            raise ValueError(f"dynamics expects {self.tokens_per_frame} tokens per frame, got {tuple(tokens.shape)}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) > self.mask_id):
            raise ValueError(f"token ids must be in [0, {self.num_codes}] ({self.mask_id} = mask)")

    def prev_tokens(self, tokens_btn: torch.Tensor, first_prev_bn: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, N): the tokens of the frame before each frame, for :class:`PrevFrameWarp`.

        Frame k's previous frame is ``tokens_btn[:, k-1]``; the first frame's is ``first_prev_bn``
        (the frame before the window), or all mask ids when there is none (a rollout's first frame).
        """
        first = (torch.full_like(tokens_btn[:, 0], self.mask_id) if first_prev_bn is None else first_prev_bn)
        return torch.cat([first[:, None], tokens_btn[:, :-1]], dim=1)

    def noise_bucket(self, level_b: torch.Tensor) -> torch.Tensor:
        """Bucket ids (B,) of context-noise levels in [0, context_noise_max] (the top level -> the last bucket)."""
        top = max(self.cfg.context_noise_max, 1e-8)
        return (level_b / top * CONTEXT_NOISE_BUCKETS).long().clamp(0, CONTEXT_NOISE_BUCKETS - 1)

    def _embed(self, tokens_btn: torch.Tensor, act_btd: torch.Tensor, prev_btn: torch.Tensor | None = None,
               noise_level_b: torch.Tensor | None = None) -> torch.Tensor:
        if self.noise_embed is not None:  # the context's noise level: the training sample's, or play's
            if noise_level_b is None:
                noise_level_b = torch.full((tokens_btn.shape[0],), self.cfg.context_noise_play, device=tokens_btn.device)
            act_btd = act_btd + self.noise_embed(self.noise_bucket(noise_level_b))[:, None, :].to(act_btd.dtype)
        x = self.token_embed(tokens_btn)  # (B, T, N, d)
        if self.warp is not None:
            if prev_btn is None:
                prev_btn = self.prev_tokens(tokens_btn)
            x = x + self.warp(self.token_embed(prev_btn), act_btd)
        act = act_btd.to(x.dtype)[:, :, None, :]
        if self.prepend:
            return torch.cat([act, x], dim=2)
        return x + act

    def _logits(self, h_btsd: torch.Tensor) -> torch.Tensor:
        if self.prepend:
            h_btsd = h_btsd[:, :, 1:]
        return self.head(h_btsd)

    # ------------------------------------------------------------------ full pass
    def forward(self, tokens_btn: torch.Tensor, actions_b_t1_a: torch.Tensor, prev_btn: torch.Tensor | None = None,
                noise_level_b: torch.Tensor | None = None, drop_action_bt: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Logits (B, T, N, num_codes) for tokens (B, T, N) (mask id allowed) and actions (B, T-1, action_dim).

        ``prev_btn`` (only with ``prev_frame_warp``): the previous frame's tokens for each frame, as
        :meth:`prev_tokens` builds them; default: ``tokens_btn`` itself shifted by one frame.
        ``noise_level_b`` (only with ``context_noise_max``): the context's noise level per sample;
        default ``context_noise_play``. ``drop_action_bt`` (bool (B, T), training with
        ``action_dropout``): frames whose action is replaced by the learned "no action".
        """
        self._check_tokens(tokens_btn)
        act = self.frame_action_embeddings(actions_b_t1_a, tokens_btn.shape[1])
        if drop_action_bt is not None:
            act = torch.where(drop_action_bt[:, :, None], self.no_action.to(act.dtype), act)
        return self.forward_embedded(tokens_btn, act, prev_btn=prev_btn, noise_level_b=noise_level_b)

    def forward_embedded(self, tokens_btn: torch.Tensor, act_btd: torch.Tensor, window: int | None = None,
                         prev_btn: torch.Tensor | None = None, noise_level_b: torch.Tensor | None = None
                         ) -> torch.Tensor:
        """Like :meth:`forward` with per-frame action embeddings (B, T, d) already aligned.

        ``window`` (default max_frames) is the temporal attention band: with the window of a
        cache from :meth:`new_cache`, the logits equal those of :meth:`step_logits` on that cache
        (with ``prev_frame_warp``, pass the frame before the window in ``prev_btn``).
        """
        self._check_tokens(tokens_btn)
        if prev_btn is not None:  # the caller's; derived previous frames come from checked tokens
            self._check_tokens(prev_btn)
        x = self._embed(tokens_btn, act_btd, prev_btn, noise_level_b)
        return self._logits(self.transformer(x, window=window))

    # ------------------------------------------------------------------ incremental
    def new_cache(self, batch: int, window: int | None = None, device=None, dtype=None) -> TemporalKVCache:
        """An empty KV cache; ``window`` (<= max_frames) is the temporal context in frames."""
        window = self.cfg.max_frames if window is None else int(window)
        if not 1 <= window <= self.cfg.max_frames:
            raise ValueError(f"context window must be in [1, {self.cfg.max_frames}] (max_frames), got {window}")
        t = self.transformer
        p = self.head.weight
        return TemporalKVCache(t.cfg.num_layers, batch * t.num_spatial, t.cfg.num_heads, t.cfg.head_dim, window,
                               device or p.device, dtype or p.dtype)

    def step_logits(self, tokens_bn: torch.Tensor, action_vec_bd: torch.Tensor | None, cache: TemporalKVCache,
                    advance: bool) -> torch.Tensor:
        """Logits (B, N, num_codes) of the frame at index ``cache.length`` given the cached frames before it.

        ``action_vec_bd`` is the action that produced this frame (None for the very first frame).
        ``advance=False`` may be called repeatedly (MaskGIT refinement rewrites the same cache slot);
        ``advance=True`` commits the frame (and, with ``prev_frame_warp``, keeps its tokens in
        ``cache.extra["prev_tokens"]`` as the next frame's previous frame).
        """
        act, last = self._frame_inputs(tokens_bn, action_vec_bd, cache)
        out = self._step_fn(tokens_bn, act, last, cache)
        if advance:
            self._advance(tokens_bn, cache)
        return out

    def commit(self, tokens_bn: torch.Tensor, action_vec_bd: torch.Tensor | None, cache: TemporalKVCache) -> None:
        """Commit the frame at index ``cache.length`` with its final tokens: the cache ends exactly as after
        ``step_logits(..., advance=True)``, but no logits are made (the last layer's output, feed-forward and
        the head are skipped), which is what play needs after the last MaskGIT step."""
        act, last = self._frame_inputs(tokens_bn, action_vec_bd, cache)
        (self.__dict__.get("_compiled_commit") or self._commit_core)(tokens_bn, act, last, cache)
        self._advance(tokens_bn, cache)

    def _frame_inputs(self, tokens_bn: torch.Tensor, action_vec_bd: torch.Tensor | None, cache: TemporalKVCache):
        """Checked tokens' (action embedding (B, d), previous frame's tokens (B, N) or None) for a cached step."""
        self._check_tokens(tokens_bn)
        act = self.action_embedding(action_vec_bd, tokens_bn.shape[0])
        last = cache.extra.get("prev_tokens") if self.warp is not None and cache.length else None
        return act, last

    def _advance(self, tokens_bn: torch.Tensor, cache: TemporalKVCache) -> None:
        """Commit the cache's frame; with ``prev_frame_warp`` its tokens become the next frame's previous frame."""
        cache.advance()
        if self.warp is not None:
            cache.extra["prev_tokens"] = tokens_bn.clone()

    def _frame_embedding(self, tokens_bn: torch.Tensor, act_bd: torch.Tensor, last_bn: torch.Tensor | None
                         ) -> torch.Tensor:
        """(B, 1, S, d): the transformer's input for one new frame of a cached step."""
        prev = self.prev_tokens(tokens_bn[:, None], last_bn) if self.warp is not None else None
        return self._embed(tokens_bn[:, None], act_bd[:, None], prev)

    def _commit_core(self, tokens_bn: torch.Tensor, act_bd: torch.Tensor, last_bn: torch.Tensor | None,
                     cache: TemporalKVCache) -> None:
        self.transformer.commit_layers(self._frame_embedding(tokens_bn, act_bd, last_bn), cache)

    def _step_core(self, tokens_bn: torch.Tensor, act_bd: torch.Tensor, last_bn: torch.Tensor | None,
                   cache: TemporalKVCache) -> torch.Tensor:
        """The arithmetic of :meth:`step_logits` (no checks, no commit): what :meth:`compile_step` compiles."""
        x = self._frame_embedding(tokens_bn, act_bd, last_bn)
        return self._logits(self.transformer.step_layers(x, cache))[:, 0]

    @property
    def _step_fn(self):
        return self.__dict__.get("_compiled_step") or self._step_core

    @property
    def step_compiled(self) -> bool:
        return "_compiled_step" in self.__dict__ and "_compiled_commit" in self.__dict__

    def compile_step(self) -> None:
        """``torch.compile`` the per-frame step of :meth:`step_logits` (inference only; the full pass and
        training stay eager). The first frames after this compile it (tens of seconds on a CPU)."""
        set_math_attention(self.transformer)
        self.__dict__["_compiled_step"] = compile_frame_fn(self._step_core)
        self.__dict__["_compiled_commit"] = compile_frame_fn(self._commit_core)

    # ------------------------------------------------------------------ training
    def loss(self, tokens_btn: torch.Tensor, actions_b_t1_a: torch.Tensor, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, dict]:
        """Masked-token cross-entropy on a batch of true tokens (B, T, N) and latent actions (B, T-1, a).

        The mask comes from :func:`sample_train_mask`; loss and accuracy count masked tokens only.
        """
        self._check_tokens(tokens_btn)
        if int(tokens_btn.max()) >= self.mask_id:
            raise ValueError("training tokens must be real codes, not the mask id")
        b, t, n = tokens_btn.shape
        mask, rate = sample_train_mask(b, t, n, self.cfg.mask_rate_min, self.cfg.mask_rate_max, generator,
                                       tokens_btn.device, clean_prefix=self.cfg.train_clean_prefix)
        level = None
        context = tokens_btn
        if self.noise_embed is not None:  # corrupt the clean context frames (config)
            level = torch.rand(b, generator=generator, device=tokens_btn.device) * self.cfg.context_noise_max
            clean_frame = ~mask.any(dim=2)  # (B, T): the frames given whole, the context of the masked ones
            flip = torch.rand(b, t, n, generator=generator, device=tokens_btn.device) < level[:, None, None]
            flip &= clean_frame[:, :, None]
            noise = torch.randint(0, self.num_codes, (b, t, n), generator=generator, device=tokens_btn.device)
            context = torch.where(flip, noise, tokens_btn)
        inputs = torch.where(mask, torch.full_like(tokens_btn, self.mask_id), context)
        # the warp always copies the whole previous frame, as play has it (corrupted with the context)
        prev = self.prev_tokens(context) if self.warp is not None else None
        drop = None
        if self.cfg.action_dropout > 0:  # classifier-free guidance: some frames learn without their action
            drop = torch.rand(b, t, generator=generator, device=tokens_btn.device) < self.cfg.action_dropout
        logits = self(inputs, actions_b_t1_a, prev_btn=prev, noise_level_b=level, drop_action_bt=drop)
        loss, acc = masked_cross_entropy(logits, tokens_btn, mask)
        info = {"ce": loss.detach(), "acc": acc, "mask_rate": mask[:, 1:].float().mean().detach(),
                "rate": rate, "mask": mask}
        return loss, info
