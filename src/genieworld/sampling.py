"""Sampling: the MaskGIT schedule, one-frame MaskGIT decoding, and :class:`World`, the rollout state.

MaskGIT for one frame (``S`` steps, ``N`` tokens)::

    tokens = [MASK] * N
    for s in 0..S-1:
        logits = dynamics(context frames, current tokens)            # (B, N, V)
        sampled = argmax(logits / temperature + Gumbel)              # a categorical sample
                  (temperature 0: argmax(logits))
        confidence = log p(sampled) under softmax(logits / temperature)
                     (+ confidence_noise * (1 - (s+1)/S) * Gumbel, annealed to 0; default off)
                     (order "random": a Gumbel draw alone, i.e. a random priority; the
                      sample is then drawn only for the tokens this step reveals)
        keep = maskgit_schedule(s, S, N) tokens stay masked: the least confident of the
               still-masked positions; the others take their sampled token for good.

``SamplingConfig.order`` chooses which tokens are revealed.  "confidence" is MaskGIT's rule.
It is biased on CoinRun: the surest tokens are the black sky's, so the first steps reveal sky
only, and a frame whose visible tokens are all sky reads to the model as a view that moved up into
the sky: the scene dissolves into black within a few play steps for most actions.  In training
the visible tokens are a uniformly random subset (:func:`~genieworld.dynamics.sample_train_mask`);
"random" reveals such a subset at every step (docs/experiments.md, "The separate LAM stage", 10).
With ``maskgit_steps = 1`` both orders are the same: every token is drawn at once.
    after the last step (schedule = 0) nothing is masked; the final tokens are committed.

Tokens fixed at an earlier step are never changed.  All randomness comes from one
``torch.Generator`` owned by the caller (the :class:`World`), so a rollout is a function
of (model, prompt, actions, seed).  Each step draws the same tensors whether or not the
KV cache is used, so the cached and the uncached (reference) paths give identical tokens.

Context (``SamplingConfig.context_frames`` = C <= the dynamics max_frames): every temporal
attention layer of the dynamics model looks at most C frames back (sliding-window attention,
a banded causal mask).  With the KV cache this is a ring buffer of C frames per layer, so each
generated frame costs the same however long the rollout is.  The reference path
(``use_cache=False``) recomputes, at every MaskGIT step, a full pass with the same banded mask
over the last L*(C-1) frames (all that can reach the new frame through L layers), which is
mathematically the same computation, so both paths give identical tokens for the same seed.
Within the training length (rollouts no longer than C frames) both are exactly the model as trained.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from genieworld.config import SamplingConfig

SCHEDULES = ("cosine", "linear")
ORDERS = ("confidence", "random")


def maskgit_schedule(step: int, total: int, n_tokens: int, kind: str = "cosine") -> int:
    """How many of ``n_tokens`` are still masked after MaskGIT step ``step`` (0-based) of ``total``.

    cosine: ceil(N * cos(pi/2 * (step+1)/total)); linear: ceil(N * (1 - (step+1)/total)).
    Non-increasing in ``step`` and exactly 0 after the last step (the float cos(pi/2) = 6e-17
    would otherwise round up to 1 and leave a token masked).
    """
    if total < 1:
        raise ValueError(f"need at least one MaskGIT step, got {total}")
    if not 0 <= step < total:
        raise ValueError(f"step {step} outside [0, {total})")
    if kind not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}")
    if step == total - 1:
        return 0
    r = (step + 1) / total
    frac = math.cos(math.pi / 2 * r) if kind == "cosine" else 1.0 - r
    # subtract a hair so that exact integers (e.g. N * 0.5) are not pushed up by float noise
    return int(min(n_tokens, max(0, math.ceil(n_tokens * frac - 1e-9))))


def _gumbel(shape, generator: torch.Generator, device) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
    return -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))


@torch.no_grad()
def sample_frame(logits_fn: Callable[[torch.Tensor], torch.Tensor], batch: int, n_tokens: int, mask_id: int,
                 steps: int, temperature: float, generator: torch.Generator, schedule: str = "cosine",
                 confidence_noise: float = 0.0, device=None, order: str = "confidence") -> torch.Tensor:
    """MaskGIT-decode one frame; returns tokens (B, N) with no mask left.

    ``logits_fn(tokens_bn) -> logits (B, N, V)`` evaluates the dynamics model for the current
    frame (cached: ``dynamics.step_logits(..., advance=False)``; reference: a full pass over the
    window).  Exactly ``steps`` calls are made.  See the module docstring for the rule.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    tokens = torch.full((batch, n_tokens), mask_id, dtype=torch.long, device=device)
    masked = torch.ones(batch, n_tokens, dtype=torch.bool, device=device)
    for s in range(steps):
        logits = logits_fn(tokens)
        if order != "random" or temperature == 0:
            logits = logits.float()  # (argmax over bf16 is slower than the conversion and argmax over fp32)
        if order == "random":
            # which tokens are revealed does not depend on the logits: draw a sample only for those
            # (at temperature > 0 the noise over all V codes is the costly part: 1/S of it this way)
            conf = _gumbel((batch, n_tokens), generator, device)
            sampled = None
        elif temperature > 0:
            scaled = logits / temperature
            sampled = (scaled + _gumbel(scaled.shape, generator, device)).argmax(-1)
            conf = F.log_softmax(scaled, dim=-1).gather(-1, sampled[..., None])[..., 0]
        else:
            sampled = logits.argmax(-1)
            conf = F.log_softmax(logits, dim=-1).gather(-1, sampled[..., None])[..., 0]
        if confidence_noise > 0 and order == "confidence":
            anneal = 1.0 - (s + 1) / steps
            conf = conf + confidence_noise * anneal * _gumbel(conf.shape, generator, device)
        conf = conf.masked_fill(~masked, float("inf"))  # already fixed tokens are never re-masked
        n_keep = maskgit_schedule(s, steps, n_tokens, schedule)
        still = torch.zeros_like(masked)
        if n_keep > 0:
            low = torch.topk(conf, n_keep, dim=-1, largest=False).indices
            still.scatter_(1, low, True)
        reveal = masked & ~still
        if sampled is None and temperature > 0:
            rows = logits[reveal].float() / temperature  # (revealed, V)
            tokens = tokens.masked_scatter(reveal, (rows + _gumbel(rows.shape, generator, device)).argmax(-1))
        else:
            tokens = torch.where(reveal, logits.argmax(-1) if sampled is None else sampled, tokens)
        masked = still
    return tokens


def _to_uint8(frames_float: torch.Tensor) -> np.ndarray:
    return (frames_float.float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()


class World:
    """An interactive rollout: prompt tokens + caches + history; :meth:`step` makes one new frame.

    Built by :meth:`genieworld.genie.Genie.world` (or directly from a Genie and prompt frames).

    * ``step(action: int) -> (H, W, 3) uint8``; :meth:`step_batch` for B parallel rollouts.
    * ``tokens`` (B, T, N): every frame's tokens so far; ``frames``: list of (B, H, W, 3) uint8.
    * ``reset(prompt=None)`` restarts from the (new) prompt and re-seeds the generator.
    * ``max_history``: keep only the newest frames/tokens/actions (None = all), so that an endless
      play session has bounded memory; ``num_frames`` still counts every frame.
    * ``use_cache=False`` is the reference path: no dynamics KV cache, the context is recomputed
      at every MaskGIT step (see the module docstring).  It draws the same random numbers as the
      cached path and gives the same tokens.
    """

    def __init__(self, genie, prompt_frames: torch.Tensor, seed: int | None = None, sampling: SamplingConfig | None = None,
                 use_cache: bool = True, confidence_noise: float = 0.0, prompt_actions: torch.Tensor | None = None,
                 max_history: int | None = None):
        self.genie = genie
        self.sampling = sampling or genie.sampling
        if self.sampling.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.sampling.schedule!r}")
        if self.sampling.order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {self.sampling.order!r}")
        if self.sampling.maskgit_steps < 1:
            raise ValueError(f"maskgit_steps must be >= 1, got {self.sampling.maskgit_steps}")
        max_frames = genie.dynamics.cfg.max_frames
        if not 1 <= self.sampling.context_frames <= max_frames:
            raise ValueError(f"context_frames must be in [1, {max_frames}] (the dynamics max_frames), "
                             f"got {self.sampling.context_frames}")
        self.use_cache = use_cache
        if max_history is not None and max_history < 1:
            raise ValueError(f"max_history must be >= 1 or None, got {max_history}")
        self.max_history = max_history
        self.confidence_noise = float(confidence_noise)
        self.seed = int(seed) if seed is not None else int(torch.randint(0, 2**31 - 1, ()).item())
        self.device = genie.device
        self.generator = torch.Generator(device=self.device)
        self.reset(prompt_frames, prompt_actions=prompt_actions)

    # ------------------------------------------------------------------ state
    @property
    def num_actions(self) -> int:
        return self.genie.num_actions

    @property
    def batch(self) -> int:
        return self._tokens[0].shape[0]

    @property
    def num_frames(self) -> int:
        """Frames so far (prompt included), also those dropped by ``max_history``."""
        return self._dropped + len(self._tokens)

    @property
    def actions(self) -> torch.Tensor:
        """(B, T-1) long: the action of every transition so far (LAM-inferred inside the prompt; the kept ones
        with ``max_history``)."""
        if not self._actions:
            return torch.zeros(self.batch, 0, dtype=torch.long, device=self.device)
        return torch.stack(self._actions, dim=1)

    @property
    def tokens(self) -> torch.Tensor:
        """Every frame's tokens so far, (B, T, N) long (prompt frames first; the kept ones with ``max_history``)."""
        return torch.stack(self._tokens, dim=1)

    @torch.no_grad()
    def reset(self, prompt=None, prompt_actions: torch.Tensor | None = None) -> np.ndarray:
        """Start again from ``prompt`` (anything :meth:`Genie.prepare_prompt` accepts, or uint8 (B, T0, H, W, 3)
        tensor; None = the current prompt) and re-seed; returns the last decoded prompt frame (H, W, 3) of sample 0."""
        g = self.genie
        if prompt is not None:
            frames = prompt if (torch.is_tensor(prompt) and prompt.ndim == 5) else g.prepare_prompt(prompt)[None]
            self.prompt_frames = frames.to(self.device)
            self._prompt_actions = prompt_actions
        elif not hasattr(self, "prompt_frames"):
            raise ValueError("no prompt to reset to")
        self.generator.manual_seed(self.seed)
        frames = self.prompt_frames
        b, t0 = frames.shape[:2]
        prompt_tokens = g.tokenizer.encode(frames)  # (B, T0, N)
        self._tokens = list(prompt_tokens.unbind(1))
        self._dropped = 0
        # actions between prompt frames: given, or inferred by the LAM (the only way to know them)
        if t0 > 1:
            if self._prompt_actions is not None:
                acts = self._prompt_actions.to(self.device)
            else:
                acts = g.lam.encode_actions(frames)[0]
            vecs = g.lam.action_vectors(acts)
            frame_actions = [None] + [vecs[:, k] for k in range(t0 - 1)]
            self._actions = list(acts.unbind(1))
        else:
            frame_actions = [None]
            self._actions = []
        # per-frame action embeddings (the reference path recomputes the window from these)
        ctx = self.sampling.context_frames
        self._act_emb = [g.dynamics.action_embedding(a, b) for a in frame_actions][-(self._reach() + 1):]
        self.cache = None
        if self.use_cache:
            self.cache = g.dynamics.new_cache(b, window=ctx)
            for k in range(t0):
                g.dynamics.commit(prompt_tokens[:, k], frame_actions[k], self.cache)
        self.dec_cache = g.tokenizer.new_decode_cache(b)
        self.frames = [_to_uint8(g.tokenizer.decode_step(prompt_tokens[:, k], self.dec_cache)) for k in range(t0)]
        return self.frames[-1][0]

    def _reach(self) -> int:
        """How many earlier frames can influence a new frame: each of the L layers attends
        ``context_frames - 1`` frames back, so L * (context_frames - 1).  The reference path
        recomputes exactly these (a full pass with the cache's banded mask), which equals the
        ring-buffer cache; the newest frame's own attention spans only ``context_frames`` frames."""
        return self.genie.dynamics.cfg.transformer.num_layers * (self.sampling.context_frames - 1)

    # ------------------------------------------------------------------ stepping
    def _check_action(self, action) -> int:
        if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)):
            raise ValueError(f"action must be an int in [0, {self.num_actions}), got {action!r} "
                             f"({type(action).__name__})")
        a = int(action)
        if not 0 <= a < self.num_actions:
            raise ValueError(f"action {a} is outside [0, {self.num_actions}); this model has "
                             f"{self.num_actions} latent actions")
        return a

    def step(self, action: int) -> np.ndarray:
        """Generate the next frame after ``action`` (an int in [0, num_actions)); returns (H, W, 3) uint8."""
        a = self._check_action(action)
        if self.batch != 1:
            raise ValueError(f"this World holds {self.batch} rollouts; use step_batch")
        return self.step_batch(torch.tensor([a], dtype=torch.long, device=self.device))[0]

    @torch.no_grad()
    def step_batch(self, actions_b: torch.Tensor) -> np.ndarray:
        """One new frame for each of the B rollouts; ``actions_b`` long (B,). Returns (B, H, W, 3) uint8."""
        g = self.genie
        actions_b = torch.as_tensor(actions_b, dtype=torch.long, device=self.device).reshape(-1)
        if actions_b.shape[0] != self.batch:
            raise ValueError(f"expected {self.batch} actions, got {actions_b.shape[0]}")
        if int(actions_b.min()) < 0 or int(actions_b.max()) >= self.num_actions:
            raise ValueError(f"actions must be in [0, {self.num_actions}), got {actions_b.tolist()}")
        vec = g.lam.action_vectors(actions_b)
        emb = g.dynamics.action_embedding(vec, self.batch)
        dyn, sp = g.dynamics, self.sampling
        if self.use_cache:
            def cond_fn(tok, uncond=False):
                # the slot of the new frame is rewritten by each call, so the two passes share the cache
                return dyn.step_logits(tok, None if uncond else vec, self.cache, advance=False)
        else:
            reach = self._reach()  # earlier frames that can influence the new one
            hist_list = self._tokens[max(0, len(self._tokens) - reach):] if reach > 0 else []
            hist = torch.stack(hist_list, dim=1) if hist_list else None
            hist_emb = self._act_emb[len(self._act_emb) - len(hist_list):] if hist_list else []
            act_btd = torch.stack(hist_emb + [emb], dim=1)
            # the frame before the window, which the first window frame's prev_frame_warp copies
            before = len(self._tokens) - len(hist_list) - 1
            first_prev = self._tokens[before] if before >= 0 else None

            def cond_fn(tok, uncond=False):
                seq = tok[:, None] if hist is None else torch.cat([hist, tok[:, None]], dim=1)
                prev = dyn.prev_tokens(seq, first_prev) if dyn.warp is not None else None
                act = act_btd
                if uncond:
                    act = torch.cat([act_btd[:, :-1], dyn.action_embedding(None, self.batch)[:, None]], dim=1)
                return dyn.forward_embedded(seq, act, window=sp.context_frames, prev_btn=prev)[:, -1]

        w = sp.action_guidance
        if w == 1.0:
            logits_fn = cond_fn
        else:
            def logits_fn(tok):  # classifier-free guidance on the action
                cond = cond_fn(tok).float()
                uncond = cond_fn(tok, uncond=True).float()
                return uncond + w * (cond - uncond)

        new = sample_frame(logits_fn, self.batch, dyn.tokens_per_frame, dyn.mask_id, sp.maskgit_steps,
                           sp.temperature, self.generator, sp.schedule, self.confidence_noise, self.device,
                           sp.order)
        if self.use_cache:
            dyn.commit(new, vec, self.cache)  # commit the final tokens (keys/values only, no logits)
        self._tokens.append(new)
        self._actions.append(actions_b)
        self._act_emb.append(emb)
        if len(self._act_emb) > self._reach() + 1:  # older frames can no longer matter
            del self._act_emb[0]
        frame = _to_uint8(g.tokenizer.decode_step(new, self.dec_cache))
        self.frames.append(frame)
        if self.max_history is not None:
            # the reference path needs the reach and the frame before it
            keep = max(self.max_history, self._reach() + 1)
            extra = len(self._tokens) - keep
            if extra > 0:
                del self._tokens[:extra]
                self._dropped += extra
            del self.frames[: max(0, len(self.frames) - self.max_history)]
            del self._actions[: max(0, len(self._actions) - self.max_history)]
        return frame

    def video(self) -> np.ndarray:
        """All frames so far, (B, T, H, W, 3) uint8 (prompt reconstructions first)."""
        return np.stack(self.frames, axis=1)
